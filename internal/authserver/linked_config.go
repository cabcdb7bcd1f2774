package authserver

import (
	"cmp"
	"regexp"
	"time"

	"github.com/mcpgate/mcpgate/internal/validate"
)

// LinkedProvider is one entry of `auth.authorization_server.linked_providers`:
// an OAuth 2.0 provider other than the sign-in IdP (GitHub for a GitHub MCP
// server, say) whose token a backend needs (credential type linked_token).
// A user links their account there once, in a browser flow the gateway
// starts on the first tool call that needs it (authorization code with PKCE,
// RFC 6749 §4.1 and RFC 7636, mcpgate a confidential client); the token is
// kept sealed with the user's grant and refreshed before it expires.
type LinkedProvider struct {
	// Name identifies the provider in backends' credential.provider and in
	// the callback URL <public_url>/link/<name>/callback that is registered
	// at the provider. Lower-case letters, digits, - and _.
	Name string `yaml:"name"`
	// DisplayName is shown on the link pages (default: name).
	DisplayName string `yaml:"display_name"`
	// Issuer, instead of authorization_endpoint and token_endpoint: both
	// are read from its OpenID Connect discovery document on first use.
	// Set together with the endpoints it is only checked against the iss
	// parameter of the callback (RFC 9207).
	Issuer string `yaml:"issuer"`
	// AuthorizationEndpoint is the provider's authorization endpoint, e.g.
	// https://github.com/login/oauth/authorize.
	AuthorizationEndpoint string `yaml:"authorization_endpoint"`
	// TokenEndpoint is the provider's token endpoint, e.g.
	// https://github.com/login/oauth/access_token.
	TokenEndpoint string `yaml:"token_endpoint"`
	// ClientID is mcpgate's client at the provider.
	ClientID string `yaml:"client_id"`
	// ClientSecret authenticates client_id, e.g. "${GITHUB_CLIENT_SECRET}"
	// (or GITHUB_CLIENT_SECRET_FILE).
	ClientSecret string `yaml:"client_secret" secret:"true"`
	// ClientAuth: client_secret_basic (default) | client_secret_post.
	ClientAuth string `yaml:"client_auth"`
	// Scopes requested at the provider (e.g. repo, read:org).
	Scopes []string `yaml:"scopes"`
	// AllowPrivateNetwork permits http:// endpoints and ones on loopback or
	// private addresses (a provider in the cluster, local testing). Off:
	// only public addresses over https are reached.
	AllowPrivateNetwork bool `yaml:"allow_private_network"`
	// Timeout bounds one request to the token endpoint (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// LinkTimeout is how long a link URL handed to a client stays valid,
	// through the sign-in at the provider (default 10m, at most 1h).
	LinkTimeout time.Duration `yaml:"link_timeout"`
}

var linkedNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

func (l *LinkedProvider) setDefaults() {
	l.DisplayName = cmp.Or(l.DisplayName, l.Name)
	l.ClientAuth = cmp.Or(l.ClientAuth, "client_secret_basic")
	l.Timeout = cmp.Or(l.Timeout, 10*time.Second)
	l.LinkTimeout = cmp.Or(l.LinkTimeout, 10*time.Minute)
}

func (c *Config) validateLinkedProviders(path string, p *validate.Problems) {
	seen := map[string]bool{}
	for i := range c.LinkedProviders {
		l := &c.LinkedProviders[i]
		at := func(k string) string { return validate.Index(path, i) + "." + k }
		if !linkedNameRE.MatchString(l.Name) {
			p.Add(at("name"), "must be 1-63 lower-case letters, digits, - or _, starting with a letter or digit (got %q)", l.Name)
		} else if seen[l.Name] {
			p.Add(at("name"), "duplicate linked provider %q", l.Name)
		}
		seen[l.Name] = true
		if l.Issuer != "" {
			validate.EndpointURL(at("issuer"), l.Issuer, l.AllowPrivateNetwork, p)
		}
		switch {
		case l.AuthorizationEndpoint == "" && l.TokenEndpoint == "":
			if l.Issuer == "" {
				p.Add(at("authorization_endpoint"), "set authorization_endpoint and token_endpoint, or issuer")
			}
		case l.AuthorizationEndpoint == "":
			p.Add(at("authorization_endpoint"), "is required with token_endpoint")
		case l.TokenEndpoint == "":
			p.Add(at("token_endpoint"), "is required with authorization_endpoint")
		default:
			validate.EndpointURL(at("authorization_endpoint"), l.AuthorizationEndpoint, l.AllowPrivateNetwork, p)
			validate.EndpointURL(at("token_endpoint"), l.TokenEndpoint, l.AllowPrivateNetwork, p)
		}
		if l.ClientID == "" {
			p.Add(at("client_id"), "is required")
		}
		if l.ClientSecret == "" {
			p.Add(at("client_secret"), "is required (mcpgate is a confidential client of the provider)")
		}
		if l.ClientAuth != "client_secret_basic" && l.ClientAuth != "client_secret_post" {
			p.Add(at("client_auth"), "must be client_secret_basic or client_secret_post (got %q)", l.ClientAuth)
		}
		validate.Scopes(at("scopes"), l.Scopes, p)
		if l.Timeout < 0 || l.Timeout > 2*time.Minute {
			p.Add(at("timeout"), "must be between 0 and 2m")
		}
		if l.LinkTimeout < time.Minute || l.LinkTimeout > time.Hour {
			p.Add(at("link_timeout"), "must be between 1m and 1h")
		}
	}
}

// LinkedProviderNames lists the configured linked providers, for the
// validation of backends' credential.provider.
func (c *Config) LinkedProviderNames() map[string]bool {
	m := make(map[string]bool, len(c.LinkedProviders))
	for _, l := range c.LinkedProviders {
		m[l.Name] = true
	}
	return m
}
