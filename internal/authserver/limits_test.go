package authserver

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/idp"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/memory"
	"github.com/mcpgate/mcpgate/internal/validate"
)

// countingStore counts pending authorization requests created.
type countingStore struct {
	store.Store
	created atomic.Int64
}

func (c *countingStore) CreateAuthRequest(ctx context.Context, r *store.AuthRequest) error {
	c.created.Add(1)
	return c.Store.CreateAuthRequest(ctx, r)
}

// headerIP makes the client address the X-Test-IP header (default
// 192.0.2.1), as the gateway's trusted-proxy-aware function would.
func headerIP(d *Deps) {
	d.ClientIP = func(r *http.Request) string {
		if ip := r.Header.Get("X-Test-IP"); ip != "" {
			return ip
		}
		return "192.0.2.1"
	}
}

func limitsOn(mod func(*RateLimitConfig)) func(*Config) {
	return func(c *Config) {
		on := true
		c.RateLimit.Enabled = &on
		if mod != nil {
			mod(&c.RateLimit)
		}
	}
}

// startLogin opens a fresh flow in b and returns the login form.
func (e *env) startLogin(b *browser, c regClient) url.Values {
	e.t.Helper()
	p := b.get(e.iss + "/authorize?" + authorizeParams(c).Encode())
	if p.loc == nil {
		e.t.Fatalf("authorize: %d %s", p.status, p.body)
	}
	return b.get(p.loc.String()).hidden()
}

func (e *env) tryLogin(b *browser, c regClient, user, password string) *page {
	e.t.Helper()
	f := e.startLogin(b, c)
	f.Set("username", user)
	f.Set("password", password)
	return b.post(e.iss+"/login", f)
}

// TestLoginBackoffAcrossFlows: the acceptance test of issue 11 §5. Wrong
// passwords in fresh flows (each flow used to allow 5) hit the username's
// backoff: 429 with Retry-After, doubling, the password not even checked.
func TestLoginBackoffAcrossFlows(t *testing.T) {
	e, sink := auditedEnv(t, envOpt{})
	c := e.register("http://127.0.0.1:3000/callback", true)

	// A browser alice signed in from before.
	known := e.browser()
	if p := e.tryLogin(known, c, testUser, testPassword); p.status != http.StatusSeeOther {
		t.Fatalf("first login: %d", p.status)
	}

	statuses := map[int]int{}
	for i := range 100 {
		user := testUser
		if i%3 == 1 {
			user = " ALICE " // the same user as the connector matches it
		}
		p := e.tryLogin(e.browser(), c, user, "wrong-"+strconv.Itoa(i))
		statuses[p.status]++
		if p.status == http.StatusTooManyRequests {
			ra, err := strconv.Atoi(p.header.Get("Retry-After"))
			if err != nil || ra < 1 {
				t.Fatalf("429 without Retry-After: %q", p.header.Get("Retry-After"))
			}
			if !strings.Contains(p.body, "Too many failed sign-in attempts") {
				t.Fatalf("429 page: %s", p.body)
			}
		}
	}
	// 5 free failures, then the backoff (the clock does not move): the
	// other 95 are refused.
	if statuses[http.StatusUnauthorized] != 5 || statuses[http.StatusTooManyRequests] != 95 {
		t.Fatalf("statuses = %v, want 5×401 and 95×429", statuses)
	}

	// The wait doubles: 1s after the 5th failure, then 2s, 4s.
	for _, want := range []int{1, 2, 4} {
		p := e.tryLogin(e.browser(), c, testUser, "wrong")
		if p.status != http.StatusTooManyRequests || p.header.Get("Retry-After") != strconv.Itoa(want) {
			t.Fatalf("want 429 Retry-After %d, got %d %q", want, p.status, p.header.Get("Retry-After"))
		}
		e.clock.Add(time.Duration(want) * time.Second)
		if p := e.tryLogin(e.browser(), c, testUser, "wrong"); p.status != http.StatusUnauthorized {
			t.Fatalf("after waiting %ds: %d", want, p.status)
		}
	}
	// While backing off even the right password is not checked.
	if p := e.tryLogin(e.browser(), c, testUser, testPassword); p.status != http.StatusTooManyRequests {
		t.Fatalf("right password during the backoff: %d", p.status)
	}
	// The browser alice used before is not locked out by the guessing.
	if p := e.tryLogin(known, c, testUser, testPassword); p.status != http.StatusSeeOther {
		t.Fatalf("known browser: %d %s", p.status, p.body)
	}
	// Another user is not affected.
	if p := e.tryLogin(e.browser(), c, "bob", "x"); p.status != http.StatusUnauthorized {
		t.Fatalf("other user: %d", p.status)
	}
	// After the wait the right password works and resets the count.
	e.clock.Add(10 * time.Minute)
	if p := e.tryLogin(e.browser(), c, testUser, testPassword); p.status != http.StatusSeeOther {
		t.Fatalf("after the backoff: %d", p.status)
	}
	for range 5 {
		if p := e.tryLogin(e.browser(), c, testUser, "wrong"); p.status != http.StatusUnauthorized {
			t.Fatalf("after a success the free failures are back: %d", p.status)
		}
	}

	var limited int
	for _, r := range sink.records(t) {
		if r.Event == audit.EventASRateLimited {
			limited++
			if r.Username == "" || r.Status != http.StatusTooManyRequests || !strings.Contains(r.Reason, "retry after") {
				t.Errorf("rate-limit record = %+v", r)
			}
		}
	}
	if limited < 95 {
		t.Errorf("%d AS_RATE_LIMITED records, want every refusal", limited)
	}
}

// TestLoginBackoffConcurrent: parallel guesses cannot slip past the count.
func TestLoginBackoffConcurrent(t *testing.T) {
	b := newLoginBackoff(LoginBackoffConfig{FreeFailures: 5, Backoff: time.Second, MaxBackoff: time.Minute}, 100)
	now := time.Now()
	var ok atomic.Int32
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			if allowed, _ := b.begin(loginKey("alice", ""), now); allowed {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 5 {
		t.Errorf("%d concurrent attempts allowed, want 5", ok.Load())
	}
	// Capped, and forgotten after a quiet max_backoff.
	for range 40 {
		now = now.Add(time.Hour)
		b.begin("k", now)
	}
	if _, retry := b.begin("k", now); retry > time.Minute {
		t.Errorf("backoff %v above the cap", retry)
	}
}

func TestLoginBackoffBounded(t *testing.T) {
	b := newLoginBackoff(LoginBackoffConfig{FreeFailures: 1, Backoff: time.Second, MaxBackoff: time.Minute}, 10)
	now := time.Now()
	for i := range 1000 {
		b.begin(loginKey("user"+strconv.Itoa(i), ""), now)
	}
	if n := len(b.m); n > 10 {
		t.Errorf("%d entries, want at most 10", n)
	}
	if k := loginKey(strings.Repeat("x", 10000), ""); len(k) > 80 {
		t.Errorf("key of a long username is %d bytes", len(k))
	}
}

// TestAuthorizeFlood: /authorize from one address gets 429 and the
// pending-request store stays bounded; other addresses are not affected;
// an IPv6 client is one key per /64.
func TestAuthorizeFlood(t *testing.T) {
	tests := []struct {
		name        string
		mod         func(*RateLimitConfig)
		maxCreated  int64
		wantRefused int
	}{
		{"per-address limit", func(r *RateLimitConfig) {
			r.PerIP = ratelimit.Limit{RPS: 0.001, Burst: 20}
			r.MaxPendingPerIP = 1000
		}, 20, 980},
		{"pending cap", func(r *RateLimitConfig) {
			r.PerIP = ratelimit.Limit{RPS: 10000, Burst: 10000}
			r.MaxPendingPerIP = 30
		}, 30, 970},
		{"defaults", nil, 50, 950},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs := &countingStore{Store: memory.New()}
			e := newEnv(t, envOpt{st: cs, cfg: limitsOn(tc.mod), deps: headerIP})
			c := e.register("http://127.0.0.1:3000/callback", true)
			cs.created.Store(0)
			u := e.iss + "/authorize?" + authorizeParams(c).Encode()
			refused := 0
			b := e.browser()
			for range 1000 {
				p := b.get(u)
				switch p.status {
				case http.StatusTooManyRequests:
					refused++
					if p.header.Get("Retry-After") == "" {
						t.Fatal("429 without Retry-After")
					}
				case http.StatusSeeOther:
				default:
					t.Fatalf("status %d", p.status)
				}
			}
			if n := cs.created.Load(); n > tc.maxCreated {
				t.Errorf("%d pending requests stored, want at most %d", n, tc.maxCreated)
			}
			if refused < tc.wantRefused {
				t.Errorf("%d refused, want at least %d", refused, tc.wantRefused)
			}
			// Another address is not affected.
			req, _ := http.NewRequest(http.MethodGet, u, nil)
			req.Header.Set("X-Test-IP", "198.51.100.7")
			if p := b.do(req); p.status != http.StatusSeeOther {
				t.Errorf("another address: %d", p.status)
			}
		})
	}

	t.Run("IPv6 /64", func(t *testing.T) {
		e := newEnv(t, envOpt{cfg: limitsOn(func(r *RateLimitConfig) { r.PerIP = ratelimit.Limit{RPS: 0.001, Burst: 3} }), deps: headerIP})
		get := func(ip string) int {
			// /authorize without parameters: an error page, but limited first.
			req, _ := http.NewRequest(http.MethodGet, e.iss+"/authorize", nil)
			req.Header.Set("X-Test-IP", ip)
			return e.browser().do(req).status
		}
		for i := range 3 {
			if st := get("2001:db8:1:2::" + strconv.Itoa(i+1)); st != http.StatusBadRequest {
				t.Fatalf("request %d: %d", i, st)
			}
		}
		if st := get("2001:db8:1:2:ffff::9"); st != http.StatusTooManyRequests {
			t.Errorf("same /64, another address: %d, want 429", st)
		}
		if st := get("2001:db8:1:3::1"); st != http.StatusBadRequest {
			t.Errorf("another /64: %d", st)
		}
	})
}

// TestRateLimitedEndpoints: every route is limited; the OAuth endpoints
// answer an OAuth JSON error, the browser routes a page; discovery and JWKS
// have their own, larger budget; refusals are audited.
func TestRateLimitedEndpoints(t *testing.T) {
	e, sink := auditedEnv(t, envOpt{
		cfg: limitsOn(func(r *RateLimitConfig) {
			r.PerIP = ratelimit.Limit{RPS: 0.001, Burst: 1}
			r.Metadata = ratelimit.Limit{RPS: 0.001, Burst: 2}
		}),
		deps: headerIP,
	})
	do := func(method, path, ip string) *page {
		req, _ := http.NewRequest(method, e.iss+path, strings.NewReader("grant_type=x"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Test-IP", ip)
		return e.browser().do(req)
	}
	routes := []struct {
		method, path string
		json         bool
	}{
		{"POST", "/token", true}, {"POST", "/register", true}, {"POST", "/revoke", true}, {"POST", "/introspect", true},
		{"GET", "/authorize", false}, {"GET", "/login", false}, {"POST", "/login", false},
		{"GET", "/consent", false}, {"POST", "/consent", false}, {"GET", "/callback", false},
	}
	for i, rt := range routes {
		ip := "203.0.113." + strconv.Itoa(i+1)
		if p := do(rt.method, rt.path, ip); p.status == http.StatusTooManyRequests {
			t.Fatalf("%s %s: first request refused", rt.method, rt.path)
		}
		p := do(rt.method, rt.path, ip)
		if p.status != http.StatusTooManyRequests || p.header.Get("Retry-After") == "" {
			t.Errorf("%s %s: %d, want 429 with Retry-After", rt.method, rt.path, p.status)
			continue
		}
		if rt.json != strings.Contains(p.body, `"error":"too_many_requests"`) {
			t.Errorf("%s %s: body %s", rt.method, rt.path, p.body)
		}
	}
	// Discovery and JWKS: their own bucket (burst 2 here).
	for _, path := range []string{"/.well-known/oauth-authorization-server", "/jwks"} {
		ip := "198.51.100.200"
		if path == "/jwks" {
			ip = "198.51.100.201"
		}
		for i := range 3 {
			p := do("GET", path, ip)
			if want := i < 2; want != (p.status == http.StatusOK) {
				t.Errorf("%s request %d: %d", path, i, p.status)
			}
		}
	}
	n := 0
	for _, r := range sink.records(t) {
		if r.Event == audit.EventASRateLimited {
			n++
			if r.ClientIP == "" || r.Status != http.StatusTooManyRequests || r.Method == "" {
				t.Errorf("record = %+v", r)
			}
		}
	}
	if n != len(routes)+2 {
		t.Errorf("%d AS_RATE_LIMITED records, want %d", n, len(routes)+2)
	}
}

// TestAuthorizeParameterCaps: oversized parameters get an error page (not
// a redirect to a URI not yet verified) and store nothing.
func TestAuthorizeParameterCaps(t *testing.T) {
	cs := &countingStore{Store: memory.New()}
	e := newEnv(t, envOpt{st: cs})
	c := e.register("http://127.0.0.1:3000/callback", true)
	tests := []struct {
		name  string
		key   string
		value string
		ok    bool
	}{
		{"state at the cap", "state", strings.Repeat("s", maxStateLen), true},
		{"state over the cap", "state", strings.Repeat("s", maxStateLen+1), false},
		{"redirect_uri over the cap", "redirect_uri", "http://127.0.0.1:3000/" + strings.Repeat("r", maxRedirectURILen), false},
		{"scope over the cap", "scope", strings.Repeat("mcp:read ", 200), false},
		{"resource over the cap", "resource", "https://x.example/" + strings.Repeat("r", maxResourceLen), false},
		{"code_challenge over the cap", "code_challenge", strings.Repeat("c", 200), false},
		{"query over the cap", "junk", strings.Repeat("j", maxAuthorizeQuery), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := cs.created.Load()
			v := authorizeParams(c)
			v.Set(tc.key, tc.value)
			p := e.browser().get(e.iss + "/authorize?" + v.Encode())
			if tc.ok {
				if p.status != http.StatusSeeOther {
					t.Errorf("%d", p.status)
				}
				return
			}
			if p.status != http.StatusBadRequest || p.loc != nil {
				t.Errorf("%d %v, want an error page", p.status, p.loc)
			}
			if cs.created.Load() != before {
				t.Error("a pending request was stored")
			}
		})
	}
	// POST bodies have the same cap.
	v := authorizeParams(c)
	v.Set("state", strings.Repeat("s", maxAuthorizeQuery))
	if p := e.browser().post(e.iss+"/authorize", v); p.status != http.StatusBadRequest {
		t.Errorf("POST over the cap: %d", p.status)
	}
}

// TestRegistrationLimitPer64: the registration cap counts an IPv6 /64 as
// one address.
func TestRegistrationLimitPer64(t *testing.T) {
	e := newEnv(t, envOpt{cfg: func(c *Config) { c.Registration.MaxClientsPerIP = 2 }, deps: headerIP})
	reg := func(ip string) int {
		st, _ := e.registerRaw(map[string]any{"redirect_uris": []string{"http://127.0.0.1:1/cb"}}, func(r *http.Request) { r.Header.Set("X-Test-IP", ip) })
		return st
	}
	for _, ip := range []string{"2001:db8:a:b::1", "2001:db8:a:b::2"} {
		if st := reg(ip); st != http.StatusCreated {
			t.Fatalf("%s: %d", ip, st)
		}
	}
	if st := reg("2001:db8:a:b:ffff:ffff:ffff:ffff"); st != http.StatusTooManyRequests {
		t.Errorf("third in the /64: %d, want 429", st)
	}
	if st := reg("2001:db8:a:c::1"); st != http.StatusCreated {
		t.Errorf("another /64: %d", st)
	}
	if st := reg("192.0.2.9"); st != http.StatusCreated {
		t.Errorf("IPv4: %d", st)
	}
}

// TestCIMDNegativeCacheAndConcurrency: a failed document fetch is not
// repeated within negative_cache_ttl, and fetches beyond
// max_concurrent_fetches are refused rather than queued.
func TestCIMDNegativeCacheAndConcurrency(t *testing.T) {
	cs := newCIMDServer(t)
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	cs.docs["/slow.json"] = func(u string) (map[string]any, string) {
		entered <- struct{}{}
		<-release
		return map[string]any{"client_id": u, "client_name": "Slow", "redirect_uris": []string{"http://127.0.0.1:7777/cb"}}, ""
	}
	e := newEnv(t, envOpt{
		cfg: func(c *Config) {
			c.CIMD.AllowPrivate = true
			c.CIMD.MaxConcurrentFetches = 1
			c.CIMD.NegativeCacheTTL = time.Minute
		},
		deps: func(d *Deps) { d.HTTPClient = cs.ts.Client() },
	})
	missing := cs.ts.URL + "/missing.json"
	for range 5 {
		if _, err := e.srv.cimd.get(t.Context(), missing); err == nil {
			t.Fatal("missing document accepted")
		}
	}
	if n := cs.fetches.Load(); n != 1 {
		t.Errorf("failed document fetched %d times, want 1", n)
	}
	e.clock.Add(61 * time.Second)
	e.srv.cimd.get(t.Context(), missing)
	if n := cs.fetches.Load(); n != 2 {
		t.Errorf("after negative_cache_ttl: %d fetches, want 2", n)
	}

	done := make(chan error)
	go func() { _, err := e.srv.cimd.get(context.Background(), cs.ts.URL+"/slow.json"); done <- err }()
	<-entered
	if _, err := e.srv.cimd.get(t.Context(), cs.ts.URL+"/other.json"); err != errCIMDBusy {
		t.Errorf("second concurrent fetch: %v, want errCIMDBusy", err)
	}
	v := authorizeParams(regClient{ID: cs.ts.URL + "/other.json", Redirect: "http://127.0.0.1:7777/cb"})
	if p := e.browser().get(e.iss + "/authorize?" + v.Encode()); p.status != http.StatusServiceUnavailable || p.header.Get("Retry-After") == "" {
		t.Errorf("/authorize while fetches are busy: %d", p.status)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Busy is not cached: the document is fetched once a slot is free.
	before := cs.fetches.Load()
	e.srv.cimd.get(t.Context(), cs.ts.URL+"/other.json")
	if cs.fetches.Load() != before+1 {
		t.Error("a busy refusal was cached")
	}
}

func TestRateLimitConfigValidation(t *testing.T) {
	c := Config{PublicURL: "https://as.example.com"}
	c.RateLimit = RateLimitConfig{PerIP: ratelimit.Limit{RPS: -1, Burst: 0}, MaxPendingPerIP: -1,
		Login: LoginBackoffConfig{FreeFailures: 1000, Backoff: time.Hour, MaxBackoff: time.Second}}
	c.CIMD.MaxConcurrentFetches = -1
	c.ConsentLifetime, c.ConsentTTL = time.Hour, 2*time.Hour
	c.SetDefaults()
	err := problemsOf(&c)
	for _, want := range []string{"rate_limit.per_ip.rps", "rate_limit.per_ip.burst", "rate_limit.max_pending_per_ip",
		"rate_limit.login.free_failures", "rate_limit.login.backoff", "rate_limit.login.max_backoff",
		"cimd.max_concurrent_fetches", "consent_lifetime"} {
		if !strings.Contains(err, want) {
			t.Errorf("no problem reported for %s in:\n%s", want, err)
		}
	}
	var d Config
	d.PublicURL = "https://as.example.com"
	d.SetDefaults()
	if d.RateLimit.PerIP != (ratelimit.Limit{RPS: 10, Burst: 100}) || !*d.RateLimit.Enabled || d.RateLimit.MaxPendingPerIP != 50 ||
		d.ConsentTTL != 30*24*time.Hour || d.CIMD.MaxConcurrentFetches != 8 || d.CIMD.NegativeCacheTTL != time.Minute {
		t.Errorf("defaults: %+v", d.RateLimit)
	}
	if e := problemsOf(&d); e != "" {
		t.Errorf("defaults invalid: %s", e)
	}
	// The former key still works alone.
	o := Config{PublicURL: "https://as.example.com", ConsentLifetime: time.Hour}
	o.SetDefaults()
	if o.ConsentTTL != time.Hour || problemsOf(&o) != "" {
		t.Errorf("consent_lifetime alone: ttl %v, %s", o.ConsentTTL, problemsOf(&o))
	}
}

func problemsOf(c *Config) string {
	c.Upstream = idp.Config{Type: idp.TypeStatic, Users: []idp.User{{Username: testUser, PasswordHash: testUserHash}}}
	c.Upstream.SetDefaults()
	var p validate.Problems
	c.Validate("as", &p)
	return strings.Join(p.List(), "\n")
}
