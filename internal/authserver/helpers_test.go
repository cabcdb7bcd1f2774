package authserver

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/crypto/bcrypt"

	"github.com/mcpgate/mcpgate/internal/idp"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/memory"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

// testSigner is a minimal in-memory Signer (ES256).
type testSigner struct {
	mu   sync.Mutex
	key  *ecdsa.PrivateKey
	kid  string
	pubs []jose.JSONWebKey
}

func newTestSigner(t testing.TB) *testSigner {
	s := &testSigner{}
	s.rotate(t)
	return s
}

func (s *testSigner) rotate(t testing.TB) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.key, s.kid = k, rand.Text()[:8]
	s.pubs = append(s.pubs, jose.JSONWebKey{Key: &k.PublicKey, KeyID: s.kid, Algorithm: "ES256", Use: "sig"})
}

func (s *testSigner) SignJWT(_ context.Context, typ string, claims any) (string, error) {
	s.mu.Lock()
	key, kid := s.key, s.kid
	s.mu.Unlock()
	opts := (&jose.SignerOptions{}).WithHeader("kid", kid)
	if typ != "" { // "" leaves typ out
		opts = opts.WithType(jose.ContentType(typ))
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, opts)
	if err != nil {
		return "", err
	}
	return jwt.Signed(sig).Claims(claims).Serialize()
}

func (s *testSigner) JWKS(context.Context) (*jose.JSONWebKeySet, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &jose.JSONWebKeySet{Keys: append([]jose.JSONWebKey(nil), s.pubs...)}, nil
}

// testSealer is AES-256-GCM with a random key.
type testSealer struct{ aead cipher.AEAD }

func newTestSealer(t testing.TB) *testSealer {
	key := make([]byte, 32)
	rand.Read(key)
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return &testSealer{a}
}

func (s *testSealer) Seal(p, ad []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, p, ad), nil
}

func (s *testSealer) Open(c, ad []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(c) < n {
		return nil, errors.New("short")
	}
	return s.aead.Open(nil, c[:n], c[n:], ad)
}

// clock is a settable test clock; env's starts at the real time (the
// memory store expires objects by the real clock).
type clock = testutil.Clock

type env struct {
	t      testing.TB
	srv    *Server
	ts     *httptest.Server
	st     store.Store
	clock  *clock
	signer *testSigner
	iss    string
	// handler is what the test server serves (swappable).
	handler atomic.Pointer[http.Handler]
}

const (
	testUser     = "alice"
	testPassword = "correct horse battery staple"
)

var testUserHash = func() string {
	h, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
}()

type envOpt struct {
	cfg       func(*Config)
	deps      func(*Deps)
	tls       bool
	st        store.Store
	connector idp.Connector
}

func newEnv(t testing.TB, o envOpt) *env {
	t.Helper()
	e := &env{t: t, clock: testutil.NewClock(time.Now()), signer: newTestSigner(t)}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*e.handler.Load()).ServeHTTP(w, r) })
	if o.tls {
		e.ts = httptest.NewTLSServer(handler)
	} else {
		e.ts = httptest.NewServer(handler)
	}
	t.Cleanup(e.ts.Close)
	e.iss = e.ts.URL
	e.st = o.st
	if e.st == nil {
		e.st = memory.New()
	}
	cfg := Config{
		PublicURL: e.iss,
		Scopes:    []string{"mcp:read", "mcp:write"},
		Upstream: idp.Config{Type: idp.TypeStatic, Users: []idp.User{
			{Username: testUser, PasswordHash: testUserHash, Email: "alice@example.com", Groups: []string{"admins"}},
		}},
	}
	// Per-address limits off: every test browser is 127.0.0.1 (limits_test
	// turns them on).
	off := false
	cfg.RateLimit.Enabled = &off
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	cfg.SetDefaults()
	deps := Deps{
		Store:     e.st,
		Signer:    e.signer,
		Sealer:    newTestSealer(t),
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Clock:     e.clock.Now,
		Connector: o.connector,
	}
	if o.deps != nil {
		o.deps(&deps)
	}
	srv, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	h := srv.Handler()
	e.handler.Store(&h)
	return e
}

// browser is a user agent with a cookie jar that does not follow redirects.
type browser struct {
	t testing.TB
	c *http.Client
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	c := e.ts.Client()
	return &browser{t: e.t, c: &http.Client{
		Transport:     c.Transport,
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type page struct {
	status int
	header http.Header
	body   string
	loc    *url.URL
}

func (b *browser) do(req *http.Request) *page {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	p := &page{status: resp.StatusCode, header: resp.Header, body: string(body)}
	if l := resp.Header.Get("Location"); l != "" {
		p.loc, _ = resp.Request.URL.Parse(l)
	}
	return p
}

func (b *browser) get(u string) *page {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return b.do(req)
}

func (b *browser) post(u string, form url.Values) *page {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var hiddenRE = regexp.MustCompile(`name="(req|csrf)" value="([^"]+)"`)

func (p *page) hidden() url.Values {
	v := url.Values{}
	for _, m := range hiddenRE.FindAllStringSubmatch(p.body, -1) {
		v.Set(m[1], m[2])
	}
	return v
}

// regClient is a registered client as the tests use it.
type regClient struct {
	ID, Secret, Redirect string
}

func (e *env) post(path string, form url.Values, mod func(*http.Request)) (int, map[string]any, http.Header) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.iss+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if mod != nil {
		mod(req)
	}
	return e.doJSON(req)
}

func (e *env) doJSON(req *http.Request) (int, map[string]any, http.Header) {
	e.t.Helper()
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	body, _ := io.ReadAll(resp.Body)
	if len(body) > 0 {
		if err := json.Unmarshal(body, &m); err != nil {
			e.t.Fatalf("%s: non-JSON body %q", req.URL.Path, body)
		}
	}
	return resp.StatusCode, m, resp.Header
}

func (e *env) registerRaw(meta map[string]any, mod func(*http.Request)) (int, map[string]any) {
	e.t.Helper()
	b, _ := json.Marshal(meta)
	req, _ := http.NewRequest(http.MethodPost, e.iss+"/register", strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	if mod != nil {
		mod(req)
	}
	st, m, _ := e.doJSON(req)
	return st, m
}

// registered numbers the clients register makes: identical public
// registrations would share one client (TestRegistrationReusesIdenticalPublicClient).
var registered atomic.Int64

func (e *env) register(redirect string, public bool) regClient {
	e.t.Helper()
	meta := map[string]any{"client_name": fmt.Sprintf("Test Client %d", registered.Add(1)), "redirect_uris": []string{redirect}, "grant_types": []string{"authorization_code", "refresh_token"}}
	if public {
		meta["token_endpoint_auth_method"] = "none"
	}
	st, m := e.registerRaw(meta, nil)
	if st != http.StatusCreated {
		e.t.Fatalf("register: %d %v", st, m)
	}
	c := regClient{ID: m["client_id"].(string), Redirect: redirect}
	if s, ok := m["client_secret"].(string); ok {
		c.Secret = s
	}
	return c
}

const testVerifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-verifier-0123"

func authorizeParams(c regClient) url.Values {
	return url.Values{
		"response_type":         {"code"},
		"client_id":             {c.ID},
		"redirect_uri":          {c.Redirect},
		"state":                 {"xyz-state"},
		"code_challenge":        {pkceS256(testVerifier)},
		"code_challenge_method": {"S256"},
		"scope":                 {"mcp:read"},
	}
}

// login drives /authorize → login → consent with the static connector and
// returns the final redirect's query.
func (e *env) login(b *browser, params url.Values) url.Values {
	e.t.Helper()
	return e.loginAs(b, params, testUser, testPassword)
}

// signIn opens the login page that p redirects to and submits user and
// password.
func (e *env) signIn(b *browser, p *page, user, password string) *page {
	e.t.Helper()
	p = b.get(p.loc.String())
	f := p.hidden()
	f.Set("username", user)
	f.Set("password", password)
	return b.post(e.iss+"/login", f)
}

// consentPage signs testUser in on b for an authorization request of c and
// opens the consent page.
func (e *env) consentPage(b *browser, c regClient) *page {
	e.t.Helper()
	p := b.get(e.iss + "/authorize?" + authorizeParams(c).Encode())
	if p.loc == nil {
		e.t.Fatalf("authorize: %d\n%s", p.status, p.body)
	}
	if p = e.signIn(b, p, testUser, testPassword); p.loc == nil {
		e.t.Fatalf("login: %d\n%s", p.status, p.body)
	}
	return b.get(p.loc.String())
}

// decide opens the consent page that p redirects to and submits decision
// (approve or deny).
func (e *env) decide(b *browser, p *page, decision string) *page {
	e.t.Helper()
	p = b.get(p.loc.String())
	f := p.hidden()
	f.Set("decision", decision)
	return b.post(e.iss+"/consent", f)
}

// loginAs is login as another built-in user.
func (e *env) loginAs(b *browser, params url.Values, user, password string) url.Values {
	e.t.Helper()
	return e.walk(b, params, user, password, nil)
}

// walk follows an authorization request through login (as user) and
// consent (approved; seen, if set, gets each consent page first) and
// returns the query of the redirect back to the client.
func (e *env) walk(b *browser, params url.Values, user, password string, seen func(*page)) url.Values {
	e.t.Helper()
	p := b.get(e.iss + "/authorize?" + params.Encode())
	for range 6 {
		if p.status != http.StatusSeeOther && p.status != http.StatusFound {
			e.t.Fatalf("flow stopped at %d: %s", p.status, p.body)
		}
		switch {
		case strings.HasPrefix(p.loc.String(), e.iss+"/login"):
			p = e.signIn(b, p, user, password)
		case strings.HasPrefix(p.loc.String(), e.iss+"/consent"):
			p = b.get(p.loc.String())
			if seen != nil {
				seen(p)
			}
			f := p.hidden()
			f.Set("decision", "approve")
			p = b.post(e.iss+"/consent", f)
		default:
			return p.loc.Query()
		}
	}
	e.t.Fatal("flow did not finish")
	return nil
}

func (e *env) code(c regClient) string {
	e.t.Helper()
	q := e.login(e.browser(), authorizeParams(c))
	if q.Get("code") == "" {
		e.t.Fatalf("no code: %v", q)
	}
	return q.Get("code")
}

func (e *env) exchange(c regClient, code string, extra url.Values) (int, map[string]any) {
	e.t.Helper()
	f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {c.Redirect}, "code_verifier": {testVerifier}}
	for k, v := range extra {
		f[k] = v
	}
	return e.tokenRequest(c, f)
}

// tokenRequest authenticates as c (Basic for confidential clients).
func (e *env) tokenRequest(c regClient, f url.Values) (int, map[string]any) {
	e.t.Helper()
	if c.Secret == "" {
		f.Set("client_id", c.ID)
	}
	st, m, _ := e.post("/token", f, func(r *http.Request) {
		if c.Secret != "" {
			r.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
		}
	})
	return st, m
}

func (e *env) refresh(c regClient, rt string) (int, map[string]any) {
	e.t.Helper()
	return e.tokenRequest(c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
}

// tokens runs a whole flow and returns the token response.
func (e *env) tokens(c regClient) map[string]any {
	e.t.Helper()
	st, m := e.exchange(c, e.code(c), nil)
	if st != http.StatusOK {
		e.t.Fatalf("token: %d %v", st, m)
	}
	return m
}

// authn calls Authenticate on a request to path with the bearer token.
func (e *env) authn(path, tok string) error {
	req := httptest.NewRequest(http.MethodPost, "http://gw.example"+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	_, err := e.srv.Authenticate(req)
	return err
}

func (e *env) doJSONGet(path string) (int, map[string]any, http.Header) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.iss+path, nil)
	return e.doJSON(req)
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }
