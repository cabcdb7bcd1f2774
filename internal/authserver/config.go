package authserver

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mcpgate/mcpgate/internal/idp"
	"github.com/mcpgate/mcpgate/internal/netguard"
	"github.com/mcpgate/mcpgate/internal/validate"
	"github.com/mcpgate/mcpgate/web"
)

// Registration modes (RFC 7591).
const (
	RegistrationOpen   = "open"   // anyone may register (rate limited per IP)
	RegistrationToken  = "token"  // an initial access token is required (RFC 7591 §3)
	RegistrationClosed = "closed" // only static and CIMD clients
)

// Config is `auth.authorization_server`.
type Config struct {
	// PublicURL is mcpgate's external base URL; the issuer equals it. The
	// caller copies it from the top-level public_url before SetDefaults.
	PublicURL string `yaml:"-"`

	// Resources are the protected resources (RFC 8707) tokens can be issued
	// for; the first is the default when a client omits `resource`. The
	// issuer is the top-level public_url.
	Resources []string `yaml:"resources"`
	// Scopes are the MCP scopes clients may request (advertised in metadata).
	Scopes []string `yaml:"scopes"`
	// ScopeDescriptions are shown on the consent page.
	ScopeDescriptions map[string]string `yaml:"scope_descriptions"`
	// DefaultScopes are granted when a request names none.
	DefaultScopes []string `yaml:"default_scopes"`

	AccessTokenLifetime  time.Duration `yaml:"access_token_lifetime"`  // JWT access tokens (typ at+jwt), default 15m
	RefreshTokenLifetime time.Duration `yaml:"refresh_token_lifetime"` // idle lifetime of each refresh token, default 720h
	SessionLifetime      time.Duration `yaml:"session_lifetime"`       // absolute lifetime of a grant, default 2160h
	// RefreshGrace: refresh tokens rotate on every use. Presenting the
	// immediately previous token again within this time returns the same
	// successor instead of revoking the grant, so two concurrent refreshes
	// (two tabs, a retry after a lost response) do not end the session. The
	// price: for that long a stolen previous token is also honoured.
	// Unset means 30s; 0 means strict rotation: any second use of a refresh
	// token is treated as replay and revokes the whole grant (every refresh
	// and access token of it), the right choice when clients never refresh
	// concurrently. At most 5m.
	RefreshGrace *Duration     `yaml:"refresh_grace"`
	CodeLifetime time.Duration `yaml:"code_lifetime"` // authorization codes, default 1m, at most 10m
	LoginTimeout time.Duration `yaml:"login_timeout"` // pending authorization request, default 10m
	// ConsentTTL is how long a user's approval of a client (for its scopes,
	// resource and redirect URI) is remembered, in the store and in the
	// browser's sealed consent cookie before an upstream login; then the
	// consent page asks again.
	ConsentTTL time.Duration `yaml:"consent_ttl"` // default 720h
	// ConsentLifetime is the former name of ConsentTTL, still accepted
	// when consent_ttl is not set.
	ConsentLifetime     time.Duration `yaml:"consent_lifetime"`
	RevocationCacheTTL  time.Duration `yaml:"revocation_cache_ttl"`  // how long a grant check is trusted, default 5s, at most 1m
	UpstreamRefreshSkew time.Duration `yaml:"upstream_refresh_skew"` // refresh upstream tokens this long before expiry, default 30s

	SigningAlg string `yaml:"signing_alg"` // ES256 (default) | RS256

	RateLimit    RateLimitConfig    `yaml:"rate_limit"`
	Registration RegistrationConfig `yaml:"registration"`
	CIMD         CIMDConfig         `yaml:"cimd"`
	// StaticClients are clients the operator registers here instead of
	// dynamic registration.
	StaticClients []StaticClient `yaml:"static_clients"`
	Upstream      idp.Config     `yaml:"upstream"`
	// LinkedProviders are OAuth providers besides the sign-in IdP whose
	// tokens backends need (credential type linked_token): each user links
	// an account there once, on first use.
	LinkedProviders []LinkedProvider `yaml:"linked_providers"`
	// LinkSignInMaxAge is how long a sign-in to mcpgate in a browser lets
	// that browser open its user's link URLs without signing in again
	// (default 10m, 1m to 24h). Older, and the link page asks for a sign-in
	// at the login IdP or the built-in users first.
	LinkSignInMaxAge time.Duration `yaml:"link_sign_in_max_age"`
	Branding         web.Branding  `yaml:"branding"`
}

// RegistrationConfig configures dynamic client registration (RFC 7591).
// Mode token needs a token of at least 16 characters. Over
// max_clients_per_ip: 429 with Retry-After, the seconds until the oldest
// counted registration leaves the window.
type RegistrationConfig struct {
	Mode  string `yaml:"mode"`                // open (default) | token | closed
	Token string `yaml:"token" secret:"true"` // initial access token for mode token
	// MaxClientsPerIP caps new registrations per source address (an IPv6
	// /64 counts as one) and sliding window. Default 1000, -1 = unlimited.
	// A public client (token_endpoint_auth_method none, as mcp-remote and
	// Inspector register) that registers again from the same address with
	// identical metadata gets its earlier client_id back and is not
	// counted; confidential clients always get a new client and secret.
	// Everyone behind one NAT shares an address: the default leaves room
	// for hundreds of users. Behind a reverse proxy set
	// security.trusted_proxies, or every registration counts against the
	// proxy's address.
	MaxClientsPerIP int           `yaml:"max_clients_per_ip"`
	Window          time.Duration `yaml:"window"` // default 1h
	// TrustedSchemes are private-use URI schemes (RFC 8252 §7.1) accepted in
	// redirect URIs besides reverse-domain ones, e.g. cursor, vscode.
	TrustedSchemes []string `yaml:"trusted_schemes"`
	// ClientLifetime expires unused dynamic registrations; 0 = never.
	ClientLifetime time.Duration `yaml:"client_lifetime"`
}

// CIMDConfig configures Client ID Metadata Documents.
type CIMDConfig struct {
	// Enabled accepts client ID metadata documents (default true): a
	// client_id that is an https URL naming a JSON document that describes
	// the client. mcpgate then advertises
	// client_id_metadata_document_supported, and clients such as Claude
	// Code sign in that way instead of registering. Trade-off: no
	// registration state and a client identified by a web origin, but the
	// gateway must be able to fetch the document (outbound HTTPS to the
	// client's site). Without egress the user sees an error page saying the
	// document could not be retrieved; set false and clients fall back to
	// dynamic registration. A document without client_name is accepted: the
	// consent page names the client by the document's host (in punycode)
	// and marks it unverified.
	Enabled *bool `yaml:"enabled"`
	// AllowedHosts may resolve to private or loopback addresses (documents
	// on internal hosts): exact host names or IP literals, or "*.zone" for
	// any name of one or more labels under zone (not zone itself); ASCII
	// only (write IDN names in punycode). Every other host keeps the
	// dial-time SSRF guard. Every name under a wildcard can reach internal
	// addresses: use only zones whose DNS you control.
	AllowedHosts []string `yaml:"allowed_hosts"`
	// CAFile is a PEM bundle: the only roots trusted for AllowedHosts
	// (an internal CA). Other hosts use the system roots. Requires
	// AllowedHosts.
	CAFile string `yaml:"ca_file"`
	// AllowPrivate lets documents be fetched from any loopback/private
	// address. For tests only: it re-opens the SSRF hole the guard closes
	// (any client can make the gateway request internal URLs), and is
	// logged as an INSECURE error at start-up; use AllowedHosts instead.
	AllowPrivate bool          `yaml:"allow_private"`
	Timeout      time.Duration `yaml:"timeout"`   // per fetch, default 5s, at most 30s
	MaxBytes     int64         `yaml:"max_bytes"` // largest document, default 16 KiB, 512 B to 64 KiB
	// CacheTTL applies when the document's response has no max-age; the
	// response's max-age is honoured up to MaxCacheTTL, and no-store turns
	// caching off.
	CacheTTL    time.Duration `yaml:"cache_ttl"`     // default 5m
	MaxCacheTTL time.Duration `yaml:"max_cache_ttl"` // default 24h
	// NegativeCacheTTL remembers a failed fetch, so a bad or unreachable
	// document URL is not fetched again on every /authorize (at most 1h).
	NegativeCacheTTL time.Duration `yaml:"negative_cache_ttl"` // default 1m
	// MaxConcurrentFetches caps document fetches in flight at once; more
	// are refused (/authorize answers 503 with Retry-After: 5) rather than
	// queued, so slow document URLs cannot tie up the server.
	MaxConcurrentFetches int `yaml:"max_concurrent_fetches"` // default 8
}

// StaticClient is a client configured by the operator.
type StaticClient struct {
	// ClientID is the client_id the client presents.
	ClientID string `yaml:"client_id"`
	// ClientSecret (e.g. from ${ENV}) or ClientSecretHash (bcrypt) makes the
	// client confidential; neither: public client (PKCE only).
	ClientSecret string `yaml:"client_secret" secret:"true"`
	// ClientSecretHash is a bcrypt hash of the client secret, instead of
	// ClientSecret.
	ClientSecretHash string `yaml:"client_secret_hash" secret:"true"`
	// Name is shown on the consent page.
	Name string `yaml:"name"`
	// RedirectURIs are the exact redirect URIs the client may use.
	RedirectURIs []string `yaml:"redirect_uris"`
	// SkipConsent skips the consent page, for first-party clients the
	// operator vouches for.
	SkipConsent bool `yaml:"skip_consent"`
}

// DefaultMaxClientsPerIP is the default cap on dynamic registrations per
// source address and window: high enough for everyone behind one NAT or
// proxy, since identical public registrations are not counted, and still a
// bound on what one address can make the store hold.
const DefaultMaxClientsPerIP = 1000

// DefaultRefreshGrace applies when refresh_grace is unset.
const DefaultRefreshGrace = 30 * time.Second

// refreshGrace is the configured grace, DefaultRefreshGrace when unset.
func (c *Config) refreshGrace() time.Duration {
	if c.RefreshGrace == nil {
		return DefaultRefreshGrace
	}
	return time.Duration(*c.RefreshGrace)
}

// Duration is a time.Duration that YAML may also write as a bare 0, the
// natural spelling of "none" (other values need a unit, as in 30s).
type Duration time.Duration

// ExpectedYAML is for configuration error messages.
func (Duration) ExpectedYAML() string { return "0 or a duration such as 30s" }

// MarshalYAML writes a duration string, as time.Duration is written.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// UnmarshalYAML accepts 0 or a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.Value == "0" {
		*d = 0
		return nil
	}
	var v time.Duration
	if err := n.Decode(&v); err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Enabled reports whether CIMD is on.
func (c *CIMDConfig) enabled() bool { return c.Enabled == nil || *c.Enabled }

// SetDefaults fills in unset fields.
func (c *Config) SetDefaults() {
	c.PublicURL = strings.TrimSuffix(c.PublicURL, "/")
	if len(c.Resources) == 0 && c.PublicURL != "" {
		c.Resources = []string{c.PublicURL + "/mcp"}
	}
	if len(c.Scopes) == 0 {
		c.Scopes = []string{"mcp"}
	}
	if len(c.DefaultScopes) == 0 {
		c.DefaultScopes = slices.Clone(c.Scopes)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.AccessTokenLifetime, 15*time.Minute)
	def(&c.RefreshTokenLifetime, 30*24*time.Hour)
	def(&c.SessionLifetime, 90*24*time.Hour)
	if c.RefreshGrace == nil {
		c.RefreshGrace = new(Duration(DefaultRefreshGrace))
	}
	def(&c.CodeLifetime, time.Minute)
	def(&c.LoginTimeout, 10*time.Minute)
	if c.ConsentTTL == 0 {
		c.ConsentTTL = c.ConsentLifetime
	}
	def(&c.ConsentTTL, 30*24*time.Hour)
	def(&c.RevocationCacheTTL, 5*time.Second)
	def(&c.UpstreamRefreshSkew, 30*time.Second)
	def(&c.LinkSignInMaxAge, 10*time.Minute)
	if c.SigningAlg == "" {
		c.SigningAlg = "ES256"
	}
	if c.Registration.Mode == "" {
		c.Registration.Mode = RegistrationOpen
	}
	if c.Registration.MaxClientsPerIP == 0 {
		c.Registration.MaxClientsPerIP = DefaultMaxClientsPerIP
	}
	def(&c.Registration.Window, time.Hour)
	if c.Registration.TrustedSchemes == nil {
		c.Registration.TrustedSchemes = []string{"cursor", "vscode", "vscode-insiders", "windsurf"}
	}
	for i, s := range c.Registration.TrustedSchemes {
		c.Registration.TrustedSchemes[i] = strings.ToLower(strings.TrimSuffix(strings.TrimSuffix(s, "://"), ":"))
	}
	if c.CIMD.Enabled == nil {
		on := true
		c.CIMD.Enabled = &on
	}
	def(&c.CIMD.Timeout, 5*time.Second)
	if c.CIMD.MaxBytes == 0 {
		c.CIMD.MaxBytes = 16 << 10
	}
	def(&c.CIMD.CacheTTL, 5*time.Minute)
	def(&c.CIMD.MaxCacheTTL, 24*time.Hour)
	def(&c.CIMD.NegativeCacheTTL, time.Minute)
	if c.CIMD.MaxConcurrentFetches == 0 {
		c.CIMD.MaxConcurrentFetches = 8
	}
	c.RateLimit.setDefaults()
	c.Upstream.SetDefaults()
	for i := range c.LinkedProviders {
		c.LinkedProviders[i].setDefaults()
	}
	c.Branding.SetDefaults()
}

var (
	hexColour = regexp.MustCompile(`^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$`)
	schemeRE  = regexp.MustCompile(`^[a-z][a-z0-9+.-]*$`)
)

// Validate reports every problem under path (e.g. "auth.authorization_server").
func (c *Config) Validate(path string, p *validate.Problems) {
	at := func(k string) string { return validate.Join(path, k) }
	if u, err := url.Parse(c.PublicURL); c.PublicURL == "" || err != nil || u.Host == "" ||
		(u.Scheme != "https" && !(u.Scheme == "http" && netguard.IsLoopbackHost(u.Hostname()))) || u.RawQuery != "" || u.Fragment != "" {
		p.Add("public_url", "must be an absolute https URL (http only on loopback) without query or fragment: it is the issuer")
	}
	if len(c.Resources) == 0 {
		p.Add(at("resources"), "at least one resource is required")
	}
	for i, r := range c.Resources {
		if _, err := canonicalResource(r); err != nil {
			p.Add(validate.Index(at("resources"), i), "%v", err)
		}
	}
	validate.Scopes(at("scopes"), c.Scopes, p)
	for i, s := range c.Scopes {
		if s == "offline_access" {
			p.Add(validate.Index(at("scopes"), i), "offline_access is accepted implicitly and must not be advertised")
		}
	}
	for i, s := range c.DefaultScopes {
		if !slices.Contains(c.Scopes, s) {
			p.Add(validate.Index(at("default_scopes"), i), "%q is not in scopes", s)
		}
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"access_token_lifetime", c.AccessTokenLifetime}, {"refresh_token_lifetime", c.RefreshTokenLifetime},
		{"session_lifetime", c.SessionLifetime}, {"code_lifetime", c.CodeLifetime}, {"login_timeout", c.LoginTimeout},
		{"consent_ttl", c.ConsentTTL}, {"refresh_grace", c.refreshGrace()},
		{"revocation_cache_ttl", c.RevocationCacheTTL}, {"upstream_refresh_skew", c.UpstreamRefreshSkew},
	} {
		if d.v < 0 {
			p.Add(at(d.key), "must not be negative")
		}
	}
	if c.ConsentLifetime != 0 && c.ConsentLifetime != c.ConsentTTL {
		p.Add(at("consent_lifetime"), "is the former name of consent_ttl; set only consent_ttl")
	}
	if c.LinkSignInMaxAge < time.Minute || c.LinkSignInMaxAge > 24*time.Hour {
		p.Add(at("link_sign_in_max_age"), "must be between 1m and 24h")
	}
	if c.CodeLifetime > 10*time.Minute {
		p.Add(at("code_lifetime"), "must be at most 10m (RFC 6749 §4.1.2)")
	}
	if c.refreshGrace() > 5*time.Minute {
		p.Add(at("refresh_grace"), "must be at most 5m")
	}
	if c.RevocationCacheTTL > time.Minute {
		p.Add(at("revocation_cache_ttl"), "must be at most 1m")
	}
	if c.RefreshTokenLifetime > c.SessionLifetime {
		p.Add(at("refresh_token_lifetime"), "must not exceed session_lifetime")
	}
	if c.SigningAlg != "ES256" && c.SigningAlg != "RS256" {
		p.Add(at("signing_alg"), "must be ES256 or RS256")
	}
	c.validateRegistration(at("registration"), p)
	if c.CIMD.MaxBytes < 512 || c.CIMD.MaxBytes > 64<<10 {
		p.Add(at("cimd.max_bytes"), "must be between 512 and 65536")
	}
	if c.CIMD.Timeout <= 0 || c.CIMD.Timeout > 30*time.Second {
		p.Add(at("cimd.timeout"), "must be between 0 and 30s")
	}
	for i, h := range c.CIMD.AllowedHosts {
		if _, err := netguard.ParseHostList([]string{h}); err != nil {
			p.Add(validate.Index(at("cimd.allowed_hosts"), i), "%v", err)
		}
	}
	if c.CIMD.CAFile != "" {
		if len(c.CIMD.AllowedHosts) == 0 {
			p.Add(at("cimd.ca_file"), "is used only for cimd.allowed_hosts, which is empty")
		}
		if _, err := loadCAFile(c.CIMD.CAFile); err != nil {
			p.Add(at("cimd.ca_file"), "%v", err)
		}
	}
	if c.CIMD.NegativeCacheTTL < 0 || c.CIMD.NegativeCacheTTL > time.Hour {
		p.Add(at("cimd.negative_cache_ttl"), "must be between 0 and 1h")
	}
	if c.CIMD.MaxConcurrentFetches < 1 {
		p.Add(at("cimd.max_concurrent_fetches"), "must be at least 1")
	}
	c.RateLimit.validate(at("rate_limit"), p)
	c.validateStaticClients(at("static_clients"), p)
	c.Upstream.Validate(at("upstream"), p)
	c.validateLinkedProviders(at("linked_providers"), p)
	if b := c.Branding; !hexColour.MatchString(b.PrimaryColor) {
		p.Add(at("branding.primary_color"), "must be a hex colour such as #2563eb")
	}
	if !hexColour.MatchString(c.Branding.BackgroundColor) {
		p.Add(at("branding.background_color"), "must be a hex colour such as #f3f4f6")
	}
	if l := c.Branding.LogoURL; l != "" {
		if u, err := url.Parse(l); err != nil || (u.Scheme != "https" && u.Scheme != "data") {
			p.Add(at("branding.logo_url"), "must be an https or data: URL")
		}
	}
}

func (c *Config) validateRegistration(path string, p *validate.Problems) {
	r := c.Registration
	switch r.Mode {
	case RegistrationOpen, RegistrationClosed:
		if r.Token != "" {
			p.Add(validate.Join(path, "token"), "is only used with mode token")
		}
	case RegistrationToken:
		if len(r.Token) < 16 {
			p.Add(validate.Join(path, "token"), "must be at least 16 characters for mode token")
		}
	default:
		p.Add(validate.Join(path, "mode"), "must be open, token or closed")
	}
	if r.MaxClientsPerIP < -1 {
		p.Add(validate.Join(path, "max_clients_per_ip"), "must be positive, or -1 for unlimited")
	}
	if r.Window <= 0 {
		p.Add(validate.Join(path, "window"), "must be positive")
	}
	if r.ClientLifetime < 0 {
		p.Add(validate.Join(path, "client_lifetime"), "must not be negative")
	}
	for i, s := range r.TrustedSchemes {
		if !schemeRE.MatchString(s) || s == "http" || s == "https" || dangerousSchemes[s] {
			p.Add(validate.Index(validate.Join(path, "trusted_schemes"), i), "%q cannot be a trusted private-use scheme", s)
		}
	}
}

func (c *Config) validateStaticClients(path string, p *validate.Problems) {
	seen := map[string]bool{}
	for i, sc := range c.StaticClients {
		at := func(k string) string { return validate.Join(validate.Index(path, i), k) }
		switch {
		case sc.ClientID == "":
			p.Add(at("client_id"), "is required")
		case seen[sc.ClientID]:
			p.Add(at("client_id"), "duplicate client_id %q", sc.ClientID)
		case isURLClientID(sc.ClientID):
			p.Add(at("client_id"), "must not be an https URL (reserved for client ID metadata documents)")
		}
		seen[sc.ClientID] = true
		if sc.ClientSecret != "" && sc.ClientSecretHash != "" {
			p.Add(at("client_secret"), "set client_secret or client_secret_hash, not both")
		}
		if sc.ClientSecretHash != "" && !isBcrypt(sc.ClientSecretHash) {
			p.Add(at("client_secret_hash"), "must be a bcrypt hash")
		}
		if sc.ClientSecret != "" && len(sc.ClientSecret) < 16 {
			p.Add(at("client_secret"), "must be at least 16 characters")
		}
		if len(sc.RedirectURIs) == 0 {
			p.Add(at("redirect_uris"), "at least one redirect URI is required")
		}
		for j, u := range sc.RedirectURIs {
			if err := validateRedirectURI(u, c.Registration.TrustedSchemes); err != nil {
				p.Add(validate.Index(at("redirect_uris"), j), "%v", err)
			}
		}
	}
}

// loadCAFile reads a PEM bundle of CA certificates.
func loadCAFile(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
