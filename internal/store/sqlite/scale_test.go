package sqlite

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

// BenchmarkRefreshAtScale is the store's part of one refresh (read the
// presented token, read its grant, rotate the token) with 1k and 100k
// stored grants, refreshed in turn as the bench's clients do, so at 100k
// every refresh touches a grant not touched for 100k refreshes. The sizes
// are measured in interleaved rounds (MCPGATE_BENCH_ROUNDS, default 3);
// cpu-ns/op, the process's CPU per refresh on one goroutine (checkpointer
// included), is the figure to compare on a loaded machine (issue 15: at
// 100k grants as cheap as at 1k). Seeding 100k grants through the store
// API takes about a minute; -short runs 1k only.
//
// MCPGATE_BENCH_GRANTS=n,… sets the sizes, MCPGATE_BENCH_KEYS=ordered,random
// the token keys compared (default ordered: the product's time-ordered
// tokens; random: store.HashKey of a random token, as before), MCPGATE_BENCH_CACHE_KIB=a,…
// compares writer cache sizes and MCPGATE_BENCH_MMAP_MIB=m,… writer
// mmap_size values (one Store per combination over the same file),
// MCPGATE_BENCH_CPUPROFILE=prefix writes a CPU profile per sub-benchmark,
// MCPGATE_BENCH_DBSTAT=1 logs each b-tree's pages.
func BenchmarkRefreshAtScale(b *testing.B) {
	sizes := envInts(b, "MCPGATE_BENCH_GRANTS", []int{1000, 100_000}, 1)
	if testing.Short() {
		sizes = sizes[:1]
	}
	caches := envInts(b, "MCPGATE_BENCH_CACHE_KIB", []int{writerCacheKiB}, 1)
	mmaps := envInts(b, "MCPGATE_BENCH_MMAP_MIB", []int{int(writerMmapBytes >> 20)}, 0)
	defer func(m int64) { writerMmapBytes = m }(writerMmapBytes)
	rounds := envInts(b, "MCPGATE_BENCH_ROUNDS", []int{3}, 1)[0]
	defer func(c int) { writerCacheKiB = c }(writerCacheKiB)
	ctx := context.Background()
	kinds := benchKeyKinds(b)
	type instance struct {
		name   string
		keys   *tokenKeys
		s      *Store
		rts    []string // shared by the instances over one file
		grants []string
		i      *int // the next refresh, shared like rts
	}
	var ins []*instance
	for _, n := range sizes {
		for _, keys := range kinds {
			path := filepath.Join(b.TempDir(), "scale.db")
			s, err := Open(ctx, path)
			if err != nil {
				b.Fatal(err)
			}
			rts, grants := seedGrants(b, s, n, keys)
			if os.Getenv("MCPGATE_BENCH_DBSTAT") != "" {
				logPages(b, s)
			}
			s.Close()
			next := new(int)
			for _, c := range caches {
				for _, m := range mmaps {
					writerCacheKiB, writerMmapBytes = c, int64(m)<<20
					s, err := Open(ctx, path)
					if err != nil {
						b.Fatal(err)
					}
					defer s.Close()
					name := fmt.Sprintf("grants=%d", n)
					if len(kinds) > 1 {
						name += "/keys=" + keys.name()
					}
					if len(caches) > 1 {
						name += fmt.Sprintf("/cache=%dKiB", c)
					}
					if len(mmaps) > 1 {
						name += fmt.Sprintf("/mmap=%dMiB", m)
					}
					ins = append(ins, &instance{name: name, keys: keys, s: s, rts: rts, grants: grants, i: next})
				}
			}
		}
	}
	now := time.Now()
	for r := range rounds {
		for _, in := range ins {
			b.Run(fmt.Sprintf("%s/round=%d", in.name, r+1), func(b *testing.B) {
				if p := os.Getenv("MCPGATE_BENCH_CPUPROFILE"); p != "" {
					f, err := os.Create(p + "." + strings.NewReplacer("/", "-", "=", "").Replace(b.Name()))
					if err != nil {
						b.Fatal(err)
					}
					defer f.Close()
					pprof.StartCPUProfile(f)
					defer pprof.StopCPUProfile()
				}
				n := len(in.grants)
				cpu0 := testutil.ProcessCPU()
				for b.Loop() {
					g := *in.i % n
					*in.i++
					if _, err := in.s.GetRefreshToken(ctx, in.rts[g]); err != nil {
						b.Fatal(err)
					}
					if _, err := in.s.GetGrant(ctx, in.grants[g]); err != nil {
						b.Fatal(err)
					}
					next := &store.RefreshToken{Hash: in.keys.hash("rt-" + strconv.Itoa(g) + "-" + strconv.Itoa(*in.i)),
						GrantID: in.grants[g], ClientID: "bench-client", CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
					if err := in.s.RotateRefreshToken(ctx, in.rts[g], next, now); err != nil {
						b.Fatal(err)
					}
					in.rts[g] = next.Hash
				}
				b.ReportMetric(float64(testutil.ProcessCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// envInts reads a comma-separated list of numbers, each at least least.
func envInts(b *testing.B, name string, def []int, least int) []int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n < least {
			b.Fatalf("%s: %q is not a number of at least %d", name, f, least)
		}
		out = append(out, n)
	}
	return out
}

// logPages logs each b-tree's size in pages (dbstat).
func logPages(b *testing.B, s *Store) {
	rows, err := s.r.Query(`SELECT name, COUNT(*), SUM(pagetype = 'internal') FROM dbstat GROUP BY name ORDER BY 2 DESC`)
	if err != nil {
		b.Log(err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var pages, interior int
		rows.Scan(&name, &pages, &interior)
		b.Logf("%-30s %6d pages (%d interior)", name, pages, interior)
	}
}

// seedGrants stores n grants through the store API, the way an exchange
// does (a code, then its redemption with the grant and its first refresh
// token), and returns their refresh token hashes and grant IDs.
func seedGrants(tb testing.TB, s store.Store, n int, keys *tokenKeys) (rts, grants []string) {
	tb.Helper()
	ctx := context.Background()
	now := time.Now()
	identity := []byte(`{"iss":"http://127.0.0.1:8080#static","sub":"bench","preferred_username":"bench"}`)
	rts, grants = make([]string, n), make([]string, n)
	for i := range n {
		id := strconv.Itoa(i)
		code := &store.AuthCode{Hash: keys.hash("code-" + id), ClientID: "bench-client",
			RedirectURI: "http://127.0.0.1:9/cb", UserKey: "http://127.0.0.1:8080#static#bench", Scopes: []string{"mcp"},
			CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", GrantID: keys.grantID("grant-" + id),
			Identity: identity, ExpiresAt: now.Add(10 * time.Minute)}
		if err := s.CreateAuthCode(ctx, code); err != nil {
			tb.Fatal(err)
		}
		rts[i], grants[i] = keys.hash("rt-"+id), code.GrantID
		_, err := s.RedeemAuthCode(ctx, code.Hash, func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
			return &store.Grant{ID: c.GrantID, ClientID: c.ClientID, UserKey: c.UserKey, Scopes: c.Scopes,
					Identity: c.Identity, CreatedAt: now, ExpiresAt: now.Add(30 * 24 * time.Hour)},
				&store.RefreshToken{Hash: rts[i], GrantID: c.GrantID, ClientID: c.ClientID, CreatedAt: now,
					ExpiresAt: now.Add(24 * time.Hour)}, nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	return rts, grants
}

// tokenKeys makes the hashes of the benchmarks' codes and refresh tokens:
// ordered, the hash of a time-ordered token issued one microsecond after
// the previous one (store.OrderedToken, the product's format); otherwise
// store.HashKey of the name, the random keys of the tokens before.
type tokenKeys struct {
	ordered bool
	at      atomic.Int64
}

func newTokenKeys(ordered bool) *tokenKeys {
	k := &tokenKeys{ordered: ordered}
	k.at.Store(time.Now().UnixMicro())
	return k
}

func (k *tokenKeys) name() string {
	if k.ordered {
		return "ordered"
	}
	return "random"
}

// grantID is the ID of the grant named name: ordered, a time-ordered ID
// (store.OrderedID, the product's format), otherwise name itself (random
// IDs, whose keys are SHA-256).
func (k *tokenKeys) grantID(name string) string {
	if !k.ordered {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return store.OrderedID(k.at.Add(1), (*[16]byte)(sum[:16]))
}

func (k *tokenKeys) hash(name string) string {
	if !k.ordered {
		return store.HashKey(name)
	}
	secret := sha256.Sum256([]byte(name))
	return store.TokenHash(store.OrderedToken(k.at.Add(1), &secret))
}

// benchKeyKinds reads MCPGATE_BENCH_KEYS (ordered, random; default ordered).
func benchKeyKinds(b *testing.B) []*tokenKeys {
	v := os.Getenv("MCPGATE_BENCH_KEYS")
	if v == "" {
		v = "ordered"
	}
	var out []*tokenKeys
	for _, f := range strings.Split(v, ",") {
		switch f {
		case "ordered", "random":
			out = append(out, newTokenKeys(f == "ordered"))
		default:
			b.Fatalf("MCPGATE_BENCH_KEYS: %q is neither ordered nor random", f)
		}
	}
	return out
}

// BenchmarkSweepWalk is one DeleteExpired over 100k grants (and their
// refresh tokens, MCPGATE_BENCH_GRANTS sets the count) of which none has
// expired: the steady state of the sweeper, which walks grants and refresh
// tokens from a read connection since they lost their expiry indexes
// (migration 0003). ns/op and cpu-ns/op are one sweep; window-max-ns is
// the longest single read of the walk (sweepWindow rows), the longest the
// sweep holds a read snapshot.
func BenchmarkSweepWalk(b *testing.B) {
	n := envInts(b, "MCPGATE_BENCH_GRANTS", []int{100_000}, 1)[0]
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "sweep.db")
	s, err := Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	seedGrants(b, s, n, newTokenKeys(true))
	now := time.Now()
	cpu0 := testutil.ProcessCPU()
	for b.Loop() {
		if removed, err := s.DeleteExpired(ctx, now); err != nil || removed != 0 {
			b.Fatalf("DeleteExpired = %d, %v", removed, err)
		}
	}
	b.ReportMetric(float64(testutil.ProcessCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	// The walk's reads once more, one at a time, as DeleteExpired makes them.
	var longest time.Duration
	for _, walk := range []string{qWalkRefresh, qWalkGrants} {
		after, found := int64(math.MinInt64), []int64(nil)
		for seen := sweepWindow; seen == sweepWindow; {
			start := time.Now()
			if seen, err = s.walkWindow(ctx, walk, &after, micros(now), &found); err != nil {
				b.Fatal(err)
			}
			longest = max(longest, time.Since(start))
		}
		if len(found) != 0 {
			b.Fatalf("%d expired rows found", len(found))
		}
	}
	b.ReportMetric(float64(longest.Nanoseconds()), "window-max-ns")
}
