package authserver

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/identity"
)

func TestStaticFlowEndToEnd(t *testing.T) {
	e := newEnv(t, envOpt{})
	c := e.register("http://127.0.0.1:3000/callback", true)
	b := e.browser()

	// /authorize → /login
	p := b.get(e.iss + "/authorize?" + authorizeParams(c).Encode())
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.loc.String(), e.iss+"/login?req=") {
		t.Fatalf("authorize: %d %v", p.status, p.loc)
	}
	// Wrong password: the form again, 401, no redirect.
	p = b.get(p.loc.String())
	form := p.hidden()
	form.Set("username", testUser)
	form.Set("password", "wrong")
	bad := b.post(e.iss+"/login", form)
	if bad.status != http.StatusUnauthorized || !strings.Contains(bad.body, "Invalid username or password") || bad.loc != nil {
		t.Fatalf("wrong password: %d %v", bad.status, bad.loc)
	}
	form.Set("password", testPassword)
	p = b.post(e.iss+"/login", form)
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.loc.String(), e.iss+"/consent?req=") {
		t.Fatalf("login: %d %v %s", p.status, p.loc, p.body)
	}
	// The consent page shows the client, the redirect host and the scopes.
	p = b.get(p.loc.String())
	for _, want := range []string{"Test Client", "127.0.0.1:3000", "mcp:read", "registered itself"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("consent page lacks %q", want)
		}
	}
	if p.header.Get("X-Frame-Options") != "DENY" || !strings.Contains(p.header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("consent page may be framed: %v", p.header)
	}
	form = p.hidden()
	form.Set("decision", "approve")
	p = b.post(e.iss+"/consent", form)
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.loc.String(), "http://127.0.0.1:3000/callback?") {
		t.Fatalf("consent: %d %v", p.status, p.loc)
	}
	q := p.loc.Query()
	if q.Get("state") != "xyz-state" || q.Get("iss") != e.iss || q.Get("code") == "" {
		t.Fatalf("authorization response = %v", q)
	}

	st, tok := e.exchange(c, q.Get("code"), nil)
	if st != http.StatusOK {
		t.Fatalf("token: %d %v", st, tok)
	}
	if tok["token_type"] != "Bearer" || tok["scope"] != "mcp:read" || tok["refresh_token"] == "" || tok["expires_in"].(float64) != 900 {
		t.Errorf("token response = %v", tok)
	}
	at := tok["access_token"].(string)

	// The access token: RFC 9068 header and claims.
	jws, err := jwt.ParseSigned(at, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if typ := jws.Headers[0].ExtraHeaders[jose.HeaderType]; typ != "at+jwt" {
		t.Errorf("typ = %v", typ)
	}
	var claims map[string]any
	if err := jws.UnsafeClaimsWithoutVerification(&claims); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"iss": e.iss, "sub": testUser, "aud": e.iss + "/mcp", "client_id": c.ID, "scope": "mcp:read",
		"email": "alice@example.com", "preferred_username": testUser,
	} {
		if claims[k] != want {
			t.Errorf("claim %s = %v, want %v", k, claims[k], want)
		}
	}
	for _, k := range []string{"jti", "tsid", "iat", "exp"} {
		if claims[k] == nil {
			t.Errorf("claim %s missing", k)
		}
	}

	// Authenticate accepts it on the resource and yields the principal.
	req, _ := http.NewRequest(http.MethodPost, "http://gw.example/mcp", nil)
	req.Header.Set("Authorization", "Bearer "+at)
	pr, err := e.srv.Authenticate(req)
	if err != nil {
		t.Fatal(err)
	}
	want := &identity.Principal{
		Issuer: e.iss, Subject: testUser, Username: testUser, Email: "alice@example.com", EmailVerified: true,
		Groups: []string{"admins"}, Scopes: []string{"mcp:read"}, ClientID: c.ID, SessionID: claims["tsid"].(string),
		Audience: []string{e.iss + "/mcp"},
	}
	if d := cmp.Diff(want, pr, cmpopts.IgnoreFields(identity.Principal{}, "TokenID", "ExpiresAt", "Claims")); d != "" {
		t.Errorf("principal (-want +got):\n%s", d)
	}

	// Second flow: consent is remembered, no consent page.
	b2 := e.browser()
	p = b2.get(e.iss + "/authorize?" + authorizeParams(c).Encode())
	p = b2.get(p.loc.String())
	form = p.hidden()
	form.Set("username", testUser)
	form.Set("password", testPassword)
	p = b2.post(e.iss+"/login", form)
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.loc.String(), c.Redirect+"?") {
		t.Fatalf("remembered consent: got %d %v, want redirect to the client", p.status, p.loc)
	}
	// Asking for a scope not yet approved shows the consent page again.
	params := authorizeParams(c)
	params.Set("scope", "mcp:read mcp:write")
	b3 := e.browser()
	p = b3.get(e.iss + "/authorize?" + params.Encode())
	p = b3.get(p.loc.String())
	form = p.hidden()
	form.Set("username", testUser)
	form.Set("password", testPassword)
	p = b3.post(e.iss+"/login", form)
	if !strings.HasPrefix(p.loc.String(), e.iss+"/consent") {
		t.Errorf("new scope without consent: %v", p.loc)
	}
}

func TestJWKSAndMetadata(t *testing.T) {
	e := newEnv(t, envOpt{})
	b := e.browser()
	for _, path := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
		st, m, h := e.doJSONGet(path)
		if st != http.StatusOK {
			t.Fatalf("%s: %d", path, st)
		}
		if h.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: no CORS", path)
		}
		want := map[string]any{
			"issuer":                                         e.iss,
			"authorization_endpoint":                         e.iss + "/authorize",
			"token_endpoint":                                 e.iss + "/token",
			"jwks_uri":                                       e.iss + "/jwks",
			"registration_endpoint":                          e.iss + "/register",
			"revocation_endpoint":                            e.iss + "/revoke",
			"introspection_endpoint":                         e.iss + "/introspect",
			"scopes_supported":                               []any{"mcp:read", "mcp:write"},
			"response_types_supported":                       []any{"code"},
			"response_modes_supported":                       []any{"query"},
			"grant_types_supported":                          []any{"authorization_code", "refresh_token"},
			"token_endpoint_auth_methods_supported":          []any{"none", "client_secret_basic", "client_secret_post"},
			"revocation_endpoint_auth_methods_supported":     []any{"none", "client_secret_basic", "client_secret_post"},
			"introspection_endpoint_auth_methods_supported":  []any{"client_secret_basic", "client_secret_post"},
			"code_challenge_methods_supported":               []any{"S256"},
			"authorization_response_iss_parameter_supported": true,
			"client_id_metadata_document_supported":          true,
			"subject_types_supported":                        []any{"public"},
			"id_token_signing_alg_values_supported":          []any{"ES256"},
		}
		if d := cmp.Diff(want, m); d != "" {
			t.Errorf("%s (-want +got):\n%s", path, d)
		}
	}
	p := b.get(e.iss + "/jwks")
	if p.status != http.StatusOK || !strings.Contains(p.body, `"kid"`) || strings.Contains(p.body, `"d"`) {
		t.Errorf("jwks: %d %s", p.status, p.body)
	}
}

func TestMetadataPathIssuer(t *testing.T) {
	e := newEnv(t, envOpt{})
	// An issuer with a path: RFC 8414 §3.3 inserts the well-known segment
	// before the path; OIDC appends it.
	cfg := e.srv.cfg
	cfg.PublicURL = e.iss + "/tenant1"
	cfg.Resources = nil
	cfg.SetDefaults()
	srv, err := New(cfg, Deps{Store: e.st, Signer: e.signer, Sealer: newTestSealer(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		"/.well-known/oauth-authorization-server/tenant1",
		"/.well-known/openid-configuration/tenant1",
		"/tenant1/.well-known/openid-configuration",
	} {
		req, _ := http.NewRequest(http.MethodGet, e.iss+path, nil)
		w := newRecorder()
		srv.Handler().ServeHTTP(w, req)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"issuer":"`+e.iss+`/tenant1"`) ||
			!strings.Contains(w.Body.String(), `"token_endpoint":"`+e.iss+`/tenant1/token"`) {
			t.Errorf("%s: %d %s", path, w.Code, w.Body)
		}
	}
	if !containsAll(srv.Routes(), "/tenant1/authorize", "/tenant1/token", "/.well-known/oauth-authorization-server/tenant1") {
		t.Errorf("Routes() = %v", srv.Routes())
	}
}

func containsAll(list []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, l := range list {
			found = found || l == w
		}
		if !found {
			return false
		}
	}
	return true
}

func TestAuthenticateRejects(t *testing.T) {
	e := newEnv(t, envOpt{cfg: func(c *Config) {
		c.Resources = []string{c.PublicURL + "/mcp/a", c.PublicURL + "/mcp/b"}
	}})
	c := e.register("http://127.0.0.1:3000/cb", true)
	params := authorizeParams(c)
	params.Set("resource", e.iss+"/mcp/a")
	q := e.login(e.browser(), params)
	st, tok := e.exchange(c, q.Get("code"), nil)
	if st != http.StatusOK {
		t.Fatal(tok)
	}
	at := tok["access_token"].(string)
	if err := e.authn("/mcp/a", at); err != nil {
		t.Fatalf("own resource: %v", err)
	}
	if err := e.authn("/mcp/a/sub", at); err != nil {
		t.Fatalf("own resource subpath: %v", err)
	}
	if err := e.authn("/mcp/b", at); !errors.Is(err, authn.ErrInvalidToken) {
		t.Errorf("other resource: err = %v, want ErrInvalidToken", err)
	}
	// Tampered signature, wrong typ, foreign key, expiry.
	parts := strings.Split(at, ".")
	if err := e.authn("/mcp/a", parts[0]+"."+parts[1]+".AAAA"); !errors.Is(err, authn.ErrInvalidToken) {
		t.Errorf("bad signature: %v", err)
	}
	other := newTestSigner(t)
	forged, _ := other.SignJWT(t.Context(), "at+jwt", map[string]any{"iss": e.iss, "aud": e.iss + "/mcp/a", "sub": "x", "client_id": c.ID, "tsid": "t", "exp": time.Now().Add(time.Hour).Unix()})
	if err := e.authn("/mcp/a", forged); !errors.Is(err, authn.ErrInvalidToken) {
		t.Errorf("foreign key: %v", err)
	}
	idTokenTyp, _ := e.signer.SignJWT(t.Context(), "JWT", map[string]any{"iss": e.iss})
	if err := e.authn("/mcp/a", idTokenTyp); !errors.Is(err, authn.ErrInvalidToken) {
		t.Errorf("typ JWT: %v", err)
	}
	if err := e.authn("/mcp/a", ""); !errors.Is(err, authn.ErrInvalidToken) && !errors.Is(err, authn.ErrNoToken) {
		t.Errorf("empty: %v", err)
	}
	e.clock.Add(16 * time.Minute)
	if err := e.authn("/mcp/a", at); !errors.Is(err, authn.ErrInvalidToken) {
		t.Errorf("expired: %v", err)
	}
}

// TestOwnTokensRequireAtJWT: the authorization server accepts only its own
// access tokens, which always carry typ at+jwt, so it is stricter than the
// resource-server default: a JWT it signed for any other purpose, or
// without typ, is refused even with valid claims and signature
// (RFC 8725 §3.11, RFC 9068 §4).
func TestOwnTokensRequireAtJWT(t *testing.T) {
	e := newEnv(t, envOpt{})
	var claims accessClaims
	issuedClaims(t, e, &claims)
	for _, tc := range []struct {
		typ string
		ok  bool
	}{
		{"at+jwt", true}, {"AT+JWT", true}, {"application/at+jwt", true},
		{"logout+jwt", false}, {"secevent+jwt", false}, {"dpop+jwt", false}, {"id_token+jwt", false},
		{"JWT", false}, {"", false},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			claims.JTI = "typ-" + tc.typ // a distinct token, past the verified cache
			tok, err := e.signer.SignJWT(t.Context(), tc.typ, claims)
			if err != nil {
				t.Fatal(err)
			}
			err = e.authn("/mcp", tok)
			if tc.ok && err != nil {
				t.Fatalf("typ %q refused: %v", tc.typ, err)
			}
			if !tc.ok && (!errors.Is(err, authn.ErrInvalidToken) || !strings.Contains(err.Error(), "typ")) {
				t.Fatalf("typ %q: err %v, want invalid token naming typ", tc.typ, err)
			}
		})
	}
}

func TestKeyRotationPickedUp(t *testing.T) {
	e := newEnv(t, envOpt{})
	c := e.register("http://127.0.0.1:3000/cb", true)
	at1 := e.tokens(c)["access_token"].(string)
	if err := e.authn("/mcp", at1); err != nil {
		t.Fatal(err)
	}
	e.signer.rotate(t)
	e.clock.Add(2 * time.Second) // past the unknown-kid refetch limit
	at2 := e.tokens(c)["access_token"].(string)
	for _, at := range []string{at1, at2} {
		if err := e.authn("/mcp", at); err != nil {
			t.Errorf("after rotation: %v", err)
		}
	}
	// The first key leaves the key set (retired past its overlap): tokens
	// it signed stop verifying once the cached set expires.
	e.signer.mu.Lock()
	e.signer.pubs = e.signer.pubs[1:]
	e.signer.mu.Unlock()
	e.clock.Add(keyCacheTTL)
	if err := e.authn("/mcp", at1); !errors.Is(err, authn.ErrInvalidToken) {
		t.Errorf("token of a removed key: %v", err)
	}
	if err := e.authn("/mcp", at2); err != nil {
		t.Errorf("token of the current key: %v", err)
	}
}

func TestCustomSchemeInterstitial(t *testing.T) {
	e := newEnv(t, envOpt{})
	c := e.register("cursor://anysphere.cursor-mcp/oauth/callback", true)
	b := e.browser()
	p := e.consentPage(b, c)
	if !strings.Contains(p.body, "This opens an application") {
		t.Error("consent page does not say the redirect opens an application")
	}
	f := p.hidden()
	f.Set("decision", "approve")
	p = b.post(e.iss+"/consent", f)
	if p.status != http.StatusOK || p.loc != nil {
		t.Fatalf("custom scheme: %d %v", p.status, p.loc)
	}
	if !strings.Contains(p.body, `href="cursor://anysphere.cursor-mcp/oauth/callback?code=`) || !strings.Contains(p.body, "iss=") {
		t.Errorf("interstitial lacks the redirect link: %s", p.body)
	}
}

func TestConsentDenied(t *testing.T) {
	e := newEnv(t, envOpt{})
	c := e.register("https://client.example.com/cb", true)
	b := e.browser()
	p := e.consentPage(b, c)
	f := p.hidden() // posted again below
	f.Set("decision", "deny")
	p = b.post(e.iss+"/consent", f)
	q := p.loc.Query()
	if q.Get("error") != "access_denied" || q.Get("state") != "xyz-state" || q.Get("iss") != e.iss || q.Get("code") != "" {
		t.Errorf("deny: %v", p.loc)
	}
	// The request is gone: posting again fails.
	f.Set("decision", "approve")
	if p := b.post(e.iss+"/consent", f); p.status != http.StatusBadRequest || p.loc != nil {
		t.Errorf("replayed consent: %d %v", p.status, p.loc)
	}
}

func TestConsentCSRF(t *testing.T) {
	e := newEnv(t, envOpt{})
	c := e.register("https://client.example.com/cb", true)
	b := e.browser()
	p := e.consentPage(b, c)
	good := p.hidden()
	tests := map[string]struct {
		b    *browser
		form url.Values
	}{
		"missing csrf":   {b, url.Values{"req": {good.Get("req")}, "decision": {"approve"}}},
		"wrong csrf":     {b, url.Values{"req": {good.Get("req")}, "csrf": {"forged"}, "decision": {"approve"}}},
		"other browser":  {e.browser(), url.Values{"req": {good.Get("req")}, "csrf": {good.Get("csrf")}, "decision": {"approve"}}},
		"unknown req id": {b, url.Values{"req": {"nope"}, "csrf": {good.Get("csrf")}, "decision": {"approve"}}},
	}
	for name, tc := range tests {
		p := tc.b.post(e.iss+"/consent", tc.form)
		if p.status < 400 || p.loc != nil {
			t.Errorf("%s: %d %v, want an error page", name, p.status, p.loc)
		}
	}
	// The genuine form still works afterwards.
	good.Set("decision", "approve")
	if p := b.post(e.iss+"/consent", good); p.loc == nil || p.loc.Query().Get("code") == "" {
		t.Errorf("genuine consent failed: %d %s", p.status, p.body)
	}
}

func TestLoginLockout(t *testing.T) {
	e := newEnv(t, envOpt{})
	c := e.register("https://client.example.com/cb", true)
	b := e.browser()
	p := b.get(e.iss + "/authorize?" + authorizeParams(c).Encode())
	p = b.get(p.loc.String())
	f := p.hidden()
	f.Set("username", "nobody")
	f.Set("password", "x")
	for i := 1; i < maxLoginFailures; i++ {
		if p := b.post(e.iss+"/login", f); p.status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i, p.status)
		}
	}
	p = b.post(e.iss+"/login", f)
	if p.loc == nil || p.loc.Query().Get("error") != "access_denied" {
		t.Errorf("after %d failures: %d %v", maxLoginFailures, p.status, p.loc)
	}
}

func TestCookiesOverTLS(t *testing.T) {
	e := newEnv(t, envOpt{tls: true})
	c := e.register("https://client.example.com/cb", true)
	b := e.browser()
	p := b.get(e.iss + "/authorize?" + authorizeParams(c).Encode())
	cookies := p.header.Values("Set-Cookie")
	if len(cookies) != 1 {
		t.Fatalf("Set-Cookie = %q", cookies)
	}
	ck := cookies[0]
	for _, want := range []string{"__Host-mcpgate-browser=", "Path=/", "HttpOnly", "Secure", "SameSite=Lax"} {
		if !strings.Contains(ck, want) {
			t.Errorf("cookie %q lacks %q", ck, want)
		}
	}
	if strings.Contains(ck, "Domain=") {
		t.Errorf("__Host- cookie with Domain: %q", ck)
	}
	// The whole flow works over TLS with the prefixed cookie.
	if q := e.login(b, authorizeParams(c)); q.Get("code") == "" {
		t.Errorf("TLS flow: %v", q)
	}
}

// TestNoAccessPage: a user whose groups map to no role learns so at sign-in,
// with the groups the IdP sent, and no code is issued; a user with a role
// signs in as before.
func TestNoAccessPage(t *testing.T) {
	var asked []*identity.Principal
	e, sink := auditedEnv(t, envOpt{deps: func(d *Deps) {
		d.GrantsNothing = func(p *identity.Principal) bool {
			asked = append(asked, p)
			return !slices.Contains(p.Groups, "mcp-users")
		}
	}})
	c := e.register("http://127.0.0.1:3000/callback", true)
	b := e.browser()
	p := b.get(e.iss + "/authorize?" + authorizeParams(c).Encode())
	p = e.signIn(b, p, testUser, testPassword)
	if p.status != http.StatusForbidden || p.loc != nil {
		t.Fatalf("login without a role: %d %v", p.status, p.loc)
	}
	for _, want := range []string{"No access", "Signed in as alice", "no role grants you any tool", "sent the groups admins; none of them maps to a role"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("page lacks %q:\n%s", want, p.body)
		}
	}
	if len(asked) != 1 || asked[0].Issuer != e.iss || asked[0].Subject != testUser || !asked[0].EmailVerified {
		t.Errorf("GrantsNothing asked about %+v", asked)
	}
	if !slices.ContainsFunc(sink.records(t), func(r audit.Record) bool {
		return r.Event == audit.EventASLoginFailed && r.Reason == "no role grants the user any tool"
	}) || slices.Contains(sink.events(t), audit.EventASCodeIssued) {
		t.Errorf("audit: %v", sink.events(t))
	}
	// A user the policy gives something signs in as before.
	e2 := newEnv(t, envOpt{deps: func(d *Deps) {
		d.GrantsNothing = func(p *identity.Principal) bool { return !slices.Contains(p.Groups, "admins") }
	}})
	c2 := e2.register("http://127.0.0.1:3000/callback", true)
	if q := e2.login(e2.browser(), authorizeParams(c2)); q.Get("code") == "" {
		t.Errorf("user with a role: %v", q)
	}
}

// TestOwnTokenClaims: the claims our own access tokens must carry, checked
// by the shared verifier (authn.NewLocalVerifier) with the authorization
// server's rules: our issuer, one of our resources, tsid and client_id,
// no leeway on exp, a minute's on iat (other replicas' clocks), and only
// signatures by our keys with an allowed algorithm.
func TestOwnTokenClaims(t *testing.T) {
	e := newEnv(t, envOpt{})
	var base map[string]any
	issuedClaims(t, e, &base)
	now := e.clock.Now()
	for _, tc := range []struct {
		name   string
		edit   func(m map[string]any)
		ok     bool
		reason string
	}{
		{"as issued", func(map[string]any) {}, true, ""},
		{"wrong issuer", func(m map[string]any) { m["iss"] = "https://evil.example.com" }, false, "issuer"},
		{"audience not ours", func(m map[string]any) { m["aud"] = "https://other.example.com/mcp" }, false, "audience"},
		{"no aud", func(m map[string]any) { delete(m, "aud") }, false, "aud"},
		{"no tsid", func(m map[string]any) { delete(m, "tsid") }, false, "tsid"},
		{"no client_id", func(m map[string]any) { delete(m, "client_id") }, false, "client_id"},
		{"no sub", func(m map[string]any) { delete(m, "sub") }, false, "sub"},
		{"no exp", func(m map[string]any) { delete(m, "exp") }, false, "exp"},
		{"expired a second ago", func(m map[string]any) { m["exp"] = now.Add(-time.Second).Unix() }, false, "expired"},
		{"iat 30s ahead", func(m map[string]any) { m["iat"] = now.Add(30 * time.Second).Unix() }, true, ""},
		{"iat 2m ahead", func(m map[string]any) { m["iat"] = now.Add(2 * time.Minute).Unix() }, false, "future"},
		{"nbf ahead", func(m map[string]any) { m["nbf"] = now.Add(time.Minute).Unix() }, false, "before"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := maps.Clone(base)
			m["jti"] = "claims-" + tc.name // a distinct token, past the verified cache
			tc.edit(m)
			tok, err := e.signer.SignJWT(t.Context(), "at+jwt", m)
			if err != nil {
				t.Fatal(err)
			}
			err = e.authn("/mcp", tok)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && (!errors.Is(err, authn.ErrInvalidToken) || !strings.Contains(err.Error(), tc.reason)) {
				t.Fatalf("err %v, want invalid token naming %q", err, tc.reason)
			}
		})
	}
	// Algorithms: none and HMAC never verify, whatever the claims.
	payload := base64.RawURLEncoding.EncodeToString(must(json.Marshal(base)))
	for _, hdr := range []string{`{"alg":"none","typ":"at+jwt"}`, `{"alg":"HS256","typ":"at+jwt","kid":"x"}`} {
		tok := base64.RawURLEncoding.EncodeToString([]byte(hdr)) + "." + payload + "."
		if err := e.authn("/mcp", tok); !errors.Is(err, authn.ErrInvalidToken) {
			t.Errorf("%s: %v", hdr, err)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// issuedClaims decodes, into v, the claims of an access token e issues to
// a newly registered client.
func issuedClaims(t *testing.T, e *env, v any) {
	t.Helper()
	c := e.register("http://127.0.0.1:3000/cb", true)
	at := e.tokens(c)["access_token"].(string)
	parsed, err := jwt.ParseSigned(at, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if err := parsed.UnsafeClaimsWithoutVerification(v); err != nil {
		t.Fatal(err)
	}
}
