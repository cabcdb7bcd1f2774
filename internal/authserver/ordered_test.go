package authserver

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/idp"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/memory"
	"github.com/mcpgate/mcpgate/internal/store/sqlite"
)

// stores are the backends the token-format tests run on: the memory store
// keys on the hash string, SQLite on store.KeyBytes of it.
var stores = map[string]func(t *testing.T) store.Store{
	"memory": func(*testing.T) store.Store { return memory.New() },
	"sqlite": func(t *testing.T) store.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "as.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	},
}

// TestTokensAreTimeOrdered: codes and refresh tokens (first and rotated)
// carry the issue time, and their stored hashes sort in issue order; the
// grant's ID is a time-ordered ID.
func TestTokensAreTimeOrdered(t *testing.T) {
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, envOpt{st: open(t)})
			c := e.register("http://127.0.0.1:3000/cb", true)
			code := e.code(c)
			codeAt := e.clock.Now().UnixMicro()
			e.clock.Add(time.Second)
			st, tok := e.exchange(c, code, nil)
			if st != http.StatusOK {
				t.Fatal(st, tok)
			}
			rt0 := tok["refresh_token"].(string)
			e.clock.Add(time.Second)
			st, r1 := e.refresh(c, rt0)
			if st != http.StatusOK {
				t.Fatal(st, r1)
			}
			rt1 := r1["refresh_token"].(string)
			var prev string
			for i, tc := range []struct {
				tok string
				at  int64
			}{{code, codeAt}, {rt0, codeAt + 1e6}, {rt1, codeAt + 2e6}} {
				h := store.TokenHash(tc.tok)
				if at, ok := store.TokenTime(h); len(tc.tok) != 54 || !ok || at != tc.at {
					t.Errorf("token %d = %q: time %d %v, want %d", i, tc.tok, at, ok, tc.at)
				}
				if h <= prev {
					t.Errorf("token %d's hash %s sorts before its predecessor's %s", i, h, prev)
				}
				prev = h
			}
			rt, err := e.st.GetRefreshToken(t.Context(), store.TokenHash(rt1))
			if err != nil {
				t.Fatalf("successor stored under its ordered hash: %v", err)
			}
			// The grant (tsid) is ordered too, by the time its code was issued.
			if g := rt.GrantID; len(g) != store.OrderedIDLen || g[:16] != fmt.Sprintf("%016x", codeAt) {
				t.Errorf("grant ID %q, want an ordered ID issued at %d", g, codeAt)
			}
		})
	}
}

// TestLegacyTokensStillWork: codes and refresh tokens issued before tokens
// were time-ordered (a 43-character random token, stored under
// store.HashKey) still redeem, refresh, retry within grace and revoke.
func TestLegacyTokensStillWork(t *testing.T) {
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, envOpt{st: open(t)})
			ctx := t.Context()
			c := e.register("http://127.0.0.1:3000/cb", true)

			t.Run("code", func(t *testing.T) {
				code, grantID := randomToken(), newID()
				id, _ := json.Marshal(&idp.Identity{Issuer: "https://gw.example.com#static", Subject: testUser, Username: testUser})
				sealed, err := e.srv.sealJSON(&grantSecrets{RefreshKey: randomToken()}, aad("grant", grantID))
				if err != nil {
					t.Fatal(err)
				}
				if err := e.st.CreateAuthCode(ctx, &store.AuthCode{
					Hash: store.HashKey(code), ClientID: c.ID, RedirectURI: c.Redirect, Resource: e.srv.resources[0],
					UserKey: "https://gw.example.com#static#" + testUser, Scopes: []string{"mcp:read"}, CodeChallenge: pkceS256(testVerifier),
					GrantID: grantID, Identity: id, UpstreamTokens: sealed, ExpiresAt: time.Now().Add(time.Hour),
				}); err != nil {
					t.Fatal(err)
				}
				if st, m := e.exchange(c, code, nil); st != http.StatusOK || len(m["refresh_token"].(string)) != 54 {
					t.Fatalf("legacy code: %d %v, want 200 and an ordered refresh token", st, m)
				}
			})

			// legacyRT stores an old-format refresh token for a new grant:
			// its first token rotated to one (store API, as the previous
			// release did).
			legacyRT := func(t *testing.T) (string, *store.Grant) {
				tok := e.tokens(c)
				g := e.grantOf(tok["access_token"].(string))
				rt, now := randomToken(), e.clock.Now()
				if err := e.st.RotateRefreshToken(ctx, store.TokenHash(tok["refresh_token"].(string)), &store.RefreshToken{
					Hash: store.HashKey(rt), GrantID: g.ID, ClientID: c.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, now); err != nil {
					t.Fatal(err)
				}
				e.clock.Add(time.Minute) // past refresh_grace of the rotated token
				return rt, g
			}

			t.Run("refresh and grace retry", func(t *testing.T) {
				rt, _ := legacyRT(t)
				st, r1 := e.refresh(c, rt)
				if st != http.StatusOK || len(r1["refresh_token"].(string)) != 54 {
					t.Fatalf("legacy refresh: %d %v", st, r1)
				}
				e.clock.Add(time.Second)
				if st, m := e.refresh(c, rt); st != http.StatusOK || m["refresh_token"] != r1["refresh_token"] {
					t.Fatalf("legacy retry within grace: %d %v, want the same successor", st, m)
				}
			})

			t.Run("rotated before the upgrade, retried after", func(t *testing.T) {
				rt, g := legacyRT(t)
				_, secrets, err := e.srv.loadGrant(ctx, g.ID)
				if err != nil {
					t.Fatal(err)
				}
				// The successor the previous release derived: the bare HMAC.
				m := hmac.New(sha256.New, []byte(secrets.RefreshKey))
				m.Write([]byte("mcpgate refresh successor\x00"))
				m.Write([]byte(rt))
				old := base64.RawURLEncoding.EncodeToString(m.Sum(nil))
				now := e.clock.Now()
				if err := e.st.RotateRefreshToken(ctx, store.HashKey(rt), &store.RefreshToken{Hash: store.HashKey(old), GrantID: g.ID, ClientID: c.ID,
					CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, now); err != nil {
					t.Fatal(err)
				}
				if st, m := e.refresh(c, rt); st != http.StatusOK || m["refresh_token"] != old {
					t.Fatalf("retry of a token rotated before the upgrade: %d %v, want %s", st, m, old)
				}
				if st, m := e.refresh(c, old); st != http.StatusOK {
					t.Fatalf("legacy successor: %d %v", st, m)
				}
			})

			t.Run("revoke", func(t *testing.T) {
				rt, _ := legacyRT(t)
				if st, _, _ := e.post("/revoke", url.Values{"token": {rt}, "client_id": {c.ID}}, nil); st != http.StatusOK {
					t.Fatalf("revoke: %d", st)
				}
				if st, m := e.refresh(c, rt); st != http.StatusBadRequest || m["error"] != "invalid_grant" {
					t.Errorf("refresh after revoking a legacy token: %d %v", st, m)
				}
			})
		})
	}
}
