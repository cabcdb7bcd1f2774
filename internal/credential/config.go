package credential

import (
	"cmp"
	"net/url"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/validate"
)

// Credential types (backends[].credential.type).
const (
	TypeNone              = "none"
	TypeStatic            = "static"
	TypeUpstreamToken     = "upstream_token"
	TypeTokenExchange     = "token_exchange"
	TypeClientCredentials = "client_credentials"
	TypeLinkedToken       = "linked_token"
)

// Token exchange protocols (credential.protocol).
const (
	ProtocolRFC8693    = "rfc8693"
	ProtocolOnBehalfOf = "on_behalf_of"
)

// Client authentication methods at the token endpoint (RFC 6749 §2.3,
// RFC 7523 §2.2).
const (
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"
	AuthPrivateKeyJWT     = "private_key_jwt"
)

// Config selects the credential presented to the backend.
type Config struct {
	// Type: none | static | upstream_token | token_exchange | client_credentials | linked_token.
	// static sends header: value; upstream_token sends the user's token
	// from the upstream IdP (authorization_server mode only, refreshed
	// before it expires); token_exchange trades the user's token for one
	// meant for this backend at a security token service (RFC 8693, or
	// Entra's on-behalf-of flow: protocol); client_credentials sends a
	// token of the gateway's own service account (RFC 6749 §4.4). Both
	// are cached until shortly before they expire. linked_token sends the
	// user's token at another provider (provider), which the user links
	// once when a tool call first needs it (authorization_server mode).
	Type string `yaml:"type"`
	// Provider names the auth.authorization_server.linked_providers entry
	// whose token a linked_token credential sends.
	Provider string `yaml:"provider"`
	// Header for static credentials (default Authorization).
	Header string `yaml:"header"`
	// Value for static credentials, e.g. "Bearer ${BACKEND_TOKEN}".
	Value string `yaml:"value" secret:"true"`

	// TokenEndpoint is the security token service's token endpoint
	// (token_exchange, client_credentials). Either it or issuer.
	TokenEndpoint string `yaml:"token_endpoint"`
	// Issuer, instead of token_endpoint: its token endpoint is read from
	// its OpenID Connect discovery document on first use.
	Issuer string `yaml:"issuer"`
	// AllowPrivateNetwork permits an http:// token endpoint or issuer and
	// one on a loopback or private address (an in-cluster STS, local
	// testing). Off: only public addresses over https are reached.
	AllowPrivateNetwork bool `yaml:"allow_private_network"`
	// ClientID is the gateway's client at the security token service.
	ClientID string `yaml:"client_id"`
	// ClientSecret authenticates client_id (client_secret_basic,
	// client_secret_post), e.g. "${STS_CLIENT_SECRET}".
	ClientSecret string `yaml:"client_secret" secret:"true"`
	// ClientAuth: client_secret_basic (default) | client_secret_post | private_key_jwt.
	// private_key_jwt signs a short-lived assertion (RFC 7523 §2.2) with
	// private_key_file.
	ClientAuth string `yaml:"client_auth"`
	// PrivateKeyFile is a PEM private key (RSA: RS256; EC P-256: ES256) for
	// client_auth private_key_jwt.
	PrivateKeyFile string `yaml:"private_key_file"`
	// KeyID is the kid put in the private_key_jwt assertion's header, when
	// the security token service needs it to pick the key.
	KeyID string `yaml:"key_id"`

	// Protocol of a token_exchange: rfc8693 (default) | on_behalf_of.
	// on_behalf_of is Microsoft Entra ID's variant (grant
	// jwt-bearer with requested_token_use=on_behalf_of; set scopes, e.g.
	// api://backend/.default).
	Protocol string `yaml:"protocol"`
	// Audience is the RFC 8693 audience parameter: the logical name of the
	// backend at the security token service (token_exchange; with
	// client_credentials it is sent as audience too, as Auth0 expects).
	Audience string `yaml:"audience"`
	// Resource is the RFC 8693 / RFC 8707 resource parameter: the
	// backend's absolute URI, without a fragment.
	Resource string `yaml:"resource"`
	// Scopes requested for the backend's token (space-joined into scope).
	Scopes []string `yaml:"scopes"`
	// RequestedTokenType of an RFC 8693 exchange: access_token (default) | jwt.
	// The answer's issued_token_type must match (an access_token request
	// also accepts a jwt).
	RequestedTokenType string `yaml:"requested_token_type"`
	// SubjectTokenType names the kind of the user's token sent as
	// subject_token (RFC 8693 §3): access_token (default) | jwt. The
	// subject token is the user's upstream access token in
	// authorization_server mode and the token the client presented in jwt
	// and introspection mode.
	SubjectTokenType string `yaml:"subject_token_type"`
	// Timeout bounds one request to the security token service (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// CacheSize bounds the cached credentials of this backend (default
	// 10000: one per user session); when full, expired ones go first, then
	// an arbitrary tenth.
	CacheSize int `yaml:"cache_size"`
}

// Dynamic reports whether the credential is obtained per call (from the
// store or a security token service) rather than configured.
func (c *Config) Dynamic() bool {
	switch c.Type {
	case TypeUpstreamToken, TypeTokenExchange, TypeClientCredentials, TypeLinkedToken:
		return true
	}
	return false
}

// usesSTS reports whether the type talks to a security token service.
func (c *Config) usesSTS() bool {
	return c.Type == TypeTokenExchange || c.Type == TypeClientCredentials
}

// SetDefaults fills in defaults for the configured type.
func (c *Config) SetDefaults() {
	c.Type = cmp.Or(c.Type, TypeNone)
	if c.Type == TypeStatic && c.Header == "" {
		c.Header = "Authorization"
	}
	if !c.usesSTS() {
		return
	}
	c.ClientAuth = cmp.Or(c.ClientAuth, AuthClientSecretBasic)
	if c.Type == TypeTokenExchange && c.Protocol == "" {
		c.Protocol = ProtocolRFC8693
	}
	if c.Type == TypeTokenExchange && c.Protocol == ProtocolRFC8693 {
		c.RequestedTokenType = cmp.Or(c.RequestedTokenType, "access_token")
		c.SubjectTokenType = cmp.Or(c.SubjectTokenType, "access_token")
	}
	c.Timeout = cmp.Or(c.Timeout, 10*time.Second)
	c.CacheSize = cmp.Or(c.CacheSize, 10_000)
}

// tokenTypes are the RFC 8693 §3 token type identifiers the gateway sends
// or accepts, by their short names in the configuration.
var tokenTypes = map[string]string{
	"access_token": "urn:ietf:params:oauth:token-type:access_token",
	"jwt":          "urn:ietf:params:oauth:token-type:jwt",
}

// Validate reports every problem with the credential; path is the key path
// of the credential object.
func (c *Config) Validate(path string, p *validate.Problems) {
	switch c.Type {
	case TypeNone, TypeUpstreamToken:
	case TypeLinkedToken:
		if c.Provider == "" {
			p.Add(path+".provider", "is required for a linked_token credential (a name from auth.authorization_server.linked_providers)")
		}
	case TypeStatic:
		if c.Value == "" {
			p.Add(path+".value", "is required for a static credential")
		}
	case TypeTokenExchange, TypeClientCredentials:
		c.validateSTS(path, p)
	default:
		p.Add(path+".type", "must be one of none, static, upstream_token, token_exchange, client_credentials, linked_token (got %q)", c.Type)
		return
	}
	if !c.usesSTS() {
		// A key of another type is a typo of the type, or a leftover:
		// refuse rather than silently ignore it.
		refuseSet(path, p, "is only valid with type token_exchange or client_credentials",
			"token_endpoint", c.TokenEndpoint != "", "issuer", c.Issuer != "", "allow_private_network", c.AllowPrivateNetwork,
			"client_id", c.ClientID != "", "client_secret", c.ClientSecret != "", "client_auth", c.ClientAuth != "",
			"private_key_file", c.PrivateKeyFile != "", "key_id", c.KeyID != "", "protocol", c.Protocol != "",
			"audience", c.Audience != "", "resource", c.Resource != "", "scopes", len(c.Scopes) > 0,
			"requested_token_type", c.RequestedTokenType != "", "subject_token_type", c.SubjectTokenType != "",
			"timeout", c.Timeout != 0, "cache_size", c.CacheSize != 0)
	}
	if c.Type != TypeStatic && c.Value != "" {
		p.Add(path+".value", "is only valid with type static")
	}
	if c.Type != TypeLinkedToken && c.Provider != "" {
		p.Add(path+".provider", "is only valid with type linked_token")
	}
}

func (c *Config) validateSTS(path string, p *validate.Problems) {
	switch {
	case (c.TokenEndpoint == "") == (c.Issuer == ""):
		p.Add(path+".token_endpoint", "set exactly one of token_endpoint and issuer")
	case c.TokenEndpoint != "":
		validate.EndpointURL(path+".token_endpoint", c.TokenEndpoint, c.AllowPrivateNetwork, p)
	default:
		validate.EndpointURL(path+".issuer", c.Issuer, c.AllowPrivateNetwork, p)
	}
	if c.ClientID == "" {
		p.Add(path+".client_id", "is required")
	}
	switch c.ClientAuth {
	case AuthClientSecretBasic, AuthClientSecretPost:
		if c.ClientSecret == "" {
			p.Add(path+".client_secret", "is required for client_auth %s", c.ClientAuth)
		}
		if c.PrivateKeyFile != "" {
			p.Add(path+".private_key_file", "is only valid with client_auth private_key_jwt")
		}
	case AuthPrivateKeyJWT:
		if c.PrivateKeyFile == "" {
			p.Add(path+".private_key_file", "is required for client_auth private_key_jwt")
		}
		if c.ClientSecret != "" {
			p.Add(path+".client_secret", "is only valid with client_auth client_secret_basic or client_secret_post")
		}
	default:
		p.Add(path+".client_auth", "must be one of client_secret_basic, client_secret_post, private_key_jwt (got %q)", c.ClientAuth)
	}
	if c.Resource != "" {
		// RFC 8693 §2.1: an absolute URI without a fragment.
		if u, err := url.Parse(c.Resource); err != nil || !u.IsAbs() || u.Fragment != "" || strings.Contains(c.Resource, "#") {
			p.Add(path+".resource", "must be an absolute URI without a fragment")
		}
	}
	validate.Scopes(path+".scopes", c.Scopes, p)
	if c.Timeout < 0 || c.Timeout > 2*time.Minute {
		p.Add(path+".timeout", "must be between 0 and 2m")
	}
	if c.CacheSize < 0 || c.CacheSize > 10_000_000 {
		p.Add(path+".cache_size", "must be between 1 and 10000000")
	}
	exchange := c.Type == TypeTokenExchange
	switch {
	case !exchange:
		refuseSet(path, p, "is only valid with type token_exchange", "protocol", c.Protocol != "",
			"requested_token_type", c.RequestedTokenType != "", "subject_token_type", c.SubjectTokenType != "")
	case c.Protocol == ProtocolRFC8693:
		if tokenTypes[c.RequestedTokenType] == "" {
			p.Add(path+".requested_token_type", "must be access_token or jwt (got %q)", c.RequestedTokenType)
		}
		if tokenTypes[c.SubjectTokenType] == "" {
			p.Add(path+".subject_token_type", "must be access_token or jwt (got %q)", c.SubjectTokenType)
		}
	case c.Protocol == ProtocolOnBehalfOf:
		// Entra's on-behalf-of request names the backend by scope only.
		if len(c.Scopes) == 0 {
			p.Add(path+".scopes", "is required for protocol on_behalf_of (e.g. api://backend/.default)")
		}
		refuseSet(path, p, "is only valid with protocol rfc8693 (on_behalf_of names the backend in scopes)", "audience", c.Audience != "",
			"resource", c.Resource != "", "requested_token_type", c.RequestedTokenType != "", "subject_token_type", c.SubjectTokenType != "")
	default:
		p.Add(path+".protocol", "must be rfc8693 or on_behalf_of (got %q)", c.Protocol)
	}
}

// refuseSet reports each key of keyAndSet (pairs of key and whether it is
// set) that is set, in order.
func refuseSet(path string, p *validate.Problems, why string, keyAndSet ...any) {
	for i := 0; i+1 < len(keyAndSet); i += 2 {
		if keyAndSet[i+1].(bool) {
			p.Add(path+"."+keyAndSet[i].(string), "%s", why)
		}
	}
}
