package config

import (
	"fmt"
	"strings"

	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/proxy"
)

// Overrides are values from flags; empty fields leave the config untouched.
// They are applied after the environment, so flags win.
type Overrides struct {
	Listen, PublicURL, Issuer, Audience, BackendURL string
	AuthMode                                        authn.Mode
}

// envNames lists every environment override, for documentation and tests.
var envNames = []string{
	"MCPGATE_LISTEN", "MCPGATE_PUBLIC_URL", "MCPGATE_AUTH_MODE", "MCPGATE_ISSUER", "MCPGATE_AUDIENCE",
	"MCPGATE_BACKEND_URL", "MCPGATE_ENCRYPTION_KEY", "MCPGATE_LOG_LEVEL", "MCPGATE_LOG_FORMAT",
	"MCPGATE_STORE_DSN", "MCPGATE_AUDIT_PATH", "CLOUDFLARE_TEAM_DOMAIN", "CLOUDFLARE_APPLICATION_AUDIENCE",
}

// ApplyEnv applies MCPGATE_* (and the Cloudflare names users know) over the
// decoded file.
func ApplyEnv(c *Config, lookup func(string) (string, bool)) error {
	get := func(k string) string {
		v, _ := lookup(k)
		return strings.TrimSpace(v)
	}
	o := Overrides{
		Listen:     get("MCPGATE_LISTEN"),
		PublicURL:  get("MCPGATE_PUBLIC_URL"),
		AuthMode:   authn.Mode(get("MCPGATE_AUTH_MODE")),
		Issuer:     get("MCPGATE_ISSUER"),
		Audience:   get("MCPGATE_AUDIENCE"),
		BackendURL: get("MCPGATE_BACKEND_URL"),
	}
	if err := o.Apply(c); err != nil {
		return err
	}
	set := func(dst *string, k string) {
		if v := get(k); v != "" {
			*dst = v
		}
	}
	set(&c.EncryptionKey, "MCPGATE_ENCRYPTION_KEY")
	set(&c.Log.Level, "MCPGATE_LOG_LEVEL")
	set(&c.Log.Format, "MCPGATE_LOG_FORMAT")
	set(&c.Store.DSN, "MCPGATE_STORE_DSN")
	set(&c.Audit.Path, "MCPGATE_AUDIT_PATH")
	set(&c.Auth.TrustedHeader.TeamDomain, "CLOUDFLARE_TEAM_DOMAIN")
	set(&c.Auth.TrustedHeader.Audience, "CLOUDFLARE_APPLICATION_AUDIENCE")
	return nil
}

// Apply sets the non-empty overrides on c.
func (o Overrides) Apply(c *Config) error {
	if o.Listen != "" {
		c.Listen = o.Listen
	}
	if o.PublicURL != "" {
		c.PublicURL = o.PublicURL
	}
	if o.AuthMode != "" {
		c.Auth.Mode = o.AuthMode
	}
	if o.Issuer != "" || o.Audience != "" {
		// The single-issuer shorthand: sets (or creates) the first trusted issuer.
		if len(c.Auth.JWT.Issuers) > 1 {
			return fmt.Errorf("MCPGATE_ISSUER/--issuer cannot be used with more than one configured issuer")
		}
		if len(c.Auth.JWT.Issuers) == 0 {
			c.Auth.JWT.Issuers = []authn.IssuerConfig{{}}
		}
		if o.Issuer != "" {
			c.Auth.JWT.Issuers[0].Issuer = o.Issuer
			c.Auth.Introspection.Issuer = o.Issuer
		}
		if o.Audience != "" {
			c.Auth.JWT.Issuers[0].Audience = strings.Split(o.Audience, ",")
			c.Auth.Introspection.Audience = c.Auth.JWT.Issuers[0].Audience
		}
	}
	if o.BackendURL != "" {
		if len(c.Backends) > 1 {
			return fmt.Errorf("MCPGATE_BACKEND_URL/--backend cannot be used with more than one configured backend")
		}
		if len(c.Backends) == 0 {
			c.Backends = []proxy.BackendConfig{{Name: "default"}}
		}
		c.Backends[0].URL = o.BackendURL
	}
	return nil
}
