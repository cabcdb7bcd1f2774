package ratelimit

import (
	"context"
	"crypto/sha256"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mcpgate/mcpgate/internal/store/postgres/pgtest"
)

// replica builds the limits one replica would, on the shared store at dsn.
func replica(t *testing.T, dsn string, cfg Config) *Set {
	t.Helper()
	cfg.Shared.Store = SharedPostgres
	s, err := NewSet(context.Background(), cfg, SharedOptions{DSN: dsn})
	if err != nil {
		t.Fatalf("NewSet: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestSharedLimitAcrossReplicas: two replicas, each with its own pool, on
// one PostgreSQL hold one per-user limit between them: the burst once, then
// the rate, within 10%.
func TestSharedLimitAcrossReplicas(t *testing.T) {
	dsn := pgtest.SchemaDSN(t)
	// A loaded test machine must not turn slow answers into local
	// fallbacks, which would count on top of the shared limit.
	cfg := Config{
		PerIP:   Limit{RPS: 0.01, Burst: 10},
		PerUser: Limit{RPS: 40, Burst: 10},
		Shared:  SharedConfig{Timeout: 5 * time.Second, OnError: OnError{PerIP: OnErrorDeny, PerUser: OnErrorDeny}},
	}
	a, b := replica(t, dsn, cfg), replica(t, dsn, cfg)
	ctx := context.Background()

	// The burst is shared: 10 in all, whichever replica takes them.
	allowed := 0
	for i := range 20 {
		r := a
		if i%2 == 1 {
			r = b
		}
		if ok, _ := r.PerIP.Take(ctx, "192.0.2.1"); ok {
			allowed++
		}
	}
	if allowed != 10 {
		t.Errorf("burst across replicas: %d allowed, want 10", allowed)
	}
	ok, retry := a.PerIP.Take(ctx, "192.0.2.1")
	if ok || retry < 90*time.Second || retry > 100*time.Second {
		t.Errorf("over the burst: ok=%v Retry-After %s, want refused for about one interval (100s)", ok, retry)
	}

	// Sustained: 8 workers on each replica for 2 s.
	const d = 2 * time.Second
	var n atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range 16 {
		r := a
		if w%2 == 1 {
			r = b
		}
		wg.Go(func() {
			for time.Since(start) < d {
				if ok, _ := r.PerUser.Take(ctx, "rate-user"); ok {
					n.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	want := float64(cfg.PerUser.Burst) + cfg.PerUser.RPS*elapsed
	got := float64(n.Load())
	t.Logf("allowed %d over %.2fs across two replicas; the limit allows %.0f", n.Load(), elapsed, want)
	if got > want*1.10 || got < want*0.90 {
		t.Errorf("allowed %.0f, want %.0f ± 10%%", got, want)
	}
}

// TestSharedOnError: when the store cannot answer, on_error decides per
// limit (the local bucket, or a refusal) and every failure is counted.
func TestSharedOnError(t *testing.T) {
	dsn := pgtest.SchemaDSN(t)
	s := replica(t, dsn, Config{
		PerIP:   Limit{RPS: 0.001, Burst: 2},
		PerUser: Limit{RPS: 0.001, Burst: 2},
		Shared:  SharedConfig{OnError: OnError{PerIP: OnErrorLocal, PerUser: OnErrorDeny}},
	})
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP TABLE mcpgate_rate_limits"); err != nil {
		t.Fatal(err)
	}
	// local: the replica's own bucket (burst 2) takes over.
	for i, want := range []bool{true, true, false} {
		if ok, _ := s.PerIP.Take(ctx, "192.0.2.1"); ok != want {
			t.Errorf("per_ip (local) call %d: %v, want %v", i, ok, want)
		}
	}
	// deny: refused from the first call, with a Retry-After.
	if ok, retry := s.PerUser.Take(ctx, "u"); ok || retry <= 0 {
		t.Errorf("per_user (deny): ok=%v retry=%s, want refused", ok, retry)
	}
	errs := s.PerIP.(*Shared).db.errors
	if got := testutil.ToFloat64(errs.WithLabelValues("ip", "local")); got != 3 {
		t.Errorf("errors{ip,local} = %v, want 3", got)
	}
	if got := testutil.ToFloat64(errs.WithLabelValues("user", "deny")); got != 1 {
		t.Errorf("errors{user,deny} = %v, want 1", got)
	}
}

// TestSharedTimeout: a check stuck behind a lock gives up after timeout and
// applies on_error, rather than holding the request.
func TestSharedTimeout(t *testing.T) {
	dsn := pgtest.SchemaDSN(t)
	s := replica(t, dsn, Config{
		PerUser: Limit{RPS: 100, Burst: 100},
		Shared:  SharedConfig{Timeout: 500 * time.Millisecond, OnError: OnError{PerUser: OnErrorDeny}},
	})
	ctx := context.Background()
	if ok, _ := s.PerUser.Take(ctx, "u"); !ok {
		t.Fatal("first call refused")
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	k := sha256.Sum256([]byte("user\x00u"))
	if _, err := tx.Exec(ctx, "SELECT 1 FROM mcpgate_rate_limits WHERE k = $1 FOR UPDATE", k[:]); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ok, _ := s.PerUser.Take(ctx, "u")
	if took := time.Since(start); ok || took < 400*time.Millisecond || took > 3*time.Second {
		t.Errorf("locked row: ok=%v after %s, want a refusal after about 500ms", ok, took)
	}
	if ok, _ := s.PerUser.Take(ctx, "other"); !ok {
		t.Error("another key waited on the locked row")
	}
}

// TestSharedSweep: spent buckets are deleted; live ones stay.
func TestSharedSweep(t *testing.T) {
	dsn := pgtest.SchemaDSN(t)
	s := replica(t, dsn, Config{PerIP: Limit{RPS: 1000, Burst: 1}, PerUser: Limit{RPS: 0.001, Burst: 1}})
	ctx := context.Background()
	s.PerIP.Take(ctx, "spent")  // full again after 1 ms
	s.PerUser.Take(ctx, "live") // empty for 1000 s
	time.Sleep(5 * time.Millisecond)
	pool := s.PerIP.(*Shared).db.pool
	if _, err := pool.Exec(ctx, sweepSQL); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM mcpgate_rate_limits").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d rows after the sweep, want 1 (the live bucket)", n)
	}
	if ok, _ := s.PerUser.Take(ctx, "live"); ok {
		t.Error("the sweep refilled a live bucket")
	}
}

func TestSharedOpenErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := NewSet(ctx, Config{Shared: SharedConfig{Store: SharedPostgres}}, SharedOptions{}); err == nil {
		t.Error("shared store without a DSN: no error")
	}
	_, err := NewSet(ctx, Config{Shared: SharedConfig{Store: SharedPostgres}}, SharedOptions{DSN: "postgres://u:hunter2@[bad"})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("bad DSN: %v (must fail without quoting the password)", err)
	}
}
