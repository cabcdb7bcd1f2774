package authserver

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/netguard"
)

func TestRegisterResponse(t *testing.T) {
	e := newEnv(t, envOpt{})
	st, m := e.registerRaw(map[string]any{
		"client_name":   "My Client",
		"redirect_uris": []string{"http://localhost:33418/oauth/callback"},
		"scope":         "mcp:read bogus offline_access",
	}, nil)
	if st != http.StatusCreated {
		t.Fatalf("%d %v", st, m)
	}
	for _, k := range []string{"client_id", "client_secret", "client_id_issued_at", "client_secret_expires_at"} {
		if _, ok := m[k]; !ok {
			t.Errorf("response lacks %s: %v", k, m)
		}
	}
	want := map[string]any{
		"redirect_uris":              []any{"http://localhost:33418/oauth/callback"},
		"token_endpoint_auth_method": "client_secret_basic", // RFC 7591 default
		"grant_types":                []any{"authorization_code", "refresh_token"},
		"response_types":             []any{"code"},
		"client_name":                "My Client",
		"scope":                      "mcp:read offline_access",
		"application_type":           "native",
	}
	for k, v := range want {
		if d := cmp.Diff(v, m[k]); d != "" {
			t.Errorf("%s: %s", k, d)
		}
	}
	// A public client gets no secret.
	st, m = e.registerRaw(map[string]any{"redirect_uris": []string{"https://app.example.com/cb"}, "token_endpoint_auth_method": "none"}, nil)
	if st != http.StatusCreated || m["client_secret"] != nil || m["application_type"] != "web" {
		t.Errorf("public: %d %v", st, m)
	}
	// The secret is not stored in clear.
	c, err := e.st.GetClient(t.Context(), m["client_id"].(string))
	if err != nil || c.SecretHash != "" || c.Kind != "dynamic" || c.RegisteredIP != "127.0.0.1" {
		t.Errorf("stored public client: %+v %v", c, err)
	}
}

func TestRegisterRejects(t *testing.T) {
	e := newEnv(t, envOpt{cfg: func(c *Config) { c.Registration.MaxClientsPerIP = 1000 }})
	tests := map[string]struct {
		meta map[string]any
		code string
	}{
		"no redirect":         {map[string]any{"client_name": "x"}, "invalid_redirect_uri"},
		"http non-loopback":   {map[string]any{"redirect_uris": []string{"http://example.com/cb"}}, "invalid_redirect_uri"},
		"fragment":            {map[string]any{"redirect_uris": []string{"https://example.com/cb#x"}}, "invalid_redirect_uri"},
		"wildcard":            {map[string]any{"redirect_uris": []string{"https://*.example.com/cb"}}, "invalid_redirect_uri"},
		"javascript":          {map[string]any{"redirect_uris": []string{"javascript:alert(1)"}}, "invalid_redirect_uri"},
		"data":                {map[string]any{"redirect_uris": []string{"data:text/html,x"}}, "invalid_redirect_uri"},
		"untrusted scheme":    {map[string]any{"redirect_uris": []string{"myapp://cb"}}, "invalid_redirect_uri"},
		"relative":            {map[string]any{"redirect_uris": []string{"/cb"}}, "invalid_redirect_uri"},
		"userinfo":            {map[string]any{"redirect_uris": []string{"https://u:p@example.com/cb"}}, "invalid_redirect_uri"},
		"bad auth method":     {map[string]any{"redirect_uris": []string{"https://example.com/cb"}, "token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata"},
		"client credentials":  {map[string]any{"redirect_uris": []string{"https://example.com/cb"}, "grant_types": []string{"client_credentials"}}, "invalid_client_metadata"},
		"implicit":            {map[string]any{"redirect_uris": []string{"https://example.com/cb"}, "response_types": []string{"token"}}, "invalid_client_metadata"},
		"bad app type":        {map[string]any{"redirect_uris": []string{"https://example.com/cb"}, "application_type": "desktop"}, "invalid_client_metadata"},
		"redirect not string": {map[string]any{"redirect_uris": "https://example.com/cb"}, "invalid_client_metadata"},
	}
	for name, tc := range tests {
		st, m := e.registerRaw(tc.meta, nil)
		if st != http.StatusBadRequest || m["error"] != tc.code {
			t.Errorf("%s: %d %v, want 400 %s", name, st, m, tc.code)
		}
	}
	// Accepted: trusted and reverse-domain private-use schemes, loopback.
	for _, u := range []string{"cursor://anysphere.cursor-mcp/oauth/callback", "com.example.app:/oauth2redirect", "http://[::1]/cb", "vscode://vscode.github-authentication/did-authenticate"} {
		if st, m := e.registerRaw(map[string]any{"redirect_uris": []string{u}}, nil); st != http.StatusCreated {
			t.Errorf("%s: %d %v", u, st, m)
		}
	}
	// Not JSON.
	req, _ := http.NewRequest(http.MethodPost, e.iss+"/register", strings.NewReader("redirect_uris=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if st, m, _ := e.doJSON(req); st != 400 || m["error"] != "invalid_client_metadata" {
		t.Errorf("form body: %d %v", st, m)
	}
}

func TestRegistrationModes(t *testing.T) {
	const token = "initial-access-token-0123456789"
	e := newEnv(t, envOpt{cfg: func(c *Config) { c.Registration.Mode = RegistrationToken; c.Registration.Token = token }})
	meta := map[string]any{"redirect_uris": []string{"https://example.com/cb"}}
	for name, auth := range map[string]string{"none": "", "wrong": "Bearer nope", "prefix": "Bearer " + token[:10], "longer": "Bearer " + token + "x", "basic": "Basic " + token} {
		st, m := e.registerRaw(meta, func(r *http.Request) {
			if auth != "" {
				r.Header.Set("Authorization", auth)
			}
		})
		if st != http.StatusUnauthorized || m["error"] != "invalid_token" {
			t.Errorf("%s token: %d %v", name, st, m)
		}
	}
	if st, m := e.registerRaw(meta, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }); st != http.StatusCreated {
		t.Errorf("good token: %d %v", st, m)
	}

	closed := newEnv(t, envOpt{cfg: func(c *Config) { c.Registration.Mode = RegistrationClosed }})
	if st, _ := closed.registerRaw(meta, nil); st != http.StatusForbidden {
		t.Errorf("closed: %d", st)
	}
	_, md, _ := closed.doJSONGet("/.well-known/oauth-authorization-server")
	if _, ok := md["registration_endpoint"]; ok {
		t.Error("closed registration still advertised")
	}
}

func TestRegistrationPerIPCap(t *testing.T) {
	var ip atomic.Value
	ip.Store("203.0.113.7")
	e := newEnv(t, envOpt{
		cfg:  func(c *Config) { c.Registration.MaxClientsPerIP = 3 },
		deps: func(d *Deps) { d.ClientIP = func(*http.Request) string { return ip.Load().(string) } },
	})
	meta := map[string]any{"redirect_uris": []string{"https://example.com/cb"}}
	for i := range 3 {
		if st, m := e.registerRaw(meta, nil); st != http.StatusCreated {
			t.Fatalf("registration %d: %d %v", i, st, m)
		}
	}
	if st, m := e.registerRaw(meta, nil); st != http.StatusTooManyRequests {
		t.Errorf("4th registration: %d %v", st, m)
	}
	ip.Store("203.0.113.8")
	if st, _ := e.registerRaw(meta, nil); st != http.StatusCreated {
		t.Errorf("other IP: %d", st)
	}
	// The window is measured with our clock against CreatedAt.
	ip.Store("203.0.113.7")
	e.clock.Add(61 * time.Minute)
	if st, _ := e.registerRaw(meta, nil); st != http.StatusCreated {
		t.Errorf("after the window: %d", st)
	}
}

// TestRegistrationRetryAfter: the 429 of the per-IP cap says when a slot
// frees, the oldest counted registration leaving the window, not a constant.
func TestRegistrationRetryAfter(t *testing.T) {
	e := newEnv(t, envOpt{cfg: func(c *Config) { c.Registration.MaxClientsPerIP = 3 }}) // window 1h
	register := func() (int, string) {
		b, _ := json.Marshal(map[string]any{"redirect_uris": []string{"https://example.com/cb"}})
		req, _ := http.NewRequest(http.MethodPost, e.iss+"/register", strings.NewReader(string(b)))
		req.Header.Set("Content-Type", "application/json")
		st, _, h := e.doJSON(req)
		return st, h.Get("Retry-After")
	}
	for i := range 3 { // at 0, 10m, 20m
		if st, _ := register(); st != http.StatusCreated {
			t.Fatalf("registration %d: %d", i, st)
		}
		e.clock.Add(10 * time.Minute)
	}
	e.clock.Add(-5 * time.Minute) // 25m: the first slot frees at 60m
	if st, ra := register(); st != http.StatusTooManyRequests || ra != "2100" {
		t.Fatalf("at 25m: %d Retry-After %q, want 429 2100", st, ra)
	}
	e.clock.Add(35*time.Minute + time.Second) // 60m1s: the first left the window
	if st, ra := register(); st != http.StatusCreated {
		t.Fatalf("after Retry-After: %d (Retry-After %q)", st, ra)
	}
	// Full again: the next slot frees when the 10m registration leaves, at 70m.
	if st, ra := register(); st != http.StatusTooManyRequests || ra != "599" {
		t.Fatalf("at 60m1s: %d Retry-After %q, want 429 599", st, ra)
	}
}

// cimdServer serves client metadata documents over TLS.
type cimdServer struct {
	ts      *httptest.Server
	fetches atomic.Int32
	docs    map[string]func(url string) (map[string]any, string) // path → document, Cache-Control
}

func newCIMDServer(t *testing.T) *cimdServer {
	c := &cimdServer{docs: map[string]func(string) (map[string]any, string){}}
	c.ts = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.fetches.Add(1)
		f, ok := c.docs[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		doc, cc := f(c.ts.URL + r.URL.Path)
		if cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(doc)
	}))
	c.ts.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes that tests make fail on purpose
	c.ts.StartTLS()
	t.Cleanup(c.ts.Close)
	return c
}

func TestCIMD(t *testing.T) {
	cs := newCIMDServer(t)
	e := newEnv(t, envOpt{
		cfg:  func(c *Config) { c.CIMD.AllowPrivate = true },
		deps: func(d *Deps) { d.HTTPClient = cs.ts.Client() },
	})
	good := func(u string) (map[string]any, string) {
		return map[string]any{"client_id": u, "client_name": "Doc Client", "redirect_uris": []string{"http://127.0.0.1:7777/cb"}}, "max-age=60"
	}
	cs.docs["/good.json"] = good
	cs.docs["/mismatch.json"] = func(string) (map[string]any, string) {
		return map[string]any{"client_id": "https://evil.example.com/client.json", "client_name": "x", "redirect_uris": []string{"http://127.0.0.1:7777/cb"}}, ""
	}
	cs.docs["/secret.json"] = func(u string) (map[string]any, string) {
		return map[string]any{"client_id": u, "client_name": "x", "client_secret": "s", "redirect_uris": []string{"http://127.0.0.1:7777/cb"}}, ""
	}
	cs.docs["/badredirect.json"] = func(u string) (map[string]any, string) {
		return map[string]any{"client_id": u, "client_name": "x", "redirect_uris": []string{"http://evil.example.com/cb"}}, ""
	}
	cs.docs["/huge.json"] = func(u string) (map[string]any, string) {
		return map[string]any{"client_id": u, "client_name": strings.Repeat("x", 20<<10), "redirect_uris": []string{"http://127.0.0.1:7777/cb"}}, ""
	}

	// Happy path: the URL is the client_id; the document's redirect URI applies.
	c := regClient{ID: cs.ts.URL + "/good.json", Redirect: "http://127.0.0.1:7777/cb"}
	b := e.browser()
	p := e.consentPage(b, c)
	if !strings.Contains(p.body, "Doc Client") || !strings.Contains(p.body, c.ID) || !strings.Contains(p.body, "127.0.0.1:7777") ||
		!strings.Contains(p.body, "localhost") || !strings.Contains(p.body, "its name is not verified") {
		t.Errorf("consent page for a CIMD client lacks name, id, host, loopback warning or unverified mark:\n%s", p.body)
	}
	f := p.hidden()
	f.Set("decision", "approve")
	p = b.post(e.iss+"/consent", f)
	if st, m := e.exchange(c, p.loc.Query().Get("code"), nil); st != http.StatusOK {
		t.Fatalf("CIMD token: %d %v", st, m)
	}
	if n := cs.fetches.Load(); n != 1 {
		t.Errorf("document fetched %d times, want 1 (max-age=60 honoured)", n)
	}
	e.clock.Add(61 * time.Second)
	e.srv.cimd.get(t.Context(), c.ID)
	if n := cs.fetches.Load(); n != 2 {
		t.Errorf("after max-age: %d fetches, want 2", n)
	}

	bad := []struct{ name, id, redirect string }{
		{"client_id mismatch", cs.ts.URL + "/mismatch.json", "http://127.0.0.1:7777/cb"},
		{"secret in document", cs.ts.URL + "/secret.json", "http://127.0.0.1:7777/cb"},
		{"bad redirect in document", cs.ts.URL + "/badredirect.json", "http://evil.example.com/cb"},
		{"too large", cs.ts.URL + "/huge.json", "http://127.0.0.1:7777/cb"},
		{"404", cs.ts.URL + "/missing.json", "http://127.0.0.1:7777/cb"},
		{"http URL", strings.Replace(cs.ts.URL, "https", "http", 1) + "/good.json", "http://127.0.0.1:7777/cb"},
		{"root path", cs.ts.URL + "/", "http://127.0.0.1:7777/cb"},
		{"dot segment", cs.ts.URL + "/x/../good.json", "http://127.0.0.1:7777/cb"},
		{"redirect not in document", cs.ts.URL + "/good.json", "http://127.0.0.1:7777/other"},
	}
	for _, tc := range bad {
		v := authorizeParams(regClient{ID: tc.id, Redirect: tc.redirect})
		p := e.browser().get(e.iss + "/authorize?" + v.Encode())
		if p.status != http.StatusBadRequest || p.loc != nil {
			t.Errorf("%s: %d %v, want error page", tc.name, p.status, p.loc)
		}
	}
}

// TestCIMDConcurrentFetchesShareOne: callers asking for the same document
// while it is fetched share that one fetch (flight), and a caller that gives
// up neither fails it for the others nor keeps it from being cached.
func TestCIMDConcurrentFetchesShareOne(t *testing.T) {
	cs := newCIMDServer(t)
	e := newEnv(t, envOpt{
		cfg:  func(c *Config) { c.CIMD.AllowPrivate = true },
		deps: func(d *Deps) { d.HTTPClient = cs.ts.Client() },
	})
	release := make(chan struct{})
	cs.docs["/slow.json"] = func(u string) (map[string]any, string) {
		<-release
		return map[string]any{"client_id": u, "client_name": "Slow", "redirect_uris": []string{"http://127.0.0.1:7777/cb"}}, "max-age=60"
	}
	id := cs.ts.URL + "/slow.json"
	const n = 6
	var joined sync.WaitGroup
	joined.Add(n + 1)
	e.srv.cimd.flight.Joined = func(string) { joined.Done() }
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := e.srv.cimd.get(gone, id); !errors.Is(err, errCIMDUnreachable) || !errors.Is(err, context.Canceled) {
		t.Errorf("caller that gave up: %v, want errCIMDUnreachable wrapping context.Canceled", err)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { _, errs[i] = e.srv.cimd.get(t.Context(), id) })
	}
	joined.Wait()
	close(release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	if got := cs.fetches.Load(); got != 1 {
		t.Errorf("%d fetches, want 1", got)
	}
	e.srv.cimd.flight.Joined = nil
	if c, err := e.srv.cimd.get(t.Context(), id); err != nil || c == nil || cs.fetches.Load() != 1 {
		t.Errorf("cached: %v %v, %d fetches", c, err, cs.fetches.Load())
	}
}

// cimdFlow walks a CIMD client through login and consent; it returns the
// consent page and the token endpoint's answer.
func cimdFlow(t *testing.T, e *env, c regClient) (consent *page, st int, tok map[string]any) {
	t.Helper()
	b := e.browser()
	consent = e.consentPage(b, c)
	f := consent.hidden()
	f.Set("decision", "approve")
	p := b.post(e.iss+"/consent", f)
	st, tok = e.exchange(c, p.loc.Query().Get("code"), nil)
	return consent, st, tok
}

// TestCIMDWithoutClientName: client_name is optional (Claude Code sends
// none); the consent page names the client by its document's host and marks
// it unverified.
func TestCIMDWithoutClientName(t *testing.T) {
	cs := newCIMDServer(t)
	e := newEnv(t, envOpt{
		cfg:  func(c *Config) { c.CIMD.AllowPrivate = true },
		deps: func(d *Deps) { d.HTTPClient = cs.ts.Client() },
	})
	for i, name := range []string{"", "   ", "\u202e\u0007"} { // absent, blank, only characters cleanName drops
		path := fmt.Sprintf("/noname%d.json", i) // a new client each time: consent is asked again
		cs.docs[path] = func(u string) (map[string]any, string) {
			doc := map[string]any{"client_id": u, "redirect_uris": []string{"http://127.0.0.1:7777/cb"}}
			if name != "" {
				doc["client_name"] = name
			}
			return doc, "no-store"
		}
		c := regClient{ID: cs.ts.URL + path, Redirect: "http://127.0.0.1:7777/cb"}
		consent, st, tok := cimdFlow(t, e, c)
		host := strings.TrimPrefix(cs.ts.URL, "https://")
		if !strings.Contains(consent.body, "Allow <strong>"+host+"</strong>") || !strings.Contains(consent.body, "gave no name") ||
			!strings.Contains(consent.body, "It is not verified") || strings.Contains(consent.body, "Unnamed application") {
			t.Errorf("client_name %q: consent page does not name the client by its host %s, marked unverified:\n%s", name, host, consent.body)
		}
		if st != http.StatusOK {
			t.Fatalf("client_name %q: token: %d %v", name, st, tok)
		}
	}
}

func TestCIMDHost(t *testing.T) {
	for in, want := range map[string]string{
		"https://claude.ai/oauth/client.json":  "claude.ai",
		"https://Claude.AI:443/c.json":         "claude.ai",
		"https://127.0.0.1:8443/c.json":        "127.0.0.1:8443",
		"https://bücher.example/c.json":        "xn--bcher-kva.example",
		"https://xn--bcher-kva.example/c.json": "xn--bcher-kva.example",
		"https://[::1]:9/c.json":               "[::1]:9",
		"not a url":                            "",
		"https://exa mple.com/c.json":          "",
		"https://аpple.com/c.json":             "xn--pple-43d.com", // Cyrillic а shown in punycode
	} {
		if got := cimdHost(in); got != want {
			t.Errorf("cimdHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCIMDErrorPages: the user learns whether the document could not be
// fetched (no egress) or was refused, and sees no internals.
func TestCIMDErrorPages(t *testing.T) {
	cs := newCIMDServer(t)
	cs.docs["/mismatch.json"] = func(string) (map[string]any, string) {
		return map[string]any{"client_id": "https://evil.example.com/c.json", "redirect_uris": []string{"http://127.0.0.1:7777/cb"}}, ""
	}
	allowed := newEnv(t, envOpt{
		cfg:  func(c *Config) { c.CIMD.AllowPrivate = true },
		deps: func(d *Deps) { d.HTTPClient = cs.ts.Client() },
	})
	guarded := newEnv(t, envOpt{deps: func(d *Deps) { d.HTTPClient = cs.ts.Client() }})
	off := newEnv(t, envOpt{cfg: func(c *Config) { c.CIMD.Enabled = new(false) }})
	host := strings.TrimPrefix(cs.ts.URL, "https://")
	for _, tc := range []struct {
		name, id string
		e        *env
		title    string
		host     string
	}{
		{"404", cs.ts.URL + "/missing.json", allowed, "Application could not be verified", host},
		{"no route (SSRF guard)", cs.ts.URL + "/missing.json", guarded, "Application could not be verified", host},
		{"connection refused", "https://127.0.0.1:1/c.json", allowed, "Application could not be verified", "127.0.0.1:1"},
		{"client_id mismatch", cs.ts.URL + "/mismatch.json", allowed, "Application not accepted", host},
		{"dot segment", cs.ts.URL + "/x/../c.json", allowed, "Application not accepted", host},
		{"CIMD disabled", cs.ts.URL + "/c.json", off, "does not accept", ""},
		{"not registered", "some-client", allowed, "Unknown application", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := authorizeParams(regClient{ID: tc.id, Redirect: "http://127.0.0.1:7777/cb"})
			p := tc.e.browser().get(tc.e.iss + "/authorize?" + v.Encode())
			if p.status != http.StatusBadRequest || p.loc != nil {
				t.Fatalf("%d %v, want 400 error page", p.status, p.loc)
			}
			if !strings.Contains(p.body, tc.title) || (tc.host != "" && !strings.Contains(p.body, tc.host)) {
				t.Errorf("page lacks %q / %q:\n%s", tc.title, tc.host, p.body)
			}
			for _, internal := range []string{"status 404", "dial", "refused", "non-public", "x509", "client_id does not equal", "dot segment", "tcp"} {
				if strings.Contains(p.body, internal) {
					t.Errorf("page shows internals (%q):\n%s", internal, p.body)
				}
			}
		})
	}
}

// TestCIMDAllowedHosts: listed hosts may be private and are verified with
// cimd.ca_file; every other host keeps the SSRF guard.
func TestCIMDAllowedHosts(t *testing.T) {
	cs := newCIMDServer(t)
	cs.docs["/c.json"] = func(u string) (map[string]any, string) {
		return map[string]any{"client_id": u, "client_name": "Internal", "redirect_uris": []string{"http://127.0.0.1:7777/cb"}}, "no-store"
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cs.ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	id := cs.ts.URL + "/c.json"
	c := regClient{ID: id, Redirect: "http://127.0.0.1:7777/cb"}

	// No deps.HTTPClient: the system roots do not know the test CA, so the
	// flow only works through ca_file.
	e := newEnv(t, envOpt{cfg: func(c *Config) {
		c.CIMD.AllowedHosts = []string{"127.0.0.1", "*.corp.internal"}
		c.CIMD.CAFile = caFile
	}})
	if _, st, tok := cimdFlow(t, e, c); st != http.StatusOK {
		t.Fatalf("allowed host with ca_file: token %d %v", st, tok)
	}

	// Without ca_file the listed host's certificate is not trusted.
	noCA := newEnv(t, envOpt{cfg: func(c *Config) { c.CIMD.AllowedHosts = []string{"127.0.0.1"} }})
	if _, err := noCA.srv.cimd.get(t.Context(), id); !errors.Is(err, errCIMDUnreachable) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("allowed host without ca_file: %v, want a certificate error", err)
	}

	// Hosts not on the list stay guarded, even with the CA trusted.
	before := cs.fetches.Load()
	for _, hosts := range [][]string{{"10.0.0.1"}, {"*.0.0.1"}, {"localhost"}, {"*.corp.internal"}} {
		other := newEnv(t, envOpt{
			cfg:  func(c *Config) { c.CIMD.AllowedHosts = hosts },
			deps: func(d *Deps) { d.HTTPClient = cs.ts.Client() },
		})
		_, err := other.srv.cimd.get(t.Context(), id)
		if !errors.Is(err, errCIMDUnreachable) || !errors.Is(err, netguard.ErrPrivateAddress) {
			t.Errorf("allowed_hosts %v: %v, want the SSRF guard's refusal", hosts, err)
		}
		// The guard is at dial time: names resolving to loopback are refused too.
		for _, u := range []string{"https://localhost/c.json", "https://[::1]/c.json", "https://169.254.169.254/c.json"} {
			if slices.Contains(hosts, strings.Trim(strings.TrimSuffix(strings.TrimPrefix(u, "https://"), "/c.json"), "[]")) {
				continue
			}
			if _, err := other.srv.cimd.get(t.Context(), u); !errors.Is(err, netguard.ErrPrivateAddress) {
				t.Errorf("allowed_hosts %v, %s: %v, want the SSRF guard's refusal", hosts, u, err)
			}
		}
	}
	if n := cs.fetches.Load() - before; n != 0 {
		t.Errorf("the private address was contacted %d times for hosts not on the list", n)
	}
}

func TestCIMDAllowPrivateWarns(t *testing.T) {
	var logs strings.Builder
	newEnv(t, envOpt{
		cfg:  func(c *Config) { c.CIMD.AllowPrivate = true },
		deps: func(d *Deps) { d.Logger = slog.New(slog.NewTextHandler(&logs, nil)) },
	})
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "INSECURE: cimd.allow_private") {
		t.Errorf("allow_private not logged loudly:\n%s", logs.String())
	}
}

func TestCIMDPrivateAddressRefused(t *testing.T) {
	cs := newCIMDServer(t)
	cs.docs["/c.json"] = func(u string) (map[string]any, string) {
		return map[string]any{"client_id": u, "client_name": "x", "redirect_uris": []string{"http://127.0.0.1:7777/cb"}}, ""
	}
	e := newEnv(t, envOpt{deps: func(d *Deps) { d.HTTPClient = cs.ts.Client() }}) // allow_private off
	v := authorizeParams(regClient{ID: cs.ts.URL + "/c.json", Redirect: "http://127.0.0.1:7777/cb"})
	p := e.browser().get(e.iss + "/authorize?" + v.Encode())
	if p.status != http.StatusBadRequest || p.loc != nil {
		t.Errorf("CIMD on 127.0.0.1: %d %v", p.status, p.loc)
	}
	if n := cs.fetches.Load(); n != 0 {
		t.Errorf("the private address was contacted %d times", n)
	}
	// The same for names that resolve to loopback.
	for _, host := range []string{"localhost", "127.0.0.2", "[::1]", "169.254.169.254"} {
		id := fmt.Sprintf("https://%s/c.json", host)
		if _, err := e.srv.cimd.get(t.Context(), id); err == nil {
			t.Errorf("%s: fetched", id)
		}
	}
}

func TestCIMDDisabled(t *testing.T) {
	off := false
	e := newEnv(t, envOpt{cfg: func(c *Config) { c.CIMD.Enabled = &off }})
	v := authorizeParams(regClient{ID: "https://client.example.com/c.json", Redirect: "http://127.0.0.1:7777/cb"})
	if p := e.browser().get(e.iss + "/authorize?" + v.Encode()); p.status != http.StatusBadRequest {
		t.Errorf("CIMD disabled: %d", p.status)
	}
	_, md, _ := e.doJSONGet("/.well-known/oauth-authorization-server")
	// Not advertised: absent, which RFC 8414 reads as false.
	if v, ok := md["client_id_metadata_document_supported"]; ok {
		t.Errorf("metadata: client_id_metadata_document_supported = %v, want absent", v)
	}
}

// TestRegistrationReusesIdenticalPublicClient: mcp-remote registers again on
// every start; the same public registration from one source gets one client,
// is not counted against the cap, and another source or other metadata gets
// another client. Confidential clients are not reused.
func TestRegistrationReusesIdenticalPublicClient(t *testing.T) {
	var ip atomic.Value
	ip.Store("203.0.113.7")
	e := newEnv(t, envOpt{
		cfg:  func(c *Config) { c.Registration.MaxClientsPerIP = 2 },
		deps: func(d *Deps) { d.ClientIP = func(*http.Request) string { return ip.Load().(string) } },
	})
	meta := map[string]any{
		"client_name": "mcp-remote", "redirect_uris": []string{"http://localhost:3334/oauth/callback"},
		"token_endpoint_auth_method": "none", "grant_types": []string{"authorization_code", "refresh_token"},
	}
	var first string
	for i := range 20 {
		st, m := e.registerRaw(meta, nil)
		if st != http.StatusCreated {
			t.Fatalf("registration %d: %d %v", i, st, m)
		}
		if i == 0 {
			first = m["client_id"].(string)
		} else if m["client_id"] != first || m["client_name"] != "mcp-remote" {
			t.Fatalf("registration %d: client_id %v, want %s (%v)", i, m["client_id"], first, m)
		}
	}
	if n, err := e.st.CountClientsByIP(t.Context(), "203.0.113.7", time.Time{}); err != nil || n != 1 {
		t.Errorf("stored clients: %d %v, want 1", n, err)
	}
	other := func(k string, v any) map[string]any {
		m := maps.Clone(meta)
		m[k] = v
		return m
	}
	// Other metadata is another client (and counts: the cap is 2).
	st, m := e.registerRaw(other("redirect_uris", []string{"http://localhost:9999/cb"}), nil)
	if st != http.StatusCreated || m["client_id"] == first {
		t.Errorf("other redirect URI: %d %v", st, m)
	}
	if st, m := e.registerRaw(other("client_name", "Inspector"), nil); st != http.StatusTooManyRequests {
		t.Errorf("third distinct client over a cap of 2: %d %v", st, m)
	}
	// The first one is still reused at the cap.
	if st, m := e.registerRaw(meta, nil); st != http.StatusCreated || m["client_id"] != first {
		t.Errorf("reuse at the cap: %d %v", st, m)
	}
	// Another source gets its own client.
	ip.Store("198.51.100.1")
	if st, m := e.registerRaw(meta, nil); st != http.StatusCreated || m["client_id"] == first {
		t.Errorf("other source: %d %v", st, m)
	}
	// Confidential: a new client and secret each time.
	conf := other("token_endpoint_auth_method", "client_secret_basic")
	_, a := e.registerRaw(conf, nil)
	_, b := e.registerRaw(conf, nil)
	if a["client_id"] == nil || a["client_id"] == b["client_id"] || a["client_secret"] == nil {
		t.Errorf("confidential clients reused: %v %v", a, b)
	}
}
