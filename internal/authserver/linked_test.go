package authserver

import (
	"errors"
	"maps"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/credential"
	"github.com/mcpgate/mcpgate/internal/idp"
	"github.com/mcpgate/mcpgate/internal/idp/idptest"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/postgres"
	"github.com/mcpgate/mcpgate/internal/store/postgres/pgtest"
	"github.com/mcpgate/mcpgate/internal/store/sqlite"
	"github.com/mcpgate/mcpgate/internal/validate"
)

// linkedEnv is an authorization server (built-in users) with a linked
// provider "gh" played by a fake OAuth provider, an audit chain, and one
// signed-in grant.
type linkedEnv struct {
	*env
	sink *chainSink
	gh   *idptest.Provider
	tsid string
}

func newLinkedEnv(t *testing.T, mod func(*LinkedProvider)) *linkedEnv {
	t.Helper()
	return newLinkedEnvStore(t, nil, mod)
}

func newLinkedEnvStore(t *testing.T, st store.Store, mod func(*LinkedProvider)) *linkedEnv {
	t.Helper()
	gh := idptest.New(t)
	gh.Set(func(p *idptest.Provider) { p.ClientID, p.ClientSecret = "gh-client", "gh-secret" })
	e, sink := auditedEnv(t, envOpt{st: st, cfg: func(c *Config) {
		lp := LinkedProvider{Name: "gh", DisplayName: "GitHub", AuthorizationEndpoint: gh.Issuer() + "/authorize",
			TokenEndpoint: gh.Issuer() + "/token", ClientID: "gh-client", ClientSecret: "gh-secret", Scopes: []string{"repo"}, AllowPrivateNetwork: true}
		if mod != nil {
			mod(&lp)
		}
		c.LinkedProviders = []LinkedProvider{lp}
		c.Upstream.Users = append(c.Upstream.Users, idp.User{Username: "bob", PasswordHash: testUserHash})
	}})
	c := e.register("http://127.0.0.1:3000/cb", true)
	pr, err := e.srv.Verify(t.Context(), e.tokens(c)["access_token"].(string))
	if err != nil {
		t.Fatal(err)
	}
	return &linkedEnv{env: e, sink: sink, gh: gh, tsid: pr.SessionID}
}

// need calls LinkedToken and expects a link request; it returns its URL.
func (l *linkedEnv) need() string {
	l.t.Helper()
	_, err := l.srv.LinkedToken(l.t.Context(), l.tsid, "gh", true)
	var lr *credential.LinkRequiredError
	if !errors.As(err, &lr) {
		l.t.Fatalf("LinkedToken: err = %v, want a LinkRequiredError", err)
	}
	if lr.Provider != "gh" || lr.DisplayName != "GitHub" || lr.ElicitationID == "" || strings.Contains(lr.URL, lr.ElicitationID) {
		l.t.Errorf("link required: %+v", lr)
	}
	if !strings.HasPrefix(lr.URL, l.iss+"/link/gh?id=") {
		l.t.Fatalf("link URL %q", lr.URL)
	}
	return lr.URL
}

// open opens the link URL in b, signs in as user when the link asks for
// a sign-in, and returns the page it ends on.
func (l *linkedEnv) open(b *browser, link, user string) *page {
	l.t.Helper()
	p := b.get(link)
	for range 4 {
		if p.status == http.StatusOK && strings.Contains(p.body, `name="password"`) {
			if !strings.Contains(p.body, "Sign in to link your GitHub account") || !strings.Contains(p.body, `action="/link/gh/login"`) {
				l.t.Errorf("link sign-in page: %s", p.body)
			}
			f := p.hidden()
			f.Set("username", user)
			f.Set("password", testPassword)
			p = b.post(l.iss+"/link/gh/login", f)
			continue
		}
		if p.status != http.StatusSeeOther || !strings.HasPrefix(p.loc.String(), l.iss+"/link/gh?req=") {
			return p
		}
		p = b.get(p.loc.String())
	}
	return p
}

// confirmPage opens the link in b as alice and returns the confirm page.
func (l *linkedEnv) confirmPage(b *browser, link string) *page {
	l.t.Helper()
	p := l.open(b, link, testUser)
	if p.status != http.StatusOK || !strings.Contains(p.body, "GitHub") || !strings.Contains(p.body, "mcpgate user <strong>alice</strong>") {
		l.t.Fatalf("link page: %d %s", p.status, p.body)
	}
	return p
}

// confirm opens the link in b and approves it; it returns the redirect to
// the provider.
func (l *linkedEnv) confirm(b *browser, link string) *url.URL {
	l.t.Helper()
	p := l.confirmPage(b, link)
	f := p.hidden()
	f.Set("decision", "approve")
	p = b.post(l.iss+"/link/gh", f)
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.loc.String(), l.gh.Issuer()+"/authorize?") {
		l.t.Fatalf("confirm: %d %v %s", p.status, p.loc, p.body)
	}
	q := p.loc.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("redirect_uri") != l.iss+"/link/gh/callback" || q.Get("scope") != "repo" || q.Get("client_id") != "gh-client" {
		l.t.Errorf("authorize request: %v", q)
	}
	return p.loc
}

// atProvider follows the redirect to the provider and returns its redirect
// back to the callback.
func (l *linkedEnv) atProvider(u *url.URL) *url.URL {
	l.t.Helper()
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(u.String())
	if err != nil {
		l.t.Fatal(err)
	}
	resp.Body.Close()
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(back.String(), l.iss+"/link/gh/callback?") {
		l.t.Fatalf("provider redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return back
}

// link runs the whole flow in a new browser.
func (l *linkedEnv) link() {
	l.t.Helper()
	b := l.browser()
	p := b.get(l.atProvider(l.confirm(b, l.need())).String())
	if p.status != http.StatusOK || !strings.Contains(p.body, "GitHub account is linked") {
		l.t.Fatalf("callback: %d %s", p.status, p.body)
	}
}

func (l *linkedEnv) token() (string, error) {
	return l.srv.LinkedToken(l.t.Context(), l.tsid, "gh", true)
}

func TestLinkedAccountFlow(t *testing.T) {
	l := newLinkedEnv(t, nil)
	l.link()
	tok, err := l.token()
	if err != nil || !l.gh.ValidAccessToken(tok) {
		t.Fatalf("linked token %q, %v: want the provider's token", tok, err)
	}
	// The sign-in tokens of the grant are untouched: refresh still works.
	// And the link is kept across a refresh of the grant's tokens.
	if tok2, err := l.token(); err != nil || tok2 != tok {
		t.Errorf("second call: %q %v", tok2, err)
	}
	ev := l.sink.events(t)
	for _, want := range []string{audit.EventLinkStarted, audit.EventLinkCompleted} {
		if !contains(ev, want) {
			t.Errorf("audit events %v lack %s", ev, want)
		}
	}
	signIn := false
	for _, r := range l.sink.records(t) {
		if r.Event == audit.EventLinkCompleted && (r.SessionID != l.tsid || r.Method != "link/gh" || r.Username != testUser) {
			t.Errorf("LINK_COMPLETED record: %+v", r)
		}
		if r.Event == audit.EventASLoginSuccess && r.Method == "link/gh" {
			signIn = r.SessionID == l.tsid && r.Username == testUser && strings.Contains(r.Reason, "to link an account")
		}
	}
	if !signIn {
		t.Error("no AS_LOGIN_SUCCESS record of the link's sign-in")
	}
	if log := string(l.sink.bytes()); strings.Contains(log, tok) {
		t.Error("the linked token is in the audit log")
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestLinkedAccountRefresh(t *testing.T) {
	l := newLinkedEnv(t, nil)
	l.link()
	first, _ := l.token()
	l.clock.Add(2 * time.Hour) // past the provider token's expiry
	tok, err := l.token()
	if err != nil || tok == first || !l.gh.ValidAccessToken(tok) || l.gh.RefreshCount() != 1 {
		t.Fatalf("after expiry: %q %v (refreshes %d), want a refreshed token", tok, err, l.gh.RefreshCount())
	}
	// The rotated refresh token was stored: a second refresh works.
	l.clock.Add(2 * time.Hour)
	if tok2, err := l.token(); err != nil || tok2 == tok || l.gh.RefreshCount() != 2 {
		t.Fatalf("second refresh: %v (refreshes %d)", err, l.gh.RefreshCount())
	}
}

func TestLinkedAccountRefreshRefused(t *testing.T) {
	l := newLinkedEnv(t, nil)
	l.link()
	l.gh.RevokeRefreshTokens()
	l.clock.Add(2 * time.Hour)
	// Refused: the link is dropped and the user is asked again.
	l.need()
	if ev := l.sink.events(t); !contains(ev, audit.EventLinkFailed) {
		t.Errorf("no LINK_FAILED in %v", ev)
	}
	l.link()
	if tok, err := l.token(); err != nil || !l.gh.ValidAccessToken(tok) {
		t.Errorf("relinked: %v", err)
	}
}

func TestLinkedAccountProviderDownKeepsLink(t *testing.T) {
	l := newLinkedEnv(t, nil)
	l.link()
	l.gh.Set(func(p *idptest.Provider) { p.ClientSecret = "rotated" }) // invalid_client: the gateway's problem, not the user's
	l.clock.Add(2 * time.Hour)
	_, err := l.token()
	var lr *credential.LinkRequiredError
	if !errors.Is(err, credential.ErrUnavailable) || errors.As(err, &lr) {
		t.Fatalf("provider failing: err = %v, want ErrUnavailable and no new link", err)
	}
	l.gh.Set(func(p *idptest.Provider) { p.ClientSecret = "gh-secret" })
	if tok, err := l.token(); err != nil || !l.gh.ValidAccessToken(tok) {
		t.Errorf("provider back: %v", err)
	}
}

func TestLinkedAccountRevokedGrant(t *testing.T) {
	l := newLinkedEnv(t, nil)
	l.link()
	if err := l.srv.revokeGrant(t.Context(), l.tsid, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.token(); !errors.Is(err, ErrSessionInvalid) {
		t.Errorf("revoked grant: %v", err)
	}
	if _, err := l.srv.LinkedToken(t.Context(), l.tsid, "other", true); err == nil {
		t.Error("unknown provider: no error")
	}
}

func TestLinkedAccountNegative(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, l *linkedEnv) *page
		want int
	}{
		{"unknown link id", func(t *testing.T, l *linkedEnv) *page {
			return l.browser().get(l.iss + "/link/gh?id=nope")
		}, http.StatusBadRequest},
		{"link of another provider's path", func(t *testing.T, l *linkedEnv) *page {
			return l.browser().get(strings.Replace(l.need(), "/link/gh?", "/link/nope?", 1))
		}, http.StatusNotFound},
		{"link id reused in a second browser", func(t *testing.T, l *linkedEnv) *page {
			link := l.need()
			l.browser().get(link)
			return l.browser().get(link)
		}, http.StatusBadRequest},
		{"link id reused in the same browser", func(t *testing.T, l *linkedEnv) *page {
			b := l.browser()
			link := l.need()
			l.confirmPage(b, link)
			return b.get(link)
		}, http.StatusBadRequest},
		{"expired link id", func(t *testing.T, l *linkedEnv) *page {
			link, _ := url.Parse(l.need())
			ar, err := l.st.GetAuthRequest(t.Context(), link.Query().Get("id"))
			if err != nil {
				t.Fatal(err)
			}
			ar.ExpiresAt = time.Now().Add(-time.Second)
			if err := l.st.UpdateAuthRequest(t.Context(), ar); err != nil {
				t.Fatal(err)
			}
			return l.browser().get(link.String())
		}, http.StatusBadRequest},
		{"browser signed in as another user", func(t *testing.T, l *linkedEnv) *page {
			b := l.browser()
			l.loginAs(b, authorizeParams(l.register("http://127.0.0.1:3000/cb", true)), "bob", testPassword)
			return l.open(b, l.need(), "bob")
		}, http.StatusForbidden},
		{"sign-in as another user", func(t *testing.T, l *linkedEnv) *page {
			return l.open(l.browser(), l.need(), "bob")
		}, http.StatusForbidden},
		{"sign-in with a wrong password", func(t *testing.T, l *linkedEnv) *page {
			b := l.browser()
			p := b.get(l.need())
			p = b.get(p.loc.String())
			f := p.hidden()
			f.Set("username", testUser)
			f.Set("password", "wrong")
			return b.post(l.iss+"/link/gh/login", f)
		}, http.StatusUnauthorized},
		{"sign-in form without the CSRF token", func(t *testing.T, l *linkedEnv) *page {
			b := l.browser()
			p := b.get(l.need())
			f := b.get(p.loc.String()).hidden()
			f.Del("csrf")
			f.Set("username", testUser)
			f.Set("password", testPassword)
			return b.post(l.iss+"/link/gh/login", f)
		}, http.StatusForbidden},
		{"row of a link opened elsewhere, at the sign-in", func(t *testing.T, l *linkedEnv) *page {
			p := l.browser().get(l.need())
			f := url.Values{"req": {p.loc.Query().Get("req")}, "username": {testUser}, "password": {testPassword}}
			return l.browser().post(l.iss+"/link/gh/login", f)
		}, http.StatusBadRequest},
		{"confirm without the CSRF token", func(t *testing.T, l *linkedEnv) *page {
			b := l.browser()
			f := l.confirmPage(b, l.need()).hidden()
			f.Del("csrf")
			f.Set("decision", "approve")
			return b.post(l.iss+"/link/gh", f)
		}, http.StatusForbidden},
		{"confirm with a wrong CSRF token", func(t *testing.T, l *linkedEnv) *page {
			b := l.browser()
			f := l.confirmPage(b, l.need()).hidden()
			f.Set("csrf", randomToken())
			f.Set("decision", "approve")
			return b.post(l.iss+"/link/gh", f)
		}, http.StatusForbidden},
		{"confirm from another browser", func(t *testing.T, l *linkedEnv) *page {
			f := l.confirmPage(l.browser(), l.need()).hidden()
			f.Set("decision", "approve")
			return l.browser().post(l.iss+"/link/gh", f)
		}, http.StatusBadRequest},
		{"confirm after the sign-in is no longer fresh", func(t *testing.T, l *linkedEnv) *page {
			b := l.browser()
			f := l.confirmPage(b, l.need()).hidden()
			l.clock.Add(11 * time.Minute) // link_sign_in_max_age 10m
			f.Set("decision", "approve")
			return b.post(l.iss+"/link/gh", f)
		}, http.StatusForbidden},
		{"sign-in cookie replayed in another browser", func(t *testing.T, l *linkedEnv) *page {
			b := l.browser()
			l.confirmPage(b, l.need())
			b2 := l.browser()
			p := b2.get(l.need())
			u, _ := url.Parse(l.iss)
			for _, c := range b.c.Jar.Cookies(u) {
				if c.Name == "mcpgate-signin" {
					b2.c.Jar.SetCookies(u, []*http.Cookie{c})
				}
			}
			p = b2.get(p.loc.String())
			if !strings.Contains(p.body, `name="password"`) {
				t.Errorf("another browser with the sign-in cookie was not asked to sign in: %d %s", p.status, p.body)
			}
			return p
		}, http.StatusOK},
		{"state replay", func(t *testing.T, l *linkedEnv) *page {
			b := l.browser()
			back := l.atProvider(l.confirm(b, l.need()))
			if p := b.get(back.String()); p.status != http.StatusOK {
				t.Fatalf("first callback: %d", p.status)
			}
			return b.get(back.String())
		}, http.StatusBadRequest},
		{"expired state", func(t *testing.T, l *linkedEnv) *page {
			b := l.browser()
			req := l.confirmPage(b, l.need()).hidden()
			f := maps.Clone(req)
			f.Set("decision", "approve")
			back := l.atProvider(b.post(l.iss+"/link/gh", f).loc)
			// The pending link's lifetime (link_timeout) ends while the
			// user is at the provider.
			ar, err := l.st.GetAuthRequest(t.Context(), req.Get("req"))
			if err != nil {
				t.Fatal(err)
			}
			ar.ExpiresAt = time.Now().Add(-time.Second)
			if err := l.st.UpdateAuthRequest(t.Context(), ar); err != nil {
				t.Fatal(err)
			}
			return b.get(back.String())
		}, http.StatusBadRequest},
		{"state of another browser (another user's link)", func(t *testing.T, l *linkedEnv) *page {
			back := l.atProvider(l.confirm(l.browser(), l.need()))
			return l.browser().get(back.String())
		}, http.StatusBadRequest},
		{"unknown state", func(t *testing.T, l *linkedEnv) *page {
			return l.browser().get(l.iss + "/link/gh/callback?state=forged&code=x")
		}, http.StatusBadRequest},
		{"provider error", func(t *testing.T, l *linkedEnv) *page {
			l.gh.Set(func(p *idptest.Provider) { p.DenyLogin = true })
			b := l.browser()
			return b.get(l.atProvider(l.confirm(b, l.need())).String())
		}, http.StatusForbidden},
		{"token endpoint failure", func(t *testing.T, l *linkedEnv) *page {
			l.gh.Set(func(p *idptest.Provider) { p.ClientSecret = "rotated" })
			b := l.browser()
			return b.get(l.atProvider(l.confirm(b, l.need())).String())
		}, http.StatusBadGateway},
		{"forged code", func(t *testing.T, l *linkedEnv) *page {
			b := l.browser()
			back := l.atProvider(l.confirm(b, l.need()))
			q := back.Query()
			q.Set("code", "forged")
			back.RawQuery = q.Encode()
			return b.get(back.String())
		}, http.StatusBadGateway},
		{"grant revoked before the callback", func(t *testing.T, l *linkedEnv) *page {
			b := l.browser()
			back := l.atProvider(l.confirm(b, l.need()))
			if err := l.srv.revokeGrant(t.Context(), l.tsid, "test"); err != nil {
				t.Fatal(err)
			}
			return b.get(back.String())
		}, http.StatusBadRequest},
		{"declined", func(t *testing.T, l *linkedEnv) *page {
			b := l.browser()
			f := l.confirmPage(b, l.need()).hidden()
			f.Set("decision", "deny")
			return b.post(l.iss+"/link/gh", f)
		}, http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newLinkedEnv(t, nil)
			p := tc.run(t, l)
			if p.status != tc.want {
				t.Errorf("status %d, want %d: %s", p.status, tc.want, p.body)
			}
			if strings.Contains(p.body, "account is linked") {
				t.Error("success page on a failure")
			}
			if tc.name == "state replay" {
				return // the first callback linked the account
			}
			// Nothing was linked.
			_, err := l.token()
			var lr *credential.LinkRequiredError
			if !errors.As(err, &lr) && !errors.Is(err, ErrSessionInvalid) {
				t.Errorf("after %s: LinkedToken err = %v, want a new link request", tc.name, err)
			}
		})
	}
}

func TestLinkedAccountCallbackAudited(t *testing.T) {
	l := newLinkedEnv(t, nil)
	l.gh.Set(func(p *idptest.Provider) { p.DenyLogin = true })
	b := l.browser()
	b.get(l.atProvider(l.confirm(b, l.need())).String())
	var failed *audit.Record
	for _, r := range l.sink.records(t) {
		if r.Event == audit.EventLinkFailed {
			failed = &r
		}
	}
	if failed == nil || failed.SessionID != l.tsid || failed.Result != audit.ResultError || !strings.Contains(failed.Reason, "access_denied") {
		t.Errorf("LINK_FAILED record: %+v", failed)
	}
}

func TestLinkedAccountDiscovery(t *testing.T) {
	l := newLinkedEnv(t, func(lp *LinkedProvider) {
		lp.Issuer, lp.AuthorizationEndpoint, lp.TokenEndpoint = lp.AuthorizationEndpoint[:len(lp.AuthorizationEndpoint)-len("/authorize")], "", ""
	})
	l.link()
	if tok, err := l.token(); err != nil || !l.gh.ValidAccessToken(tok) {
		t.Fatalf("discovered provider: %v", err)
	}
}

// A pending link is not an authorization flow: its ID opens no login or
// consent page, and a sign-in flow's request is not a link.
func TestLinkedAccountRequestsAreSeparate(t *testing.T) {
	l := newLinkedEnv(t, nil)
	b := l.browser()
	id := b.get(l.need()).loc.Query().Get("req") // the link's row in b
	for _, path := range []string{"/consent?req=", "/login?req="} {
		if p := b.get(l.iss + path + url.QueryEscape(id)); p.status == http.StatusOK {
			t.Errorf("%s with a link ID: %d", path, p.status)
		}
	}
	// And a sign-in flow's request is no link.
	c := l.register("http://127.0.0.1:3000/cb", true)
	p := b.get(l.iss + "/authorize?" + authorizeParams(c).Encode())
	req := p.loc.Query().Get("req")
	if req == "" {
		t.Fatalf("authorize: %d %v", p.status, p.loc)
	}
	if p := b.get(l.iss + "/link/gh?req=" + url.QueryEscape(req)); p.status != http.StatusBadRequest {
		t.Errorf("link page with a sign-in request: %d", p.status)
	}
	if p := b.get(l.iss + "/link/gh?id=" + url.QueryEscape(req)); p.status != http.StatusBadRequest {
		t.Errorf("link URL with a sign-in request: %d", p.status)
	}
	if _, err := l.st.GetAuthRequest(t.Context(), req); err != nil {
		t.Errorf("the sign-in request was consumed as a link: %v", err)
	}
}

func TestLinkedProviderConfig(t *testing.T) {
	base := func() Config {
		return Config{PublicURL: "https://gw.example", Upstream: idp.Config{Type: idp.TypeStatic, Users: []idp.User{{Username: testUser, PasswordHash: testUserHash}}},
			LinkedProviders: []LinkedProvider{{Name: "gh", AuthorizationEndpoint: "https://github.com/login/oauth/authorize",
				TokenEndpoint: "https://github.com/login/oauth/access_token", ClientID: "id", ClientSecret: "s"}}}
	}
	cases := []struct {
		name string
		mod  func(*Config)
		want []string
	}{
		{"valid", func(*Config) {}, nil},
		{"issuer only", func(c *Config) {
			c.LinkedProviders[0].AuthorizationEndpoint, c.LinkedProviders[0].TokenEndpoint, c.LinkedProviders[0].Issuer = "", "", "https://accounts.example"
		}, nil},
		{"bad name", func(c *Config) { c.LinkedProviders[0].Name = "Git Hub" }, []string{"linked_providers[0].name"}},
		{"duplicate", func(c *Config) { c.LinkedProviders = append(c.LinkedProviders, c.LinkedProviders[0]) }, []string{"linked_providers[1].name"}},
		{"no endpoints", func(c *Config) {
			c.LinkedProviders[0].AuthorizationEndpoint, c.LinkedProviders[0].TokenEndpoint = "", ""
		},
			[]string{"linked_providers[0].authorization_endpoint"}},
		{"token endpoint missing", func(c *Config) { c.LinkedProviders[0].TokenEndpoint = "" }, []string{"linked_providers[0].token_endpoint"}},
		{"http endpoint", func(c *Config) { c.LinkedProviders[0].TokenEndpoint = "http://github.com/t" }, []string{"linked_providers[0].token_endpoint"}},
		{"link_sign_in_max_age too short", func(c *Config) { c.LinkSignInMaxAge = time.Second }, []string{"as.link_sign_in_max_age"}},
		{"link_sign_in_max_age too long", func(c *Config) { c.LinkSignInMaxAge = 25 * time.Hour }, []string{"as.link_sign_in_max_age"}},
		{"http endpoint with allow_private_network", func(c *Config) {
			c.LinkedProviders[0].TokenEndpoint, c.LinkedProviders[0].AllowPrivateNetwork = "http://10.0.0.1/t", true
		}, nil},
		{"scope with a control character (RFC 6749 §3.3)", func(c *Config) { c.LinkedProviders[0].Scopes = []string{"repo\tadmin"} }, []string{"linked_providers[0].scopes[0]"}},
		{"every problem listed", func(c *Config) {
			l := &c.LinkedProviders[0]
			l.ClientID, l.ClientSecret, l.ClientAuth, l.Scopes, l.Timeout, l.LinkTimeout = "", "", "private_key_jwt", []string{"a b"}, time.Hour, time.Second
		}, []string{"client_id", "client_secret", "client_auth", "scopes[0]", "timeout", "link_timeout"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mod(&c)
			c.SetDefaults()
			var p validate.Problems
			c.Validate("as", &p)
			err := p.Err()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected problems: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no problems, want %v", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("problems %q lack %s", err, w)
				}
			}
		})
	}
}

// TestLinkedAccountReusesPendingLink: calls before the user opens the link
// get the same URL (one pending link, one LINK_STARTED); once a browser has
// claimed it, the next call gets a new one (another browser would be
// refused the claimed one).
func TestLinkedAccountReusesPendingLink(t *testing.T) {
	l := newLinkedEnv(t, nil)
	first := l.need()
	if again := l.need(); again != first {
		t.Errorf("second call: new link %q, want %q", again, first)
	}
	started := 0
	for _, ev := range l.sink.events(t) {
		if ev == audit.EventLinkStarted {
			started++
		}
	}
	if started != 1 {
		t.Errorf("%d LINK_STARTED records, want 1", started)
	}
	l.browser().get(first)
	if next := l.need(); next == first {
		t.Error("a claimed link was handed out again")
	}
}

// TestLinkedAccountSQLStores: pending links are authorization-request rows
// and linked tokens live in the grant's sealed secrets, in the SQL stores
// as in memory: link, replayed state, refresh, revocation.
func TestLinkedAccountSQLStores(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) store.Store{
		"sqlite": func(t *testing.T) store.Store {
			s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "as.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		"postgres": func(t *testing.T) store.Store {
			s, err := postgres.Open(t.Context(), pgtest.SchemaDSN(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	} {
		t.Run(name, func(t *testing.T) {
			l := newLinkedEnvStore(t, open(t), nil)
			b := l.browser()
			back := l.atProvider(l.confirm(b, l.need()))
			if p := b.get(back.String()); p.status != http.StatusOK {
				t.Fatalf("callback: %d %s", p.status, p.body)
			}
			if p := b.get(back.String()); p.status != http.StatusBadRequest {
				t.Errorf("replayed state: %d", p.status)
			}
			first, err := l.token()
			if err != nil || !l.gh.ValidAccessToken(first) {
				t.Fatalf("linked token: %v", err)
			}
			l.clock.Add(2 * time.Hour)
			if tok, err := l.token(); err != nil || tok == first || !l.gh.ValidAccessToken(tok) {
				t.Fatalf("refreshed: %v", err)
			}
			if err := l.srv.revokeGrant(t.Context(), l.tsid, "test"); err != nil {
				t.Fatal(err)
			}
			if _, err := l.token(); !errors.Is(err, ErrSessionInvalid) {
				t.Errorf("revoked: %v", err)
			}
		})
	}
}

// TestLinkedAccountNotStartedForOtherRequests: a request that does not act
// for the user (initialize, lists) starts no link: no pending link, no
// LINK_STARTED, credential.ErrNotLinked.
func TestLinkedAccountNotStartedForOtherRequests(t *testing.T) {
	l := newLinkedEnv(t, nil)
	if _, err := l.srv.LinkedToken(t.Context(), l.tsid, "gh", false); !errors.Is(err, credential.ErrNotLinked) {
		t.Fatalf("err = %v, want ErrNotLinked", err)
	}
	if ev := l.sink.events(t); contains(ev, audit.EventLinkStarted) {
		t.Errorf("LINK_STARTED for a request that does not act for the user: %v", ev)
	}
	l.link()
	if tok, err := l.srv.LinkedToken(t.Context(), l.tsid, "gh", false); err != nil || !l.gh.ValidAccessToken(tok) {
		t.Errorf("linked, not acting: %v", err)
	}
}

// TestLinkedAccountFreshSignIn: a browser that signed in to mcpgate as the
// grant's user within link_sign_in_max_age goes straight to the confirm
// page; once that sign-in is older, the link asks for a new one.
func TestLinkedAccountFreshSignIn(t *testing.T) {
	l := newLinkedEnv(t, nil)
	b := l.browser()
	l.login(b, authorizeParams(l.register("http://127.0.0.1:3000/cb", true)))
	p := b.get(l.need())
	p = b.get(p.loc.String())
	if p.status != http.StatusOK || !strings.Contains(p.body, "mcpgate user <strong>alice</strong>") {
		t.Fatalf("fresh sign-in: %d %s, want the confirm page", p.status, p.body)
	}
	l.clock.Add(11 * time.Minute)
	p = b.get(l.need())
	if p = b.get(p.loc.String()); !strings.Contains(p.body, `name="password"`) {
		t.Fatalf("stale sign-in: %d %s, want the sign-in form", p.status, p.body)
	}
}

// TestLinkedAccountUpstreamSignIn: with an OIDC login IdP the link's
// sign-in goes through it (its callback is /callback); another user there
// links nothing, and the state of that sign-in is refused at the
// provider's callback (and the provider's at /callback).
func TestLinkedAccountUpstreamSignIn(t *testing.T) {
	gh := idptest.New(t)
	gh.Set(func(p *idptest.Provider) { p.ClientID, p.ClientSecret = "gh-client", "gh-secret" })
	e, login := newOIDCEnv(t, func(c *Config) {
		c.LinkedProviders = []LinkedProvider{{Name: "gh", DisplayName: "GitHub", AuthorizationEndpoint: gh.Issuer() + "/authorize",
			TokenEndpoint: gh.Issuer() + "/token", ClientID: "gh-client", ClientSecret: "gh-secret", AllowPrivateNetwork: true}}
	})
	c := e.register("http://127.0.0.1:3000/cb", true)
	q, _ := e.oidcLogin(e.browser(), authorizeParams(c))
	st, tok := e.exchange(c, q.Get("code"), nil)
	if st != http.StatusOK {
		t.Fatal(tok)
	}
	pr, err := e.srv.Verify(t.Context(), tok["access_token"].(string))
	if err != nil {
		t.Fatal(err)
	}
	l := &linkedEnv{env: e, gh: gh, tsid: pr.SessionID}

	// toLogin opens a new link in b and returns the login IdP's redirect
	// back to /callback.
	toLogin := func(b *browser) *url.URL {
		p := b.get(l.need())
		p = b.get(p.loc.String())
		if p.status != http.StatusSeeOther || !strings.HasPrefix(p.loc.String(), login.Issuer()+"/authorize?") {
			t.Fatalf("link without a sign-in: %d %v, want the login IdP", p.status, p.loc)
		}
		back := b.get(p.loc.String()).loc
		if !strings.HasPrefix(back.String(), e.iss+"/callback?") {
			t.Fatalf("login IdP redirect: %v", back)
		}
		return back
	}

	// Another user at the login IdP.
	b := e.browser()
	login.Set(func(p *idptest.Provider) { p.Subject = "user-2" })
	if p := b.get(toLogin(b).String()); p.status != http.StatusForbidden {
		t.Errorf("another user signed in: %d %s", p.status, p.body)
	}
	login.Set(func(p *idptest.Provider) { p.Subject = "user-1" })

	// The sign-in's state at the provider's callback.
	b = e.browser()
	back := toLogin(b)
	wrong := *back
	wrong.Path = "/link/gh/callback"
	if p := b.get(wrong.String()); p.status != http.StatusBadRequest {
		t.Errorf("sign-in state at the provider callback: %d", p.status)
	}

	// The grant's user: the confirm page, then the provider.
	b = e.browser()
	p := b.get(toLogin(b).String())
	if p.status != http.StatusSeeOther {
		t.Fatalf("sign-in callback: %d %s", p.status, p.body)
	}
	p = b.get(p.loc.String())
	if p.status != http.StatusOK || !strings.Contains(p.body, "Link your <strong>GitHub</strong> account") {
		t.Fatalf("confirm page: %d %s", p.status, p.body)
	}
	f := p.hidden()
	f.Set("decision", "approve")
	p = b.post(e.iss+"/link/gh", f)
	toGH := b.get(p.loc.String()).loc // the provider approves at once
	// The provider's state at the login IdP's callback.
	wrong = *toGH
	wrong.Path = "/callback"
	if p := b.get(wrong.String()); p.status != http.StatusBadRequest {
		t.Errorf("provider state at /callback: %d", p.status)
	}
	// Spent by that attempt: the link must be started again.
	if p := b.get(toGH.String()); p.status != http.StatusBadRequest {
		t.Errorf("provider state after it was taken at /callback: %d", p.status)
	}
	b = e.browser()
	p = b.get(toLogin(b).String())
	p = b.get(p.loc.String())
	f = p.hidden()
	f.Set("decision", "approve")
	p = b.post(e.iss+"/link/gh", f)
	if p = b.get(b.get(p.loc.String()).loc.String()); p.status != http.StatusOK || !strings.Contains(p.body, "account is linked") {
		t.Fatalf("callback: %d %s", p.status, p.body)
	}
	if tok, err := l.token(); err != nil || !gh.ValidAccessToken(tok) {
		t.Errorf("linked token: %v", err)
	}
}
