package idp

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"

	"github.com/mcpgate/mcpgate/internal/idp/idptest"
	"github.com/mcpgate/mcpgate/internal/netguard"
	"github.com/mcpgate/mcpgate/internal/validate"
)

func hash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestStaticLogin(t *testing.T) {
	cfg := Config{Type: TypeStatic, Users: []User{
		{Username: "alice", PasswordHash: hash(t, "wonderland"), Email: "alice@example.com", Groups: []string{"admins"}},
		{Username: "bob", PasswordHash: hash(t, "builder"), Groups: []string{"devs"}},
	}}
	cfg.SetDefaults()
	c, err := New(cfg, Options{Issuer: "https://gw.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	pc := c.(PasswordConnector)
	id, err := pc.Login(context.Background(), "alice", "wonderland")
	if err != nil {
		t.Fatal(err)
	}
	want := &Identity{Issuer: "https://gw.example.com#static", Subject: "alice", Username: "alice", Email: "alice@example.com", EmailVerified: true, Groups: []string{"admins"}}
	if d := cmp.Diff(want, id); d != "" {
		t.Errorf("identity (-want +got):\n%s", d)
	}
	if id.Key() != "https://gw.example.com#static#alice" {
		t.Errorf("key = %q", id.Key())
	}
	for _, tc := range []struct{ user, pw string }{
		{"alice", "wrong"}, {"alice", ""}, {"nobody", "wonderland"}, {"", ""}, {"ALICE", "wonderland"},
	} {
		if _, err := pc.Login(context.Background(), tc.user, tc.pw); !errors.Is(err, ErrInvalidCredentials) {
			t.Errorf("Login(%q,%q) err = %v, want ErrInvalidCredentials", tc.user, tc.pw, err)
		}
	}

	cfg.AllowedGroups = []string{"admins"}
	c, _ = New(cfg, Options{Issuer: "https://gw.example.com"})
	if _, err := c.(PasswordConnector).Login(context.Background(), "bob", "builder"); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("bob outside allowed_groups: err = %v", err)
	}
	if _, err := c.(PasswordConnector).Login(context.Background(), "alice", "wonderland"); err != nil {
		t.Errorf("alice in allowed_groups: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	good := hash(t, "pw")
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"missing type", Config{}, []string{"up.type: is required (oidc or static)"}},
		{"bad type", Config{Type: "saml"}, []string{`up.type: must be oidc or static, not "saml"`}},
		{"oidc ok", Config{Type: TypeOIDC, Issuer: "https://idp.example.com", ClientID: "a", ClientSecret: "b"}, nil},
		{"oidc http", Config{Type: TypeOIDC, Issuer: "http://idp.example.com", ClientID: "a", ClientSecret: "b"},
			[]string{"up.issuer: must use https (set allow_private_issuer for a local test IdP)"}},
		{"oidc http allowed", Config{Type: TypeOIDC, Issuer: "http://127.0.0.1:5556", ClientID: "a", ClientSecret: "b", AllowPrivateIssuer: true}, nil},
		{"oidc missing", Config{Type: TypeOIDC, Scopes: []string{"profile"}}, []string{
			"up.issuer: is required for type oidc", "up.client_id: is required for type oidc",
			"up.client_secret: is required for type oidc", "up.scopes: must include openid"}},
		{"static ok", Config{Type: TypeStatic, Users: []User{{Username: "a", PasswordHash: good}}}, nil},
		{"static bad", Config{Type: TypeStatic, Issuer: "https://x", Users: []User{{Username: "a", PasswordHash: "plain"}, {Username: "a", PasswordHash: good}, {PasswordHash: good}}},
			[]string{
				"up.users[0].password_hash: must be a bcrypt hash (mcpgate users hash-password)",
				`up.users[1].username: duplicate username "a"`,
				"up.users[2].username: is required",
				"up: issuer, client_id and client_secret are only valid for type oidc",
			}},
		{"static empty", Config{Type: TypeStatic}, []string{"up.users: at least one user is required for type static"}},
		{"bad domain", Config{Type: TypeStatic, Users: []User{{Username: "a", PasswordHash: good}}, AllowedEmailDomains: []string{"@example.com"}},
			[]string{"up.allowed_email_domains[0]: must be a bare domain such as example.com"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.SetDefaults()
			var p validate.Problems
			tc.cfg.Validate("up", &p)
			if d := cmp.Diff(tc.want, p.List()); d != "" {
				t.Errorf("problems (-want +got):\n%s", d)
			}
		})
	}
}

func TestDefaultScopes(t *testing.T) {
	c := Config{Type: TypeOIDC}
	c.SetDefaults()
	if d := cmp.Diff([]string{"openid", "profile", "email"}, c.Scopes); d != "" {
		t.Error(d)
	}
	c = Config{Type: TypeOIDC, GroupsClaim: "groups"}
	c.SetDefaults()
	if d := cmp.Diff([]string{"openid", "profile", "email", "groups"}, c.Scopes); d != "" {
		t.Error(d)
	}
}

func TestClaimPaths(t *testing.T) {
	claims := map[string]any{
		"groups":                     []any{"a", "b", 3},
		"realm_access":               map[string]any{"roles": []any{"r1", "r2"}},
		"https://example.com/groups": []any{"url"},
		"single":                     "solo",
		"email_verified":             "true",
	}
	for path, want := range map[string][]string{
		"groups": {"a", "b"}, "realm_access.roles": {"r1", "r2"}, "https://example.com/groups": {"url"},
		"single": {"solo"}, "missing": nil, "realm_access.missing": nil, "groups.x": nil,
	} {
		if d := cmp.Diff(want, stringsAt(claims, path)); d != "" {
			t.Errorf("stringsAt(%q): %s", path, d)
		}
	}
	if !boolAt(claims, "email_verified") {
		t.Error(`boolAt("true") = false`)
	}
	if d := cmp.Diff([]string{"a", "b", "c"}, mergeGroups([]string{"a", "b"}, nil, []string{"b", "c"})); d != "" {
		t.Error(d)
	}
}

// runFlow drives the connector through the fake IdP as a browser would.
func runFlow(t *testing.T, c CallbackConnector, nonce string) (*Identity, *Tokens, error) {
	t.Helper()
	ctx := context.Background()
	verifier := "verifier-0123456789-0123456789-0123456789-0123"
	u, err := c.AuthCodeURL(ctx, "st4te", nonce, verifier)
	if err != nil {
		return nil, nil, err
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %d %v", resp.StatusCode, err)
	}
	if !strings.HasPrefix(loc.String(), "https://gw.example.com/callback?") {
		t.Fatalf("redirected to %s", loc)
	}
	if loc.Query().Get("state") != "st4te" {
		t.Fatalf("state not echoed: %s", loc)
	}
	return c.HandleCallback(ctx, loc.Query(), nonce, verifier)
}

func newOIDCConnector(t *testing.T, p *idptest.Provider, mod func(*Config)) CallbackConnector {
	t.Helper()
	cfg := Config{Type: TypeOIDC, Issuer: p.Issuer(), ClientID: p.ClientID, ClientSecret: p.ClientSecret, AllowPrivateIssuer: true}
	if mod != nil {
		mod(&cfg)
	}
	cfg.SetDefaults()
	var probs validate.Problems
	cfg.Validate("upstream", &probs)
	if err := probs.Err(); err != nil {
		t.Fatal(err)
	}
	c, err := New(cfg, Options{Issuer: "https://gw.example.com", RedirectURL: "https://gw.example.com/callback"})
	if err != nil {
		t.Fatal(err)
	}
	return c.(CallbackConnector)
}

func TestOIDCFlowClaimSources(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(*idptest.Provider)
		cfg     func(*Config)
		want    Identity
		wantErr error
		notErr  error
	}{
		{
			name: "groups only in id_token",
			setup: func(p *idptest.Provider) {
				p.IDTokenClaims = map[string]any{"groups": []string{"ops"}, "preferred_username": "al", "email": "al@example.com", "email_verified": true}
			},
			want: Identity{Username: "al", Email: "al@example.com", EmailVerified: true, Groups: []string{"ops"}},
		},
		{
			name: "groups only in userinfo",
			setup: func(p *idptest.Provider) {
				p.UserInfoClaims = map[string]any{"groups": []string{"ui"}, "email": "u@example.com"}
			},
			want: Identity{Email: "u@example.com", Groups: []string{"ui"}},
		},
		{
			name: "nested roles in access token merged with id_token groups",
			setup: func(p *idptest.Provider) {
				p.IDTokenClaims = map[string]any{"realm_access": map[string]any{"roles": []string{"a"}}}
				p.AccessTokenClaims = map[string]any{"realm_access": map[string]any{"roles": []string{"a", "b"}}}
			},
			cfg:  func(c *Config) { c.GroupsClaim = "realm_access.roles" },
			want: Identity{Groups: []string{"a", "b"}},
		},
		{
			name:    "not in allowed groups",
			setup:   func(p *idptest.Provider) { p.IDTokenClaims = map[string]any{"groups": []string{"ops"}} },
			cfg:     func(c *Config) { c.AllowedGroups = []string{"admins"} },
			wantErr: ErrNotAllowed,
		},
		{
			name: "unverified email fails the domain gate",
			setup: func(p *idptest.Provider) {
				p.IDTokenClaims = map[string]any{"email": "x@example.com", "email_verified": false}
			},
			cfg:     func(c *Config) { c.AllowedEmailDomains = []string{"example.com"} },
			wantErr: ErrEmailNotVerified,
		},
		{
			name: "email_verified absent is unverified",
			setup: func(p *idptest.Provider) {
				p.IDTokenClaims = map[string]any{"email": "x@example.com"}
			},
			cfg:     func(c *Config) { c.AllowedEmailDomains = []string{"example.com"} },
			wantErr: ErrEmailNotVerified,
		},
		{
			name: "unverified email in another domain: not allowed, not a verification problem",
			setup: func(p *idptest.Provider) {
				p.IDTokenClaims = map[string]any{"email": "x@elsewhere.example", "email_verified": false}
			},
			cfg:     func(c *Config) { c.AllowedEmailDomains = []string{"example.com"} },
			wantErr: ErrNotAllowed,
			notErr:  ErrEmailNotVerified,
		},
		{
			name: "verified email passes the domain gate",
			setup: func(p *idptest.Provider) {
				p.IDTokenClaims = map[string]any{"email": "x@Example.com", "email_verified": true}
			},
			cfg:  func(c *Config) { c.AllowedEmailDomains = []string{"example.com"} },
			want: Identity{Email: "x@Example.com", EmailVerified: true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := idptest.New(t)
			p.Set(tc.setup)
			c := newOIDCConnector(t, p, tc.cfg)
			id, toks, err := runFlow(t, c, "n0nce")
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || (tc.notErr != nil && errors.Is(err, tc.notErr)) {
					t.Fatalf("err = %v, want %v (not %v)", err, tc.wantErr, tc.notErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.want.Issuer, tc.want.Subject = p.Issuer(), "user-1"
			if d := cmp.Diff(&tc.want, id); d != "" {
				t.Errorf("identity (-want +got):\n%s", d)
			}
			if !p.ValidAccessToken(toks.AccessToken) || toks.RefreshToken == "" || toks.IDToken == "" || toks.Expiry.IsZero() {
				t.Errorf("tokens incomplete: %+v", toks)
			}
		})
	}
}

func TestOIDCUpstreamRequest(t *testing.T) {
	p := idptest.New(t)
	c := newOIDCConnector(t, p, func(c *Config) { c.GroupsClaim = "groups" })
	if _, _, err := runFlow(t, c, "n"); err != nil {
		t.Fatal(err)
	}
	q := p.AuthorizeQuery
	if got := q.Get("scope"); got != "openid profile email groups" {
		t.Errorf("upstream scope = %q (MCP scopes must never be forwarded)", got)
	}
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") != "n" {
		t.Errorf("PKCE/nonce missing toward the IdP: %v", q)
	}
}

func TestOIDCCallbackFailures(t *testing.T) {
	t.Run("bad nonce", func(t *testing.T) {
		p := idptest.New(t)
		p.Set(func(p *idptest.Provider) { p.BadNonce = true })
		if _, _, err := runFlow(t, newOIDCConnector(t, p, nil), "n"); err == nil || !strings.Contains(err.Error(), "nonce") {
			t.Errorf("err = %v, want nonce mismatch", err)
		}
	})
	t.Run("denied", func(t *testing.T) {
		p := idptest.New(t)
		p.Set(func(p *idptest.Provider) { p.DenyLogin = true })
		_, _, err := runFlow(t, newOIDCConnector(t, p, nil), "n")
		var ce *CallbackError
		if !errors.As(err, &ce) || ce.Code != "access_denied" {
			t.Errorf("err = %v, want CallbackError access_denied", err)
		}
	})
	p := idptest.New(t)
	c := newOIDCConnector(t, p, nil)
	ctx := context.Background()
	for name, q := range map[string]url.Values{
		"iss mismatch": {"code": {"x"}, "iss": {"https://evil.example.com"}},
		"no code":      {"state": {"s"}},
		"unknown code": {"code": {"nope"}},
	} {
		if _, _, err := c.HandleCallback(ctx, q, "n", "v"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestOIDCPrivateIssuerRefused(t *testing.T) {
	p := idptest.New(t)
	c := newOIDCConnector(t, p, func(c *Config) {
		c.AllowPrivateIssuer = false
		c.Issuer = strings.Replace(p.Issuer(), "http://", "https://", 1)
	})
	_, err := c.AuthCodeURL(context.Background(), "s", "n", "v")
	if !errors.Is(err, netguard.ErrPrivateAddress) {
		t.Errorf("err = %v, want netguard.ErrPrivateAddress", err)
	}
}

func TestOIDCRefresh(t *testing.T) {
	p := idptest.New(t)
	c := newOIDCConnector(t, p, nil)
	_, toks, err := runFlow(t, c, "n")
	if err != nil {
		t.Fatal(err)
	}
	nt, err := c.Refresh(context.Background(), toks)
	if err != nil {
		t.Fatal(err)
	}
	if nt.AccessToken == toks.AccessToken || nt.RefreshToken == toks.RefreshToken || !p.ValidAccessToken(nt.AccessToken) {
		t.Errorf("refresh did not rotate: %+v", nt)
	}
	// The old refresh token was rotated away by the IdP.
	if _, err := c.Refresh(context.Background(), toks); !errors.Is(err, ErrRefreshRejected) {
		t.Errorf("replayed upstream refresh: err = %v, want ErrRefreshRejected", err)
	}
	// A non-rotating IdP: the refresh token is kept.
	p.Set(func(p *idptest.Provider) { p.RotateRefresh = false })
	nt2, err := c.Refresh(context.Background(), nt)
	if err != nil {
		t.Fatal(err)
	}
	if nt2.RefreshToken != nt.RefreshToken {
		t.Errorf("refresh token lost when the IdP does not rotate")
	}
	if _, err := c.Refresh(context.Background(), &Tokens{}); !errors.Is(err, ErrRefreshRejected) {
		t.Errorf("no refresh token: err = %v", err)
	}
	if n := p.RefreshCount(); n != 2 {
		t.Errorf("refresh count = %d, want 2", n)
	}
}

// Equal compares every field; nil and empty groups are alike (both are
// omitted from the stored JSON).
func TestIdentityEqual(t *testing.T) {
	base := Identity{Issuer: "i", Subject: "s", Username: "u", Name: "n", Email: "e", EmailVerified: true, Groups: []string{"a", "b"}}
	changes := map[string]func(*Identity){
		"issuer":         func(i *Identity) { i.Issuer = "x" },
		"subject":        func(i *Identity) { i.Subject = "x" },
		"username":       func(i *Identity) { i.Username = "x" },
		"name":           func(i *Identity) { i.Name = "x" },
		"email":          func(i *Identity) { i.Email = "x" },
		"email verified": func(i *Identity) { i.EmailVerified = false },
		"group removed":  func(i *Identity) { i.Groups = []string{"a"} },
		"groups order":   func(i *Identity) { i.Groups = []string{"b", "a"} },
		"no groups":      func(i *Identity) { i.Groups = nil },
	}
	same := base
	same.Groups = slices.Clone(base.Groups)
	if !base.Equal(&same) {
		t.Error("a copy is not Equal")
	}
	if a, b := (Identity{Groups: nil}), (Identity{Groups: []string{}}); !a.Equal(&b) {
		t.Error("nil and empty groups differ")
	}
	for name, change := range changes {
		o := base
		o.Groups = slices.Clone(base.Groups)
		change(&o)
		if base.Equal(&o) || o.Equal(&base) {
			t.Errorf("%s changed, still Equal", name)
		}
	}
}
