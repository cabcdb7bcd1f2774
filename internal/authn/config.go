package authn

import (
	"cmp"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mcpgate/mcpgate/internal/netguard"
	"github.com/mcpgate/mcpgate/internal/validate"
)

// Mode selects how bearer credentials are verified. The top-level config
// chooses it; modes this package does not implement (authorization_server,
// none) are handled by the caller before New is called.
type Mode string

// Modes implemented by this package.
const (
	ModeJWT           Mode = "jwt"            // JWT access tokens verified against each issuer's JWKS
	ModeIntrospection Mode = "introspection"  // opaque tokens checked by RFC 7662 introspection
	ModeTrustedHeader Mode = "trusted_header" // Cloudflare Access assertion header
)

// Defaults.
const (
	DefaultLeeway                 = 60 * time.Second
	DefaultJWKSCacheTTL           = time.Hour
	DefaultJWKSRefreshMinInterval = 30 * time.Second
	DefaultIntrospectionCacheTTL  = 5 * time.Minute
	DefaultCacheSize              = 10000
	DefaultGroupsClaim            = "groups"
	DefaultUsernameClaim          = "preferred_username"
	DefaultScopeClaim             = "scope"
)

// DefaultAlgorithms is the JWS algorithm allow-list used when an issuer sets
// none. Only asymmetric algorithms: a resource server holds no shared secret.
var DefaultAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"}

// supportedAlgorithms are the algorithms an allow-list may name.
var supportedAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Config is the authn section of the gateway configuration.
type Config struct {
	// Mode is required, there is no default: jwt | introspection |
	// trusted_header | authorization_server | none. none is refused unless
	// listen is a loopback address.
	Mode          Mode                `yaml:"mode"`
	JWT           JWTConfig           `yaml:"jwt"`
	Introspection IntrospectionConfig `yaml:"introspection"`
	TrustedHeader TrustedHeaderConfig `yaml:"trusted_header"`
	// Claims maps token claims to the caller's identity: groups, display
	// name, scopes (all modes).
	Claims ClaimsConfig `yaml:"claims"`
	// CacheSize bounds the verified-token cache (entries keyed by the
	// token's SHA-256; default 10000); -1 disables the cache.
	CacheSize int `yaml:"cache_size"`
}

// SetDefaults fills unset fields of the selected mode.
func (c *Config) SetDefaults() {
	c.CacheSize = cmp.Or(c.CacheSize, DefaultCacheSize)
	c.Claims.SetDefaults()
	switch c.Mode {
	case ModeJWT:
		c.JWT.SetDefaults()
	case ModeIntrospection:
		c.Introspection.SetDefaults()
	case ModeTrustedHeader:
		c.TrustedHeader.SetDefaults()
	}
}

// Validate reports every problem of the selected mode's configuration.
func (c *Config) Validate(path string, p *validate.Problems) {
	if c.CacheSize < -1 {
		p.Add(validate.Join(path, "cache_size"), "must be -1 (disabled), 0 (default %d) or positive", DefaultCacheSize)
	}
	c.Claims.Validate(validate.Join(path, "claims"), p)
	switch c.Mode {
	case ModeJWT:
		c.JWT.Validate(validate.Join(path, "jwt"), p)
	case ModeIntrospection:
		c.Introspection.Validate(validate.Join(path, "introspection"), p)
	case ModeTrustedHeader:
		c.TrustedHeader.Validate(validate.Join(path, "trusted_header"), p)
	case "":
		p.Add(validate.Join(path, "mode"), "is required (one of %s, %s, %s)", ModeJWT, ModeIntrospection, ModeTrustedHeader)
	default:
		p.Add(validate.Join(path, "mode"), "unsupported mode %q (want %s, %s or %s)", c.Mode, ModeJWT, ModeIntrospection, ModeTrustedHeader)
	}
}

// StringList is a list of strings that may also be written in YAML as a
// single scalar (audience: foo).
type StringList []string

// ExpectedYAML is for configuration error messages.
func (StringList) ExpectedYAML() string { return "text or a list of text" }

// UnmarshalYAML accepts a scalar or a sequence of scalars.
func (s *StringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var v string
		if err := n.Decode(&v); err != nil {
			return err
		}
		*s = StringList{v}
		return nil
	}
	var v []string
	if err := n.Decode(&v); err != nil {
		return err
	}
	*s = v
	return nil
}

// JWTConfig configures verification of JWT access tokens (RFC 9068) from one
// or more trusted issuers.
type JWTConfig struct {
	// Issuers are the trusted token issuers; a token is checked against the
	// one its iss names. At least one is required.
	Issuers []IssuerConfig `yaml:"issuers"`
}

// SetDefaults fills unset fields of every issuer.
func (c *JWTConfig) SetDefaults() {
	for i := range c.Issuers {
		c.Issuers[i].SetDefaults()
	}
}

// Validate reports every problem.
func (c *JWTConfig) Validate(path string, p *validate.Problems) {
	if len(c.Issuers) == 0 {
		p.Add(validate.Join(path, "issuers"), "at least one issuer is required")
	}
	seen := map[string]bool{}
	for i := range c.Issuers {
		ip := validate.Index(validate.Join(path, "issuers"), i)
		c.Issuers[i].Validate(ip, p)
		if iss := c.Issuers[i].Issuer; iss != "" {
			if seen[iss] {
				p.Add(validate.Join(ip, "issuer"), "duplicate issuer %q", iss)
			}
			seen[iss] = true
		}
	}
}

// IssuerConfig is one trusted token issuer.
type IssuerConfig struct {
	// Issuer must equal the token's iss claim exactly (and the discovery
	// document's issuer, RFC 8414 §3.3 / OIDC Discovery §4.3).
	// MCPGATE_ISSUER and --issuer set the first issuer's.
	Issuer string `yaml:"issuer"`
	// JWKSURI skips discovery when set.
	JWKSURI string `yaml:"jwks_uri"`
	// Audience: the token's aud must contain at least one of these
	// (RFC 9068 §4, RFC 8707); a string or a list. Required, and the check
	// cannot be turned off: tokens minted for someone else are never
	// accepted. MCPGATE_AUDIENCE and --audience set the first issuer's.
	Audience StringList `yaml:"audience"`
	// Algorithms is the JWS alg allow-list; none and HMAC algorithms are
	// refused (a resource server holds no shared secret).
	Algorithms []string `yaml:"algorithms"`
	// Leeway tolerates clock skew on exp, nbf and iat (0 means 60s).
	Leeway time.Duration `yaml:"leeway"`
	// RequireTyp, if set, requires exactly this JOSE typ header, e.g. at+jwt
	// (RFC 9068 §2.1). The application/ prefix is optional (RFC 7515 §4.1.9).
	// Unset, a token whose typ is present and is not at+jwt,
	// application/at+jwt or JWT (case-insensitive) is refused: logout+jwt,
	// secevent+jwt, dpop+jwt and id_token+jwt are never access tokens
	// (RFC 8725 §3.11). A token without typ is accepted.
	RequireTyp string `yaml:"require_typ"`
	// JWKSCacheTTL is how long fetched keys are used before a refetch (0 means 1h).
	JWKSCacheTTL time.Duration `yaml:"jwks_cache_ttl"`
	// JWKSRefreshMinInterval limits refetches on an unknown kid (0 means
	// 30s): after a successful fetch, an unknown kid triggers at most one
	// refetch per interval, which survives IdP key rotation without letting
	// garbage tokens hammer the IdP. After a failed fetch the next attempt
	// waits 250 ms, doubling to 2 s, so keys are picked up within seconds of
	// the IdP coming back; until then an unknown kid gets 503, not 401 (a
	// known kid keeps working from the cached keys).
	JWKSRefreshMinInterval time.Duration `yaml:"jwks_refresh_min_interval"`
	// AllowPrivateIssuer permits an issuer or JWKS URL on a private or
	// loopback address (or plain http), e.g. a local Keycloak. Logged as a
	// warning at start.
	AllowPrivateIssuer bool `yaml:"allow_private_issuer"`
	// Claims, if set, replaces the shared claims mapping (auth.claims) for
	// this issuer.
	Claims *ClaimsConfig `yaml:"claims"`
}

// SetDefaults fills unset fields.
func (c *IssuerConfig) SetDefaults() {
	if len(c.Algorithms) == 0 {
		c.Algorithms = append([]string(nil), DefaultAlgorithms...)
	}
	c.Leeway = cmp.Or(c.Leeway, DefaultLeeway)
	c.JWKSCacheTTL = cmp.Or(c.JWKSCacheTTL, DefaultJWKSCacheTTL)
	c.JWKSRefreshMinInterval = cmp.Or(c.JWKSRefreshMinInterval, DefaultJWKSRefreshMinInterval)
	if c.Claims != nil {
		c.Claims.SetDefaults()
	}
}

// Validate reports every problem.
func (c *IssuerConfig) Validate(path string, p *validate.Problems) {
	if c.Issuer == "" {
		p.Add(validate.Join(path, "issuer"), "is required")
	} else {
		checkURL(validate.Join(path, "issuer"), c.Issuer, c.AllowPrivateIssuer, p)
	}
	if c.JWKSURI != "" {
		checkURL(validate.Join(path, "jwks_uri"), c.JWKSURI, c.AllowPrivateIssuer, p)
	}
	checkAudience(validate.Join(path, "audience"), c.Audience, p)
	if len(c.Algorithms) == 0 {
		p.Add(validate.Join(path, "algorithms"), "must list at least one algorithm")
	}
	for i, a := range c.Algorithms {
		ap := validate.Index(validate.Join(path, "algorithms"), i)
		switch {
		case strings.EqualFold(a, "none"):
			p.Add(ap, "alg none is never allowed")
		case strings.HasPrefix(strings.ToUpper(a), "HS"):
			p.Add(ap, "HMAC algorithm %s is not allowed: tokens must be verified with the issuer's public keys", a)
		case !slices.Contains(supportedAlgorithms, a):
			p.Add(ap, "unsupported algorithm %q (supported: %s)", a, strings.Join(supportedAlgorithms, ", "))
		}
	}
	if c.Leeway < 0 || c.Leeway > 5*time.Minute {
		p.Add(validate.Join(path, "leeway"), "must be between 0 and 5m")
	}
	if c.JWKSCacheTTL < 0 {
		p.Add(validate.Join(path, "jwks_cache_ttl"), "must not be negative")
	}
	if c.JWKSRefreshMinInterval < 0 {
		p.Add(validate.Join(path, "jwks_refresh_min_interval"), "must not be negative")
	}
	if c.JWKSCacheTTL > 0 && c.JWKSRefreshMinInterval > c.JWKSCacheTTL {
		p.Add(validate.Join(path, "jwks_refresh_min_interval"), "must not exceed jwks_cache_ttl (%s)", c.JWKSCacheTTL)
	}
	if c.Claims != nil {
		c.Claims.Validate(validate.Join(path, "claims"), p)
	}
}

// ClaimsConfig maps token claims to Principal fields. A claim name is looked
// up as a literal key first (so "cognito:groups" and Auth0's
// "https://example.com/roles" work), then as a dotted path into nested
// objects ("realm_access.roles").
type ClaimsConfig struct {
	// GroupsClaim holds the groups: an array of strings, or one string of
	// space- or comma-separated names (default "groups"). A dotted path
	// reads a nested claim (realm_access.roles); a key containing ":" is
	// literal (cognito:groups).
	GroupsClaim string `yaml:"groups_claim"`
	// UsernameClaim is the display name (default "preferred_username"); when
	// absent we fall back to "username" (RFC 7662, Cognito), "email", then
	// "sub". Identity is always keyed on iss + sub, never on this name.
	UsernameClaim string `yaml:"username_claim"`
	// ScopeClaim holds the scopes (default "scope", a space-separated string
	// per RFC 8693 §4.2); when absent "scp" (string or array) is used.
	ScopeClaim string `yaml:"scope_claim"`
}

// SetDefaults fills unset fields.
func (c *ClaimsConfig) SetDefaults() {
	c.GroupsClaim = cmp.Or(c.GroupsClaim, DefaultGroupsClaim)
	c.UsernameClaim = cmp.Or(c.UsernameClaim, DefaultUsernameClaim)
	c.ScopeClaim = cmp.Or(c.ScopeClaim, DefaultScopeClaim)
}

// Validate reports every problem.
func (c *ClaimsConfig) Validate(path string, p *validate.Problems) {
	for _, f := range []struct{ key, val string }{
		{"groups_claim", c.GroupsClaim},
		{"username_claim", c.UsernameClaim},
		{"scope_claim", c.ScopeClaim},
	} {
		if f.val == "" {
			p.Add(validate.Join(path, f.key), "is required")
			continue
		}
		if strings.HasPrefix(f.val, ".") || strings.HasSuffix(f.val, ".") || strings.Contains(f.val, "..") {
			p.Add(validate.Join(path, f.key), "claim path %q has an empty segment", f.val)
		}
	}
}

// IntrospectionConfig configures OAuth 2.0 Token Introspection (RFC 7662)
// for opaque access tokens.
type IntrospectionConfig struct {
	// Endpoint is the introspection URL; if empty it is discovered from
	// Issuer (introspection_endpoint, RFC 8414 §2).
	Endpoint string `yaml:"endpoint"`
	// Issuer, if set, is used for discovery and must equal a response's iss.
	Issuer string `yaml:"issuer"`
	// ClientID authenticates the gateway to the endpoint (RFC 7662 §2.1).
	ClientID string `yaml:"client_id"`
	// ClientSecret is ClientID's secret.
	ClientSecret string `yaml:"client_secret" secret:"true"`
	// AuthMethod is how the client authenticates (RFC 6749 §2.3.1):
	// basic | post | client_secret_basic | client_secret_post; basic (the
	// default) is client_secret_basic, post is client_secret_post.
	AuthMethod string `yaml:"auth_method"`
	// Audience: the response's aud must contain one of these. Required; a
	// response without aud is rejected.
	Audience StringList `yaml:"audience"`
	// CacheTTL bounds how long an active result is reused (0 means 5m); it is
	// never reused past the token's exp, and negative answers are not
	// cached.
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// AllowPrivateIssuer permits a private/loopback or plain-http endpoint.
	AllowPrivateIssuer bool `yaml:"allow_private_issuer"`
}

// SetDefaults fills unset fields.
func (c *IntrospectionConfig) SetDefaults() {
	c.AuthMethod = cmp.Or(c.AuthMethod, "basic")
	c.CacheTTL = cmp.Or(c.CacheTTL, DefaultIntrospectionCacheTTL)
}

// Validate reports every problem.
func (c *IntrospectionConfig) Validate(path string, p *validate.Problems) {
	if c.Endpoint == "" && c.Issuer == "" {
		p.Add(validate.Join(path, "endpoint"), "endpoint or issuer (for discovery) is required")
	}
	if c.Endpoint != "" {
		checkURL(validate.Join(path, "endpoint"), c.Endpoint, c.AllowPrivateIssuer, p)
	}
	if c.Issuer != "" {
		checkURL(validate.Join(path, "issuer"), c.Issuer, c.AllowPrivateIssuer, p)
	}
	if c.ClientID == "" {
		p.Add(validate.Join(path, "client_id"), "is required (RFC 7662 requires the caller to authenticate)")
	}
	if c.ClientSecret == "" {
		p.Add(validate.Join(path, "client_secret"), "is required")
	}
	switch c.AuthMethod {
	case "basic", "post", "client_secret_basic", "client_secret_post":
	default:
		p.Add(validate.Join(path, "auth_method"), "must be basic or post, got %q", c.AuthMethod)
	}
	checkAudience(validate.Join(path, "audience"), c.Audience, p)
	if c.CacheTTL < 0 {
		p.Add(validate.Join(path, "cache_ttl"), "must not be negative")
	}
}

// TrustedHeaderConfig verifies the Cloudflare Access assertion
// (Cf-Access-Jwt-Assertion header) that Cloudflare adds to requests it has
// authenticated. The plain Cf-Access-Authenticated-User-Email header is never
// trusted.
//
// Environment names users know from Cloudflare's docs map here (the top-level
// config applies them): CLOUDFLARE_TEAM_DOMAIN → team_domain,
// CLOUDFLARE_APPLICATION_AUDIENCE → audience.
type TrustedHeaderConfig struct {
	// TeamDomain is e.g. myteam.cloudflareaccess.com; the token's iss must be
	// https://<team_domain> and keys come from
	// https://<team_domain>/cdn-cgi/access/certs.
	TeamDomain string `yaml:"team_domain"`
	// Audience is the Access application's AUD tag. Required.
	Audience string `yaml:"audience"`
	// CertsURL overrides the certs URL (tests, or a local mirror).
	CertsURL string `yaml:"certs_url"`
}

// SetDefaults normalises a team domain pasted as a URL.
func (c *TrustedHeaderConfig) SetDefaults() {
	c.TeamDomain = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(c.TeamDomain), "https://"), "/")
}

// Validate reports every problem.
func (c *TrustedHeaderConfig) Validate(path string, p *validate.Problems) {
	switch {
	case c.TeamDomain == "":
		p.Add(validate.Join(path, "team_domain"), "is required (e.g. myteam.cloudflareaccess.com; env CLOUDFLARE_TEAM_DOMAIN)")
	case strings.ContainsAny(c.TeamDomain, "/:?#@ "):
		p.Add(validate.Join(path, "team_domain"), "must be a host name like myteam.cloudflareaccess.com, got %q", c.TeamDomain)
	}
	if c.Audience == "" {
		p.Add(validate.Join(path, "audience"), "is required: the Access application AUD tag (env CLOUDFLARE_APPLICATION_AUDIENCE)")
	}
	if c.CertsURL != "" {
		u, err := url.Parse(c.CertsURL)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			p.Add(validate.Join(path, "certs_url"), "must be an absolute http(s) URL")
		case u.Scheme == "http" && !netguard.IsLoopbackHost(u.Hostname()):
			p.Add(validate.Join(path, "certs_url"), "plain http is only allowed for a loopback host")
		}
	}
}

// checkURL validates an issuer or endpoint URL: absolute https, no fragment,
// and not a private or loopback host unless allowPrivate.
func checkURL(path, raw string, allowPrivate bool, p *validate.Problems) {
	if err := checkEndpoint(raw, allowPrivate); err != nil {
		p.Add(path, "%v", err)
	}
}

func checkEndpoint(raw string, allowPrivate bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%q must be an absolute https URL", raw)
	}
	if u.Fragment != "" || u.RawQuery != "" {
		return fmt.Errorf("%q must not have a query or fragment", raw)
	}
	if u.Scheme == "http" && !allowPrivate {
		return fmt.Errorf("%q uses plain http; use https or set allow_private_issuer: true", raw)
	}
	if netguard.IsPrivateHost(u.Hostname()) && !allowPrivate {
		return fmt.Errorf("host %s of %q is private or loopback; set allow_private_issuer: true to use it", u.Hostname(), raw)
	}
	return nil
}

func checkAudience(path string, aud []string, p *validate.Problems) {
	if len(aud) == 0 {
		p.Add(path, "is required: tokens are accepted only when issued for this resource")
	}
	for i, a := range aud {
		if strings.TrimSpace(a) == "" {
			p.Add(validate.Index(path, i), "must not be empty")
		}
	}
}
