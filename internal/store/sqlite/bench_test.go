package sqlite_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/sqlite"
)

// BenchmarkSQLiteCodeExchange approximates the storage cost of one
// authorization-code-to-token exchange: the code is issued, then redeemed
// together with creating its grant and first refresh token.
func BenchmarkSQLiteCodeExchange(b *testing.B) {
	ctx := context.Background()
	s := openTemp(b)
	defer s.Close()
	now := time.Now()
	sealed := make([]byte, 1500) // typical sealed upstream token blob
	identity := []byte(`{"sub":"alice","email":"alice@example.com","groups":["dev","ops"]}`)
	i := 0
	for b.Loop() {
		i++
		id := strconv.Itoa(i)
		code := &store.AuthCode{
			Hash: store.HashKey("code" + id), ClientID: "client-1", RedirectURI: "http://127.0.0.1:3000/cb",
			Resource: "https://mcp.example/mcp", UserKey: "https://idp.example#alice", Scopes: []string{"tools:read"},
			CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", GrantID: "grant" + id,
			Identity: identity, UpstreamTokens: sealed, ExpiresAt: now.Add(time.Minute),
		}
		if err := s.CreateAuthCode(ctx, code); err != nil {
			b.Fatal(err)
		}
		_, err := s.RedeemAuthCode(ctx, code.Hash, func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
			g := &store.Grant{
				ID: c.GrantID, ClientID: c.ClientID, UserKey: c.UserKey, Resource: c.Resource, Scopes: c.Scopes,
				Identity: c.Identity, UpstreamTokens: c.UpstreamTokens, UpstreamExpiry: now.Add(time.Hour),
				CreatedAt: now, ExpiresAt: now.Add(30 * 24 * time.Hour),
			}
			return g, &store.RefreshToken{
				Hash: store.HashKey("rt" + id), GrantID: c.GrantID, ClientID: c.ClientID,
				CreatedAt: now, ExpiresAt: now.Add(30 * 24 * time.Hour),
			}, nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "exchanges/s")
}

// BenchmarkSQLiteRefreshRotate measures one refresh: look up the presented
// token, then rotate it to its successor.
func BenchmarkSQLiteRefreshRotate(b *testing.B) {
	ctx := context.Background()
	s := openTemp(b)
	defer s.Close()
	now := time.Now()
	rotate := grantToRotate(b, s, &store.Grant{ID: "g", ClientID: "c", CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
	read := func(cur string) {
		if _, err := s.GetRefreshToken(ctx, cur); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		rotate(read)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rotations/s")
}

// BenchmarkSQLiteRefreshReads compares the reads a refresh makes before
// rotating: the token then its grant (two queries), or both in one
// (GetRefreshTokenGrant). Each iteration rotates the token, as a refresh
// does, so the reads meet the pages of the latest commit; read-ns/op
// counts the reads alone.
func BenchmarkSQLiteRefreshReads(b *testing.B) {
	for _, mode := range []string{"two-reads", "one-read"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			s := openTemp(b)
			defer s.Close()
			now := time.Now()
			rotate := grantToRotate(b, s, &store.Grant{ID: "g", ClientID: "c", UserKey: "https://idp.example#alice", Resource: "https://mcp.example/mcp",
				Scopes: []string{"tools:read", "tools:call"}, Identity: []byte(`{"sub":"alice","email":"alice@example.com","groups":["dev","ops"]}`),
				UpstreamTokens: make([]byte, 1500), CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
			var readNS time.Duration
			b.ReportAllocs()
			read := func(cur string) {
				start := time.Now()
				if mode == "one-read" {
					if _, _, err := s.GetRefreshTokenGrant(ctx, cur); err != nil {
						b.Fatal(err)
					}
				} else {
					rt, err := s.GetRefreshToken(ctx, cur)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := s.GetGrant(ctx, rt.GrantID); err != nil {
						b.Fatal(err)
					}
				}
				readNS += time.Since(start)
			}
			for b.Loop() {
				rotate(read)
			}
			b.ReportMetric(float64(readNS.Nanoseconds())/float64(b.N), "read-ns/op")
		})
	}
}

// grantToRotate stores g, redeeming a code for it, with its first refresh
// token, and returns rotate: a refresh, which calls read with the current
// token's hash, then rotates the token to its successor.
func grantToRotate(b *testing.B, s *sqlite.Store, g *store.Grant) (rotate func(read func(cur string))) {
	b.Helper()
	ctx := context.Background()
	now := time.Now()
	cur := store.HashKey("rt0")
	code := &store.AuthCode{Hash: store.HashKey("code"), GrantID: g.ID, ClientID: g.ClientID}
	if err := s.CreateAuthCode(ctx, code); err != nil {
		b.Fatal(err)
	}
	if _, err := s.RedeemAuthCode(ctx, code.Hash, issue(g,
		&store.RefreshToken{Hash: cur, GrantID: g.ID, ClientID: g.ClientID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
	)); err != nil {
		b.Fatal(err)
	}
	i := 0
	return func(read func(cur string)) {
		read(cur)
		i++
		next := &store.RefreshToken{Hash: store.HashKey("rt" + strconv.Itoa(i)), GrantID: g.ID, ClientID: g.ClientID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := s.RotateRefreshToken(ctx, cur, next, now); err != nil {
			b.Fatal(err)
		}
		cur = next.Hash
	}
}
