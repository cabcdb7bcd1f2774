package authserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/idp"
	"github.com/mcpgate/mcpgate/internal/idp/idptest"
	"github.com/mcpgate/mcpgate/internal/store"
)

// restart replaces e's server by one built from cfg on the same store,
// signing keys and sealing key, as a gateway restarted with a changed
// configuration.
func (e *env) restart(cfg Config) {
	e.t.Helper()
	srv, err := New(cfg, Deps{Store: e.st, Signer: e.signer, Sealer: e.srv.sealer, Clock: e.clock.Now, Logger: e.srv.log})
	if err != nil {
		e.t.Fatal(err)
	}
	e.srv = srv
	h := srv.Handler()
	e.handler.Store(&h)
}

// grantOf returns the stored grant behind an access token.
func (e *env) grantOf(at string) *store.Grant {
	e.t.Helper()
	pr, err := e.srv.Verify(context.Background(), at)
	if err != nil {
		e.t.Fatal(err)
	}
	g, err := e.st.GetGrant(context.Background(), pr.SessionID)
	if err != nil {
		e.t.Fatal(err)
	}
	return g
}

func (e *env) groupsOf(at string) []string {
	e.t.Helper()
	pr, err := e.srv.Verify(context.Background(), at)
	if err != nil {
		e.t.Fatalf("access token refused: %v", err)
	}
	return pr.Groups
}

// TestRefreshStaticUsersAfterRestart is the review's finding: a demoted
// built-in user kept the admin group for the whole session, a removed one
// kept working. After a restart with the changed user list, each refresh
// carries the groups configured now or is refused.
func TestRefreshStaticUsersAfterRestart(t *testing.T) {
	user := func(name, email string, groups ...string) idp.User {
		return idp.User{Username: name, PasswordHash: testUserHash, Email: email, Groups: groups}
	}
	e := newEnv(t, envOpt{cfg: func(c *Config) {
		c.Upstream.Users = []idp.User{
			user("alice", "alice@example.com", "admins"),
			user("bob", "bob@example.com", "admins"),
			user("carol", "carol@example.com", "admins"),
			user("dave", "dave@example.com", "admins"),
		}
	}})
	c := e.register("http://127.0.0.1:3000/cb", true)
	type session struct{ at, rt, tsid string }
	sessions := map[string]*session{}
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		q := e.loginAs(e.browser(), authorizeParams(c), u, testPassword)
		st, tok := e.exchange(c, q.Get("code"), nil)
		if st != http.StatusOK {
			t.Fatalf("%s: %d %v", u, st, tok)
		}
		at := tok["access_token"].(string)
		if g := e.groupsOf(at); !slices.Equal(g, []string{"admins"}) {
			t.Fatalf("%s groups at login = %v", u, g)
		}
		sessions[u] = &session{at: at, rt: tok["refresh_token"].(string), tsid: e.grantOf(at).ID}
	}

	// Restart: alice demoted, bob removed, carol out of allowed_groups, dave
	// out of allowed_email_domains.
	cfg := e.srv.cfg
	cfg.Upstream.Users = []idp.User{
		user("alice", "alice@example.com", "readers"),
		user("carol", "carol@example.com", "guests"),
		user("dave", "dave@elsewhere.example", "readers"),
	}
	cfg.Upstream.AllowedGroups = []string{"admins", "readers"}
	cfg.Upstream.AllowedEmailDomains = []string{"example.com"}
	e.restart(cfg)

	st, tok := e.refresh(c, sessions["alice"].rt)
	if st != http.StatusOK {
		t.Fatalf("alice refresh: %d %v", st, tok)
	}
	if g := e.groupsOf(tok["access_token"].(string)); !slices.Equal(g, []string{"readers"}) {
		t.Errorf("alice's refreshed groups = %v, want [readers]", g)
	}
	// The grant records the identity as it is now (grants list shows it).
	if g := e.grantOf(tok["access_token"].(string)); !bytes.Contains(g.Identity, []byte(`"groups":["readers"]`)) {
		t.Errorf("stored identity not updated: %s", g.Identity)
	}
	// The refreshed token keeps working, and a later refresh too.
	if st, tok := e.refresh(c, tok["refresh_token"].(string)); st != http.StatusOK {
		t.Errorf("alice second refresh: %d %v", st, tok)
	}

	for _, u := range []string{"bob", "carol", "dave"} {
		s := sessions[u]
		st, tok := e.refresh(c, s.rt)
		if st != http.StatusBadRequest || tok["error"] != "invalid_grant" {
			t.Errorf("%s refresh: %d %v, want 400 invalid_grant", u, st, tok)
		}
		// The grant is ended: revoked, its access token refused, and its
		// refresh token gone.
		g, err := e.st.GetGrant(t.Context(), s.tsid)
		if err != nil || !g.Revoked {
			t.Errorf("%s grant after refusal: %+v %v", u, g, err)
		}
		if err := e.authn("/mcp", s.at); err == nil {
			t.Errorf("%s: the access token from before the restart still authenticates", u)
		}
		if _, err := e.st.GetRefreshToken(t.Context(), store.TokenHash(s.rt)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: refresh token kept: %v", u, err)
		}
	}
}

func TestRefreshOIDCReidentifies(t *testing.T) {
	e, idpSrv := newOIDCEnv(t, func(c *Config) { c.Upstream.AllowedGroups = []string{"ops", "readers"} })
	c := e.register("http://127.0.0.1:3000/cb", true)
	q, _ := e.oidcLogin(e.browser(), authorizeParams(c))
	_, tok := e.exchange(c, q.Get("code"), nil)
	g0 := e.grantOf(tok["access_token"].(string))
	var before grantSecrets
	if err := e.srv.openJSON(g0.UpstreamTokens, aad("grant", g0.ID), &before); err != nil {
		t.Fatal(err)
	}

	// The IdP moves the user to another group.
	idpSrv.Set(func(p *idptest.Provider) { p.IDTokenClaims["groups"] = []string{"readers"} })
	st, tok := e.refresh(c, tok["refresh_token"].(string))
	if st != http.StatusOK {
		t.Fatalf("refresh: %d %v", st, tok)
	}
	if g := e.groupsOf(tok["access_token"].(string)); !slices.Equal(g, []string{"readers"}) {
		t.Errorf("refreshed groups = %v, want [readers]", g)
	}
	if idpSrv.RefreshCount() != 1 {
		t.Errorf("upstream refreshes = %d, want 1", idpSrv.RefreshCount())
	}
	// The IdP rotated its refresh token: the new one is stored, sealed, in
	// the same write as the identity.
	g1 := e.grantOf(tok["access_token"].(string))
	var after grantSecrets
	if err := e.srv.openJSON(g1.UpstreamTokens, aad("grant", g1.ID), &after); err != nil {
		t.Fatal(err)
	}
	if after.Upstream.RefreshToken == before.Upstream.RefreshToken || !idpSrv.ValidAccessToken(after.Upstream.AccessToken) {
		t.Error("rotated upstream tokens not stored")
	}
	if after.RefreshKey != before.RefreshKey {
		t.Error("the grant's refresh key changed")
	}
	if bytes.Contains(g1.UpstreamTokens, []byte(after.Upstream.RefreshToken)) || !bytes.Contains(g1.Identity, []byte("readers")) ||
		g1.Version != g0.Version+1 {
		t.Errorf("grant after refresh: version %d→%d, identity %s", g0.Version, g1.Version, g1.Identity)
	}
	// The next refresh presents the rotated upstream token (the IdP refuses
	// the old one), and sees the next change.
	idpSrv.Set(func(p *idptest.Provider) { p.IDTokenClaims["groups"] = []string{"ops", "readers"} })
	st, tok = e.refresh(c, tok["refresh_token"].(string))
	if st != http.StatusOK {
		t.Fatalf("second refresh: %d %v", st, tok)
	}
	if g := e.groupsOf(tok["access_token"].(string)); !slices.Equal(g, []string{"ops", "readers"}) {
		t.Errorf("second refresh groups = %v", g)
	}

	// Out of allowed_groups: refused, the grant ended.
	idpSrv.Set(func(p *idptest.Provider) { p.IDTokenClaims["groups"] = []string{"guests"} })
	at := tok["access_token"].(string)
	tsid := e.grantOf(at).ID
	st, m := e.refresh(c, tok["refresh_token"].(string))
	if st != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Errorf("refresh outside allowed_groups: %d %v", st, m)
	}
	if g, err := e.st.GetGrant(t.Context(), tsid); err != nil || !g.Revoked {
		t.Errorf("grant not ended: %v", err)
	}
	if err := e.authn("/mcp", at); err == nil {
		t.Error("the access token of the ended grant still authenticates")
	}
}

func TestRefreshUpstreamRejected(t *testing.T) {
	e, idpSrv := newOIDCEnv(t, nil)
	c := e.register("http://127.0.0.1:3000/cb", true)
	q, _ := e.oidcLogin(e.browser(), authorizeParams(c))
	_, tok := e.exchange(c, q.Get("code"), nil)
	at, rt := tok["access_token"].(string), tok["refresh_token"].(string)
	tsid := e.grantOf(at).ID

	// The user's upstream session ended (user removed, sessions revoked).
	idpSrv.RevokeRefreshTokens()
	st, m := e.refresh(c, rt)
	if st != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Fatalf("refresh after the upstream session ended: %d %v, want 400 invalid_grant", st, m)
	}
	if g, err := e.st.GetGrant(t.Context(), tsid); err != nil || !g.Revoked {
		t.Errorf("grant not ended: %+v %v", g, err)
	}
	if err := e.authn("/mcp", at); err == nil {
		t.Error("access token still authenticates")
	}
	if st, m := e.refresh(c, rt); st != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Errorf("second try: %d %v", st, m)
	}
}

// flakyConnector fails Reidentify with a transient error while down is set.
type flakyConnector struct {
	idp.CallbackConnector
	down *atomic.Bool
}

func (f flakyConnector) Reidentify(ctx context.Context, prev *idp.Identity, t *idp.Tokens) (*idp.Identity, *idp.Tokens, error) {
	if f.down.Load() {
		return nil, nil, errors.New("dial tcp: connection refused")
	}
	return f.CallbackConnector.Reidentify(ctx, prev, t)
}

func TestRefreshUpstreamUnavailable(t *testing.T) {
	e, _ := newOIDCEnv(t, nil)
	var down atomic.Bool
	e.srv.conn = flakyConnector{e.srv.conn.(idp.CallbackConnector), &down}
	c := e.register("http://127.0.0.1:3000/cb", true)
	q, _ := e.oidcLogin(e.browser(), authorizeParams(c))
	_, tok := e.exchange(c, q.Get("code"), nil)
	rt := tok["refresh_token"].(string)

	// The IdP cannot be reached: no token (fail closed), but the session and
	// the client's refresh token survive, even past the grace window.
	down.Store(true)
	st, m := e.refresh(c, rt)
	if st != http.StatusServiceUnavailable || m["error"] != "temporarily_unavailable" || m["access_token"] != nil {
		t.Fatalf("refresh with the IdP down: %d %v", st, m)
	}
	e.clock.Add(2 * time.Minute) // past refresh_grace (the IdP's tokens live an hour)
	down.Store(false)
	if st, m := e.refresh(c, rt); st != http.StatusOK {
		t.Errorf("refresh once the IdP is back: %d %v", st, m)
	}
}

// TestRefreshKeepsRotatedUpstreamTokenOnFailure: the IdP rotated its
// refresh token, then userinfo failed. The new upstream refresh token is
// stored all the same, so the client's retry works (the IdP would refuse
// the old one and end the session).
func TestRefreshKeepsRotatedUpstreamTokenOnFailure(t *testing.T) {
	e, idpSrv := newOIDCEnv(t, nil)
	c := e.register("http://127.0.0.1:3000/cb", true)
	q, _ := e.oidcLogin(e.browser(), authorizeParams(c))
	_, tok := e.exchange(c, q.Get("code"), nil)
	rt := tok["refresh_token"].(string)
	idpSrv.Set(func(p *idptest.Provider) { p.UserInfoDown = true })
	if st, m := e.refresh(c, rt); st != http.StatusServiceUnavailable || m["error"] != "temporarily_unavailable" {
		t.Fatalf("userinfo down: %d %v", st, m)
	}
	if idpSrv.RefreshCount() != 1 {
		t.Fatalf("upstream refreshes = %d", idpSrv.RefreshCount())
	}
	idpSrv.Set(func(p *idptest.Provider) { p.UserInfoDown = false })
	if st, m := e.refresh(c, rt); st != http.StatusOK {
		t.Errorf("retry: %d %v", st, m)
	}
}

func TestRefreshReuseRefusedBeforeUpstream(t *testing.T) {
	e, idpSrv := newOIDCEnv(t, nil)
	c := e.register("http://127.0.0.1:3000/cb", true)
	q, _ := e.oidcLogin(e.browser(), authorizeParams(c))
	_, tok := e.exchange(c, q.Get("code"), nil)
	rt0 := tok["refresh_token"].(string)
	if st, _ := e.refresh(c, rt0); st != http.StatusOK {
		t.Fatal("first refresh")
	}
	e.clock.Add(2 * time.Minute) // past refresh_grace
	if st, m := e.refresh(c, rt0); st != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Errorf("reuse: %d %v", st, m)
	}
	if n := idpSrv.RefreshCount(); n != 1 {
		t.Errorf("upstream refreshes = %d: a reused token reached the IdP", n)
	}
}

// TestGrantEndsWithUnrefreshableUpstream: when the IdP issued no refresh
// token the grant, its refresh tokens and access tokens end when the
// upstream access token does, not after session_lifetime.
func TestGrantEndsWithUnrefreshableUpstream(t *testing.T) {
	e, idpSrv := newOIDCEnv(t, nil)
	idpSrv.Set(func(p *idptest.Provider) { p.NoRefreshToken = true; p.AccessTokenTTL = 10 * time.Minute })
	c := e.register("http://127.0.0.1:3000/cb", true)
	q, _ := e.oidcLogin(e.browser(), authorizeParams(c))
	_, tok := e.exchange(c, q.Get("code"), nil)
	g := e.grantOf(tok["access_token"].(string))
	if g.ExpiresAt.After(time.Now().Add(11*time.Minute)) || g.ExpiresAt.Before(time.Now().Add(9*time.Minute)) {
		t.Errorf("grant expires at %v, want with the upstream access token (~10m)", g.ExpiresAt)
	}
	rt, err := e.st.GetRefreshToken(t.Context(), store.TokenHash(tok["refresh_token"].(string)))
	if err != nil || rt.ExpiresAt.After(g.ExpiresAt) {
		t.Errorf("refresh token outlives the grant: %v %v", rt, err)
	}
	// Until then a refresh re-reads userinfo with the upstream access token.
	idpSrv.Set(func(p *idptest.Provider) {
		p.IDTokenClaims = nil
		p.UserInfoClaims = map[string]any{"groups": []string{"readers"}}
	})
	st, tok := e.refresh(c, tok["refresh_token"].(string))
	if st != http.StatusOK {
		t.Fatalf("refresh: %d %v", st, tok)
	}
	if g := e.groupsOf(tok["access_token"].(string)); !slices.Equal(g, []string{"readers"}) {
		t.Errorf("groups = %v", g)
	}
	if idpSrv.RefreshCount() != 0 {
		t.Error("refreshed upstream without a refresh token")
	}
}

// onceBarrier holds each replica's first Reidentify until both arrived, so
// their upstream refreshes race with the same rotating refresh token.
type onceBarrier struct {
	idp.CallbackConnector
	once *sync.Once
	wg   *sync.WaitGroup
}

func (b onceBarrier) Reidentify(ctx context.Context, prev *idp.Identity, t *idp.Tokens) (*idp.Identity, *idp.Tokens, error) {
	b.once.Do(func() { b.wg.Done(); b.wg.Wait() })
	return b.CallbackConnector.Reidentify(ctx, prev, t)
}

// TestRefreshAcrossReplicas: two replicas refresh one grant at once (the
// client retried on another replica). The IdP rotates its refresh token, so
// one upstream refresh loses; that replica waits for the winner's write and
// refreshes again with the stored token instead of ending the session.
func TestRefreshAcrossReplicas(t *testing.T) {
	e, idpSrv := newOIDCEnv(t, nil)
	c := e.register("http://127.0.0.1:3000/cb", true)
	q, _ := e.oidcLogin(e.browser(), authorizeParams(c))
	_, tok := e.exchange(c, q.Get("code"), nil)
	rt := tok["refresh_token"].(string)

	var wg sync.WaitGroup
	wg.Add(2)
	inner := e.srv.conn.(idp.CallbackConnector)
	e.srv.conn = onceBarrier{inner, new(sync.Once), &wg}
	replica, err := New(e.srv.cfg, Deps{Store: e.st, Signer: e.signer, Sealer: e.srv.sealer, Clock: e.clock.Now,
		Connector: onceBarrier{inner, new(sync.Once), &wg}})
	if err != nil {
		t.Fatal(err)
	}
	req := func(s *Server) (int, map[string]any) {
		rec := newRecorder()
		form := url.Values{"grant_type": {"refresh_token"}, "client_id": {c.ID}, "refresh_token": {rt}}
		r := httptest.NewRequest(http.MethodPost, e.iss+"/token", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		s.Handler().ServeHTTP(rec, r)
		var m map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			t.Error(err)
		}
		return rec.Code, m
	}
	var st [2]int
	var res [2]map[string]any
	var done sync.WaitGroup
	for i, s := range []*Server{e.srv, replica} {
		done.Go(func() { st[i], res[i] = req(s) })
	}
	done.Wait()
	for i := range st {
		if st[i] != http.StatusOK {
			t.Errorf("replica %d: %d %v", i, st[i], res[i])
		}
	}
	if n := idpSrv.RefreshCount(); n != 2 {
		t.Errorf("successful upstream refreshes = %d, want 2 (the loser retried with the stored token)", n)
	}
	// The stored upstream refresh token is the current one.
	e.srv.conn = inner
	if st, m := e.refresh(c, res[0]["refresh_token"].(string)); st != http.StatusOK {
		t.Errorf("refresh after the race: %d %v", st, m)
	}
}

// TestRefreshReidentifyAudited: the refreshed record carries the groups of
// now; a refusal records the user, the session and that it was ended.
func TestRefreshReidentifyAudited(t *testing.T) {
	users := []idp.User{
		{Username: "alice", PasswordHash: testUserHash, Groups: []string{"admins"}},
		{Username: "bob", PasswordHash: testUserHash, Groups: []string{"admins"}},
	}
	e, sink := auditedEnv(t, envOpt{cfg: func(c *Config) { c.Upstream.Users = users }})
	c := e.register("http://127.0.0.1:3000/cb", true)
	tok := map[string]map[string]any{}
	for _, u := range []string{"alice", "bob"} {
		q := e.loginAs(e.browser(), authorizeParams(c), u, testPassword)
		_, tok[u] = e.exchange(c, q.Get("code"), nil)
	}
	bobTSID := e.grantOf(tok["bob"]["access_token"].(string)).ID
	// As after a restart with alice demoted and bob removed.
	cfg := e.srv.cfg.Upstream
	cfg.Users = []idp.User{{Username: "alice", PasswordHash: testUserHash, Groups: []string{"readers"}}}
	conn, err := idp.New(cfg, idp.Options{Issuer: e.iss})
	if err != nil {
		t.Fatal(err)
	}
	e.srv.conn = conn
	if st, m := e.refresh(c, tok["alice"]["refresh_token"].(string)); st != http.StatusOK {
		t.Fatal(m)
	}
	if st, _ := e.refresh(c, tok["bob"]["refresh_token"].(string)); st != http.StatusBadRequest {
		t.Fatal("bob refreshed")
	}
	var refreshed, refusedRec *audit.Record
	for _, r := range sink.records(t) {
		switch {
		case r.Event == audit.EventASTokenRefreshed && r.Subject == "alice":
			refreshed = &r
		case r.Event == audit.EventASTokenRefused && r.SessionID == bobTSID:
			refusedRec = &r
		}
	}
	if refreshed == nil || !slices.Equal(refreshed.Groups, []string{"readers"}) {
		t.Errorf("refresh record: %+v", refreshed)
	}
	if refusedRec == nil || refusedRec.Subject != "bob" || refusedRec.Status != http.StatusBadRequest ||
		!strings.Contains(refusedRec.Reason, "invalid_grant") || !strings.Contains(refusedRec.Reason, "revoked") {
		t.Errorf("refusal record: %+v", refusedRec)
	}
	if n := strings.Count(strings.Join(sink.events(t), " "), audit.EventASTokenRefused); n != 1 {
		t.Errorf("%d refusal records, want 1", n)
	}
}
