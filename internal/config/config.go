// Package config loads mcpgate's configuration: one typed struct decoded
// strictly from YAML (an unknown key is an error), with ${ENV} substitution,
// MCPGATE_* environment overrides, defaults, and a Validate that reports every
// problem at once with its key path.
package config

import (
	"cmp"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/aggregate"
	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/authserver"
	"github.com/mcpgate/mcpgate/internal/credential"
	"github.com/mcpgate/mcpgate/internal/idp"
	"github.com/mcpgate/mcpgate/internal/keys"
	"github.com/mcpgate/mcpgate/internal/netguard"
	"github.com/mcpgate/mcpgate/internal/policy"
	"github.com/mcpgate/mcpgate/internal/proxy"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/tokenendpoint"
	"github.com/mcpgate/mcpgate/internal/validate"
)

// Auth modes.
const (
	ModeJWT                 = authn.ModeJWT
	ModeIntrospection       = authn.ModeIntrospection
	ModeTrustedHeader       = authn.ModeTrustedHeader
	ModeAuthorizationServer = authn.Mode("authorization_server")
	ModeNone                = authn.Mode("none")
)

// Config is the whole gateway configuration.
type Config struct {
	// Listen is the address to listen on, host:port (default
	// 127.0.0.1:8080). Overridden by MCPGATE_LISTEN and --listen.
	Listen string `yaml:"listen"`
	// PublicURL is the externally visible base URL. The canonical MCP resource
	// URI of a backend is PublicURL + the backend's path. It must be https
	// unless its host is loopback or security.allow_insecure_http is set.
	// Overridden by MCPGATE_PUBLIC_URL and --public-url.
	PublicURL string        `yaml:"public_url"`
	TLS       TLSConfig     `yaml:"tls"`
	Log       LogConfig     `yaml:"log"`
	Auth      AuthConfig    `yaml:"auth"`
	Policy    policy.Config `yaml:"policy"`
	// Backends are the MCP servers behind the gateway, each served at its
	// own path. At least one is required.
	Backends []proxy.BackendConfig `yaml:"backends"`
	// Endpoints are aggregated endpoints: each serves several backends on
	// one path and one MCP session, their tools and prompts named
	// backend + separator + name. See "Aggregated endpoints" in
	// docs/configuration.md.
	Endpoints []aggregate.Config `yaml:"endpoints"`
	Audit     audit.Config       `yaml:"audit"`
	Store     store.Config       `yaml:"store"`
	RateLimit ratelimit.Config   `yaml:"rate_limit"`
	Security  SecurityConfig     `yaml:"security"`
	Metrics   MetricsConfig      `yaml:"metrics"`
	Keys      keys.Config        `yaml:"keys"`
	// InternalEndpoint is the internal token endpoint: on a second,
	// mutual-TLS-only listener, backends identified by their client
	// certificate's SPIFFE ID retrieve the upstream token stored for a
	// user's grant (authorization_server mode). Off unless listen is set.
	InternalEndpoint tokenendpoint.Config `yaml:"internal_endpoint"`
	// EncryptionKey seals stored secrets (upstream tokens, signing keys)
	// and, under a key derived from it, the MCP session ids the gateway
	// issues: 32 bytes, base64. Replicas behind one load balancer need the
	// same key (in every auth mode) to accept each other's session ids;
	// without one, session ids hold on the replica that issued them until
	// it restarts. Prefer EncryptionKeyFile: a key in the config file
	// or the environment (MCPGATE_ENCRYPTION_KEY) is readable wherever they
	// are.
	EncryptionKey string `yaml:"encryption_key" secret:"true"`
	// EncryptionKeyFile is a file holding EncryptionKey (mode 0600, owned
	// by the gateway's user: openssl rand -base64 32 > key; chmod 600 key);
	// also MCPGATE_ENCRYPTION_KEY_FILE. Not together with EncryptionKey;
	// one of them is required in authorization_server mode.
	EncryptionKeyFile string `yaml:"encryption_key_file"`
	// EncryptionKeyPrevious lists earlier encryption keys (base64), newest
	// first; also MCPGATE_ENCRYPTION_KEY_PREVIOUS (comma-separated) or its
	// _FILE. Values sealed under them still open and are sealed again under
	// encryption_key on use, or all at once by `mcpgate keys reseal`; then
	// drop them.
	EncryptionKeyPrevious []string `yaml:"encryption_key_previous" secret:"true"`
	// ShutdownTimeout is how long SIGTERM waits for in-flight requests and
	// SSE streams to finish (default 30s).
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`

	// publicURLDefaulted records that public_url was derived from listen
	// (for Warnings).
	publicURLDefaulted bool
}

// TLSConfig enables HTTPS on the listener.
type TLSConfig struct {
	// CertFile is the PEM certificate chain. With KeyFile set too, the
	// gateway serves HTTPS and sends HSTS.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of CertFile.
	KeyFile string `yaml:"key_file"`
}

// Enabled reports whether the gateway terminates TLS itself.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" }

// LogConfig selects the log format and level.
type LogConfig struct {
	Format string `yaml:"format"` // json | text (default text); MCPGATE_LOG_FORMAT
	Level  string `yaml:"level"`  // debug | info | warn | error (default info); MCPGATE_LOG_LEVEL
}

// MetricsConfig exposes Prometheus metrics at /metrics.
type MetricsConfig struct {
	// Enabled serves /metrics. The mcp_method label of
	// mcpgate_requests_total takes the known MCP methods only (every other
	// method counts as other); tool, prompt and resource names are never
	// labels, so a client cannot grow the series.
	// mcpgate_authserver_request_duration_seconds times the authorization
	// server's endpoints (endpoint: token, authorize, …, metadata; status).
	// A Grafana dashboard and example alerts are in
	// deploy/helm/mcpgate/files/.
	Enabled bool `yaml:"enabled"`
}

// AuthConfig chooses how requests on the MCP endpoint are authenticated.
// There is no default: a gateway without an explicit choice refuses to start.
type AuthConfig struct {
	// Config holds mode, jwt, introspection, trusted_header, claims and
	// cache_size. Mode may also be authorization_server or none here.
	authn.Config `yaml:",inline"`
	// AuthorizationServer configures mcpgate's own OAuth 2.1 server.
	AuthorizationServer authserver.Config `yaml:"authorization_server"`
	// ScopesSupported is advertised in the protected resource metadata
	// (RFC 9728) and in the 401 challenge. Keep it a minimal baseline.
	ScopesSupported []string `yaml:"scopes_supported"`
	// AuthorizationServers overrides the authorization_servers advertised in
	// the protected resource metadata (default: the JWT issuers, or our own).
	AuthorizationServers []string `yaml:"authorization_servers"`
}

// SecurityConfig holds edge protections applied before authentication.
type SecurityConfig struct {
	// AllowedHosts are accepted Host header values (host or host:port).
	// Default: the public URL's host plus loopback names when listening on
	// loopback. Protects against DNS rebinding.
	AllowedHosts []string `yaml:"allowed_hosts"`
	// AllowedOrigins are browser origins allowed to call the MCP endpoint
	// (default: the public URL's origin, plus each loopback name of
	// AllowedHosts, e.g. http://localhost:8080, when the public URL is
	// loopback). A request with an Origin header not in this list gets 403.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// CORSOrigins get CORS response headers (a subset of AllowedOrigins is
	// typical; they are added to AllowedOrigins). Each is
	// scheme://host[:port]: no path, no wildcard.
	CORSOrigins []string `yaml:"cors_origins"`
	// MaxBodyBytes limits request bodies (default 4 MiB); a larger one gets
	// 413.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// TrustedProxies are the addresses or CIDRs of reverse proxies in front
	// of the gateway (load balancer, ingress). Only when the socket peer is
	// one of them is X-Forwarded-For read, right to left, skipping trusted
	// hops, to find the client address used for rate limits and audit.
	// Default: none (the socket peer is the client).
	TrustedProxies []string `yaml:"trusted_proxies"`
	// AllowInsecureHTTP permits a non-loopback http public URL (e.g. TLS
	// terminated by a trusted proxy that rewrites the scheme). Off by default.
	AllowInsecureHTTP bool `yaml:"allow_insecure_http"`

	// ReadHeaderTimeout bounds reading a request's line and headers
	// (default 10s).
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a request's whole body once the headers are
	// in (default 60s), on every route. On the MCP endpoint it is set per
	// request and lifted once the body is in, so SSE streams and long tool
	// calls are never cut by it.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// MinBodyRate is the slowest average rate, in bytes per second, at which
	// a body may arrive once MinBodyRateGrace has passed (default 1024). A
	// client trickling its body is cut off early, while a large body on a
	// slow but honest link still arrives within ReadTimeout: with the
	// defaults a body trickled at 1 byte/s is cut after about 5 s, while a
	// 4 MiB body needs only about 70 KB/s. A body too slow gets 408 (a
	// JSON-RPC error on the MCP endpoint) and the connection is closed.
	MinBodyRate int64 `yaml:"min_body_rate"`
	// MinBodyRateGrace is how long a body may arrive at any rate before
	// MinBodyRate applies (default 5s); shorter than ReadTimeout.
	MinBodyRateGrace time.Duration `yaml:"min_body_rate_grace"`
	// WriteTimeout bounds each write of a response (default 60s): a client
	// that stops reading is cut off. On the MCP endpoint it is renewed
	// before every write, so an SSE stream lives as long as its client
	// reads; elsewhere it bounds the whole response.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// MaxInFlightPerIP bounds the requests one client address (IPv6: its
	// /64; behind trusted_proxies, the forwarded address) has in flight at
	// once, on every route but the probes, open SSE streams included
	// (default 256).
	MaxInFlightPerIP int `yaml:"max_in_flight_per_ip"`
	// MaxInFlightPerUser bounds the MCP requests one user (issuer +
	// subject) has in flight at once, open SSE streams included (default
	// 64). Past either bound: 429 with Retry-After: 1 (JSON-RPC error -32029
	// on the MCP endpoint, audited).
	MaxInFlightPerUser int `yaml:"max_in_flight_per_user"`
}

// Defaults of the slow-client protections. With them a body trickled at
// 1 byte/s is cut off after about 5 s, and a 4 MiB body needs about
// 70 KB/s to arrive within the read timeout.
const (
	DefaultReadHeaderTimeout  = 10 * time.Second
	DefaultReadTimeout        = 60 * time.Second
	DefaultMinBodyRate        = 1024
	DefaultMinBodyRateGrace   = 5 * time.Second
	DefaultWriteTimeout       = 60 * time.Second
	DefaultMaxInFlightPerIP   = 256
	DefaultMaxInFlightPerUser = 64
)

// SetDefaults fills every unset field with its default.
func (c *Config) SetDefaults() {
	c.Listen = cmp.Or(c.Listen, "127.0.0.1:8080")
	if c.PublicURL == "" {
		c.publicURLDefaulted = true
		scheme := "http"
		if c.TLS.Enabled() {
			scheme = "https"
		}
		host := c.Listen
		if h, p, err := net.SplitHostPort(c.Listen); err == nil && (h == "" || h == "0.0.0.0" || h == "::") {
			host = net.JoinHostPort("localhost", p)
		}
		c.PublicURL = scheme + "://" + host
	}
	c.PublicURL = strings.TrimSuffix(c.PublicURL, "/")
	c.Log.Format = cmp.Or(c.Log.Format, "text")
	c.Log.Level = cmp.Or(c.Log.Level, "info")
	c.Security.setDefaults()
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, 30*time.Second)
	aggregated := map[string]bool{}
	for i := range c.Endpoints {
		c.Endpoints[i].SetDefaults()
		for _, b := range c.Endpoints[i].Backends {
			aggregated[b] = true
		}
	}
	for i := range c.Backends {
		if aggregated[c.Backends[i].Name] && c.Backends[i].Path == "" {
			c.Backends[i].SetDefaults(-1) // served only through its endpoint
			continue
		}
		c.Backends[i].SetDefaults(i)
	}
	c.Auth.Config.SetDefaults()
	if c.Auth.Mode == ModeAuthorizationServer {
		as := &c.Auth.AuthorizationServer
		as.PublicURL = c.PublicURL
		if len(as.Resources) == 0 {
			as.Resources = c.ResourceURLs()
		}
		as.SetDefaults()
		if len(c.Auth.ScopesSupported) == 0 {
			c.Auth.ScopesSupported = as.Scopes
		}
	}
	c.Policy.SetDefaults()
	c.Audit.SetDefaults()
	c.Store.SetDefaults()
	c.Keys.SetDefaults()
	c.RateLimit.SetDefaults()
}

// ResourceURLs returns the canonical resource URI of every backend served
// on a path of its own and of every aggregated endpoint.
func (c *Config) ResourceURLs() []string {
	out := make([]string, 0, len(c.Backends)+len(c.Endpoints))
	for _, b := range c.Backends {
		if b.Path != "" {
			out = append(out, c.PublicURL+b.Path)
		}
	}
	for _, e := range c.Endpoints {
		out = append(out, c.PublicURL+e.Path)
	}
	return out
}

// Validate reports every problem in the configuration at once.
func (c *Config) Validate() error {
	var p validate.Problems
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		p.Add("listen", "must be host:port (got %q)", c.Listen)
	}
	loopback := netguard.IsLoopbackHost(host)
	pu, err := url.Parse(c.PublicURL)
	switch {
	case err != nil || pu.Host == "" || (pu.Scheme != "http" && pu.Scheme != "https"):
		p.Add("public_url", "must be an absolute http(s) URL (got %q)", c.PublicURL)
	case pu.RawQuery != "" || pu.Fragment != "":
		p.Add("public_url", "must not have a query or fragment")
	case pu.Scheme == "http" && !netguard.IsLoopbackHost(pu.Hostname()) && !c.Security.AllowInsecureHTTP:
		p.Add("public_url", "must be https unless the host is loopback (set security.allow_insecure_http only behind a TLS-terminating proxy)")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		p.Add("tls", "cert_file and key_file must be set together")
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		p.Add("log.format", "must be json or text (got %q)", c.Log.Format)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.Add("log.level", "must be debug, info, warn or error (got %q)", c.Log.Level)
	}

	switch c.Auth.Mode {
	case "":
		p.Add("auth.mode", "is required: choose jwt, introspection, trusted_header, authorization_server, or none (loopback only)")
	case ModeJWT, ModeIntrospection, ModeTrustedHeader:
		c.Auth.Config.Validate("auth", &p)
	case ModeAuthorizationServer:
		c.Auth.AuthorizationServer.Validate("auth.authorization_server", &p)
		c.Auth.Claims.Validate("auth.claims", &p)
		if c.EncryptionKey == "" {
			p.Add("encryption_key", "is required in authorization_server mode: write 32 random bytes, base64, to a file only the gateway can read (openssl rand -base64 32 > key; chmod 600 key) and set MCPGATE_ENCRYPTION_KEY_FILE or encryption_key_file to it")
		} else if _, err := keys.ParseKey(c.EncryptionKey); err != nil {
			p.Add("encryption_key", "%v", err)
		}
	case ModeNone:
		if !loopback {
			p.Add("auth.mode", "none is only allowed when listen is a loopback address (got %q)", c.Listen)
		}
	default:
		p.Add("auth.mode", "unknown mode %q: choose jwt, introspection, trusted_header, authorization_server, or none", c.Auth.Mode)
	}
	if c.Auth.Mode != ModeAuthorizationServer && c.EncryptionKey != "" {
		// Optional here: it seals MCP session ids, so that every replica
		// accepts the ones another issued.
		if _, err := keys.ParseKey(c.EncryptionKey); err != nil {
			p.Add("encryption_key", "%v", err)
		}
	}
	for i, s := range c.Auth.ScopesSupported {
		if s == "*" || s == "all" || !validate.IsScopeToken(s) {
			p.Add(validate.Index("auth.scopes_supported", i), "invalid scope %q (no wildcards, spaces or quotes)", s)
		}
	}
	for i, s := range c.Auth.AuthorizationServers {
		if u, err := url.Parse(s); err != nil || u.Host == "" {
			p.Add(validate.Index("auth.authorization_servers", i), "must be an absolute URL")
		}
	}

	if len(c.Backends) == 0 {
		p.Add("backends", "at least one backend is required")
	}
	names, paths := map[string]bool{}, map[string]bool{}
	for i := range c.Backends {
		b := &c.Backends[i]
		path := validate.Index("backends", i)
		b.Validate(path, &p)
		if names[b.Name] {
			p.Add(path+".name", "duplicate backend name %q", b.Name)
		}
		if paths[b.Path] {
			p.Add(path+".path", "duplicate path %q", b.Path)
		}
		names[b.Name] = true
		if b.Path != "" {
			paths[b.Path] = true
		}
		if b.Credential.Type == credential.TypeUpstreamToken && c.Auth.Mode != ModeAuthorizationServer {
			p.Add(path+".credential.type", "upstream_token requires auth.mode authorization_server")
		}
		if b.Credential.Type == credential.TypeLinkedToken {
			switch {
			case c.Auth.Mode != ModeAuthorizationServer:
				p.Add(path+".credential.type", "linked_token requires auth.mode authorization_server (the linked token is kept with the user's grant)")
			case b.Credential.Provider != "" && !c.Auth.AuthorizationServer.LinkedProviderNames()[b.Credential.Provider]:
				p.Add(path+".credential.provider", "names no entry of auth.authorization_server.linked_providers (got %q)", b.Credential.Provider)
			}
		}
		if b.Credential.Type == credential.TypeTokenExchange {
			switch {
			case c.Auth.Mode != ModeAuthorizationServer && c.Auth.Mode != ModeJWT && c.Auth.Mode != ModeIntrospection:
				p.Add(path+".credential.type", "token_exchange needs the user's token: auth.mode authorization_server, jwt or introspection")
			case c.Auth.Mode == ModeAuthorizationServer && c.Auth.AuthorizationServer.Upstream.Type == idp.TypeStatic:
				p.Add(path+".credential.type", "token_exchange needs the user's token from an upstream identity provider: built-in users have none (auth.authorization_server.upstream.type oidc)")
			}
		}
	}
	aggregated, endpoints := map[string]bool{}, map[string]bool{}
	for i := range c.Endpoints {
		e := &c.Endpoints[i]
		path := validate.Index("endpoints", i)
		e.Validate(path, names, &p)
		if paths[e.Path] {
			p.Add(path+".path", "duplicate path %q (a backend or another endpoint has it)", e.Path)
		}
		if endpoints[e.Name] {
			p.Add(path+".name", "duplicate endpoint name %q", e.Name)
		}
		paths[e.Path], endpoints[e.Name] = true, true
		for _, b := range e.Backends {
			aggregated[b] = true
		}
	}
	for i, b := range c.Backends {
		if b.Path == "" && !aggregated[b.Name] {
			p.Add(validate.Index("backends", i)+".path", "is required for a backend that no endpoint aggregates")
		}
	}

	for i, o := range c.Security.AllowedOrigins {
		validateOrigin(validate.Index("security.allowed_origins", i), o, &p)
	}
	for i, o := range c.Security.CORSOrigins {
		validateOrigin(validate.Index("security.cors_origins", i), o, &p)
	}
	for i, h := range c.Security.AllowedHosts {
		if h == "" || strings.ContainsAny(h, "/ ") {
			p.Add(validate.Index("security.allowed_hosts", i), "must be a host or host:port (got %q)", h)
		}
	}
	for i, tp := range c.Security.TrustedProxies {
		if _, err := ParsePrefix(tp); err != nil {
			p.Add(validate.Index("security.trusted_proxies", i), "must be an IP address or CIDR (got %q)", tp)
		}
	}
	c.Security.validate(&p)
	c.validateInternalEndpoint(&p)
	c.Policy.Validate("policy", &p)
	// Policy requests name a backend, or an aggregated endpoint for the
	// messages that name none: a policy naming anything else grants nothing.
	known := maps.Clone(names)
	for _, e := range c.Endpoints {
		known[e.Name] = true
	}
	c.Policy.CheckBackends("policy", known, &p)
	c.Audit.Validate("audit", &p)
	c.Store.Validate("store", &p)
	c.RateLimit.Validate("rate_limit", &p)
	c.validateKeys(&p)
	c.validateRateLimitRefs(&p)
	return p.Err()
}

// validateKeys checks the keys section and the previous encryption keys.
// The current key is checked where it is used (it may come from a file).
func (c *Config) validateKeys(p *validate.Problems) {
	c.Keys.Validate("keys", p)
	if c.Auth.Mode == ModeAuthorizationServer && c.Keys.RetiredKeyOverlap < c.Auth.AuthorizationServer.AccessTokenLifetime {
		p.Add("keys.retired_key_overlap", "must be at least auth.authorization_server.access_token_lifetime (%s): tokens signed by a retired key must verify until they expire (got %s)",
			c.Auth.AuthorizationServer.AccessTokenLifetime, c.Keys.RetiredKeyOverlap)
	}
	for i, k := range c.EncryptionKeyPrevious {
		if _, err := keys.ParseKey(k); err != nil {
			p.Add(validate.Index("encryption_key_previous", i), "%v", err)
		}
	}
}

// validateRateLimitRefs checks what rate_limit refers to outside itself: the
// store a shared limiter lives in, and the backends per-tool rules name.
func (c *Config) validateRateLimitRefs(p *validate.Problems) {
	if c.RateLimit.Shared.Store == ratelimit.SharedPostgres && c.Store.Driver != store.DriverPostgres {
		p.Add("rate_limit.shared.store", "postgres keeps the limits in the store's database: set store.driver: postgres and store.dsn (got driver %q)", c.Store.Driver)
	}
	names := map[string]bool{}
	for _, b := range c.Backends {
		names[b.Name] = true
	}
	for i, t := range c.RateLimit.PerTool {
		for j, b := range t.Backends {
			if b != "" && !names[b] {
				p.Add(fmt.Sprintf("rate_limit.per_tool[%d].backends[%d]", i, j), "names no backend (got %q)", b)
			}
		}
	}
}

// validateInternalEndpoint checks internal_endpoint, and it against the
// rest: it needs the authorization server's grants, its own address, and
// backends that exist.
func (c *Config) validateInternalEndpoint(p *validate.Problems) {
	ie := &c.InternalEndpoint
	ie.Validate("internal_endpoint", p)
	if !ie.Enabled() {
		return
	}
	if c.Auth.Mode != ModeAuthorizationServer {
		p.Add("internal_endpoint", "requires auth.mode authorization_server (upstream tokens are stored only there)")
	}
	host, port, err := net.SplitHostPort(ie.Listen)
	if err != nil {
		p.Add("internal_endpoint.listen", "must be host:port (got %q)", ie.Listen)
	} else if pubHost, pubPort, err := net.SplitHostPort(c.Listen); err == nil && port == pubPort && port != "0" && sameInterface(host, pubHost) {
		p.Add("internal_endpoint.listen", "must not be the public listen address %q: the internal endpoint is never served on the public listener", c.Listen)
	}
	names := map[string]bool{}
	for _, b := range c.Backends {
		names[b.Name] = true
	}
	for i, cl := range ie.Clients {
		for j, b := range cl.Backends {
			if !names[b] {
				p.Add(validate.Index(validate.Index("internal_endpoint.clients", i)+".backends", j), "unknown backend %q", b)
			}
		}
	}
}

// sameInterface reports whether two listen hosts can bind the same
// address: equal, both loopback, or either the wildcard.
func sameInterface(a, b string) bool {
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" || h == "[::]" }
	return a == b || wild(a) || wild(b) || (netguard.IsLoopbackHost(a) && netguard.IsLoopbackHost(b))
}

func (s *SecurityConfig) setDefaults() {
	s.MaxBodyBytes = cmp.Or(s.MaxBodyBytes, 4<<20)
	s.ReadHeaderTimeout = cmp.Or(s.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	s.ReadTimeout = cmp.Or(s.ReadTimeout, DefaultReadTimeout)
	s.MinBodyRate = cmp.Or(s.MinBodyRate, DefaultMinBodyRate)
	s.MinBodyRateGrace = cmp.Or(s.MinBodyRateGrace, DefaultMinBodyRateGrace)
	s.WriteTimeout = cmp.Or(s.WriteTimeout, DefaultWriteTimeout)
	s.MaxInFlightPerIP = cmp.Or(s.MaxInFlightPerIP, DefaultMaxInFlightPerIP)
	s.MaxInFlightPerUser = cmp.Or(s.MaxInFlightPerUser, DefaultMaxInFlightPerUser)
}

// validate checks the limits; none can be switched off, since every read
// of client input needs a bound.
func (s *SecurityConfig) validate(p *validate.Problems) {
	if s.MaxBodyBytes < 0 {
		p.Add("security.max_body_bytes", "must not be negative")
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"read_header_timeout", s.ReadHeaderTimeout}, {"read_timeout", s.ReadTimeout}, {"min_body_rate_grace", s.MinBodyRateGrace}, {"write_timeout", s.WriteTimeout}} {
		if d.v < 0 {
			p.Add("security."+d.key, "must be positive (got %s)", d.v)
		}
	}
	if s.MinBodyRate < 0 {
		p.Add("security.min_body_rate", "must be a positive number of bytes per second (got %d)", s.MinBodyRate)
	}
	if s.MinBodyRateGrace >= s.ReadTimeout && s.ReadTimeout > 0 {
		p.Add("security.min_body_rate_grace", "must be shorter than security.read_timeout (got %s >= %s)", s.MinBodyRateGrace, s.ReadTimeout)
	}
	if s.MaxInFlightPerIP < 0 {
		p.Add("security.max_in_flight_per_ip", "must be at least 1 (got %d)", s.MaxInFlightPerIP)
	}
	if s.MaxInFlightPerUser < 0 {
		p.Add("security.max_in_flight_per_user", "must be at least 1 (got %d)", s.MaxInFlightPerUser)
	}
}

// ParsePrefix parses an IP address or CIDR as a prefix.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// validateOrigin checks a browser origin: scheme://host[:port], nothing more.
func validateOrigin(path, o string, p *validate.Problems) {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil || o == "*" {
		p.Add(path, "must be an origin scheme://host[:port] with no path, query or wildcard (got %q)", o)
		return
	}
	if strings.HasSuffix(o, "/") {
		p.Add(path, "must not end with '/' (origins have no path; got %q)", o)
	}
}

// IsLoopbackListen reports whether the listen address is loopback-only.
func (c *Config) IsLoopbackListen() bool {
	h, _, err := net.SplitHostPort(c.Listen)
	return err == nil && netguard.IsLoopbackHost(h)
}

// Summary describes the active configuration for the start-up banner; it
// never includes secrets.
func (c *Config) Summary() []any {
	out := []any{"listen", c.Listen, "public_url", c.PublicURL, "auth_mode", c.Auth.Mode, "tls", c.TLS.Enabled()}
	switch c.Auth.Mode {
	case ModeJWT:
		var iss, aud []string
		for _, i := range c.Auth.JWT.Issuers {
			iss = append(iss, i.Issuer)
			aud = append(aud, i.Audience...)
		}
		out = append(out, "issuers", iss, "audience", aud)
	case ModeIntrospection:
		out = append(out, "introspection_endpoint", c.Auth.Introspection.Endpoint, "audience", c.Auth.Introspection.Audience)
	case ModeTrustedHeader:
		out = append(out, "team_domain", c.Auth.TrustedHeader.TeamDomain)
	case ModeAuthorizationServer:
		out = append(out, "issuer", c.PublicURL, "upstream", c.Auth.AuthorizationServer.Upstream.Type)
	}
	for _, b := range c.Backends {
		out = append(out, "backend", fmt.Sprintf("%s %s -> %s", b.Name, b.Path, b.URL))
	}
	if c.InternalEndpoint.Enabled() {
		out = append(out, "internal_endpoint", c.InternalEndpoint.Listen, "trust_domain", c.InternalEndpoint.TrustDomain)
	}
	for _, e := range c.Endpoints {
		out = append(out, "endpoint", fmt.Sprintf("%s %s -> %s", e.Name, e.Path, strings.Join(e.Backends, ", ")))
	}
	return out
}
