package server

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/netguard"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
)

// edge holds the checks applied before authentication: Host and Origin
// allow-lists (DNS rebinding), CORS, and security headers.
type edge struct {
	hosts       map[string]bool // lower-case host[:port]
	origins     map[string]bool // allowed Origin values
	corsOrigins map[string]bool
	hsts        bool
	trusted     []netip.Prefix // reverse proxies whose X-Forwarded-For is believed
}

func newEdge(cfg *config.Config) *edge {
	e := &edge{hosts: map[string]bool{}, origins: map[string]bool{}, corsOrigins: map[string]bool{}, hsts: cfg.TLS.Enabled() || strings.HasPrefix(cfg.PublicURL, "https://")}
	pu, _ := url.Parse(cfg.PublicURL) // validated
	if len(cfg.Security.AllowedHosts) > 0 {
		for _, h := range cfg.Security.AllowedHosts {
			e.hosts[strings.ToLower(h)] = true
		}
	} else {
		e.addHost(pu.Host, pu.Scheme)
		if cfg.IsLoopbackListen() {
			_, port, _ := net.SplitHostPort(cfg.Listen)
			for _, h := range []string{"localhost", "127.0.0.1", "[::1]"} {
				e.addHost(h+":"+port, "")
			}
		}
	}
	for _, tp := range cfg.Security.TrustedProxies {
		p, _ := config.ParsePrefix(tp) // validated
		e.trusted = append(e.trusted, p)
	}
	e.origins[pu.Scheme+"://"+strings.ToLower(pu.Host)] = true
	// A page of this gateway opened as http://localhost:<port> sends that
	// Origin while its Host is localhost:<port>, which is allowed: accept
	// every loopback name that is an allowed Host as an origin too, but only
	// when the public URL itself is loopback. A gateway published under a
	// real name keeps its one origin; a loopback host name there only serves
	// local probes and tools, never browser pages.
	if netguard.IsLoopbackHost(pu.Hostname()) {
		for h := range e.hosts {
			name := h
			if hn, _, err := net.SplitHostPort(h); err == nil {
				name = hn
			}
			if netguard.IsLoopbackHost(name) {
				e.origins[pu.Scheme+"://"+h] = true
			}
		}
	}
	for _, o := range cfg.Security.AllowedOrigins {
		e.origins[strings.ToLower(o)] = true
	}
	for _, o := range cfg.Security.CORSOrigins {
		e.origins[strings.ToLower(o)] = true
		e.corsOrigins[strings.ToLower(o)] = true
	}
	return e
}

// addHost allows host, and host without its port when the port is the
// scheme's default (clients omit it).
func (e *edge) addHost(host, scheme string) {
	host = strings.ToLower(host)
	e.hosts[host] = true
	if h, p, err := net.SplitHostPort(host); err == nil && ((scheme == "https" && p == "443") || (scheme == "http" && p == "80")) {
		e.hosts[h] = true
	} else if err != nil && scheme != "" {
		port := "443"
		if scheme == "http" {
			port = "80"
		}
		e.hosts[net.JoinHostPort(strings.Trim(host, "[]"), port)] = true
	}
}

// allowedHost reports whether the request's Host is ours.
func (e *edge) allowedHost(r *http.Request) bool {
	return e.hosts[strings.ToLower(r.Host)]
}

// allowedOrigin reports whether the request's Origin, if any, is allowed.
func (e *edge) allowedOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	return o == "" || e.origins[strings.ToLower(o)]
}

// securityHeaders sets the headers every response carries.
func (e *edge) securityHeaders(h http.Header) {
	h["X-Content-Type-Options"] = headerNoSniff
	h["Referrer-Policy"] = headerNoReferrer
	if e.hsts {
		h["Strict-Transport-Security"] = headerHSTS
	}
}

// The values of securityHeaders, shared by every response (http.Header.Set
// would allocate a one-element slice per header per request). Nothing
// writes into a header value slice: Set replaces it, Add appends to a copy
// (len == cap).
var (
	headerNoSniff    = []string{"nosniff"}
	headerNoReferrer = []string{"no-referrer"}
	headerHSTS       = []string{"max-age=63072000; includeSubDomains"}
)

var corsAllowHeaders = strings.Join([]string{
	"Authorization", "Content-Type", "Accept", "Mcp-Session-Id", "Mcp-Protocol-Version",
	"Last-Event-Id", "Mcp-Method", "Mcp-Name",
}, ", ")

// cors sets CORS headers for configured origins on the MCP endpoint and
// answers preflights. It returns true when the request was a preflight.
func (e *edge) cors(w http.ResponseWriter, r *http.Request) bool {
	o := r.Header.Get("Origin")
	h := w.Header()
	h.Add("Vary", "Origin")
	if o == "" || !e.corsOrigins[strings.ToLower(o)] {
		return false
	}
	h.Set("Access-Control-Allow-Origin", o)
	h.Set("Access-Control-Expose-Headers", "Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate")
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
		h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	return false
}

// publicCORS allows any origin on credential-less endpoints (metadata, token,
// registration): browser-based MCP clients such as the Inspector call them
// cross-origin, and they never rely on cookies.
func publicCORS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Origin") != "" {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", "*")
			h.Set("Access-Control-Expose-Headers", "WWW-Authenticate")
			if r.Method == http.MethodOptions {
				h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
				h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Mcp-Protocol-Version")
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// ipKey is the per-IP rate-limit key of the request's client.
func (e *edge) ipKey(r *http.Request) string {
	a := e.clientAddr(r)
	if !a.IsValid() {
		return r.RemoteAddr
	}
	return ratelimit.IPKey(a)
}

// clientIP is the client address as text, for audit and logs.
func (e *edge) clientIP(r *http.Request) string {
	if a := e.clientAddr(r); a.IsValid() {
		return a.String()
	}
	return r.RemoteAddr
}

// clientAddr is the socket peer, unless the peer is a trusted proxy: then
// X-Forwarded-For is read right to left and the first address that is not a
// trusted proxy is the client (entries left of it could be forged by the
// client). Without trusted proxies X-Forwarded-For is ignored, so a header
// cannot evade rate limits or falsify the audit trail.
func (e *edge) clientAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	peer := ap.Addr().Unmap()
	if !e.isTrusted(peer) {
		return peer
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return peer // a malformed hop: trust nothing left of it
		}
		if a = a.Unmap(); !e.isTrusted(a) {
			return a
		}
		peer = a
	}
	return peer
}

func (e *edge) isTrusted(a netip.Addr) bool {
	for _, p := range e.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
