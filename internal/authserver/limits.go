package authserver

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/validate"
)

// RateLimitConfig is `auth.authorization_server.rate_limit`: what one
// client address, and guesses at one username, may cost the server.
type RateLimitConfig struct {
	// Enabled turns the per-address limiters off (tests, a fronting proxy
	// that limits). The username backoff and the parameter caps always apply.
	Enabled *bool `yaml:"enabled"` // default true
	// PerIP limits every endpoint but discovery and JWKS (/authorize,
	// /login, /consent, /callback, /token, /register, /revoke, /introspect),
	// per client address (IPv6: its /64). Default 10 rps, burst 100: a
	// sign-in is about ten requests, so a whole office behind one NAT can
	// sign in at once.
	PerIP ratelimit.Limit `yaml:"per_ip"`
	// Metadata limits the discovery documents, the JWKS and CORS
	// preflights, which are cheap and cached by clients. Default 20 rps,
	// burst 200.
	Metadata ratelimit.Limit `yaml:"metadata"`
	// MaxPendingPerIP is how many authorization requests one address may
	// start per login_timeout (a bucket refilling over login_timeout, so at
	// most twice as many are pending at once). Default 50.
	MaxPendingPerIP int `yaml:"max_pending_per_ip"`
	// MaxKeys bounds each limiter's table and the username table (LRU).
	// Default 100000.
	MaxKeys int `yaml:"max_keys"`
	// Login is the per-username failed-password backoff.
	Login LoginBackoffConfig `yaml:"login"`
}

// LoginBackoffConfig is `rate_limit.login`: failed built-in passwords per
// username, counted across flows and addresses.
type LoginBackoffConfig struct {
	FreeFailures int           `yaml:"free_failures"` // failures before the backoff starts; default 5
	Backoff      time.Duration `yaml:"backoff"`       // first wait, doubled per further failure; default 1s
	MaxBackoff   time.Duration `yaml:"max_backoff"`   // cap of the wait; default 5m
}

func (c *RateLimitConfig) setDefaults() {
	if c.Enabled == nil {
		on := true
		c.Enabled = &on
	}
	if c.PerIP == (ratelimit.Limit{}) {
		c.PerIP = ratelimit.Limit{RPS: 10, Burst: 100}
	}
	if c.Metadata == (ratelimit.Limit{}) {
		c.Metadata = ratelimit.Limit{RPS: 20, Burst: 200}
	}
	c.MaxPendingPerIP = cmp.Or(c.MaxPendingPerIP, 50)
	c.MaxKeys = cmp.Or(c.MaxKeys, ratelimit.DefaultMaxKeys)
	c.Login.FreeFailures = cmp.Or(c.Login.FreeFailures, 5)
	c.Login.Backoff = cmp.Or(c.Login.Backoff, time.Second)
	c.Login.MaxBackoff = cmp.Or(c.Login.MaxBackoff, 5*time.Minute)
}

func (c *RateLimitConfig) validate(path string, p *validate.Problems) {
	c.PerIP.Validate(validate.Join(path, "per_ip"), p)
	c.Metadata.Validate(validate.Join(path, "metadata"), p)
	if c.MaxPendingPerIP < 1 {
		p.Add(validate.Join(path, "max_pending_per_ip"), "must be at least 1")
	}
	if c.MaxKeys < 1 {
		p.Add(validate.Join(path, "max_keys"), "must be at least 1")
	}
	l := c.Login
	if l.FreeFailures < 1 || l.FreeFailures > 100 {
		p.Add(validate.Join(path, "login.free_failures"), "must be between 1 and 100")
	}
	if l.Backoff <= 0 || l.Backoff > time.Minute {
		p.Add(validate.Join(path, "login.backoff"), "must be between 0 and 1m")
	}
	if l.MaxBackoff < l.Backoff || l.MaxBackoff > 24*time.Hour {
		p.Add(validate.Join(path, "login.max_backoff"), "must be between login.backoff and 24h")
	}
}

// limits are the server's per-address limiters; nil limiters allow all.
type limits struct {
	perIP, metadata, pending *ratelimit.Limiter
	logins                   *loginBackoff
}

func newLimits(c Config) *limits {
	rl := c.RateLimit
	l := &limits{logins: newLoginBackoff(rl.Login, rl.MaxKeys)}
	if !*rl.Enabled {
		return l
	}
	l.perIP = ratelimit.New("as_ip", rl.PerIP, rl.MaxKeys, 0)
	l.metadata = ratelimit.New("as_metadata", rl.Metadata, rl.MaxKeys, 0)
	// A bucket of max_pending that refills over login_timeout: at most that
	// many requests started per login_timeout, 2× that pending at once.
	l.pending = ratelimit.New("as_pending", ratelimit.Limit{
		RPS: float64(rl.MaxPendingPerIP) / c.LoginTimeout.Seconds(), Burst: rl.MaxPendingPerIP,
	}, rl.MaxKeys, c.LoginTimeout)
	return l
}

// ipKey is the limiter key of a client address as the gateway reports it
// (Deps.ClientIP): the address, or its /64 for IPv6, so that one
// subscriber cannot mint a fresh key per address.
func ipKey(ip string) string {
	if a, err := netip.ParseAddr(ip); err == nil {
		return ratelimit.IPKey(a)
	}
	return ip
}

// Route classes of the per-address limiter; the class decides the limiter
// and the shape of a 429.
const (
	routeMetadata = iota // discovery, JWKS: generous limit, JSON
	routeJSON            // token, register, revoke, introspect: OAuth JSON error
	routePage            // authorize, login, consent, callback: an error page
)

// limited applies the per-address limit of class to h.
func (s *Server) limited(class int, h http.Handler) http.Handler {
	lim := s.limits.perIP
	if class == routeMetadata {
		lim = s.limits.metadata
	}
	if lim == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, retry := lim.Allow(ipKey(s.requestIP(r))); !ok {
			s.tooManyRequests(w, r, class, retry, "too many requests from this address")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// tooManyRequests answers 429 with Retry-After (RFC 6585 §4, RFC 9110
// §10.2.3), as an OAuth JSON error on the JSON endpoints and as a page in
// the browser, and records the refusal.
func (s *Server) tooManyRequests(w http.ResponseWriter, r *http.Request, class int, retry time.Duration, why string) {
	secs := max(1, int(math.Ceil(retry.Seconds())))
	_ = s.audit(r.Context(), &audit.Record{
		Event: audit.EventASRateLimited, Result: audit.ResultError, Status: http.StatusTooManyRequests,
		Method: r.Method + " " + bounded(strings.TrimPrefix(r.URL.Path, s.basePath), 64),
		Reason: fmt.Sprintf("%s; retry after %ds", why, secs),
	})
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	if class == routePage {
		s.errorPage(w, r, http.StatusTooManyRequests, "Too many requests",
			fmt.Sprintf("Too many requests were made from your network. Please try again in %d seconds.", secs))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusTooManyRequests)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": errTooManyRequests, "error_description": why})
}

// errTooManyRequests is the error code of a 429 (not in RFC 6749; the
// status is what clients act on, with Retry-After).
const errTooManyRequests = "too_many_requests"

// loginBackoff counts failed passwords per username across flows and
// addresses: after FreeFailures, each attempt must wait Backoff, doubled
// per further failure up to MaxBackoff. An attempt is counted as a failure
// before the password is checked (and forgiven on success), so concurrent
// guesses cannot slip past the count.
//
// Lock-out: an attacker who knows a username can keep new browsers of that
// user waiting at most MaxBackoff per guess. A browser that signed in as
// the user before carries a sealed "known browser" cookie for that
// username, and is counted under its own key: guessing elsewhere never
// locks the user out of the browser they normally use.
type loginBackoff struct {
	cfg     LoginBackoffConfig
	maxKeys int

	mu sync.Mutex
	m  map[string]*loginFailures
}

type loginFailures struct {
	n    int       // failures (including attempts in flight)
	next time.Time // no attempt before this
}

func newLoginBackoff(cfg LoginBackoffConfig, maxKeys int) *loginBackoff {
	return &loginBackoff{cfg: cfg, maxKeys: maxKeys, m: map[string]*loginFailures{}}
}

// wait is the backoff after n failures: none before FreeFailures, then
// Backoff doubled per further failure, capped.
func (b *loginBackoff) wait(n int) time.Duration {
	k := n - b.cfg.FreeFailures
	if k < 0 {
		return 0
	}
	if k >= 30 {
		return b.cfg.MaxBackoff
	}
	return min(b.cfg.Backoff<<k, b.cfg.MaxBackoff)
}

// begin reserves an attempt for key at now. It refuses, with the time to
// wait, while the key is backing off; otherwise it counts the attempt as a
// failure until succeeded forgives it.
func (b *loginBackoff) begin(key string, now time.Time) (ok bool, retry time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.m[key]
	if f != nil && now.Before(f.next) {
		return false, f.next.Sub(now)
	}
	if f != nil && !now.Before(f.next.Add(b.cfg.MaxBackoff)) && f.n > b.cfg.FreeFailures {
		f.n = b.cfg.FreeFailures - 1 // quiet for a whole max_backoff: the doubling starts again
	}
	if f == nil {
		b.evict(now)
		f = &loginFailures{}
		b.m[key] = f
	}
	f.n++
	f.next = now.Add(b.wait(f.n))
	return true, 0
}

// succeeded forgets the key's failures after a correct password.
func (b *loginBackoff) succeeded(key string) {
	b.mu.Lock()
	delete(b.m, key)
	b.mu.Unlock()
}

// evict keeps the table within maxKeys: first entries that have been quiet
// for max_backoff past their wait, then (a flood of usernames) any entry not
// backing off; only then one still backing off, which merely restarts its
// count. Callers hold mu.
func (b *loginBackoff) evict(now time.Time) {
	if len(b.m) < b.maxKeys {
		return
	}
	for k, f := range b.m {
		if !now.Before(f.next.Add(b.cfg.MaxBackoff)) {
			delete(b.m, k)
		}
	}
	for k, f := range b.m {
		if len(b.m) < b.maxKeys {
			return
		}
		if !now.Before(f.next) {
			delete(b.m, k)
		}
	}
	for k := range b.m {
		if len(b.m) < b.maxKeys {
			return
		}
		delete(b.m, k)
	}
}

// loginKey is the backoff key of a username typed on the login page:
// case-folded and trimmed (as the static connector matches names), hashed
// so a long name costs bounded memory. knownBrowser, when the browser
// proved an earlier sign-in as this user, gives it a key of its own.
func loginKey(username, knownBrowser string) string {
	k := "u:" + strings.ToLower(strings.TrimSpace(username))
	if knownBrowser != "" {
		k += "\x00b:" + knownBrowser
	}
	if len(k) > 64 {
		return "h:" + store.HashKey(k)
	}
	return k
}

// knownBrowserCookie is the sealed cookie a browser gets after signing in:
// it names the user (case-folded) and an id of its own.
type knownBrowserCookie struct {
	User    string `json:"u"`
	ID      string `json:"i"`
	Expires int64  `json:"e"`
}

// knownBrowser returns the id of the browser's known-browser cookie for
// username, or "" if it has none (or one for another user, or expired).
func (s *Server) knownBrowser(r *http.Request, username string) string {
	c, err := r.Cookie(s.cookieName("known"))
	if err != nil || len(c.Value) > 1024 {
		return ""
	}
	var kb knownBrowserCookie
	if s.openCookie(c.Value, aad("known-browser", ""), &kb) != nil || kb.Expires <= s.now().Unix() ||
		kb.User != strings.ToLower(strings.TrimSpace(username)) {
		return ""
	}
	return kb.ID
}

// rememberKnownBrowser marks the browser as one username signed in from,
// for consent_ttl.
func (s *Server) rememberKnownBrowser(w http.ResponseWriter, r *http.Request, username string) {
	kb := knownBrowserCookie{User: strings.ToLower(strings.TrimSpace(username)), ID: newID(), Expires: s.now().Add(s.cfg.ConsentTTL).Unix()}
	if len(kb.User) > 256 {
		return
	}
	v, err := s.sealCookie(&kb, aad("known-browser", ""))
	if err != nil {
		s.log.ErrorContext(r.Context(), "seal known-browser cookie", "err", err)
		return
	}
	s.setCookie(w, "known", v, int(s.cfg.ConsentTTL.Seconds()))
}

// pendingAllowed reports whether the address may start another
// authorization request (max_pending_per_ip).
func (s *Server) pendingAllowed(r *http.Request) (bool, time.Duration) {
	return s.limits.pending.Allow(ipKey(s.clientIP(r)))
}
