package authserver

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Errors about the client or redirect URI render a page and never redirect.
func TestAuthorizeErrorPageNeverRedirects(t *testing.T) {
	e := newEnv(t, envOpt{})
	c := e.register("https://client.example.com/cb", true)
	loop := e.register("http://127.0.0.1:8080/cb", true)
	tests := map[string]func(url.Values){
		"unregistered client":  func(v url.Values) { v.Set("client_id", "nope") },
		"missing client":       func(v url.Values) { v.Del("client_id") },
		"repeated client_id":   func(v url.Values) { v.Add("client_id", c.ID) },
		"missing redirect":     func(v url.Values) { v.Del("redirect_uri") },
		"trailing slash":       func(v url.Values) { v.Set("redirect_uri", "https://client.example.com/cb/") },
		"extra path":           func(v url.Values) { v.Set("redirect_uri", "https://client.example.com/cb/x") },
		"extra query":          func(v url.Values) { v.Set("redirect_uri", "https://client.example.com/cb?x=1") },
		"different port":       func(v url.Values) { v.Set("redirect_uri", "https://client.example.com:8443/cb") },
		"fragment":             func(v url.Values) { v.Set("redirect_uri", "https://client.example.com/cb#x") },
		"other host":           func(v url.Values) { v.Set("redirect_uri", "https://evil.example.com/cb") },
		"scheme downgrade":     func(v url.Values) { v.Set("redirect_uri", "http://client.example.com/cb") },
		"case change":          func(v url.Values) { v.Set("redirect_uri", "https://CLIENT.example.com/cb") },
		"repeated redirect":    func(v url.Values) { v.Add("redirect_uri", "https://client.example.com/cb") },
		"userinfo":             func(v url.Values) { v.Set("redirect_uri", "https://evil@client.example.com/cb") },
		"loopback other path":  func(v url.Values) { v.Set("client_id", loop.ID); v.Set("redirect_uri", "http://127.0.0.1:9999/other") },
		"loopback other host":  func(v url.Values) { v.Set("client_id", loop.ID); v.Set("redirect_uri", "http://localhost:8080/cb") },
		"loopback https":       func(v url.Values) { v.Set("client_id", loop.ID); v.Set("redirect_uri", "https://127.0.0.1:8080/cb") },
		"loopback with query":  func(v url.Values) { v.Set("client_id", loop.ID); v.Set("redirect_uri", "http://127.0.0.1:8080/cb?a=b") },
		"loopback bad and bad": func(v url.Values) { v.Set("client_id", loop.ID); v.Set("redirect_uri", "http://127.0.0.1:8080/cb#f") },
	}
	for name, mod := range tests {
		t.Run(name, func(t *testing.T) {
			v := authorizeParams(c)
			mod(v)
			p := e.browser().get(e.iss + "/authorize?" + v.Encode())
			if p.status != http.StatusBadRequest || p.loc != nil || p.header.Get("Location") != "" {
				t.Fatalf("got %d Location=%q, want 400 error page", p.status, p.header.Get("Location"))
			}
			if !strings.Contains(p.body, "<h1>") || p.header.Get("X-Frame-Options") != "DENY" {
				t.Errorf("not an error page: %s", p.body)
			}
		})
	}
}

func TestLoopbackAnyPort(t *testing.T) {
	e := newEnv(t, envOpt{})
	for _, reg := range []struct{ registered, used string }{
		{"http://127.0.0.1:8080/cb", "http://127.0.0.1:51234/cb"},
		{"http://127.0.0.1/cb", "http://127.0.0.1:51234/cb"},
		{"http://[::1]:3000/cb", "http://[::1]:4000/cb"},
		{"http://localhost:3000/oauth/callback", "http://localhost:33418/oauth/callback"},
	} {
		c := e.register(reg.registered, true)
		c.Redirect = reg.used
		q := e.login(e.browser(), authorizeParams(c))
		if q.Get("code") == "" {
			t.Errorf("%s used as %s: %v", reg.registered, reg.used, q)
			continue
		}
		// The token request must repeat the redirect URI actually used.
		if st, m := e.exchange(c, q.Get("code"), nil); st != http.StatusOK {
			t.Errorf("%s: token %d %v", reg.used, st, m)
		}
	}
}

// Errors after the client and redirect URI are verified go back to the
// client with error, state and iss.
func TestAuthorizeRedirectedErrors(t *testing.T) {
	e := newEnv(t, envOpt{})
	c := e.register("https://client.example.com/cb", true)
	tests := []struct {
		name string
		mod  func(url.Values)
		code string
	}{
		{"missing PKCE", func(v url.Values) { v.Del("code_challenge"); v.Del("code_challenge_method") }, "invalid_request"},
		{"plain PKCE", func(v url.Values) { v.Set("code_challenge_method", "plain") }, "invalid_request"},
		{"PKCE method missing (plain)", func(v url.Values) { v.Del("code_challenge_method") }, "invalid_request"},
		{"short challenge", func(v url.Values) { v.Set("code_challenge", "abc") }, "invalid_request"},
		{"bad challenge chars", func(v url.Values) { v.Set("code_challenge", strings.Repeat("!", 43)) }, "invalid_request"},
		{"response type token", func(v url.Values) { v.Set("response_type", "token") }, "unsupported_response_type"},
		{"response type missing", func(v url.Values) { v.Del("response_type") }, "unsupported_response_type"},
		{"unknown scope", func(v url.Values) { v.Set("scope", "mcp:read admin") }, "invalid_scope"},
		{"openid not configured", func(v url.Values) { v.Set("scope", "openid") }, "invalid_scope"},
		{"foreign resource", func(v url.Values) { v.Set("resource", "https://other.example.com/mcp") }, "invalid_target"},
		{"resource with fragment", func(v url.Values) { v.Set("resource", e.iss+"/mcp#x") }, "invalid_target"},
		{"resource base URL", func(v url.Values) { v.Set("resource", e.iss) }, "invalid_target"},
		{"two resources", func(v url.Values) { v["resource"] = []string{e.iss + "/mcp", e.iss + "/mcp"} }, "invalid_target"},
		{"repeated scope", func(v url.Values) { v.Add("scope", "mcp:read") }, "invalid_request"},
		{"prompt none", func(v url.Values) { v.Set("prompt", "none") }, "login_required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := authorizeParams(c)
			tc.mod(v)
			p := e.browser().get(e.iss + "/authorize?" + v.Encode())
			if p.status != http.StatusFound || p.loc == nil || !strings.HasPrefix(p.loc.String(), c.Redirect+"?") {
				t.Fatalf("got %d %v, want redirect to the client", p.status, p.loc)
			}
			q := p.loc.Query()
			if q.Get("error") != tc.code || q.Get("state") != "xyz-state" || q.Get("iss") != e.iss || q.Get("code") != "" {
				t.Errorf("response = %v, want error %s with state and iss", q, tc.code)
			}
		})
	}
}

func TestAuthorizeResourceAndScopeDefaults(t *testing.T) {
	e := newEnv(t, envOpt{cfg: func(c *Config) { c.DefaultScopes = []string{"mcp:read"} }})
	c := e.register("https://client.example.com/cb", true)
	tests := []struct {
		name            string
		mod             func(url.Values)
		wantScope, wAud string
	}{
		{"no scope, no resource", func(v url.Values) { v.Del("scope") }, "mcp:read", e.iss + "/mcp"},
		{"uppercase scheme and trailing slash", func(v url.Values) {
			v.Set("resource", strings.Replace(e.iss, "http://", "HTTP://", 1)+"/mcp/")
		}, "mcp:read", e.iss + "/mcp"},
		{"offline_access accepted", func(v url.Values) { v.Set("scope", "mcp:write offline_access") }, "mcp:write offline_access", e.iss + "/mcp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := authorizeParams(c)
			tc.mod(v)
			q := e.login(e.browser(), v)
			st, m := e.exchange(c, q.Get("code"), nil)
			if st != http.StatusOK {
				t.Fatalf("token: %d %v", st, m)
			}
			if m["scope"] != tc.wantScope {
				t.Errorf("scope = %v, want %q", m["scope"], tc.wantScope)
			}
			p, err := e.srv.Verify(t.Context(), m["access_token"].(string))
			if err != nil {
				t.Fatal(err)
			}
			if p.Audience[0] != tc.wAud {
				t.Errorf("aud = %v, want %s", p.Audience, tc.wAud)
			}
		})
	}
}

func TestStaticClientSkipConsentAndSecret(t *testing.T) {
	e := newEnv(t, envOpt{cfg: func(c *Config) {
		c.StaticClients = []StaticClient{{
			ClientID: "first-party", ClientSecret: "0123456789abcdef-secret", Name: "Ops Console",
			RedirectURIs: []string{"https://ops.example.com/cb"}, SkipConsent: true,
		}}
	}})
	c := regClient{ID: "first-party", Secret: "0123456789abcdef-secret", Redirect: "https://ops.example.com/cb"}
	b := e.browser()
	p := b.get(e.iss + "/authorize?" + authorizeParams(c).Encode())
	p = e.signIn(b, p, testUser, testPassword)
	if p.loc == nil || p.loc.Query().Get("code") == "" {
		t.Fatalf("skip_consent client: %d %v", p.status, p.loc)
	}
	code := p.loc.Query().Get("code")
	// Wrong secret, then no secret, then the right one.
	bad := c
	bad.Secret = "wrong"
	if st, m := e.exchange(bad, code, nil); st != http.StatusUnauthorized || m["error"] != "invalid_client" {
		t.Errorf("wrong secret: %d %v", st, m)
	}
	pub := c
	pub.Secret = ""
	if st, m := e.exchange(pub, code, nil); st != http.StatusUnauthorized || m["error"] != "invalid_client" {
		t.Errorf("no secret: %d %v", st, m)
	}
	// client_secret_post works too (the code was not consumed by failed authentication).
	f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {c.Redirect}, "code_verifier": {testVerifier},
		"client_id": {c.ID}, "client_secret": {c.Secret}}
	if st, m, _ := e.post("/token", f, nil); st != http.StatusOK {
		t.Errorf("client_secret_post: %d %v", st, m)
	}
}
