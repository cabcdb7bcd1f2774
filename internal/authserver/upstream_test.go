package authserver

import (
	"context"
	"errors"
	"html"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/idp"
	"github.com/mcpgate/mcpgate/internal/idp/idptest"
	"github.com/mcpgate/mcpgate/internal/store"
)

func newOIDCEnv(t *testing.T, mod func(*Config)) (*env, *idptest.Provider) {
	t.Helper()
	p := idptest.New(t)
	p.Set(func(p *idptest.Provider) {
		p.IDTokenClaims = map[string]any{"preferred_username": "bob", "email": "bob@example.com", "email_verified": true, "groups": []string{"ops"}}
	})
	e := newEnv(t, envOpt{cfg: func(c *Config) {
		c.Upstream = idp.Config{
			Type: idp.TypeOIDC, Issuer: p.Issuer(), ClientID: p.ClientID, ClientSecret: p.ClientSecret,
			AllowPrivateIssuer: true, GroupsClaim: "groups",
		}
		if mod != nil {
			mod(c)
		}
	}})
	return e, p
}

// oidcLogin drives authorize → (consent) → IdP → callback → (consent) and
// returns the client redirect. consentSteps counts the consent pages seen.
func (e *env) oidcLogin(b *browser, params url.Values) (q url.Values, consentSteps int) {
	e.t.Helper()
	p := b.get(e.iss + "/authorize?" + params.Encode())
	for range 8 {
		if p.loc == nil {
			e.t.Fatalf("flow stopped at %d: %s", p.status, p.body)
		}
		switch {
		case strings.HasPrefix(p.loc.String(), e.iss+"/consent"):
			consentSteps++
			p = e.decide(b, p, "approve")
		case strings.HasPrefix(p.loc.String(), e.iss+"/callback"), strings.Contains(p.loc.Path, "/authorize"):
			p = b.get(p.loc.String())
		default:
			return p.loc.Query(), consentSteps
		}
	}
	e.t.Fatal("flow did not finish")
	return nil, 0
}

func TestOIDCConsentBeforeUpstream(t *testing.T) {
	e, idpSrv := newOIDCEnv(t, nil)
	c := e.register("http://127.0.0.1:3000/cb", true)
	b := e.browser()
	p := b.get(e.iss + "/authorize?" + authorizeParams(c).Encode())
	// First-time client: consent before the browser goes to the IdP, and no
	// upstream state exists yet.
	if !strings.HasPrefix(p.loc.String(), e.iss+"/consent?req=") {
		t.Fatalf("first redirect = %v, want the consent page", p.loc)
	}
	reqID := p.loc.Query().Get("req")
	ar, err := e.st.GetAuthRequest(t.Context(), reqID)
	if err != nil || ar.UpstreamStateHash != "" {
		t.Fatalf("upstream state stored before consent: %+v %v", ar, err)
	}
	if idpSrv.AuthorizeQuery != nil {
		t.Fatal("IdP contacted before consent")
	}
	p = b.get(p.loc.String())
	if !strings.Contains(p.body, "Approve and sign in") || !strings.Contains(p.body, "127.0.0.1:3000") {
		t.Errorf("pre-login consent page: %s", p.body)
	}
	f := p.hidden()
	f.Set("decision", "approve")
	p = b.post(e.iss+"/consent", f)
	if !strings.HasPrefix(p.loc.String(), idpSrv.Issuer()+"/authorize") {
		t.Fatalf("after consent: %v", p.loc)
	}
	// MCP scopes are not forwarded upstream.
	if s := p.loc.Query().Get("scope"); s != "openid profile email groups" {
		t.Errorf("upstream scope = %q", s)
	}
	ar, _ = e.st.GetAuthRequest(t.Context(), reqID)
	if ar.UpstreamStateHash == "" {
		t.Error("upstream state not stored after consent")
	}
	idpRedirect := b.get(p.loc.String())  // the IdP approves at once
	cb := b.get(idpRedirect.loc.String()) // our /callback
	if cb.loc == nil || cb.loc.Query().Get("code") == "" {
		t.Fatalf("callback: %d %v %s", cb.status, cb.loc, cb.body)
	}
	// The callback cannot be replayed (state is single-use).
	if again := b.get(idpRedirect.loc.String()); again.status != http.StatusBadRequest || again.loc != nil {
		t.Errorf("callback replay: %d %v", again.status, again.loc)
	}
	st, tok := e.exchange(c, cb.loc.Query().Get("code"), nil)
	if st != http.StatusOK {
		t.Fatal(tok)
	}
	pr, err := e.srv.Verify(t.Context(), tok["access_token"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if pr.Subject != "user-1" || pr.Username != "bob" || pr.Email != "bob@example.com" || len(pr.Groups) != 1 || pr.Groups[0] != "ops" {
		t.Errorf("principal = %+v", pr)
	}
	// The consent was recorded for the user.
	if _, err := e.st.GetConsent(t.Context(), idpSrv.Issuer()+"#user-1", consentKey(&store.AuthRequest{ClientID: c.ID, Resource: e.srv.resources[0], RedirectURI: c.Redirect})); err != nil {
		t.Errorf("consent not saved: %v", err)
	}

	// Same browser, same client: straight to the IdP, no consent page.
	if _, steps := e.oidcLogin(b, authorizeParams(c)); steps != 0 {
		t.Errorf("remembered consent showed %d consent pages", steps)
	}
	// A new browser: consent before upstream again (cookie-less), but the
	// user's stored consent is not asked a second time after login.
	if q, steps := e.oidcLogin(e.browser(), authorizeParams(c)); steps != 1 || q.Get("code") == "" {
		t.Errorf("new browser: %d consent pages, %v", steps, q)
	}
}

func TestOIDCCookieConsentOtherUserAsksAgain(t *testing.T) {
	e, idpSrv := newOIDCEnv(t, nil)
	c := e.register("http://127.0.0.1:3000/cb", true)
	b := e.browser()
	if _, steps := e.oidcLogin(b, authorizeParams(c)); steps != 1 {
		t.Fatalf("first login: %d consent pages", steps)
	}
	// Another user signs in in the same browser: the browser cookie skips
	// the pre-login consent, but this user never approved the client.
	idpSrv.Set(func(p *idptest.Provider) { p.Subject = "user-2" })
	q, steps := e.oidcLogin(b, authorizeParams(c))
	if steps != 1 || q.Get("code") == "" {
		t.Errorf("second user: %d consent pages (want 1, after login), %v", steps, q)
	}
}

func TestOIDCCallbackErrors(t *testing.T) {
	e, idpSrv := newOIDCEnv(t, func(c *Config) { c.Upstream.AllowedGroups = []string{"admins"} })
	c := e.register("http://127.0.0.1:3000/cb", true)
	// Not in allowed_groups → access_denied at the client.
	q, _ := e.oidcLogin(e.browser(), authorizeParams(c))
	if q.Get("error") != "access_denied" || q.Get("state") != "xyz-state" || q.Get("iss") != e.iss {
		t.Errorf("not allowed: %v", q)
	}
	idpSrv.Set(func(p *idptest.Provider) { p.DenyLogin = true })
	q, _ = e.oidcLogin(e.browser(), authorizeParams(c))
	if q.Get("error") != "access_denied" {
		t.Errorf("IdP denied: %v", q)
	}
	// A callback carried to another browser is refused.
	idpSrv.Set(func(p *idptest.Provider) { p.DenyLogin = false; p.IDTokenClaims["groups"] = []string{"admins"} })
	b := e.browser()
	p := b.get(e.iss + "/authorize?" + authorizeParams(c).Encode())
	p = e.decide(b, p, "approve")
	idpRedirect := b.get(p.loc.String())
	if other := e.browser().get(idpRedirect.loc.String()); other.status != http.StatusBadRequest || other.loc != nil {
		t.Errorf("callback in another browser: %d %v", other.status, other.loc)
	}
	if p := e.browser().get(e.iss + "/callback?state=forged&code=x"); p.status != http.StatusBadRequest || p.loc != nil {
		t.Errorf("forged state: %d %v", p.status, p.loc)
	}
}

// TestOIDCEmailNotVerifiedPage: a user whose email is in an allowed domain
// but not verified by the IdP gets a page that says so and what to do, and a
// button that returns access_denied to the client; nothing is issued.
func TestOIDCEmailNotVerifiedPage(t *testing.T) {
	e, idpSrv := newOIDCEnv(t, func(c *Config) { c.Upstream.AllowedEmailDomains = []string{"example.com"} })
	idpSrv.Set(func(p *idptest.Provider) { p.IDTokenClaims["email_verified"] = false })
	c := e.register("http://127.0.0.1:3000/cb", true)
	b := e.browser()
	p := b.get(e.iss + "/authorize?" + authorizeParams(c).Encode())
	p = e.decide(b, p, "approve")
	idpRedirect := b.get(p.loc.String())
	cb := b.get(idpRedirect.loc.String())
	if cb.status != http.StatusForbidden || cb.loc != nil {
		t.Fatalf("callback: %d %v %s", cb.status, cb.loc, cb.body)
	}
	for _, want := range []string{"Email address not verified", "has not verified your email address", "Verify the address with your identity provider"} {
		if !strings.Contains(cb.body, want) {
			t.Errorf("page lacks %q:\n%s", want, cb.body)
		}
	}
	i := strings.Index(cb.body, `class="button" href="`)
	if i < 0 {
		t.Fatalf("no return button:\n%s", cb.body)
	}
	href := cb.body[i+len(`class="button" href="`):]
	ret, err := url.Parse(html.UnescapeString(href[:strings.IndexByte(href, '"')]))
	if err != nil || ret.Host != "127.0.0.1:3000" || ret.Query().Get("error") != "access_denied" ||
		ret.Query().Get("state") != "xyz-state" || ret.Query().Get("iss") != e.iss || ret.Query().Has("code") {
		t.Errorf("return link: %v %v", ret, err)
	}
	// The flow is over: the callback cannot be replayed into a code.
	if again := b.get(idpRedirect.loc.String()); again.loc != nil && again.loc.Query().Has("code") {
		t.Errorf("replayed callback issued a code: %v", again.loc)
	}

	// Another refusal (domain not allowed) keeps the plain redirect.
	idpSrv.Set(func(p *idptest.Provider) { p.IDTokenClaims["email"] = "bob@elsewhere.example" })
	q, _ := e.oidcLogin(e.browser(), authorizeParams(c))
	if q.Get("error") != "access_denied" || q.Get("error_description") != "the user is not allowed to use this service" {
		t.Errorf("domain not allowed: %v", q)
	}
}

func TestUpstreamTokenRefresh(t *testing.T) {
	e, idpSrv := newOIDCEnv(t, nil)
	// x/oauth2 computes expiries from the real clock; the test clock moves
	// ahead of it, so issued lifetimes are chosen to straddle the jumps.
	idpSrv.Set(func(p *idptest.Provider) { p.AccessTokenTTL = 2 * time.Minute })
	c := e.register("http://127.0.0.1:3000/cb", true)
	q, _ := e.oidcLogin(e.browser(), authorizeParams(c))
	_, tok := e.exchange(c, q.Get("code"), nil)
	pr, err := e.srv.Verify(t.Context(), tok["access_token"].(string))
	if err != nil {
		t.Fatal(err)
	}
	up1, err := e.srv.UpstreamToken(t.Context(), pr.SessionID)
	if err != nil || !idpSrv.ValidAccessToken(up1) {
		t.Fatalf("upstream token: %v", err)
	}
	if idpSrv.RefreshCount() != 0 {
		t.Error("refreshed a fresh token")
	}
	// The upstream token expires: the next call refreshes transparently,
	// once, even with concurrent callers.
	idpSrv.Set(func(p *idptest.Provider) { p.AccessTokenTTL = time.Hour })
	e.clock.Add(2 * time.Minute)
	var wg sync.WaitGroup
	got := make([]string, 8)
	errs := make([]error, 8)
	for i := range got {
		wg.Go(func() { got[i], errs[i] = e.srv.UpstreamToken(t.Context(), pr.SessionID) })
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil || got[i] == up1 || !idpSrv.ValidAccessToken(got[i]) {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
	}
	if n := idpSrv.RefreshCount(); n != 1 {
		t.Errorf("IdP refreshed %d times, want 1", n)
	}
	// The rotated upstream refresh token was stored: a later refresh works
	// (the IdP rejects the old one).
	idpSrv.Set(func(p *idptest.Provider) { p.AccessTokenTTL = 10 * time.Hour })
	e.clock.Add(2 * time.Hour)
	up3, err := e.srv.UpstreamToken(t.Context(), pr.SessionID)
	if err != nil || up3 == got[0] {
		t.Fatalf("second refresh: %v", err)
	}
	if n := idpSrv.RefreshCount(); n != 2 {
		t.Errorf("refresh count = %d", n)
	}
	// A revoked grant has no upstream token.
	if err := e.srv.revokeGrant(t.Context(), pr.SessionID, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.UpstreamToken(t.Context(), pr.SessionID); !errors.Is(err, ErrSessionInvalid) {
		t.Errorf("revoked grant: %v", err)
	}
}

func TestUpstreamTokenRejectedRefresh(t *testing.T) {
	e, idpSrv := newOIDCEnv(t, nil)
	c := e.register("http://127.0.0.1:3000/cb", true)
	q, _ := e.oidcLogin(e.browser(), authorizeParams(c))
	_, tok := e.exchange(c, q.Get("code"), nil)
	pr, _ := e.srv.Verify(t.Context(), tok["access_token"].(string))
	// The upstream session ended: the IdP rejects the refresh token.
	idpSrv.RevokeRefreshTokens()
	e.clock.Add(2 * time.Hour)
	if _, err := e.srv.UpstreamToken(t.Context(), pr.SessionID); !errors.Is(err, ErrUpstreamReauth) {
		t.Errorf("rejected refresh: err = %v, want ErrUpstreamReauth", err)
	}
	// An IdP that rejects the client is an error too (not a silent success).
	idpSrv.Set(func(p *idptest.Provider) { p.ClientSecret = "rotated" })
	if _, err := e.srv.UpstreamToken(t.Context(), pr.SessionID); err == nil || errors.Is(err, ErrUpstreamReauth) {
		t.Errorf("rejected client: err = %v", err)
	}
	if _, err := e.srv.UpstreamToken(t.Context(), "no-such-grant"); !errors.Is(err, ErrSessionInvalid) {
		t.Errorf("unknown tsid: %v", err)
	}
}

func TestUpstreamTokenStaticUser(t *testing.T) {
	e := newEnv(t, envOpt{})
	c := e.register("http://127.0.0.1:3000/cb", true)
	pr, err := e.srv.Verify(t.Context(), e.tokens(c)["access_token"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.UpstreamToken(t.Context(), pr.SessionID); !errors.Is(err, ErrNoUpstreamToken) {
		t.Errorf("static user: %v", err)
	}
}

// barrierConnector makes concurrent Refresh calls from two "replicas" reach
// the IdP together, so one loses against the rotated refresh token.
type barrierConnector struct {
	idp.CallbackConnector
	wg *sync.WaitGroup
}

func (b barrierConnector) Refresh(ctx context.Context, t *idp.Tokens) (*idp.Tokens, error) {
	b.wg.Done()
	b.wg.Wait()
	return b.CallbackConnector.Refresh(ctx, t)
}

func TestUpstreamRefreshAcrossReplicas(t *testing.T) {
	e, idpSrv := newOIDCEnv(t, nil)
	idpSrv.Set(func(p *idptest.Provider) { p.AccessTokenTTL = 2 * time.Minute })
	c := e.register("http://127.0.0.1:3000/cb", true)
	q, _ := e.oidcLogin(e.browser(), authorizeParams(c))
	_, tok := e.exchange(c, q.Get("code"), nil)
	pr, _ := e.srv.Verify(t.Context(), tok["access_token"].(string))

	var wg sync.WaitGroup
	wg.Add(2)
	conn := barrierConnector{e.srv.conn.(idp.CallbackConnector), &wg}
	e.srv.conn = conn
	replica, err := New(e.srv.cfg, Deps{Store: e.st, Signer: e.signer, Sealer: e.srv.sealer, Clock: e.clock.Now, Connector: conn})
	if err != nil {
		t.Fatal(err)
	}
	idpSrv.Set(func(p *idptest.Provider) { p.AccessTokenTTL = time.Hour })
	e.clock.Add(2 * time.Minute)
	var got [2]string
	var errs [2]error
	var done sync.WaitGroup
	for i, s := range []*Server{e.srv, replica} {
		done.Go(func() { got[i], errs[i] = s.UpstreamToken(t.Context(), pr.SessionID) })
	}
	done.Wait()
	for i := range got {
		if errs[i] != nil || !idpSrv.ValidAccessToken(got[i]) {
			t.Errorf("replica %d: %v", i, errs[i])
		}
	}
	if got[0] != got[1] {
		t.Error("the losing replica did not adopt the winner's token")
	}
	// The stored upstream refresh token is the rotated one: refreshing again works.
	e.srv.conn = conn.CallbackConnector
	idpSrv.Set(func(p *idptest.Provider) { p.AccessTokenTTL = 10 * time.Hour })
	e.clock.Add(2 * time.Hour)
	if _, err := e.srv.UpstreamToken(t.Context(), pr.SessionID); err != nil {
		t.Errorf("refresh after the race: %v", err)
	}
}

// TestOIDCIdPDownAtStart: while the IdP is down the server is not ready and
// sign-ins get a 503 page (before consent); the background watcher retries
// with backoff and, once the IdP is back, the server is ready and the first
// sign-in works.
func TestOIDCIdPDownAtStart(t *testing.T) {
	e, idpSrv := newOIDCEnv(t, nil)
	idpSrv.Set(func(p *idptest.Provider) { p.DiscoveryDown = true })
	if err := e.srv.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), "upstream identity provider "+idpSrv.Issuer()) {
		t.Errorf("Ready with the IdP down = %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	watched := make(chan struct{})
	go func() { e.srv.WatchUpstream(ctx); close(watched) }()

	c := e.register("http://127.0.0.1:3000/cb", true)
	b := e.browser()
	p := b.get(e.iss + "/authorize?" + authorizeParams(c).Encode())
	if p.status != http.StatusServiceUnavailable || p.header.Get("Retry-After") == "" || p.loc != nil {
		t.Fatalf("authorize with the IdP down: %d %v", p.status, p.loc)
	}
	for _, want := range []string{"Sign-in unavailable", "The identity provider " + idpSrv.Issuer() + " cannot be reached right now"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	select {
	case <-watched:
		t.Fatal("watcher stopped while the IdP is down")
	default:
	}

	idpSrv.Set(func(p *idptest.Provider) { p.DiscoveryDown = false })
	// The first sign-in after the IdP is back works, whether or not the
	// watcher has found it yet.
	if q, _ := e.oidcLogin(b, authorizeParams(c)); q.Get("code") == "" {
		t.Fatalf("first sign-in after recovery: %v", q)
	}
	<-watched // the watcher stops once the IdP is reached
	if err := e.srv.Ready(t.Context()); err != nil {
		t.Errorf("Ready after recovery = %v", err)
	}
}
