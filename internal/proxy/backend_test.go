package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/credential"
	"github.com/mcpgate/mcpgate/internal/identity"
)

// recorder is a backend that records what it receives.
type recorder struct {
	mu     sync.Mutex
	header http.Header
	path   string
	hits   int
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	rc.header, rc.path = r.Header.Clone(), r.URL.Path
	rc.hits++
	rc.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
}

func newTestBackend(t *testing.T, cfg BackendConfig, opts Options) *Backend {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "b"
	}
	cfg.SetDefaults(0)
	b, err := NewBackend(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type upstreamFunc func(ctx context.Context, tsid string) (string, error)

func (f upstreamFunc) UpstreamToken(ctx context.Context, tsid string) (string, error) {
	return f(ctx, tsid)
}

// rpcError is a JSON-RPC error response as the proxy writes it.
type rpcError struct {
	ID    json.RawMessage `json:"id"`
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func decodeRPCError(t *testing.T, rec *httptest.ResponseRecorder) rpcError {
	t.Helper()
	var e rpcError
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	if ct, cc := rec.Header().Get("Content-Type"), rec.Header().Get("Cache-Control"); ct != "application/json" || cc != "no-store" {
		t.Errorf("Content-Type %q, Cache-Control %q", ct, cc)
	}
	return e
}

// TestUpstreamTokenCredential: the caller's upstream token (looked up by
// the token session) replaces the client's credential; without one the
// request fails with 502 and never reaches the backend unauthenticated.
func TestUpstreamTokenCredential(t *testing.T) {
	rc := &recorder{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	var logs bytes.Buffer
	upstream := upstreamFunc(func(_ context.Context, tsid string) (string, error) {
		if tsid == "tsid-1" {
			return "upstream-access-token", nil
		}
		return "", errors.New("no upstream grant for this session")
	})
	cred, err := credential.New(CredentialConfig{Type: "upstream_token"}, credential.Options{Upstream: upstream})
	if err != nil {
		t.Fatal(err)
	}
	b := newTestBackend(t, BackendConfig{URL: srv.URL + "/mcp", Credential: CredentialConfig{Type: "upstream_token"}},
		Options{Credential: cred, Logger: slog.New(slog.NewTextHandler(&logs, nil))})

	for _, tc := range []struct {
		name     string
		p        *identity.Principal
		wantAuth string // what the backend gets; "" = not reached
	}{
		{"the session's token", &identity.Principal{Subject: "alice", SessionID: "tsid-1"}, "Bearer upstream-access-token"},
		{"no principal", nil, ""},
		{"no token session (a token of another issuer)", &identity.Principal{Subject: "alice"}, ""},
		{"no upstream grant", &identity.Principal{Subject: "alice", SessionID: "tsid-2"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc.mu.Lock()
			rc.hits = 0
			rc.mu.Unlock()
			req := httptest.NewRequest("POST", "http://gw.example/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":7,"method":"tools/list"}`))
			req.Header.Set("Authorization", "Bearer client-token-for-the-gateway")
			rec := httptest.NewRecorder()
			out := b.Forward(rec, req, Hop{Principal: tc.p, RPCID: []byte("7")})
			rc.mu.Lock()
			hits, got := rc.hits, rc.header.Get("Authorization")
			rc.mu.Unlock()
			if tc.wantAuth != "" {
				if rec.Code != 200 || hits != 1 || got != tc.wantAuth {
					t.Fatalf("status %d, %d hits, backend Authorization %q; want 200, 1, %q", rec.Code, hits, got, tc.wantAuth)
				}
				return
			}
			if rec.Code != http.StatusBadGateway || hits != 0 || !out.BackendError || out.Status != rec.Code {
				t.Fatalf("status %d, %d backend hits, outcome %+v; want 502, 0, BackendError", rec.Code, hits, out)
			}
			if e := decodeRPCError(t, rec); string(e.ID) != "7" || e.Error.Code != -32603 || e.Error.Message != "backend b: could not get a credential: sign in again" {
				t.Errorf("error body %s", rec.Body)
			}
		})
	}
	if strings.Contains(logs.String(), "upstream-access-token") || strings.Contains(logs.String(), "client-token") {
		t.Errorf("a token reached the log:\n%s", logs.String())
	}

	// upstream_token needs the built-in authorization server.
	if _, err := credential.New(CredentialConfig{Type: "upstream_token"}, credential.Options{}); err == nil || !strings.Contains(err.Error(), "authorization_server") {
		t.Errorf("upstream_token without an authorization server: %v", err)
	}
	// A credential obtained per call needs its provider.
	cfg := BackendConfig{Name: "b", URL: srv.URL, Credential: CredentialConfig{Type: "upstream_token"}}
	cfg.SetDefaults(0)
	if _, err := NewBackend(cfg, Options{}); err == nil || !strings.Contains(err.Error(), "no provider") {
		t.Errorf("upstream_token without a provider: %v", err)
	}
	if _, err := NewBackend(BackendConfig{Name: "b", URL: "http://[::1"}, Options{}); err == nil {
		t.Error("unparsable URL accepted")
	}
}

type providerFunc func(ctx context.Context, s credential.Subject) (credential.Header, error)

func (f providerFunc) Get(ctx context.Context, s credential.Subject) (credential.Header, error) {
	return f(ctx, s)
}

// TestExchangedCredential: a credential obtained per call (token_exchange)
// is asked for with the principal and the client's bearer token, and
// replaces the client's token at the backend. When it cannot be obtained,
// the backend is not reached and the client gets a JSON-RPC error that
// names the backend, with the status of the failure's kind.
func TestExchangedCredential(t *testing.T) {
	rc := &recorder{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	var fail error
	var seen credential.Subject
	prov := providerFunc(func(_ context.Context, s credential.Subject) (credential.Header, error) {
		seen = s
		if fail != nil {
			return credential.Header{}, fail
		}
		return credential.Header{Name: "Authorization", Value: "Bearer exchanged"}, nil
	})
	b := newTestBackend(t, BackendConfig{Name: "db", URL: srv.URL + "/mcp", Credential: CredentialConfig{Type: "token_exchange"}},
		Options{Credential: prov})
	alice := &identity.Principal{Subject: "alice"}
	for _, tc := range []struct {
		name       string
		fail       error
		wantStatus int
		wantMsg    string
	}{
		{"exchanged", nil, 200, ""},
		{"refused", fmt.Errorf("%w: invalid_grant", credential.ErrRefused), 403, "backend db: could not get a credential: the security token service refused it for this user"},
		{"down", credential.ErrUnavailable, 502, "backend db: could not get a credential: the security token service is unavailable"},
		{"timeout", credential.ErrTimeout, 504, "backend db: could not get a credential: the security token service timed out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fail = tc.fail
			rc.mu.Lock()
			rc.hits = 0
			rc.mu.Unlock()
			req := httptest.NewRequest("POST", "http://gw.example/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":3,"method":"tools/call"}`))
			req.Header.Set("Authorization", "Bearer client-token")
			rec := httptest.NewRecorder()
			st := b.Forward(rec, req, Hop{Principal: alice, Token: "client-token", RPCID: []byte("3")})
			if seen.Principal != alice || seen.Token != "client-token" {
				t.Errorf("provider asked with %+v", seen)
			}
			rc.mu.Lock()
			hits, got := rc.hits, rc.header.Get("Authorization")
			rc.mu.Unlock()
			if tc.fail == nil {
				if rec.Code != 200 || hits != 1 || got != "Bearer exchanged" {
					t.Fatalf("status %d, %d hits, backend Authorization %q", rec.Code, hits, got)
				}
				return
			}
			if rec.Code != tc.wantStatus || hits != 0 || !st.BackendError || !errors.Is(st.Err, tc.fail) {
				t.Fatalf("status %d, %d backend hits, BackendError %v; want %d, 0, true", rec.Code, hits, st.BackendError, tc.wantStatus)
			}
			if e := decodeRPCError(t, rec); string(e.ID) != "3" || e.Error.Code != -32603 || e.Error.Message != tc.wantMsg {
				t.Errorf("error body %s", rec.Body)
			}
		})
	}
}

// TestIdentityHeaders: the principal's identity, in the configured headers,
// replaces whatever the client sent under those names.
func TestIdentityHeaders(t *testing.T) {
	rc := &recorder{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	ih := IdentityHeaders{User: "X-Mcp-User", Email: "X-Mcp-Email", Groups: "X-Mcp-Groups", Subject: "X-Mcp-Subject"}
	// forward_headers may not name identity headers (Validate refuses it);
	// forwarding them here shows that the principal's values still win.
	b := newTestBackend(t, BackendConfig{URL: srv.URL + "/mcp", IdentityHeaders: ih,
		ForwardHeaders: []string{"X-Mcp-User", "X-Mcp-Email", "X-Mcp-Groups", "X-Mcp-Subject"}}, Options{})
	for _, tc := range []struct {
		name string
		p    *identity.Principal
		want map[string]string
	}{
		{"full principal", &identity.Principal{Subject: "u-1", Username: "alice", Email: "alice@example.com", Groups: []string{"admins", "ops"}},
			map[string]string{"X-Mcp-User": "alice", "X-Mcp-Email": "alice@example.com", "X-Mcp-Groups": "admins,ops", "X-Mcp-Subject": "u-1"}},
		{"subject only", &identity.Principal{Subject: "u-2"},
			map[string]string{"X-Mcp-User": "u-2", "X-Mcp-Email": "", "X-Mcp-Groups": "", "X-Mcp-Subject": "u-2"}},
		{"no principal", nil,
			map[string]string{"X-Mcp-User": "", "X-Mcp-Email": "", "X-Mcp-Groups": "", "X-Mcp-Subject": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", "http://gw.example/mcp", strings.NewReader("{}"))
			for _, h := range []string{"X-Mcp-User", "X-Mcp-Email", "X-Mcp-Groups", "X-Mcp-Subject"} {
				req.Header.Set(h, "forged")
			}
			rec := httptest.NewRecorder()
			b.Forward(rec, req, Hop{Principal: tc.p})
			if rec.Code != 200 {
				t.Fatalf("status %d", rec.Code)
			}
			rc.mu.Lock()
			defer rc.mu.Unlock()
			for k, v := range tc.want {
				if got := strings.Join(rc.header.Values(k), ","); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

// TestBackendFailures: a backend that cannot be reached answers 502, one
// that is too slow with its headers 504, both as JSON-RPC errors carrying
// the call's id (null without one), with details only in the log; a client
// that went away gets nothing written.
func TestBackendFailures(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // then the server notices when the proxy hangs up
		<-r.Context().Done()        // never answers; ends when the proxy gives up
	}))
	defer slow.Close()

	for _, tc := range []struct {
		name    string
		cfg     BackendConfig
		id      []byte // Status.RPCID; nil = no Status attached
		status  int
		wantID  string
		wantMsg string
	}{
		{"refused", BackendConfig{URL: deadURL + "/mcp"}, []byte(`"call-1"`), 502, `"call-1"`, "backend unavailable"},
		{"refused, no call id", BackendConfig{URL: deadURL + "/mcp"}, nil, 502, "null", "backend unavailable"},
		{"response headers too slow", BackendConfig{URL: slow.URL + "/mcp", ResponseHeaderTimeout: 100 * time.Millisecond},
			[]byte("42"), 504, "42", "backend timed out"},
	} {
		for _, path := range hopPaths {
			t.Run(tc.name+"/"+path.name, func(t *testing.T) {
				var logs bytes.Buffer
				b := newTestBackend(t, tc.cfg, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
				req := httptest.NewRequest("POST", "http://gw.example/mcp", strings.NewReader("{}"))
				rec := httptest.NewRecorder()
				out := b.Forward(rec, req, path.hop(Hop{RPCID: tc.id}))
				if rec.Code != tc.status {
					t.Fatalf("status %d, want %d", rec.Code, tc.status)
				}
				e := decodeRPCError(t, rec)
				if string(e.ID) != tc.wantID || e.Error.Code != -32603 || e.Error.Message != tc.wantMsg {
					t.Errorf("body %s, want id %s and %q", rec.Body, tc.wantID, tc.wantMsg)
				}
				if strings.Contains(rec.Body.String(), "127.0.0.1") {
					t.Errorf("backend address leaked to the client: %s", rec.Body)
				}
				if !out.BackendError || out.Err == nil || out.Status != tc.status || out.Bytes != int64(rec.Body.Len()) {
					t.Errorf("outcome %+v, want BackendError, an error, status %d and %d bytes", out, tc.status, rec.Body.Len())
				}
				if !strings.Contains(logs.String(), "backend request failed") {
					t.Errorf("failure not logged:\n%s", logs.String())
				}
			})
		}
	}

	for _, path := range hopPaths {
		t.Run("client gone/"+path.name, func(t *testing.T) {
			b := newTestBackend(t, BackendConfig{URL: slow.URL + "/mcp"}, Options{Logger: slog.New(slog.DiscardHandler)})
			ctx, cancel := context.WithCancel(context.Background())
			req := httptest.NewRequest("POST", "http://gw.example/mcp", strings.NewReader("{}")).WithContext(ctx)
			rec := httptest.NewRecorder()
			done := make(chan struct{})
			var out Outcome
			go func() { out = b.Forward(rec, req, path.hop(Hop{})); close(done) }()
			cancel()
			<-done
			if rec.Body.Len() != 0 || out.BackendError || !errors.Is(out.Err, context.Canceled) {
				t.Errorf("answered a client that went away: %d %q, outcome %+v", rec.Code, rec.Body, out)
			}
		})
	}
}

// TestResponseHandling: backend cookies never reach the client (they would
// be scoped to the gateway's origin), the response filter runs, and a
// filter's refusal is a 502.
func TestResponseHandling(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "backend", Value: "x"})
		w.Header().Set("X-Backend", "yes")
		io.WriteString(w, "original")
	}))
	defer srv.Close()
	b := newTestBackend(t, BackendConfig{URL: srv.URL + "/mcp"}, Options{Logger: slog.New(slog.DiscardHandler)})
	for _, tc := range []struct {
		name   string
		filter ResponseFilter
		status int
		body   string
	}{
		{"no filter", nil, 200, "original"},
		{"rewriting filter", func(resp *http.Response) error {
			resp.Body = io.NopCloser(strings.NewReader("filtered"))
			resp.ContentLength = -1
			resp.Header.Del("Content-Length")
			return nil
		}, 200, "filtered"},
		{"refusing filter", func(*http.Response) error { return errors.New("list not readable") }, 502, ""},
	} {
		for _, path := range hopPaths {
			t.Run(tc.name+"/"+path.name, func(t *testing.T) {
				rec := httptest.NewRecorder()
				st := b.Forward(rec, httptest.NewRequest("POST", "http://gw.example/mcp", strings.NewReader("{}")), path.hop(Hop{Filter: tc.filter}))
				if rec.Code != tc.status {
					t.Fatalf("status %d, want %d", rec.Code, tc.status)
				}
				if c := rec.Header().Values("Set-Cookie"); len(c) != 0 {
					t.Errorf("backend cookie passed on: %q", c)
				}
				if tc.status == 200 {
					if rec.Body.String() != tc.body || rec.Header().Get("X-Backend") != "yes" || st.Bytes != int64(len(tc.body)) || st.Latency <= 0 {
						t.Errorf("body %q, X-Backend %q", rec.Body, rec.Header().Get("X-Backend"))
					}
				} else if !st.BackendError || strings.Contains(rec.Body.String(), "not readable") {
					t.Errorf("refusal: BackendError %v, body %q", st.BackendError, rec.Body)
				}
			})
		}
	}
}

// TestStreamingFlush: each SSE event reaches the client as the backend
// writes it. The backend sends its second event only after the client has
// read the first, so a proxy that buffered would deadlock the test.
func TestStreamingFlush(t *testing.T) {
	firstRead := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: message\ndata: one\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-firstRead:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "event: message\ndata: two\n\n")
	}))
	defer srv.Close()
	for _, path := range hopPaths {
		t.Run(path.name, func(t *testing.T) {
			testStreamingFlush(t, path, srv.URL, firstRead)
		})
		firstRead = make(chan struct{})
	}
}

func testStreamingFlush(t *testing.T, path hopPath, backendURL string, firstRead chan struct{}) {
	front := httptest.NewServer(path.handler(newTestBackend(t, BackendConfig{URL: backendURL + "/mcp"}, Options{})))
	defer front.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", front.URL+"/mcp", strings.NewReader("{}"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	readData := func() string {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("stream ended: %v (a buffered first event never arrives before the deadline)", err)
			}
			if d, ok := strings.CutPrefix(line, "data: "); ok {
				return strings.TrimSpace(d)
			}
		}
	}
	if got := readData(); got != "one" {
		t.Fatalf("first event %q", got)
	}
	close(firstRead)
	if got := readData(); got != "two" {
		t.Fatalf("second event %q", got)
	}
}

// TestPooledTransport: the per-backend transport is configured from the
// backend's settings, ignores the host's proxy environment, and keeps
// connections alive across requests.
func TestPooledTransport(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(&recorder{})
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	b := newTestBackend(t, BackendConfig{URL: srv.URL + "/mcp", MaxIdleConns: 7, DialTimeout: 3 * time.Second,
		ResponseHeaderTimeout: 4 * time.Second}, Options{})
	tr, ok := b.rp.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("transport is %T", b.rp.Transport)
	}
	if tr.Proxy != nil {
		t.Error("transport follows the host's HTTP_PROXY")
	}
	if tr.MaxIdleConns != 7 || tr.MaxIdleConnsPerHost != 7 || tr.ResponseHeaderTimeout != 4*time.Second {
		t.Errorf("MaxIdleConns %d, MaxIdleConnsPerHost %d, ResponseHeaderTimeout %s", tr.MaxIdleConns, tr.MaxIdleConnsPerHost, tr.ResponseHeaderTimeout)
	}
	if b.rp.FlushInterval != -1 || b.rp.BufferPool == nil {
		t.Errorf("FlushInterval %s, BufferPool %v: responses would be buffered or copied with fresh buffers", b.rp.FlushInterval, b.rp.BufferPool)
	}
	for range 20 {
		rec := httptest.NewRecorder()
		b.ServeHTTP(rec, httptest.NewRequest("POST", "http://gw.example/other/path?x=1", strings.NewReader("{}")))
		if rec.Code != 200 {
			t.Fatalf("status %d", rec.Code)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("20 sequential requests opened %d connections, want 1 (keep-alive)", n)
	}
}

// TestRequestGoesToTheConfiguredEndpoint: whatever path the client used,
// the backend gets its configured URL's path and host.
func TestRequestGoesToTheConfiguredEndpoint(t *testing.T) {
	rc := &recorder{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	b := newTestBackend(t, BackendConfig{URL: srv.URL + "/api/mcp"}, Options{})
	rec := httptest.NewRecorder()
	b.ServeHTTP(rec, httptest.NewRequest("POST", "http://gw.example/team/mcp", strings.NewReader("{}")))
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rec.Code != 200 || rc.path != "/api/mcp" {
		t.Errorf("status %d, backend path %q; want 200, /api/mcp", rec.Code, rc.path)
	}
	if got := rc.header.Get("X-Forwarded-Host"); got != "gw.example" {
		t.Errorf("X-Forwarded-Host %q", got)
	}
}

// TestLinkRequiredCredential: a backend whose linked account is not linked
// yet answers a call that acts for the user with the MCP 2025-11-25 URL
// elicitation required error (-32042) carrying the link URL, without
// reaching the backend; other requests (initialize, lists, the GET
// stream) go to the backend without any credential, never with the
// client's token; once linked, the linked token is sent.
func TestLinkRequiredCredential(t *testing.T) {
	rc := &recorder{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	var linked bool
	prov := providerFunc(func(_ context.Context, s credential.Subject) (credential.Header, error) {
		switch {
		case linked:
			return credential.Header{Name: "Authorization", Value: "Bearer gh-token"}, nil
		case !s.ActsForUser:
			return credential.Header{}, credential.ErrNotLinked
		}
		return credential.Header{}, &credential.LinkRequiredError{Provider: "github", DisplayName: "GitHub",
			URL: "https://gw.example/link/github?id=abc", ElicitationID: "e1"}
	})
	b := newTestBackend(t, BackendConfig{Name: "gh", URL: srv.URL + "/mcp", Credential: CredentialConfig{Type: "linked_token", Provider: "github"}},
		Options{Credential: prov})
	alice := &identity.Principal{Subject: "alice", SessionID: "tsid"}
	call := func(acts bool) (*httptest.ResponseRecorder, Outcome, int, string) {
		rc.mu.Lock()
		rc.hits, rc.header = 0, nil
		rc.mu.Unlock()
		req := httptest.NewRequest("POST", "http://gw.example/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":7,"method":"tools/call"}`))
		req.Header.Set("Authorization", "Bearer client-token")
		rec := httptest.NewRecorder()
		out := b.Forward(rec, req, Hop{Principal: alice, Token: "client-token", RPCID: []byte("7"), ActsForUser: acts})
		rc.mu.Lock()
		defer rc.mu.Unlock()
		return rec, out, rc.hits, rc.header.Get("Authorization")
	}

	rec, out, hits, _ := call(true)
	if rec.Code != 200 || out.Status != 200 || hits != 0 || out.BackendError {
		t.Fatalf("tools/call unlinked: status %d (outcome %d), %d hits, BackendError %v", rec.Code, out.Status, hits, out.BackendError)
	}
	var resp struct {
		ID    json.RawMessage `json:"id"`
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Data    struct {
				Elicitations []struct {
					Mode, ElicitationID, URL, Message string
				} `json:"elicitations"`
			} `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	el := resp.Error.Data.Elicitations
	if string(resp.ID) != "7" || resp.Error.Code != -32042 || len(el) != 1 || el[0].Mode != "url" ||
		el[0].URL != "https://gw.example/link/github?id=abc" || el[0].ElicitationID != "e1" || !strings.Contains(resp.Error.Message, "GitHub") {
		t.Errorf("link required answer: %s", rec.Body)
	}

	if rec, _, hits, got := call(false); rec.Code != 200 || hits != 1 || got != "" {
		t.Errorf("initialize unlinked: status %d, %d hits, backend Authorization %q; want forwarded without a credential", rec.Code, hits, got)
	}
	linked = true
	if rec, _, hits, got := call(true); rec.Code != 200 || hits != 1 || got != "Bearer gh-token" {
		t.Errorf("linked: status %d, %d hits, backend Authorization %q", rec.Code, hits, got)
	}
}
