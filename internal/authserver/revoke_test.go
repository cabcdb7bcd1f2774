package authserver

import (
	"errors"
	"net/http"
	"net/url"
	"testing"

	"github.com/mcpgate/mcpgate/internal/authn"
)

func TestRevoke(t *testing.T) {
	e := newEnv(t, envOpt{})
	c := e.register("http://127.0.0.1:3000/cb", true)
	other := e.register("http://127.0.0.1:3000/cb", true)

	t.Run("refresh token revokes the grant", func(t *testing.T) {
		tok := e.tokens(c)
		// Another client cannot revoke it (200, nothing happens).
		if st, _, _ := e.post("/revoke", url.Values{"token": {tok["refresh_token"].(string)}, "client_id": {other.ID}}, nil); st != http.StatusOK {
			t.Errorf("foreign revoke: %d", st)
		}
		if err := e.authn("/mcp", tok["access_token"].(string)); err != nil {
			t.Fatalf("token revoked by another client: %v", err)
		}
		st, _, h := e.post("/revoke", url.Values{"token": {tok["refresh_token"].(string)}, "token_type_hint": {"refresh_token"}, "client_id": {c.ID}}, nil)
		if st != http.StatusOK || h.Get("Cache-Control") != "no-store" {
			t.Fatalf("revoke: %d", st)
		}
		if err := e.authn("/mcp", tok["access_token"].(string)); !errors.Is(err, authn.ErrInvalidToken) {
			t.Errorf("access token after revocation: %v", err)
		}
		if st, _ := e.refresh(c, tok["refresh_token"].(string)); st != http.StatusBadRequest {
			t.Errorf("refresh after revocation: %d", st)
		}
	})
	t.Run("access token revokes the grant", func(t *testing.T) {
		tok := e.tokens(c)
		if st, _, _ := e.post("/revoke", url.Values{"token": {tok["access_token"].(string)}, "client_id": {c.ID}}, nil); st != http.StatusOK {
			t.Fatal(st)
		}
		if st, _ := e.refresh(c, tok["refresh_token"].(string)); st != http.StatusBadRequest {
			t.Errorf("refresh after access token revocation: %d", st)
		}
	})
	t.Run("unknown token is 200", func(t *testing.T) {
		for _, tok := range []string{"garbage", "a.b.c", ""} {
			st, m, _ := e.post("/revoke", url.Values{"token": {tok}, "client_id": {c.ID}}, nil)
			want := http.StatusOK
			if tok == "" {
				want = http.StatusBadRequest
			}
			if st != want {
				t.Errorf("%q: %d %v", tok, st, m)
			}
		}
	})
	t.Run("client authentication", func(t *testing.T) {
		if st, m, _ := e.post("/revoke", url.Values{"token": {"x"}, "client_id": {"nope"}}, nil); st != http.StatusUnauthorized || m["error"] != "invalid_client" {
			t.Errorf("unknown client: %d %v", st, m)
		}
	})
}

func TestIntrospect(t *testing.T) {
	e := newEnv(t, envOpt{cfg: func(c *Config) {
		c.StaticClients = []StaticClient{{ClientID: "rs", ClientSecret: "resource-server-secret-0123", RedirectURIs: []string{"https://rs.example.com/cb"}}}
	}})
	pub := e.register("http://127.0.0.1:3000/cb", true)
	conf := e.register("https://app.example.com/cb", false)
	tok := e.tokens(pub)
	rs := func(r *http.Request) { r.SetBasicAuth("rs", "resource-server-secret-0123") }

	st, m, _ := e.post("/introspect", url.Values{"token": {tok["access_token"].(string)}}, rs)
	if st != http.StatusOK || m["active"] != true || m["client_id"] != pub.ID || m["scope"] != "mcp:read" || m["sub"] != testUser ||
		m["aud"] != e.iss+"/mcp" || m["iss"] != e.iss || m["token_type"] != "Bearer" || m["tsid"] == nil {
		t.Errorf("access token: %d %v", st, m)
	}
	st, m, _ = e.post("/introspect", url.Values{"token": {tok["refresh_token"].(string)}}, rs)
	if st != http.StatusOK || m["active"] != true || m["token_type"] != "refresh_token" || m["sub"] != testUser {
		t.Errorf("refresh token: %d %v", st, m)
	}
	// A dynamically registered confidential client sees only its own tokens.
	st, m, _ = e.post("/introspect", url.Values{"token": {tok["access_token"].(string)}}, func(r *http.Request) { r.SetBasicAuth(conf.ID, conf.Secret) })
	if st != http.StatusOK || m["active"] != false || len(m) != 1 {
		t.Errorf("foreign token: %d %v", st, m)
	}
	for _, bad := range []string{"garbage", "a.b.c", ""} {
		st, m, _ := e.post("/introspect", url.Values{"token": {bad}}, rs)
		if st != http.StatusOK || m["active"] != false || len(m) != 1 {
			t.Errorf("%q: %d %v", bad, st, m)
		}
	}
	// Public clients and unauthenticated callers may not introspect.
	if st, m, _ := e.post("/introspect", url.Values{"token": {"x"}, "client_id": {pub.ID}}, nil); st != http.StatusUnauthorized {
		t.Errorf("public client: %d %v", st, m)
	}
	if st, _, _ := e.post("/introspect", url.Values{"token": {"x"}}, nil); st != http.StatusUnauthorized {
		t.Errorf("no client: %d", st)
	}
	// Rotated and revoked tokens are inactive.
	_, r1 := e.refresh(pub, tok["refresh_token"].(string))
	if _, m, _ := e.post("/introspect", url.Values{"token": {tok["refresh_token"].(string)}}, rs); m["active"] != false {
		t.Errorf("rotated refresh token: %v", m)
	}
	e.post("/revoke", url.Values{"token": {r1["refresh_token"].(string)}, "client_id": {pub.ID}}, nil)
	if _, m, _ := e.post("/introspect", url.Values{"token": {r1["access_token"].(string)}}, rs); m["active"] != false {
		t.Errorf("revoked access token: %v", m)
	}
}
