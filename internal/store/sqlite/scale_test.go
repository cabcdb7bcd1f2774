package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// BenchmarkRefreshAtScale is the store's part of one refresh (read the
// presented token, read its grant, rotate the token) with 1k and 100k
// stored grants, refreshed in turn as the bench's clients do, so at 100k
// every refresh touches a grant not touched for 100k refreshes. Its ns/op
// on one goroutine is CPU time: compare the two sizes in one run
// (issue 15: at 100k grants as fast as at 1k). Seeding 100k grants
// through the store API takes about a minute; -short runs 1k only.
func BenchmarkRefreshAtScale(b *testing.B) {
	sizes := []int{1000, 100_000}
	if testing.Short() {
		sizes = sizes[:1]
	}
	if v := os.Getenv("MCPGATE_BENCH_GRANTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		sizes = []int{n}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("grants=%d", n), func(b *testing.B) {
			ctx := context.Background()
			s, err := Open(ctx, filepath.Join(b.TempDir(), "scale.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			rts := seedGrants(b, s, n)
			grants := make([]string, n)
			for i := range grants {
				grants[i] = "grant-" + strconv.Itoa(i)
			}
			now := time.Now()
			i := 0
			b.ResetTimer()
			for b.Loop() {
				g := i % n
				i++
				if _, err := s.GetRefreshToken(ctx, rts[g]); err != nil {
					b.Fatal(err)
				}
				if _, err := s.GetGrant(ctx, grants[g]); err != nil {
					b.Fatal(err)
				}
				next := &store.RefreshToken{Hash: store.HashKey("rt-" + strconv.Itoa(g) + "-" + strconv.Itoa(i)),
					GrantID: grants[g], ClientID: "bench-client", CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
				if err := s.RotateRefreshToken(ctx, rts[g], next, now); err != nil {
					b.Fatal(err)
				}
				rts[g] = next.Hash
			}
		})
	}
}

// seedGrants stores n grants through the store API, the way an exchange
// does (a code, then its redemption with the grant and its first refresh
// token), and returns their refresh token hashes.
func seedGrants(tb testing.TB, s store.Store, n int) []string {
	tb.Helper()
	ctx := context.Background()
	now := time.Now()
	identity := []byte(`{"iss":"http://127.0.0.1:8080#static","sub":"bench","preferred_username":"bench"}`)
	rts := make([]string, n)
	for i := range n {
		id := strconv.Itoa(i)
		code := &store.AuthCode{Hash: store.HashKey("code-" + id), ClientID: "bench-client",
			RedirectURI: "http://127.0.0.1:9/cb", UserKey: "http://127.0.0.1:8080#static#bench", Scopes: []string{"mcp"},
			CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", GrantID: "grant-" + id,
			Identity: identity, ExpiresAt: now.Add(10 * time.Minute)}
		if err := s.CreateAuthCode(ctx, code); err != nil {
			tb.Fatal(err)
		}
		rts[i] = store.HashKey("rt-" + id)
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
	return rts
}
