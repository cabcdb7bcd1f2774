package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mcpgate/mcpgate/internal/identity"
)

// testIntrospection is an RFC 7662 endpoint answering from a token table.
type testIntrospection struct {
	*httptest.Server
	mu       sync.Mutex
	answers  map[string]map[string]any // token → response; missing → active:false
	status   int
	delay    time.Duration
	method   string // expected client auth: basic or post
	id, sec  string
	hits     atomic.Int32
	lastForm map[string][]string
}

func newTestIntrospection(t *testing.T) *testIntrospection {
	t.Helper()
	s := &testIntrospection{answers: map[string]map[string]any{}, method: "basic", id: "gw client", sec: "s3cr:et&"}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /introspect", func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		status, delay, method := s.status, s.delay, s.method
		s.mu.Unlock()
		time.Sleep(delay)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", 400)
			return
		}
		var id, sec string
		if method == "basic" {
			var ok bool
			if id, sec, ok = r.BasicAuth(); !ok {
				http.Error(w, "no basic auth", 401)
				return
			}
		} else {
			id, sec = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		}
		// Basic credentials arrive form-encoded (RFC 6749 §2.3.1).
		if method == "basic" {
			id, _ = url.QueryUnescape(id)
			sec, _ = url.QueryUnescape(sec)
		}
		if id != s.id || sec != s.sec {
			http.Error(w, "bad client", 401)
			return
		}
		if status != 0 {
			w.WriteHeader(status)
			return
		}
		s.mu.Lock()
		s.lastForm = r.PostForm
		ans, ok := s.answers[r.PostForm.Get("token")]
		s.mu.Unlock()
		if !ok {
			ans = map[string]any{"active": false}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(ans)
	})
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": s.URL, "introspection_endpoint": s.URL + "/introspect"})
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func (s *testIntrospection) set(token string, resp map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers[token] = resp
}

func (s *testIntrospection) config() Config {
	return Config{Mode: ModeIntrospection, Introspection: IntrospectionConfig{
		Endpoint: s.URL + "/introspect", ClientID: s.id, ClientSecret: s.sec,
		Audience: StringList{aud}, AllowPrivateIssuer: true,
	}}
}

func activeAnswer(now time.Time, extra map[string]any) map[string]any {
	m := map[string]any{
		"active": true, "sub": "u-1", "username": "carol", "scope": "mcp:read mcp:tools",
		"client_id": "cursor", "iss": "https://auth.example.com", "aud": []any{aud},
		"exp": now.Add(time.Hour).Unix(), "groups": "ops,admins",
	}
	for k, v := range extra {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

func TestIntrospectionActive(t *testing.T) {
	clock := newFakeClock()
	srv := newTestIntrospection(t)
	a, _ := newAuth(t, srv.config(), clock)
	srv.set("opaque-1", activeAnswer(clock.Now(), nil))
	p, err := a.Authenticate(bearer("opaque-1"))
	if err != nil {
		t.Fatal(err)
	}
	want := &identity.Principal{
		Issuer: "https://auth.example.com", Subject: "u-1", Username: "carol", Scopes: []string{"mcp:read", "mcp:tools"},
		ClientID: "cursor", Groups: []string{"ops", "admins"}, Audience: []string{aud}, ExpiresAt: clock.Now().Add(time.Hour),
	}
	if diff := cmp.Diff(want, p, cmpopts.IgnoreFields(identity.Principal{}, "Claims")); diff != "" {
		t.Errorf("principal (-want +got):\n%s", diff)
	}
	srv.mu.Lock()
	form := srv.lastForm
	srv.mu.Unlock()
	if form["token_type_hint"][0] != "access_token" || form["client_secret"] != nil {
		t.Errorf("request form %v: want token_type_hint and no secret in the body with basic auth", form)
	}
}

func TestIntrospectionRejects(t *testing.T) {
	clock := newFakeClock()
	srv := newTestIntrospection(t)
	cfg := srv.config()
	cfg.Introspection.Issuer = "https://auth.example.com"
	a, _ := newAuth(t, cfg, clock)
	now := clock.Now()
	tests := []struct {
		name   string
		answer map[string]any // nil: unknown to the server (active:false)
		detail string
	}{
		{"inactive", map[string]any{"active": false}, "not active"},
		{"unknown token", nil, "not active"},
		{"wrong audience", activeAnswer(now, map[string]any{"aud": "https://other.example.com"}), "audience"},
		{"missing audience", activeAnswer(now, map[string]any{"aud": nil}), "no aud"},
		{"expired", activeAnswer(now, map[string]any{"exp": now.Add(-2 * time.Minute).Unix()}), "expired"},
		{"not yet valid", activeAnswer(now, map[string]any{"nbf": now.Add(2 * time.Minute).Unix()}), "not yet valid"},
		{"wrong issuer", activeAnswer(now, map[string]any{"iss": "https://evil.example.com"}), "issuer"},
		{"missing sub", activeAnswer(now, map[string]any{"sub": nil}), "no sub"},
		{"refresh token", activeAnswer(now, map[string]any{"token_type": "refresh_token"}), "refresh token"},
		{"keycloak refresh typ", activeAnswer(now, map[string]any{"typ": "Refresh"}), "refresh token"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := "tok-" + strings.ReplaceAll(tc.name, " ", "-")
			if tc.answer != nil {
				srv.set(tok, tc.answer)
			}
			p, err := a.Authenticate(bearer(tok))
			if p != nil || !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tc.detail) {
				t.Fatalf("case %d: principal %v, err %v; want ErrInvalidToken mentioning %q", i, p, err, tc.detail)
			}
		})
	}
}

// A response whose active member is not a boolean is a broken endpoint:
// never a success, and not cached as a verdict on the token.
func TestIntrospectionMalformedActive(t *testing.T) {
	clock := newFakeClock()
	srv := newTestIntrospection(t)
	a, _ := newAuth(t, srv.config(), clock)
	srv.set("t", activeAnswer(clock.Now(), map[string]any{"active": "true"}))
	for range 2 {
		if p, err := a.Authenticate(bearer("t")); p != nil || !errors.Is(err, ErrUnavailable) {
			t.Fatalf("principal %v, err %v; want ErrUnavailable", p, err)
		}
	}
}

func TestIntrospectionCache(t *testing.T) {
	clock := newFakeClock()
	srv := newTestIntrospection(t)
	a, _ := newAuth(t, srv.config(), clock)
	base := srv.hits.Load() // the warm-up probe

	// Positive results: reused until exp when exp is sooner than cache_ttl.
	srv.set("short", activeAnswer(clock.Now(), map[string]any{"exp": clock.Now().Add(time.Minute).Unix()}))
	p1, err := a.Authenticate(bearer("short"))
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := a.Authenticate(bearer("short"))
	if p1 != p2 || srv.hits.Load() != base+1 {
		t.Fatalf("second request not cached: same=%v hits=%d", p1 == p2, srv.hits.Load()-base)
	}
	clock.Add(time.Minute)
	_, _ = a.Authenticate(bearer("short"))
	if got := srv.hits.Load() - base; got != 2 {
		t.Fatalf("hits = %d, want 2: the cache outlived exp", got)
	}

	// ...and until cache_ttl when exp is later.
	srv.set("long", activeAnswer(clock.Now(), nil))
	_, _ = a.Authenticate(bearer("long"))
	clock.Add(DefaultIntrospectionCacheTTL - time.Second)
	_, _ = a.Authenticate(bearer("long"))
	if got := srv.hits.Load() - base; got != 3 {
		t.Fatalf("hits = %d, want 3", got)
	}
	clock.Add(time.Second)
	_, _ = a.Authenticate(bearer("long"))
	if got := srv.hits.Load() - base; got != 4 {
		t.Fatalf("hits = %d, want 4: cache_ttl not applied", got)
	}

	// Negative results: cached for 5s only.
	for range 3 {
		if _, err := a.Authenticate(bearer("revoked")); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("inactive token: %v", err)
		}
	}
	if got := srv.hits.Load() - base; got != 5 {
		t.Fatalf("hits = %d, want 5 (negative result cached)", got)
	}
	clock.Add(negativeCacheTTL)
	srv.set("revoked", activeAnswer(clock.Now(), nil))
	if _, err := a.Authenticate(bearer("revoked")); err != nil {
		t.Fatalf("after the negative TTL the endpoint must be asked again: %v", err)
	}
}

func TestIntrospectionEndpointFailure(t *testing.T) {
	clock := newFakeClock()
	srv := newTestIntrospection(t)
	a, _ := newAuth(t, srv.config(), clock)
	srv.set("t", activeAnswer(clock.Now(), nil))
	srv.mu.Lock()
	srv.status = http.StatusInternalServerError
	srv.mu.Unlock()
	for range 2 {
		if _, err := a.Authenticate(bearer("t")); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
	}
	before := srv.hits.Load()
	srv.mu.Lock()
	srv.status = 0
	srv.mu.Unlock()
	// Failures are not cached: the next request asks again and succeeds.
	if _, err := a.Authenticate(bearer("t")); err != nil || srv.hits.Load() != before+1 {
		t.Fatalf("err %v, hits +%d", err, srv.hits.Load()-before)
	}
}

func TestIntrospectionClientAuth(t *testing.T) {
	for _, method := range []string{"basic", "post"} {
		t.Run(method, func(t *testing.T) {
			clock := newFakeClock()
			srv := newTestIntrospection(t)
			srv.method = method
			cfg := srv.config()
			cfg.Introspection.AuthMethod = method
			a, _ := newAuth(t, cfg, clock)
			srv.set("t", activeAnswer(clock.Now(), nil))
			if _, err := a.Authenticate(bearer("t")); err != nil {
				t.Fatal(err)
			}
			// Wrong secret: the endpoint refuses us; that is an outage, not a bad token.
			cfg.Introspection.ClientSecret = "wrong"
			b, _ := newAuth(t, cfg, clock)
			if _, err := b.Authenticate(bearer("t")); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("wrong client secret: %v", err)
			}
			if err := b.(Readier).Ready(context.Background()); err == nil {
				t.Fatal("Ready with rejected client credentials")
			}
		})
	}
}

func TestIntrospectionDiscoveryAndReady(t *testing.T) {
	clock := newFakeClock()
	srv := newTestIntrospection(t)
	cfg := srv.config()
	cfg.Introspection.Endpoint = ""
	cfg.Introspection.Issuer = srv.URL
	a, _ := newAuth(t, cfg, clock)
	if err := a.(Readier).Ready(context.Background()); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	srv.set("t", activeAnswer(clock.Now(), map[string]any{"iss": nil}))
	p, err := a.Authenticate(bearer("t"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Issuer != srv.URL {
		t.Errorf("issuer = %q, want the configured issuer %q when the response has none", p.Issuer, srv.URL)
	}
}

func TestIntrospectionReadyDown(t *testing.T) {
	clock := newFakeClock()
	srv := newTestIntrospection(t)
	srv.status = http.StatusBadGateway
	a, _ := newAuth(t, srv.config(), clock)
	r := a.(Readier)
	if err := r.Ready(context.Background()); err == nil {
		t.Fatal("Ready while the endpoint fails")
	}
	srv.mu.Lock()
	srv.status = 0
	srv.mu.Unlock()
	hits := srv.hits.Load()
	_ = r.Ready(context.Background()) // within the probe interval: no new probe
	if srv.hits.Load() != hits {
		t.Fatal("Ready probed again inside the interval")
	}
	clock.Add(readyProbeInterval)
	if err := r.Ready(context.Background()); err != nil {
		t.Fatalf("Ready after recovery: %v", err)
	}
}

func TestIntrospectionConcurrentSameToken(t *testing.T) {
	clock := newFakeClock()
	srv := newTestIntrospection(t)
	a, _ := newAuth(t, srv.config(), clock)
	srv.set("t", activeAnswer(clock.Now(), nil))
	srv.mu.Lock()
	srv.delay = 100 * time.Millisecond
	srv.mu.Unlock()
	base := srv.hits.Load()
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if _, err := a.Authenticate(bearer("t")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := srv.hits.Load() - base; got != 1 {
		t.Fatalf("introspection calls = %d, want 1", got)
	}
}

// Rejected tokens, which any unauthenticated client can mint, are cached
// apart: a flood of them never evicts a valid token's cached result
// (issue 11.3, maps keyed by client input).
func TestIntrospectionRejectedFloodKeepsValidEntries(t *testing.T) {
	clock := newFakeClock()
	srv := newTestIntrospection(t)
	cfg := srv.config()
	cfg.CacheSize = 10
	a, _ := newAuth(t, cfg, clock)
	srv.set("valid", activeAnswer(clock.Now(), nil))
	if _, err := a.Authenticate(bearer("valid")); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if _, err := a.Authenticate(bearer(fmt.Sprint("junk-", i))); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("junk token: %v", err)
		}
	}
	hits := srv.hits.Load()
	if _, err := a.Authenticate(bearer("valid")); err != nil {
		t.Fatal(err)
	}
	if srv.hits.Load() != hits {
		t.Error("the flood of rejected tokens evicted the valid token's cached result")
	}
	in := a.(*introspector)
	if n := in.rejected.len(); n > 1 {
		t.Errorf("rejected cache holds %d entries, more than its bound of 1", n)
	}
}
