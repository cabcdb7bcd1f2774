package tokenendpoint

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/authserver"
	"github.com/mcpgate/mcpgate/internal/identity"
)

const (
	testTD       = "example.org"
	vsphereID    = "spiffe://example.org/ns/mcp/sa/vsphere"
	k8sID        = "spiffe://example.org/ns/mcp/sa/k8s"
	vsphereRes   = "https://gw.example.org/vsphere"
	k8sRes       = "https://gw.example.org/k8s"
	aliceToken   = "alice-mcpgate-token"  // issued for vsphere
	bobK8sToken  = "bob-mcpgate-k8s"      // issued for k8s
	revokedToken = "revoked-grant-token"  // its grant was revoked
	reauthToken  = "reauth-token"         // the IdP refuses to refresh
	upstreamTok  = "alice-upstream-token" // what the IdP issued alice
)

// fakeAS stands in for the authorization server: the real verifier and
// store are exercised by the server package's integration test.
type fakeAS struct{ now time.Time }

func (f *fakeAS) Verify(_ context.Context, tok string) (*identity.Principal, error) {
	p := func(sub, tsid, aud string) *identity.Principal {
		return &identity.Principal{Issuer: "https://gw.example.org", Subject: sub, Username: sub, ClientID: "client-1",
			TokenID: "jti-" + sub, SessionID: tsid, Audience: []string{aud}}
	}
	switch tok {
	case aliceToken:
		return p("alice", "tsid-alice", vsphereRes), nil
	case bobK8sToken:
		return p("bob", "tsid-bob", k8sRes), nil
	case revokedToken:
		return p("carol", "tsid-revoked", vsphereRes), nil
	case reauthToken:
		return p("dave", "tsid-reauth", vsphereRes), nil
	case "mallory-token":
		return p("mallory", "tsid-alice", vsphereRes), nil
	case "store-down":
		return p("erin", "tsid-unknown", vsphereRes), nil
	case "expired":
		return nil, fmt.Errorf("%w: expired", authn.ErrInvalidToken)
	case "keys-down":
		return nil, fmt.Errorf("%w: key set", authn.ErrUnavailable)
	}
	return nil, fmt.Errorf("%w: parse: malformed", authn.ErrInvalidToken)
}

func (f *fakeAS) UpstreamGrantToken(_ context.Context, tsid string) (*authserver.GrantUpstream, error) {
	switch tsid {
	case "tsid-alice":
		return &authserver.GrantUpstream{AccessToken: upstreamTok, Expiry: f.now.Add(time.Hour), Resource: vsphereRes}, nil
	case "tsid-revoked":
		return nil, authserver.ErrSessionInvalid
	case "tsid-reauth":
		return nil, authserver.ErrUpstreamReauth
	}
	return nil, errors.New("store down")
}

type recAuditor struct {
	mu   sync.Mutex
	recs []audit.Record
	fail bool
}

func (a *recAuditor) Log(_ context.Context, r *audit.Record) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail {
		return errors.New("disk full")
	}
	a.recs = append(a.recs, *r)
	return nil
}

func (a *recAuditor) last(t *testing.T) audit.Record {
	t.Helper()
	// Handshake records are written by the server's connection goroutine,
	// possibly just after the client saw the failure.
	for range 100 {
		a.mu.Lock()
		n := len(a.recs)
		a.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.recs) == 0 {
		t.Fatal("no audit record")
	}
	r := a.recs[len(a.recs)-1]
	a.recs = nil
	return r
}

// pki is a test PKI: the client CA, the server certificate and helpers to
// issue client certificates, all written where the endpoint reads them.
type pki struct {
	ca         *CA
	caPool     *x509.CertPool
	cfg        TLSConfig
	clientCert func(spiffeIDs ...string) tls.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	ca, err := NewCA("test CA", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue(Leaf{CommonName: "internal", Hosts: []string{"127.0.0.1"}, Server: true}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{ca: ca, caPool: x509.NewCertPool(), cfg: TLSConfig{
		CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key"), ClientCAFile: filepath.Join(dir, "ca.crt"),
	}}
	p.caPool.AddCert(ca.Cert)
	for f, data := range map[string][]byte{p.cfg.CertFile: srv.CertPEM, p.cfg.KeyFile: srv.KeyPEM, p.cfg.ClientCAFile: ca.CertPEM} {
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p.clientCert = func(ids ...string) tls.Certificate { return issueClient(t, ca, time.Now(), ids...) }
	return p
}

func issueClient(t *testing.T, ca *CA, notBefore time.Time, ids ...string) tls.Certificate {
	t.Helper()
	l := Leaf{CommonName: "client"}
	var extra []string
	if len(ids) > 0 {
		l.SPIFFEID, extra = ids[0], ids[1:]
	}
	c, err := ca.Issue(l, notBefore, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(extra) > 0 {
		// Several URI SANs: re-issue with all of them.
		tmpl := *c.Cert
		for _, id := range extra {
			u, _ := url.Parse(id)
			tmpl.URIs = append(tmpl.URIs, u)
		}
		c = reissue(t, ca, &tmpl)
	}
	cert, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

type testEnv struct {
	ep      *Endpoint
	url     string
	pki     *pki
	auditor *recAuditor
}

func startEndpoint(t *testing.T) *testEnv {
	t.Helper()
	p := newPKI(t)
	a := &recAuditor{}
	ep, err := New(Config{
		Listen: "127.0.0.1:0", TLS: p.cfg, TrustDomain: testTD,
		Clients: []ClientConfig{{SPIFFEID: vsphereID, Backends: []string{"vsphere"}}, {SPIFFEID: k8sID, Backends: []string{"k8s"}}},
	}, Deps{
		AuthServer: &fakeAS{now: time.Now()}, Auditor: a, Registry: prometheus.NewRegistry(),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Backends: map[string]string{"vsphere": vsphereRes, "k8s": k8sRes},
		Permits:  func(p *identity.Principal, _ string) bool { return p.Subject != "mallory" },
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { ep.Serve(ln); close(done) }()
	t.Cleanup(func() { ep.Shutdown(context.Background()); <-done })
	return &testEnv{ep: ep, url: "https://" + ln.Addr().String() + Path, pki: p, auditor: a}
}

// client presents certs[0], if any, whatever CAs the server asks for (Go's
// client would otherwise send no certificate from another CA at all).
func (e *testEnv) client(certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: e.pki.caPool, GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if len(certs) == 0 {
				return &tls.Certificate{}, nil
			}
			return &certs[0], nil
		}},
	}}
}

func exchangeForm(subject, audience string) url.Values {
	return url.Values{
		"grant_type": {GrantTypeTokenExchange}, "subject_token": {subject},
		"subject_token_type": {TokenTypeAccessToken}, "audience": {audience},
	}
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (int, map[string]any, http.Header) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("status %d, body not JSON: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, m, resp.Header
}

func TestRetrievalHappyPath(t *testing.T) {
	e := startEndpoint(t)
	status, m, h := post(t, e.client(e.pki.clientCert(vsphereID)), e.url, exchangeForm(aliceToken, "vsphere"))
	if status != http.StatusOK || m["access_token"] != upstreamTok || m["issued_token_type"] != TokenTypeAccessToken || m["token_type"] != "Bearer" {
		t.Fatalf("%d %v", status, m)
	}
	if exp, _ := m["expires_in"].(float64); exp < 3500 || exp > 3600 {
		t.Errorf("expires_in = %v", m["expires_in"])
	}
	if h.Get("Cache-Control") != "no-store" {
		t.Error("response may be cached")
	}
	r := e.auditor.last(t)
	if r.Event != audit.EventInternalTokenRetrieved || r.Result != audit.ResultSuccess || r.Workload != vsphereID ||
		r.Backend != "vsphere" || r.Subject != "alice" || r.SessionID != "tsid-alice" || r.Source != audit.SourceInternal {
		t.Errorf("record %+v", r)
	}
	b, _ := json.Marshal(r)
	if strings.Contains(string(b), upstreamTok) || strings.Contains(string(b), aliceToken) {
		t.Error("the record holds a token")
	}
	if got := count(e.ep, outcomeSuccess); got != 1 {
		t.Errorf("success counter = %v", got)
	}
	// The resource parameter, when given, must be the audience's.
	f := exchangeForm(aliceToken, "vsphere")
	f.Set("resource", vsphereRes+"/")
	if status, m, _ := post(t, e.client(e.pki.clientCert(vsphereID)), e.url, f); status != http.StatusOK {
		t.Errorf("resource of the audience: %d %v", status, m)
	}
	f.Set("resource", k8sRes)
	if status, m, _ := post(t, e.client(e.pki.clientCert(vsphereID)), e.url, f); status != http.StatusBadRequest || m["error"] != "invalid_target" {
		t.Errorf("resource of another backend: %d %v", status, m)
	}
}

// TestHandshakeRefusals: without a certificate from the client CA there is
// no TLS session, and the refusal is counted and audited.
func TestHandshakeRefusals(t *testing.T) {
	e := startEndpoint(t)
	other, err := NewCA("other CA", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	expired := issueClient(t, e.pki.ca, time.Now().Add(-3*time.Hour), vsphereID)
	for _, tc := range []struct {
		name    string
		certs   []tls.Certificate
		outcome string
	}{
		{"no client certificate", nil, outcomeNoCertificate},
		{"certificate from another CA", []tls.Certificate{issueClient(t, other, time.Now(), vsphereID)}, outcomeUntrustedCert},
		{"expired certificate", []tls.Certificate{expired}, outcomeUntrustedCert},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := count(e.ep, tc.outcome)
			_, err := e.client(tc.certs...).PostForm(e.url, exchangeForm(aliceToken, "vsphere"))
			if err == nil {
				t.Fatal("request succeeded")
			}
			// The server logs the failure in its connection goroutine,
			// possibly after the client saw it.
			for i := 0; i < 200 && count(e.ep, tc.outcome) == before; i++ {
				time.Sleep(5 * time.Millisecond)
			}
			if got := count(e.ep, tc.outcome); got != before+1 {
				t.Errorf("%s counter %v → %v", tc.outcome, before, got)
			}
			r := e.auditor.last(t)
			if r.Event != audit.EventInternalTokenRefused || !strings.HasPrefix(r.Reason, "TLS handshake") || r.ClientIP != "127.0.0.1" {
				t.Errorf("record %+v", r)
			}
			if (tc.outcome == outcomeNoCertificate) != strings.Contains(r.Reason, "no client certificate") {
				t.Errorf("reason %q", r.Reason)
			}
		})
	}
	// A connection that hangs up before its handshake (a port probe) is
	// counted, not audited.
	before := count(e.ep, outcomeHandshakeFailed)
	conn, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(e.url, "https://"), Path))
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("not TLS\r\n\r\n"))
	conn.Close()
	for i := 0; i < 200 && count(e.ep, outcomeHandshakeFailed) == before; i++ {
		time.Sleep(5 * time.Millisecond)
	}
	if got := count(e.ep, outcomeHandshakeFailed); got != before+1 {
		t.Errorf("handshake_failed counter %v → %v", before, got)
	}
	e.auditor.mu.Lock()
	if len(e.auditor.recs) != 0 {
		t.Errorf("a port probe was audited: %+v", e.auditor.recs)
	}
	e.auditor.mu.Unlock()
	// TLS below 1.2 is refused.
	c := e.client(e.pki.clientCert(vsphereID))
	c.Transport.(*http.Transport).TLSClientConfig.MaxVersion = tls.VersionTLS11
	if _, err := c.PostForm(e.url, exchangeForm(aliceToken, "vsphere")); err == nil {
		t.Error("TLS 1.1 accepted")
	}
}

func TestRefusals(t *testing.T) {
	e := startEndpoint(t)
	form := func(mod func(url.Values)) url.Values {
		f := exchangeForm(aliceToken, "vsphere")
		if mod != nil {
			mod(f)
		}
		return f
	}
	for _, tc := range []struct {
		name     string
		cert     []string
		form     url.Values
		status   int
		code     string
		outcome  string
		reason   string
		workload string
	}{
		{"SPIFFE ID outside the trust domain", []string{"spiffe://evil.org/ns/mcp/sa/vsphere"}, form(nil), 401, "invalid_client", outcomeInvalidClient, "outside the trust domain", "spiffe://evil.org/ns/mcp/sa/vsphere"},
		{"SPIFFE ID not a configured client", []string{"spiffe://example.org/ns/mcp/sa/other"}, form(nil), 401, "invalid_client", outcomeInvalidClient, "not among the configured clients", "spiffe://example.org/ns/mcp/sa/other"},
		{"no URI SAN", nil, form(nil), 401, "invalid_client", outcomeInvalidClient, "0 URI SANs", ""},
		{"two URI SANs", []string{vsphereID, k8sID}, form(nil), 401, "invalid_client", outcomeInvalidClient, "2 URI SANs", ""},
		{"not a SPIFFE URI", []string{"https://example.org/ns/mcp/sa/vsphere"}, form(nil), 401, "invalid_client", outcomeInvalidClient, "not a spiffe:// URI", ""},
		{"SPIFFE ID with a dot segment", []string{"spiffe://example.org/ns/../sa/vsphere"}, form(nil), 401, "invalid_client", outcomeInvalidClient, "dot segment", ""},
		{"allowed ID asks for another backend's token", []string{vsphereID}, form(func(f url.Values) { f.Set("audience", "k8s") }), 400, "invalid_target", outcomeForbiddenAudience, "not allowed tokens for this backend", vsphereID},
		{"unknown backend", []string{vsphereID}, form(func(f url.Values) { f.Set("audience", "nope") }), 400, "invalid_target", outcomeForbiddenAudience, "not allowed tokens for this backend", vsphereID},
		{"subject token of another backend's user", []string{vsphereID}, form(func(f url.Values) { f.Set("subject_token", bobK8sToken) }), 400, "invalid_request", outcomeInvalidSubject, "issued for another resource", vsphereID},
		{"expired subject token", []string{vsphereID}, form(func(f url.Values) { f.Set("subject_token", "expired") }), 400, "invalid_request", outcomeInvalidSubject, "expired", vsphereID},
		{"malformed subject token", []string{vsphereID}, form(func(f url.Values) { f.Set("subject_token", "not.a.jwt") }), 400, "invalid_request", outcomeInvalidSubject, "malformed", vsphereID},
		{"revoked grant", []string{vsphereID}, form(func(f url.Values) { f.Set("subject_token", revokedToken) }), 400, "invalid_request", outcomeInvalidSubject, "grant revoked or expired", vsphereID},
		{"upstream session ended", []string{vsphereID}, form(func(f url.Values) { f.Set("subject_token", reauthToken) }), 400, "invalid_grant", outcomeReauth, "refused the refresh", vsphereID},
		{"key set unavailable", []string{vsphereID}, form(func(f url.Values) { f.Set("subject_token", "keys-down") }), 503, "temporarily_unavailable", outcomeUnavailable, "token verification unavailable", vsphereID},
		{"policy grants the user nothing on the backend", []string{vsphereID}, form(func(f url.Values) { f.Set("subject_token", "mallory-token") }), 400, "invalid_request", outcomePolicyDenied, "policy grants the user nothing", vsphereID},
		{"store unavailable", []string{vsphereID}, form(func(f url.Values) { f.Set("subject_token", "store-down") }), 503, "temporarily_unavailable", outcomeUnavailable, "upstream token unavailable", vsphereID},
		{"wrong grant type", []string{vsphereID}, form(func(f url.Values) { f.Set("grant_type", "client_credentials") }), 400, "unsupported_grant_type", outcomeInvalidRequest, "only urn", vsphereID},
		{"missing subject token", []string{vsphereID}, form(func(f url.Values) { f.Del("subject_token") }), 400, "invalid_request", outcomeInvalidRequest, "subject_token is required", vsphereID},
		{"wrong subject token type", []string{vsphereID}, form(func(f url.Values) { f.Set("subject_token_type", "urn:ietf:params:oauth:token-type:id_token") }), 400, "invalid_request", outcomeInvalidRequest, "subject_token_type", vsphereID},
		{"missing audience", []string{vsphereID}, form(func(f url.Values) { f.Del("audience") }), 400, "invalid_request", outcomeInvalidRequest, "audience is required", vsphereID},
		{"two audiences", []string{vsphereID}, form(func(f url.Values) { f.Add("audience", "k8s") }), 400, "invalid_request", outcomeInvalidRequest, "audience must appear once", vsphereID},
		{"actor token", []string{vsphereID}, form(func(f url.Values) { f.Set("actor_token", "x") }), 400, "invalid_request", outcomeInvalidRequest, "actor tokens", vsphereID},
		{"scope", []string{vsphereID}, form(func(f url.Values) { f.Set("scope", "admin") }), 400, "invalid_scope", outcomeInvalidRequest, "scope cannot be narrowed", vsphereID},
		{"other requested token type", []string{vsphereID}, form(func(f url.Values) { f.Set("requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token") }), 400, "invalid_request", outcomeInvalidRequest, "requested_token_type", vsphereID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := count(e.ep, tc.outcome)
			status, m, _ := post(t, e.client(e.pki.clientCert(tc.cert...)), e.url, tc.form)
			if status != tc.status || m["error"] != tc.code {
				t.Fatalf("%d %v, want %d %s", status, m, tc.status, tc.code)
			}
			if _, ok := m["access_token"]; ok {
				t.Fatal("refusal carries a token")
			}
			desc, _ := m["error_description"].(string)
			if strings.Contains(desc, "store down") || strings.Contains(desc, "tsid") {
				t.Errorf("description leaks internals: %q", desc)
			}
			r := e.auditor.last(t)
			if r.Event != audit.EventInternalTokenRefused || r.Result != audit.ResultError || r.Status != tc.status ||
				!strings.Contains(r.Reason, tc.reason) || r.Workload != tc.workload {
				t.Errorf("record %+v", r)
			}
			if got := count(e.ep, tc.outcome); got != before+1 {
				t.Errorf("%s counter %v → %v", tc.outcome, before, got)
			}
		})
	}
}

func TestRequestShape(t *testing.T) {
	e := startEndpoint(t)
	c := e.client(e.pki.clientCert(vsphereID))
	do := func(method, u, ctype, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, u, strings.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	good := exchangeForm(aliceToken, "vsphere").Encode()
	if s, m := do(http.MethodGet, e.url, "", ""); s != http.StatusMethodNotAllowed || m["error"] != "invalid_request" {
		t.Errorf("GET: %d %v", s, m)
	}
	req, _ := http.NewRequest(http.MethodPut, e.url, nil)
	if resp, err := c.Do(req); err != nil || resp.Header.Get("Allow") != http.MethodPost {
		t.Errorf("PUT: %v %v", err, resp.Header)
	} else {
		resp.Body.Close()
	}
	if s, m := do(http.MethodPost, e.url+"?"+good, "application/x-www-form-urlencoded", ""); s != 400 || m["error"] != "invalid_request" {
		t.Errorf("query string: %d %v", s, m)
	}
	if s, _ := do(http.MethodPost, e.url, "application/json", `{"grant_type":"x"}`); s != 400 {
		t.Errorf("JSON body: %d", s)
	}
	if s, _ := do(http.MethodPost, e.url, "application/x-www-form-urlencoded", good+"&pad="+strings.Repeat("x", maxBodyBytes)); s != http.StatusRequestEntityTooLarge {
		t.Errorf("huge body: %d", s)
	}
	if s, _ := do(http.MethodPost, strings.TrimSuffix(e.url, Path)+"/token", "application/x-www-form-urlencoded", good); s != http.StatusNotFound {
		t.Errorf("other path: %d", s)
	}
}

// TestCertificateExpiredOnOpenConnection: a kept-alive connection whose
// client certificate expired since its handshake is refused and closed.
func TestCertificateExpiredOnOpenConnection(t *testing.T) {
	e := startEndpoint(t)
	c := e.client(e.pki.clientCert(vsphereID)) // valid for an hour
	if status, m, _ := post(t, c, e.url, exchangeForm(aliceToken, "vsphere")); status != http.StatusOK {
		t.Fatalf("%d %v", status, m)
	}
	e.ep.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	resp, err := c.PostForm(e.url, exchangeForm(aliceToken, "vsphere"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || m["error"] != "invalid_client" || !resp.Close {
		t.Fatalf("%d %v, connection closed: %v", resp.StatusCode, m, resp.Close)
	}
	if r := e.auditor.last(t); !strings.Contains(r.Reason, "expired since the TLS handshake") {
		t.Errorf("record %+v", r)
	}
}

// TestCARemovedOnOpenConnection: once client_ca_file no longer holds the
// CA that issued a connection's certificate, the kept-alive connection is
// refused too.
func TestCARemovedOnOpenConnection(t *testing.T) {
	e := startEndpoint(t)
	c := e.client(e.pki.clientCert(vsphereID))
	if status, m, _ := post(t, c, e.url, exchangeForm(aliceToken, "vsphere")); status != http.StatusOK {
		t.Fatalf("%d %v", status, m)
	}
	other, err := NewCA("replacement CA", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.pki.cfg.ClientCAFile, other.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Minute)
	os.Chtimes(e.pki.cfg.ClientCAFile, future, future)
	e.ep.files.mu.Lock()
	e.ep.files.now = func() time.Time { return time.Now().Add(reloadInterval) }
	e.ep.files.mu.Unlock()
	status, m, _ := post(t, c, e.url, exchangeForm(aliceToken, "vsphere"))
	if status != http.StatusUnauthorized || m["error"] != "invalid_client" {
		t.Fatalf("%d %v", status, m)
	}
	if r := e.auditor.last(t); !strings.Contains(r.Reason, "client CA removed") {
		t.Errorf("record %+v", r)
	}
}

// TestSuccessNotAuditedNotHandedOut: a retrieval that cannot be recorded
// hands nothing out.
func TestSuccessNotAuditedNotHandedOut(t *testing.T) {
	e := startEndpoint(t)
	e.auditor.fail = true
	status, m, _ := post(t, e.client(e.pki.clientCert(vsphereID)), e.url, exchangeForm(aliceToken, "vsphere"))
	if status != http.StatusServiceUnavailable || m["access_token"] != nil || m["error"] != "temporarily_unavailable" {
		t.Fatalf("%d %v", status, m)
	}
}

func TestNewRefusesBrokenFiles(t *testing.T) {
	p := newPKI(t)
	base := Config{Listen: "127.0.0.1:0", TLS: p.cfg, TrustDomain: testTD, Clients: []ClientConfig{{SPIFFEID: vsphereID, Backends: []string{"vsphere"}}}}
	deps := Deps{AuthServer: &fakeAS{}, Auditor: &recAuditor{}, Backends: map[string]string{"vsphere": vsphereRes}}
	if _, err := New(base, deps); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	empty := filepath.Join(t.TempDir(), "empty.pem")
	os.WriteFile(empty, []byte("not pem"), 0o600)
	for name, mod := range map[string]func(*Config){
		"missing CA file":     func(c *Config) { c.TLS.ClientCAFile = filepath.Join(t.TempDir(), "nope") },
		"CA file without PEM": func(c *Config) { c.TLS.ClientCAFile = empty },
		"missing key":         func(c *Config) { c.TLS.KeyFile = filepath.Join(t.TempDir(), "nope") },
		"key of another cert": func(c *Config) { c.TLS.KeyFile = empty },
		"unknown backend":     func(c *Config) { c.Clients[0].Backends = []string{"k8s"} },
	} {
		c := base
		c.Clients = []ClientConfig{{SPIFFEID: vsphereID, Backends: []string{"vsphere"}}}
		mod(&c)
		if _, err := New(c, deps); err == nil {
			t.Errorf("%s: started", name)
		}
	}
}

// TestCertificatesReloaded: renewed certificate files (cert-manager) are
// served without a restart.
func TestCertificatesReloaded(t *testing.T) {
	p := newPKI(t)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	f, err := newTLSFiles(p.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), clock)
	if err != nil {
		t.Fatal(err)
	}
	first := f.get().Certificates[0].Leaf.SerialNumber
	next, err := p.ca.Issue(Leaf{CommonName: "internal", Hosts: []string{"127.0.0.1"}, Server: true}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(p.cfg.CertFile, next.CertPEM, 0o600)
	os.WriteFile(p.cfg.KeyFile, next.KeyPEM, 0o600)
	future := time.Now().Add(time.Second)
	os.Chtimes(p.cfg.CertFile, future, future)
	if got := f.get().Certificates[0].Leaf.SerialNumber; got.Cmp(first) != 0 {
		t.Error("reloaded before the check interval")
	}
	mu.Lock()
	now = now.Add(reloadInterval)
	mu.Unlock()
	if got := f.get().Certificates[0].Leaf.SerialNumber; got.Cmp(next.Cert.SerialNumber) != 0 {
		t.Error("renewed certificate not picked up")
	}
	// A broken renewal keeps the last good configuration.
	os.WriteFile(p.cfg.KeyFile, []byte("garbage"), 0o600)
	os.Chtimes(p.cfg.KeyFile, future.Add(time.Second), future.Add(time.Second))
	mu.Lock()
	now = now.Add(reloadInterval)
	mu.Unlock()
	if got := f.get().Certificates[0].Leaf.SerialNumber; got.Cmp(next.Cert.SerialNumber) != 0 {
		t.Error("broken files replaced the working configuration")
	}
}
