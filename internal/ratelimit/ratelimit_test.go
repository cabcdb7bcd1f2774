package ratelimit

import (
	"context"
	"fmt"
	"hash/maphash"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"

	"github.com/mcpgate/mcpgate/internal/validate"
)

type fakeClock struct{ t atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.t.Add(int64(d)) }

func newTest(l Limit, maxKeys int, idle time.Duration) (*Limiter, *fakeClock) {
	c := &fakeClock{}
	c.t.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	lim := New("test", l, maxKeys, idle)
	lim.now = c.now
	return lim, c
}

func TestAllowBurstThenRetryAfter(t *testing.T) {
	lim, clock := newTest(Limit{RPS: 2, Burst: 3}, 100, time.Minute)
	for i := range 3 {
		if ok, _ := lim.Allow("k"); !ok {
			t.Fatalf("request %d within burst denied", i)
		}
	}
	ok, retry := lim.Allow("k")
	if ok || retry != 500*time.Millisecond {
		t.Fatalf("over burst: got ok=%v retry=%v, want false 500ms", ok, retry)
	}
	if ok, _ := lim.Allow("other"); !ok {
		t.Error("another key shares the bucket")
	}
	clock.advance(400 * time.Millisecond)
	if ok, retry := lim.Allow("k"); ok || retry != 100*time.Millisecond {
		t.Errorf("before refill: ok=%v retry=%v, want false 100ms", ok, retry)
	}
	clock.advance(100 * time.Millisecond)
	if ok, _ := lim.Allow("k"); !ok {
		t.Error("denied after retryAfter elapsed")
	}
}

func TestNilLimiterAndDisabledSet(t *testing.T) {
	var l *Limiter
	if ok, d := l.Allow("x"); !ok || d != 0 {
		t.Error("nil limiter must allow")
	}
	off := false
	s, err := NewSet(context.Background(), Config{Enabled: &off}, SharedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if ok, _ := s.PerIP.Take(ctx, "x"); !ok || s.PerTool != nil || len(s.Collectors()) != 0 {
		t.Errorf("disabled set limits: %+v", s)
	}
	on, err := NewSet(ctx, Config{}, SharedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if on.PerIP == nil || on.PerUser == nil || len(on.Collectors()) != 4 {
		t.Errorf("default set: %+v", on)
	}
	for range DefaultPerIP.Burst {
		on.PerIP.Take(ctx, "192.0.2.1")
	}
	if ok, _ := on.PerIP.Take(ctx, "192.0.2.1"); ok {
		t.Error("default per-IP burst not enforced")
	}
}

// sameShardKeys returns n distinct keys that hash to one shard.
func sameShardKeys(lim *Limiter, n int) []string {
	var out []string
	want := maphash.String(lim.seed, "k0") % shards
	for i := 0; len(out) < n; i++ {
		k := fmt.Sprintf("k%d", i)
		if maphash.String(lim.seed, k)%shards == want {
			out = append(out, k)
		}
	}
	return out
}

func TestIdleEviction(t *testing.T) {
	lim, clock := newTest(Limit{RPS: 10, Burst: 1}, 1000, time.Minute)
	keys := sameShardKeys(lim, 3)
	lim.Allow(keys[0])
	lim.Allow(keys[1])
	clock.advance(time.Minute)
	lim.Allow(keys[2]) // evicts the two idle buckets on the way
	if n := lim.Len(); n != 1 {
		t.Errorf("Len = %d, want 1 after idle eviction", n)
	}
	if v := counter(t, lim); v != 0 {
		t.Errorf("idle evictions counted as forced: %v", v)
	}
}

func TestIdleEvictionWaitsForRefill(t *testing.T) {
	// 1 token/s, burst 100: a drained bucket needs 100s to refill, so an
	// idle TTL of 1s must not hand the key a fresh bucket earlier.
	lim, clock := newTest(Limit{RPS: 1, Burst: 100}, 1000, time.Second)
	keys := sameShardKeys(lim, 2)
	for range 100 {
		lim.Allow(keys[0])
	}
	clock.advance(5 * time.Second)
	lim.Allow(keys[1])
	allowed := 0
	for range 10 {
		if ok, _ := lim.Allow(keys[0]); ok {
			allowed++
		}
	}
	if allowed != 5 {
		t.Errorf("after 5s, %d requests allowed, want 5 (bucket was reset by eviction?)", allowed)
	}
}

func TestCapacityEvictionLRU(t *testing.T) {
	lim, _ := newTest(Limit{RPS: 1, Burst: 1}, 2*shards, time.Hour) // 2 per shard
	keys := sameShardKeys(lim, 3)
	lim.Allow(keys[0]) // drains a
	lim.Allow(keys[1])
	lim.Allow(keys[0]) // a is now most recently used (and still drained)
	lim.Allow(keys[2]) // full: evicts b, the least recently used
	if ok, _ := lim.Allow(keys[0]); ok {
		t.Error("recently used bucket was evicted (fresh burst granted)")
	}
	if ok, _ := lim.Allow(keys[1]); !ok {
		t.Error("evicted bucket should start fresh")
	}
	if v := counter(t, lim); v < 1 {
		t.Errorf("forced evictions = %v, want ≥ 1", v)
	}
}

func TestBoundedUnderKeyFlood(t *testing.T) {
	lim, _ := newTest(Limit{RPS: 1, Burst: 1}, 256, time.Hour)
	for i := range 20000 {
		lim.Allow(fmt.Sprintf("10.%d.%d.%d", i>>16, i>>8&255, i&255))
	}
	if n := lim.Len(); n > 256 {
		t.Errorf("Len = %d, want ≤ 256", n)
	}
	long := strings.Repeat("https://issuer.example#", 500)
	lim.Allow(long)
	for i := range lim.shards {
		for k := range lim.shards[i].m {
			if len(k) > maxKeyLen {
				t.Fatalf("stored key of %d bytes", len(k))
			}
		}
	}
	if ok, _ := lim.Allow(long); ok {
		t.Error("long key not limited consistently")
	}
}

func counter(t *testing.T, lim *Limiter) float64 {
	t.Helper()
	var m dto.Metric
	if err := lim.evictions.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.Counter.GetValue()
}

func TestConcurrentAllow(t *testing.T) {
	lim := New("test", Limit{RPS: 1e-3, Burst: 50}, 1000, time.Minute)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if ok, _ := lim.Allow("shared"); ok {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != 50 {
		t.Errorf("allowed %d concurrent requests, want exactly the burst of 50", got)
	}
}

func TestIPKey(t *testing.T) {
	tests := map[string]string{
		"192.0.2.7":                "192.0.2.7",
		"::ffff:192.0.2.7":         "192.0.2.7",
		"2001:db8:1:2:aaaa::1":     "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::9":     "2001:db8:1:2::/64",
		"2001:db8:1:3::1":          "2001:db8:1:3::/64",
		"fe80::1%eth0":             "fe80::/64",
		"::1":                      "::/64",
		"2001:db8:ffff:ffff:1::77": "2001:db8:ffff:ffff::/64",
	}
	for in, want := range tests {
		if got := IPKey(netip.MustParseAddr(in)); got != want {
			t.Errorf("IPKey(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestConfig(t *testing.T) {
	var c Config
	c.SetDefaults()
	if !*c.Enabled || c.PerIP != DefaultPerIP || c.PerUser != DefaultPerUser || c.MaxKeys != DefaultMaxKeys || c.IdleTTL != DefaultIdleTTL {
		t.Errorf("defaults: %+v", c)
	}
	var p validate.Problems
	c.Validate("rate_limit", &p)
	if p.Err() != nil {
		t.Errorf("defaults invalid: %v", p.Err())
	}
	bad := Config{PerIP: Limit{RPS: -1, Burst: 0}, PerUser: Limit{RPS: 5}, MaxKeys: -1, IdleTTL: -time.Second}
	bad.SetDefaults() // keeps the explicit (invalid) values
	p = validate.Problems{}
	bad.Validate("rate_limit", &p)
	want := []string{
		"rate_limit.per_ip.rps: must be a positive number (got -1)",
		"rate_limit.per_ip.burst: must be at least 1 (got 0)",
		"rate_limit.per_user.burst: must be at least 1 (got 0)",
		"rate_limit.max_keys: must be at least 1 (got -1)",
		"rate_limit.idle_ttl: must not be negative (got -1s)",
	}
	if diff := cmp.Diff(want, p.List()); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

func BenchmarkAllow(b *testing.B) {
	b.Run("one-key", func(b *testing.B) {
		lim := New("bench", Limit{RPS: 1e9, Burst: 1 << 30}, DefaultMaxKeys, DefaultIdleTTL)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				lim.Allow("192.0.2.1")
			}
		})
	})
	b.Run("many-keys", func(b *testing.B) {
		lim := New("bench", DefaultPerIP, DefaultMaxKeys, DefaultIdleTTL)
		keys := make([]string, 200_000) // twice the cap: constant eviction
		for i := range keys {
			keys[i] = fmt.Sprintf("10.%d.%d.%d", i>>16, i>>8&255, i&255)
		}
		var n atomic.Uint64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				lim.Allow(keys[n.Add(1)%uint64(len(keys))])
			}
		})
	})
}
