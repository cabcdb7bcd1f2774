package authserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
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
)

// chainSink is the audit log of a test: a real audit.Logger (on_error:
// fail) writing its hash chain into memory, with a switch that makes the
// writes fail.
type chainSink struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes []string // each Write, for the tests of what goes out together
	broken atomic.Bool
	logger *audit.Logger
}

func (c *chainSink) Write(p []byte) (int, error) {
	if c.broken.Load() {
		return 0, errors.New("disk full")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, string(p))
	return c.buf.Write(p)
}

func (c *chainSink) bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf.Bytes())
}

// records returns the authorization server's records, in order.
func (c *chainSink) records(t testing.TB) []audit.Record {
	t.Helper()
	var out []audit.Record
	sc := bufio.NewScanner(bytes.NewReader(c.bytes()))
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if r.Source == audit.SourceAuthServer {
			out = append(out, r)
		}
	}
	return out
}

func (c *chainSink) events(t testing.TB) []string {
	var out []string
	for _, r := range c.records(t) {
		out = append(out, r.Event)
	}
	return out
}

func newChainSink(t testing.TB) *chainSink {
	t.Helper()
	c := &chainSink{}
	l, err := audit.New(audit.Config{Sink: audit.SinkStdout, OnError: audit.OnErrorFail},
		audit.WithWriter(c), audit.WithSlog(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	c.logger = l
	return c
}

func auditedEnv(t *testing.T, o envOpt) (*env, *chainSink) {
	t.Helper()
	sink := newChainSink(t)
	prev := o.deps
	o.deps = func(d *Deps) {
		d.Auditor = sink.logger
		if prev != nil {
			prev(d)
		}
	}
	return newEnv(t, o), sink
}

// secrets collects every credential the test saw, to prove none is in the log.
type secrets []string

func (s *secrets) add(vals ...any) {
	for _, v := range vals {
		if str, ok := v.(string); ok && str != "" {
			*s = append(*s, str)
		}
	}
}

func (s secrets) check(t *testing.T, log []byte) {
	t.Helper()
	if len(s) < 5 {
		t.Fatalf("only %d secrets collected", len(s))
	}
	for _, v := range s {
		if bytes.Contains(log, []byte(v)) {
			t.Errorf("the audit log contains a secret/token/code: %.12s…", v)
		}
	}
}

// TestAuditEveryEvent drives each authorization-server event through the
// HTTP endpoints, checks each record's user, client_id, address and
// outcome, that no secret, token or code is in the serialized log, that
// the chain verifies, and that an edited record is caught.
func TestAuditEveryEvent(t *testing.T) {
	e, sink := auditedEnv(t, envOpt{})
	var sec secrets
	sec.add(testPassword, testVerifier)

	// Registration: one refused, one confidential client registered.
	if st, _ := e.registerRaw(map[string]any{"redirect_uris": []string{"http://evil.example.com/cb"}}, nil); st != http.StatusBadRequest {
		t.Fatalf("bad registration: %d", st)
	}
	c := e.register("http://127.0.0.1:3000/cb", false)
	sec.add(c.Secret)

	// Built-in login: a wrong password, then the right one; consent; code.
	b := e.browser()
	p := b.get(e.iss + "/authorize?" + authorizeParams(c).Encode())
	p = b.get(p.loc.String())
	f := p.hidden()
	sec.add(f.Get("csrf"))
	f.Set("username", testUser)
	f.Set("password", "wrong-password-123")
	sec.add("wrong-password-123")
	if p = b.post(e.iss+"/login", f); p.status != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", p.status)
	}
	f.Set("password", testPassword)
	p = b.post(e.iss+"/login", f)
	p = b.get(p.loc.String())
	f = p.hidden()
	f.Set("decision", "approve")
	p = b.post(e.iss+"/consent", f)
	code := p.loc.Query().Get("code")
	sec.add(code)

	// Code redeemed (tokens issued), then replayed.
	st, tok := e.exchange(c, code, nil)
	if st != http.StatusOK {
		t.Fatalf("exchange: %d %v", st, tok)
	}
	sec.add(tok["access_token"], tok["refresh_token"])
	if st, _ := e.exchange(c, code, nil); st != http.StatusBadRequest {
		t.Fatalf("replay: %d", st)
	}

	// A second grant: refresh, then reuse after the grace window.
	tok2 := e.tokens(c)
	sec.add(tok2["access_token"], tok2["refresh_token"])
	st, r1 := e.refresh(c, tok2["refresh_token"].(string))
	if st != http.StatusOK {
		t.Fatalf("refresh: %d %v", st, r1)
	}
	sec.add(r1["access_token"], r1["refresh_token"])
	e.clock.Add(6 * time.Minute) // past any refresh_grace (at most 5m)
	if st, _ := e.refresh(c, tok2["refresh_token"].(string)); st != http.StatusBadRequest {
		t.Fatalf("reuse: %d", st)
	}

	// A third grant: introspected by its client, then revoked.
	tok3 := e.tokens(c)
	sec.add(tok3["access_token"], tok3["refresh_token"])
	basic := func(r *http.Request) { r.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret)) }
	if st, m, _ := e.post("/introspect", url.Values{"token": {tok3["access_token"].(string)}}, basic); st != http.StatusOK || m["active"] != true {
		t.Fatalf("introspect: %d %v", st, m)
	}
	if st, _, _ := e.post("/revoke", url.Values{"token": {tok3["refresh_token"].(string)}}, basic); st != http.StatusOK {
		t.Fatalf("revoke: %d", st)
	}

	// Refusals at the token, revocation and introspection endpoints.
	badSecret := func(r *http.Request) { r.SetBasicAuth(url.QueryEscape(c.ID), "not-the-secret-456") }
	sec.add("not-the-secret-456")
	if st, _, _ := e.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}}, badSecret); st != http.StatusUnauthorized {
		t.Fatalf("token with a bad secret: %d", st)
	}
	if st, _, _ := e.post("/revoke", url.Values{"token": {"x"}}, badSecret); st != http.StatusUnauthorized {
		t.Fatalf("revoke with a bad secret: %d", st)
	}
	if st, _, _ := e.post("/introspect", url.Values{"token": {"x"}}, badSecret); st != http.StatusUnauthorized {
		t.Fatalf("introspect with a bad secret: %d", st)
	}

	// Consent refused (for a scope not approved yet, so the page is shown).
	b = e.browser()
	wider := authorizeParams(c)
	wider.Set("scope", "mcp:write")
	p = b.get(e.iss + "/authorize?" + wider.Encode())
	p = b.get(p.loc.String())
	f = p.hidden()
	f.Set("username", testUser)
	f.Set("password", testPassword)
	p = b.post(e.iss+"/login", f)
	p = b.get(p.loc.String())
	f = p.hidden()
	f.Set("decision", "deny")
	if p = b.post(e.iss+"/consent", f); p.loc.Query().Get("error") != "access_denied" {
		t.Fatalf("consent denied: %v", p.loc)
	}

	// A signing key rotation (reported by keys.Manager's OnRotate).
	e.srv.SigningKeyRotated(t.Context(), "kid-old", "kid-new")

	recs := sink.records(t)
	byEvent := map[string][]audit.Record{}
	for _, r := range recs {
		byEvent[r.Event] = append(byEvent[r.Event], r)
	}
	one := func(ev string) audit.Record {
		t.Helper()
		if len(byEvent[ev]) == 0 {
			t.Fatalf("no %s record in %v", ev, sink.events(t))
		}
		return byEvent[ev][0]
	}
	codeIssued := one(audit.EventASCodeIssued)
	tsid := codeIssued.SessionID
	if tsid == "" {
		t.Fatal("AS_CODE_ISSUED without a session id")
	}
	user := func(r audit.Record) bool {
		return r.Issuer == e.iss && r.Subject == testUser && r.User == testUser && r.Email == "alice@example.com" && slices.Equal(r.Groups, []string{"admins"})
	}
	tests := []struct {
		event, result, client, reason string
		status                        int
		user, session                 bool
	}{
		{audit.EventASClientRegistrationRefused, audit.ResultError, "", "invalid_redirect_uri", 400, false, false},
		{audit.EventASClientRegistered, audit.ResultSuccess, c.ID, `client_name "Test Client `, 201, false, false},
		{audit.EventASLoginFailed, audit.ResultError, c.ID, "invalid username or password (attempt 1 of 5)", 0, false, false},
		{audit.EventASLoginSuccess, audit.ResultSuccess, c.ID, "built-in user", 0, true, false},
		{audit.EventASConsentGiven, audit.ResultSuccess, c.ID, "", 0, true, false},
		{audit.EventASCodeIssued, audit.ResultSuccess, c.ID, "", 0, true, true},
		{audit.EventASCodeRedeemed, audit.ResultSuccess, c.ID, "", 200, true, true},
		{audit.EventASTokenIssued, audit.ResultSuccess, c.ID, "access token and refresh token", 200, true, true},
		{audit.EventASCodeReplayed, audit.ResultError, c.ID, "the grant (token family) is revoked", 400, true, true},
		{audit.EventASTokenRefreshed, audit.ResultSuccess, c.ID, "access token and refresh token", 200, true, false},
		{audit.EventASRefreshTokenReused, audit.ResultError, c.ID, "the grant (token family) is revoked", 400, true, false},
		{audit.EventASTokenIntrospected, audit.ResultSuccess, c.ID, "active Bearer of client " + c.ID, 200, true, false},
		{audit.EventASTokenRevoked, audit.ResultSuccess, c.ID, "grant revoked by its client", 200, true, false},
		{audit.EventASTokenRefused, audit.ResultError, c.ID, "invalid_client", 401, false, false},
		{audit.EventASRevocationRefused, audit.ResultError, c.ID, "invalid_client", 401, false, false},
		{audit.EventASIntrospectionRefused, audit.ResultError, c.ID, "invalid_client", 401, false, false},
		{audit.EventASConsentRefused, audit.ResultError, c.ID, "the user denied the request", 0, true, false},
		{audit.EventASSigningKeyRotated, audit.ResultSuccess, "", "active signing key is now kid-new (was kid-old", 0, false, false},
	}
	for _, tc := range tests {
		r := one(tc.event)
		if r.Result != tc.result || r.ClientID != tc.client || !strings.Contains(r.Reason, tc.reason) || r.Status != tc.status {
			t.Errorf("%s: result %q client %q reason %q status %d; want %q %q ~%q %d", tc.event, r.Result, r.ClientID, r.Reason, r.Status,
				tc.result, tc.client, tc.reason, tc.status)
		}
		if tc.user && !user(r) {
			t.Errorf("%s: user fields %q %q %q %q %v", tc.event, r.Issuer, r.Subject, r.User, r.Email, r.Groups)
		}
		if !tc.user && r.Subject != "" {
			t.Errorf("%s: unexpected subject %q", tc.event, r.Subject)
		}
		if tc.session && r.SessionID != tsid {
			t.Errorf("%s: session %q, want %q", tc.event, r.SessionID, tsid)
		}
		if tc.event == audit.EventASSigningKeyRotated {
			continue // not a request: no address
		}
		if r.ClientIP != "127.0.0.1" || r.RequestID == "" || r.UserAgent == "" {
			t.Errorf("%s: client_ip %q request_id %q user_agent %q", tc.event, r.ClientIP, r.RequestID, r.UserAgent)
		}
	}
	if r := one(audit.EventASLoginFailed); r.Username != testUser || r.User != testUser {
		t.Errorf("failed login names %q/%q, want the username typed", r.Username, r.User)
	}
	if r := one(audit.EventASTokenIssued); r.Scope != "mcp:read" || r.Resource != e.srv.resources[0] || r.Method != grantCode {
		t.Errorf("token issued: scope %q resource %q method %q", r.Scope, r.Resource, r.Method)
	}
	if r := one(audit.EventASTokenRefreshed); r.Method != grantRT || r.SessionID == "" || r.SessionID != one(audit.EventASRefreshTokenReused).SessionID {
		t.Errorf("refresh and reuse records do not name the same grant: %q %q", r.SessionID, one(audit.EventASRefreshTokenReused).SessionID)
	}
	if a, b := one(audit.EventASTokenIntrospected).SessionID, one(audit.EventASTokenRevoked).SessionID; a == "" || a != b {
		t.Errorf("introspected %q and revoked %q grants differ", a, b)
	}
	// The redemption and its tokens are one request.
	if a, b := one(audit.EventASCodeRedeemed), one(audit.EventASTokenIssued); a.RequestID != b.RequestID {
		t.Errorf("redeemed and issued in different requests: %q %q", a.RequestID, b.RequestID)
	}
	for _, r := range recs {
		if r.Source != audit.SourceAuthServer || r.Result == "" {
			t.Errorf("record without source or outcome: %+v", r)
		}
	}

	log := sink.bytes()
	sec.check(t, log)
	if _, err := audit.Verify(bytes.NewReader(log), audit.VerifyOptions{}); err != nil {
		t.Fatalf("chain does not verify: %v", err)
	}
	// One record edited by hand: the user of the successful login.
	i := bytes.Index(log, []byte(`"event":"`+audit.EventASLoginSuccess+`"`))
	start := bytes.LastIndexByte(log[:i], '\n') + 1
	end := start + bytes.IndexByte(log[start:], '\n')
	line := bytes.Replace(log[start:end], []byte(`"user":"alice"`), []byte(`"user":"mallory"`), 1)
	if bytes.Equal(line, log[start:end]) {
		t.Fatal("nothing edited")
	}
	edited := slices.Concat(log[:start], line, log[end:])
	_, err := audit.Verify(bytes.NewReader(edited), audit.VerifyOptions{})
	var ce *audit.ChainError
	if !errors.As(err, &ce) || !strings.Contains(ce.Msg, "hash") {
		t.Errorf("edited record: err = %v, want a hash mismatch", err)
	}
}

// TestAuditUpstreamAndCIMD: logins at an upstream IdP (success and the
// IdP's refusal), an upstream refresh the IdP rejects, and client ID
// metadata documents (fetched, and rejected).
func TestAuditUpstreamAndCIMD(t *testing.T) {
	p := idptest.New(t)
	p.Set(func(p *idptest.Provider) {
		p.IDTokenClaims = map[string]any{"preferred_username": "bob", "email": "bob@example.com", "email_verified": true, "groups": []string{"ops"}}
	})
	cs := newCIMDServer(t)
	cs.docs["/good.json"] = func(u string) (map[string]any, string) {
		return map[string]any{"client_id": u, "client_name": "Doc Client", "redirect_uris": []string{"http://127.0.0.1:7777/cb"}}, "max-age=60"
	}
	e, sink := auditedEnv(t, envOpt{
		cfg: func(c *Config) {
			c.Upstream = idp.Config{
				Type: idp.TypeOIDC, Issuer: p.Issuer(), ClientID: p.ClientID, ClientSecret: p.ClientSecret,
				AllowPrivateIssuer: true, GroupsClaim: "groups",
			}
			c.CIMD.AllowPrivate = true
		},
		deps: func(d *Deps) { d.HTTPClient = cs.ts.Client() },
	})
	c := regClient{ID: cs.ts.URL + "/good.json", Redirect: "http://127.0.0.1:7777/cb"}
	q, _ := e.oidcLogin(e.browser(), authorizeParams(c))
	st, tok := e.exchange(c, q.Get("code"), nil)
	if st != http.StatusOK {
		t.Fatalf("exchange: %d %v", st, tok)
	}
	pr, err := e.srv.Verify(t.Context(), tok["access_token"].(string))
	if err != nil {
		t.Fatal(err)
	}
	upstream, err := e.srv.UpstreamToken(t.Context(), pr.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	p.Set(func(p *idptest.Provider) { p.DenyLogin = true })
	if q, _ := e.oidcLogin(e.browser(), authorizeParams(c)); q.Get("error") != "access_denied" {
		t.Fatalf("IdP denied: %v", q)
	}
	p.RevokeRefreshTokens()
	e.clock.Add(2 * time.Hour)
	if _, err := e.srv.UpstreamToken(t.Context(), pr.SessionID); !errors.Is(err, ErrUpstreamReauth) {
		t.Fatalf("upstream refresh: %v", err)
	}
	missing := regClient{ID: cs.ts.URL + "/missing.json", Redirect: c.Redirect}
	if pg := e.browser().get(e.iss + "/authorize?" + authorizeParams(missing).Encode()); pg.status != http.StatusBadRequest {
		t.Fatalf("missing document: %d", pg.status)
	}

	byEvent := map[string][]audit.Record{}
	for _, r := range sink.records(t) {
		byEvent[r.Event] = append(byEvent[r.Event], r)
	}
	if n := len(byEvent[audit.EventASClientMetadataFetched]); n != 1 {
		t.Errorf("%d AS_CLIENT_METADATA_FETCHED records, want 1 (later uses hit the cache)", n)
	} else if r := byEvent[audit.EventASClientMetadataFetched][0]; r.ClientID != c.ID || r.ClientIP != "127.0.0.1" || !strings.Contains(r.Reason, "Doc Client") {
		t.Errorf("metadata fetched: %+v", r)
	}
	if rs := byEvent[audit.EventASClientMetadataRejected]; len(rs) != 1 || rs[0].ClientID != missing.ID || rs[0].Result != audit.ResultError ||
		!strings.Contains(rs[0].Reason, "404") {
		t.Errorf("metadata rejected: %+v", rs)
	}
	if rs := byEvent[audit.EventASLoginSuccess]; len(rs) != 1 || rs[0].User != "bob" || rs[0].ClientID != c.ID ||
		rs[0].Reason != "upstream identity provider "+p.Issuer() || rs[0].ClientIP != "127.0.0.1" {
		t.Errorf("upstream login: %+v", rs)
	}
	if rs := byEvent[audit.EventASLoginFailed]; len(rs) != 1 || rs[0].ClientID != c.ID || !strings.Contains(rs[0].Reason, `error "access_denied"`) {
		t.Errorf("upstream login refused: %+v", rs)
	}
	rs := byEvent[audit.EventASUpstreamRefreshFailed]
	if len(rs) != 1 || rs[0].SessionID != pr.SessionID || rs[0].ClientID != c.ID || rs[0].User != "bob" || rs[0].Result != audit.ResultError ||
		!strings.Contains(rs[0].Reason, "sign in again") {
		t.Errorf("upstream refresh failed: %+v", rs)
	}
	var sec secrets
	sec.add(tok["access_token"], tok["refresh_token"], q.Get("code"), testVerifier, p.ClientSecret, upstream)
	sec.check(t, sink.bytes())
}

// TestAuditFailClosed: with on_error: fail and the log unwritable, nothing
// is handed out unrecorded — no client, code or token — while revocation
// still happens; once the log is back, a refresh retried within the grace
// window gets the successor it was refused.
func TestAuditFailClosed(t *testing.T) {
	e, sink := auditedEnv(t, envOpt{})
	c := e.register("http://127.0.0.1:3000/cb", true)
	tok := e.tokens(c)

	sink.broken.Store(true)
	if st, m := e.registerRaw(map[string]any{"redirect_uris": []string{"http://127.0.0.1:3000/cb"}}, nil); st != http.StatusServiceUnavailable ||
		m["error"] != errTemporarilyUnavailable || m["client_id"] != nil {
		t.Errorf("registration while the log is down: %d %v", st, m)
	}
	if n, err := e.st.CountClientsByIP(t.Context(), "127.0.0.1", time.Time{}); err != nil || n != 1 {
		t.Errorf("%d clients stored, want 1 (the unrecorded one deleted)", n)
	}
	// The authorization flow stops before a code is issued.
	b := e.browser()
	pg := b.get(e.iss + "/authorize?" + authorizeParams(c).Encode())
	pg = b.get(pg.loc.String())
	f := pg.hidden()
	f.Set("username", testUser)
	f.Set("password", testPassword)
	if pg = b.post(e.iss+"/login", f); pg.status != http.StatusServiceUnavailable || pg.loc != nil {
		t.Errorf("login while the log is down: %d %v", pg.status, pg.loc)
	}
	// Refresh: refused, no token in the answer.
	rt := tok["refresh_token"].(string)
	st, m := e.refresh(c, rt)
	if st != http.StatusServiceUnavailable || m["access_token"] != nil || m["refresh_token"] != nil {
		t.Errorf("refresh while the log is down: %d %v", st, m)
	}

	// The log is back: the retry (within refresh_grace) works.
	sink.broken.Store(false)
	st, m = e.refresh(c, rt)
	if st != http.StatusOK {
		t.Fatalf("refresh retried after recovery: %d %v", st, m)
	}
	// A code exchange whose tokens cannot be recorded: 503, and its grant is
	// revoked (the tokens minted were never sent).
	code := e.code(c)
	issued := sink.records(t)
	tsid := issued[len(issued)-1].SessionID
	if issued[len(issued)-1].Event != audit.EventASCodeIssued || tsid == "" {
		t.Fatalf("last record %+v, want AS_CODE_ISSUED", issued[len(issued)-1])
	}
	sink.broken.Store(true)
	st, m = e.exchange(c, code, nil)
	if st != http.StatusServiceUnavailable || m["access_token"] != nil {
		t.Errorf("exchange while the log is down: %d %v", st, m)
	}
	if g, err := e.st.GetGrant(t.Context(), tsid); err != nil || !g.Revoked {
		t.Errorf("grant of the unrecorded exchange: %+v %v, want revoked", g, err)
	}
	// Revocation is never held back by the audit log.
	if st, _, _ := e.post("/revoke", url.Values{"token": {tok["access_token"].(string)}, "client_id": {c.ID}}, nil); st != http.StatusOK {
		t.Errorf("revoke while the log is down: %d", st)
	}
	if err := e.authn("/mcp", tok["access_token"].(string)); err == nil {
		t.Error("the revoked grant's access token still authenticates")
	}
	// Introspection discloses token data: refused while unrecorded.
	sink.broken.Store(false)
	conf := e.register("http://127.0.0.1:3000/cb", false)
	sink.broken.Store(true)
	basic := func(r *http.Request) { r.SetBasicAuth(url.QueryEscape(conf.ID), url.QueryEscape(conf.Secret)) }
	if st, m, _ := e.post("/introspect", url.Values{"token": {"x"}}, basic); st != http.StatusServiceUnavailable || m["active"] != nil {
		t.Errorf("introspection while the log is down: %d %v", st, m)
	}
}

// eventsAuditor is an Auditor without LogBatch: it keeps each record's
// event.
type eventsAuditor struct {
	mu     sync.Mutex
	events []string
}

func (a *eventsAuditor) Log(_ context.Context, r *audit.Record) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, r.Event)
	return nil
}

// The two records of a code exchange go out in one write (one group commit
// of the audit log) when the auditor writes batches; an auditor with Log
// only gets both, in the same order.
func TestAuditExchangeRecordsOneWrite(t *testing.T) {
	t.Run("batch", func(t *testing.T) {
		e, sink := auditedEnv(t, envOpt{})
		c := e.register("http://127.0.0.1:3000/cb", true)
		code := e.code(c)
		sink.mu.Lock()
		before := len(sink.writes)
		sink.mu.Unlock()
		if st, m := e.exchange(c, code, nil); st != http.StatusOK {
			t.Fatalf("exchange: %d %v", st, m)
		}
		sink.mu.Lock()
		writes := slices.Clone(sink.writes[before:])
		sink.mu.Unlock()
		if len(writes) != 1 {
			t.Fatalf("the exchange made %d audit writes, want 1: %q", len(writes), writes)
		}
		redeemed := strings.Index(writes[0], `"event":"`+audit.EventASCodeRedeemed+`"`)
		issued := strings.Index(writes[0], `"event":"`+audit.EventASTokenIssued+`"`)
		if redeemed < 0 || issued < redeemed {
			t.Errorf("the write does not hold %s then %s: %s", audit.EventASCodeRedeemed, audit.EventASTokenIssued, writes[0])
		}
	})
	t.Run("Log only", func(t *testing.T) {
		a := &eventsAuditor{}
		e := newEnv(t, envOpt{deps: func(d *Deps) { d.Auditor = a }})
		c := e.register("http://127.0.0.1:3000/cb", true)
		code := e.code(c)
		a.mu.Lock()
		before := len(a.events)
		a.mu.Unlock()
		if st, m := e.exchange(c, code, nil); st != http.StatusOK {
			t.Fatalf("exchange: %d %v", st, m)
		}
		a.mu.Lock()
		got := slices.Clone(a.events[before:])
		a.mu.Unlock()
		if want := []string{audit.EventASCodeRedeemed, audit.EventASTokenIssued}; !slices.Equal(got, want) {
			t.Errorf("records of the exchange = %v, want %v", got, want)
		}
	})
}

// TestAuditRegistrationWithInitialAccessToken: registrations refused for a
// wrong initial access token and accepted with the right one are recorded,
// and neither token (nor the client secret issued) is.
func TestAuditRegistrationWithInitialAccessToken(t *testing.T) {
	const token = "initial-access-token-0123456789abcdef"
	e, sink := auditedEnv(t, envOpt{cfg: func(c *Config) { c.Registration.Mode = RegistrationToken; c.Registration.Token = token }})
	meta := map[string]any{"client_name": "x", "redirect_uris": []string{"http://127.0.0.1:3000/cb"}}
	bearer := func(v string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+v) }
	}
	if st, _ := e.registerRaw(meta, bearer("guessed-token-fedcba9876543210")); st != http.StatusUnauthorized {
		t.Fatalf("wrong initial access token: %d", st)
	}
	st, m := e.registerRaw(meta, bearer(token))
	if st != http.StatusCreated {
		t.Fatalf("register: %d %v", st, m)
	}
	if got := sink.events(t); !slices.Equal(got, []string{audit.EventASClientRegistrationRefused, audit.EventASClientRegistered}) {
		t.Errorf("events %v", got)
	}
	if r := sink.records(t)[0]; r.Status != http.StatusUnauthorized || !strings.Contains(r.Reason, "invalid_token") {
		t.Errorf("refused registration record: %+v", r)
	}
	var sec secrets
	sec.add(token, "guessed-token-fedcba9876543210", m["client_secret"], "initial-access", "fedcba9876543210")
	sec.check(t, sink.bytes())
}

// Every answer carries its own X-Request-Id (96 random bits, hex), and the
// records of that request carry the same id, the caller's address and user
// agent.
func TestRequestIDInAnswerAndRecord(t *testing.T) {
	e, sink := auditedEnv(t, envOpt{})
	seen := map[string]bool{}
	for range 3 {
		status, _, h := e.post("/token", url.Values{"grant_type": {"password"}}, func(r *http.Request) { r.Header.Set("User-Agent", "ua-test") })
		if status != http.StatusBadRequest && status != http.StatusUnauthorized {
			t.Fatalf("status %d", status)
		}
		id := h.Get("X-Request-Id")
		if len(h.Values("X-Request-Id")) != 1 || len(id) != 24 || strings.Trim(id, "0123456789abcdef") != "" || seen[id] {
			t.Fatalf("X-Request-Id %q (values %q, seen before %v), want one fresh 24-digit hex id", id, h.Values("X-Request-Id"), seen[id])
		}
		seen[id] = true
	}
	n := 0
	for _, r := range sink.records(t) {
		if r.Event != audit.EventASTokenRefused {
			continue
		}
		n++
		if !seen[r.RequestID] || r.ClientIP != "127.0.0.1" || r.UserAgent != "ua-test" {
			t.Errorf("record request_id %q client_ip %q user_agent %q, want an answered id, 127.0.0.1, ua-test", r.RequestID, r.ClientIP, r.UserAgent)
		}
		delete(seen, r.RequestID)
	}
	if n != 3 {
		t.Errorf("%d refusal records, want 3", n)
	}
}
