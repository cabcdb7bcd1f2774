package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/mcpgate/mcpgate/internal/idp"
	"github.com/mcpgate/mcpgate/internal/netguard"
	"github.com/mcpgate/mcpgate/internal/validate"
)

// Warnings lists settings that are valid but that, in practice, make the
// gateway fail its users or weaken it: each names the key and the fix.
// `mcpgate config check` prints them (and fails on them with --strict);
// `mcpgate serve` logs them at start. c must have had SetDefaults applied.
func (c *Config) Warnings() []string {
	var p validate.Problems
	host, port, err := net.SplitHostPort(c.Listen)
	if err == nil && (host == "" || host == "0.0.0.0" || host == "::") && c.publicURLDefaulted && len(c.Security.AllowedHosts) == 0 {
		p.Add("public_url", "is not set while listen (%s) accepts connections from other machines: it defaults to %s, "+
			"so clients that reach the gateway by any other name get 403 host not allowed. "+
			"Set public_url to the URL clients use, e.g. https://mcp.example.com (or listen on 127.0.0.1:%s for local use only)",
			c.Listen, c.PublicURL, port)
	}
	if h, _, err := net.SplitHostPort(c.InternalEndpoint.Listen); err == nil && (h == "" || h == "0.0.0.0" || h == "::") {
		p.Add("internal_endpoint.listen", "listens on every interface (%s): the internal token endpoint hands out users' upstream tokens to "+
			"certificate holders, so bind it to an address only the backends reach (a pod or private address, a ClusterIP Service) and keep it off any ingress",
			c.InternalEndpoint.Listen)
	}
	if c.Security.AllowInsecureHTTP {
		p.Add("security.allow_insecure_http", "is on: tokens cross the network in clear unless a proxy in front terminates TLS; turn it off unless one does")
	}
	for i, b := range c.Backends {
		cr := b.Credential
		if u, err := url.Parse(cr.TokenEndpoint + cr.Issuer); cr.AllowPrivateNetwork && err == nil && u.Scheme == "http" && !netguard.IsLoopbackHost(u.Hostname()) {
			p.Add(validate.Index("backends", i)+".credential.allow_private_network", "lets the security token service be plain http off loopback: "+
				"the user's token and the backend's cross the network in clear; use https")
		}
	}
	switch c.Auth.Mode {
	case ModeNone:
		p.Add("auth.mode", "is none: every local process may use every tool; for development only, choose authorization_server or jwt")
	case ModeJWT:
		resources := c.ResourceURLs()
		for i, is := range c.Auth.JWT.Issuers {
			at := validate.Index("auth.jwt.issuers", i)
			if !slices.ContainsFunc(is.Audience, func(a string) bool { return slices.Contains(resources, strings.TrimSuffix(a, "/")) }) {
				p.Add(at+".audience", "%s is not the resource URI the gateway advertises in its protected resource metadata (%s): "+
					"clients ask the IdP for a token for that URI (RFC 8707), so tokens will carry it, not this audience. "+
					"Set audience to %s, or set public_url so that the advertised URI is the audience your IdP issues "+
					"(IdPs that ignore the resource parameter, such as Entra ID, issue their own: then this warning is expected)",
					strings.Join(is.Audience, ", "), strings.Join(resources, ", "), resources[0])
			}
			if is.AllowPrivateIssuer {
				p.Add(at+".allow_private_issuer", "is on: the issuer may be plain http or a private address; for a local test IdP only")
			}
		}
	case ModeIntrospection:
		if c.Auth.Introspection.AllowPrivateIssuer {
			p.Add("auth.introspection.allow_private_issuer", "is on: the endpoint may be plain http or a private address; for a local test IdP only")
		}
	case ModeAuthorizationServer:
		c.authServerWarnings(&p)
	}
	return p.List()
}

func (c *Config) authServerWarnings(p *validate.Problems) {
	const at = "auth.authorization_server"
	as := &c.Auth.AuthorizationServer
	if as.CIMD.AllowPrivate {
		p.Add(at+".cimd.allow_private", "is on: client metadata documents may be fetched from loopback and private addresses, "+
			"which lets anyone make the gateway call internal services (SSRF). For tests only: remove it, and list internal hosts in cimd.allowed_hosts instead")
	}
	up := &as.Upstream
	if up.Type != idp.TypeOIDC {
		return
	}
	ua := at + ".upstream"
	if scope := up.GroupsScopeMissing(); scope != "" {
		fix := fmt.Sprintf("Add %s to upstream.scopes, set upstream.preset for your IdP, or set upstream.groups_claim to where your IdP puts groups", scope)
		who := "Dex, Okta and other IdPs send it"
		if up.Preset != "" {
			who = up.Preset + " sends it"
			fix = fmt.Sprintf("Add %s to upstream.scopes (the %s preset requests it when scopes is not set)", scope, up.Preset)
		}
		p.Add(ua+".scopes", "do not include %q: the groups claim %q will never arrive (%s only for that scope), so users sign in with no groups and get no roles. %s",
			scope, up.GroupsClaim, who, fix)
	}
	if up.Preset == "auth0" && up.GroupsClaim == "groups" {
		p.Add(ua+".groups_claim", "is not set: Auth0 sends groups only in a namespaced claim that an Action adds; name it here, e.g. https://example.com/groups")
	}
	if up.AllowPrivateIssuer {
		p.Add(ua+".allow_private_issuer", "is on: the IdP may be plain http or a private address; for a local test IdP only")
	}
	if up.InsecureSkipEmailVerified {
		p.Add(ua+".insecure_skip_email_verified", "is on: every e-mail the IdP sends counts as verified, for allowed_email_domains and email: policy entries; "+
			"keep it only for an IdP that verifies every address but never says so")
	}
}
