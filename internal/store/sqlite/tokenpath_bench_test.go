package sqlite

import (
	"context"
	"os"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

// BenchmarkTokenPath is the store's part of the token endpoint as the bench
// drives it (issue 15 point 2): 8 concurrent clients (run with -cpu 2, as
// the bench machine), each redeeming codes stored beforehand (exchange:
// RedeemAuthCode with a grant and its first refresh token) or refreshing
// its own grants in turn (refresh: GetRefreshTokenGrant, then
// RotateRefreshToken), with time-ordered keys, rows of the product's sizes
// and a cancellable context per request, as an HTTP request's. cpu-ns/op is the process's CPU per grant (checkpointer included):
// the figure to compare on a loaded machine. MCPGATE_BENCH_CPUPROFILE=prefix
// writes a CPU profile per sub-benchmark.
func BenchmarkTokenPath(b *testing.B) {
	const clients = 8
	ctx := context.Background()
	identity := []byte(`{"iss":"http://127.0.0.1:8080#static","sub":"bench","preferred_username":"bench","groups":["dev"]}`)
	sealed := make([]byte, 180) // a sealed grantSecrets without upstream tokens
	profile := func(b *testing.B) func() {
		p := os.Getenv("MCPGATE_BENCH_CPUPROFILE")
		if p == "" {
			return func() {}
		}
		f, err := os.Create(p + "." + b.Name()[len("BenchmarkTokenPath/"):])
		if err != nil {
			b.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		return func() { pprof.StopCPUProfile(); f.Close() }
	}
	b.Run("exchange", func(b *testing.B) {
		s := openGroupTest(b)
		keys := newTokenKeys(true)
		now := time.Now()
		codes := make([]string, b.N)
		for i := range codes {
			id := strconv.Itoa(i)
			c := &store.AuthCode{Hash: keys.hash("code-" + id), ClientID: "bench-client", RedirectURI: "http://127.0.0.1:9/cb",
				UserKey: "http://127.0.0.1:8080#static#bench", Scopes: []string{"mcp"},
				CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", GrantID: keys.grantID("grant-" + id),
				Identity: identity, UpstreamTokens: sealed, ExpiresAt: now.Add(10 * time.Minute)}
			if err := s.CreateAuthCode(ctx, c); err != nil {
				b.Fatal(err)
			}
			codes[i] = c.Hash
		}
		var next atomic.Int64
		b.SetParallelism(clients / 2)
		b.ReportAllocs()
		stop := profile(b)
		cpu0 := testutil.ProcessCPU()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				ctx, cancel := context.WithCancel(ctx)
				i := next.Add(1) - 1
				rt := keys.hash("rt-" + strconv.FormatInt(i, 10))
				_, err := s.RedeemAuthCode(ctx, codes[i], func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
					g := &store.Grant{ID: c.GrantID, ClientID: c.ClientID, UserKey: c.UserKey, Scopes: c.Scopes,
						Identity: c.Identity, UpstreamTokens: c.UpstreamTokens, CreatedAt: now, ExpiresAt: now.Add(30 * 24 * time.Hour)}
					return g, &store.RefreshToken{Hash: rt, GrantID: g.ID, ClientID: c.ClientID, CreatedAt: now,
						ExpiresAt: now.Add(30 * 24 * time.Hour)}, nil
				})
				cancel()
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		b.ReportMetric(float64(testutil.ProcessCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		stop()
	})
	b.Run("refresh", func(b *testing.B) {
		s := openGroupTest(b)
		keys := newTokenKeys(true)
		const grants = 1024
		rts, _ := seedGrants(b, s, grants, keys)
		var client atomic.Int64
		b.SetParallelism(clients / 2)
		b.ReportAllocs()
		stop := profile(b)
		cpu0 := testutil.ProcessCPU()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			c := int(client.Add(1) - 1)
			for i := c; pb.Next(); i += clients {
				g := i % grants // each client owns the grants ≡ c (mod clients)
				ctx, cancel := context.WithCancel(ctx)
				rt, gr, err := s.GetRefreshTokenGrant(ctx, rts[g])
				if err != nil {
					cancel()
					b.Error(err)
					return
				}
				now := time.Now()
				next := &store.RefreshToken{Hash: keys.hash("rt-" + strconv.Itoa(i)), GrantID: gr.ID, ClientID: rt.ClientID,
					CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
				err = s.RotateRefreshToken(ctx, rts[g], next, now)
				cancel()
				if err != nil {
					b.Error(err)
					return
				}
				rts[g] = next.Hash
			}
		})
		b.StopTimer()
		b.ReportMetric(float64(testutil.ProcessCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		stop()
	})
}
