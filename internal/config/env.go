package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"

	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/keys"
	"github.com/mcpgate/mcpgate/internal/proxy"
)

// Overrides are values from flags; empty fields leave the config untouched.
// They are applied after the environment, so flags win.
type Overrides struct {
	Listen, PublicURL, Issuer, Audience, BackendURL string
	AuthMode                                        authn.Mode
}

// envNames lists every environment override, for documentation and tests.
// Each may instead be given as NAME_FILE, the path of a file holding the
// value (see lookupFile).
var envNames = []string{
	"MCPGATE_LISTEN", "MCPGATE_PUBLIC_URL", "MCPGATE_AUTH_MODE", "MCPGATE_ISSUER", "MCPGATE_AUDIENCE",
	"MCPGATE_BACKEND_URL", "MCPGATE_ENCRYPTION_KEY", "MCPGATE_ENCRYPTION_KEY_PREVIOUS", "MCPGATE_LOG_LEVEL", "MCPGATE_LOG_FORMAT",
	"MCPGATE_STORE_DSN", "MCPGATE_AUDIT_PATH", "MCPGATE_AUDIT_REPLICA", "CLOUDFLARE_TEAM_DOMAIN", "CLOUDFLARE_APPLICATION_AUDIENCE",
}

// ApplyEnv applies MCPGATE_* (and the Cloudflare names users know) over the
// decoded file.
func ApplyEnv(c *Config, lookup func(string) (string, bool)) error {
	var errs []error
	get := func(k string) string {
		v, _, err := lookupFile(lookup, k)
		errs = append(errs, err)
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
	// The key file is kept as a path, not read here, so that the server
	// can check who else may read it; either variable replaces both keys
	// of the file.
	if v, _ := lookup("MCPGATE_ENCRYPTION_KEY"); strings.TrimSpace(v) != "" {
		c.EncryptionKey, c.EncryptionKeyFile = strings.TrimSpace(v), ""
	} else if f, _ := lookup("MCPGATE_ENCRYPTION_KEY_FILE"); f != "" {
		c.EncryptionKey, c.EncryptionKeyFile = "", f
	}
	if v := get(keys.PreviousKeysEnv); v != "" {
		c.EncryptionKeyPrevious = nil
		for _, k := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }) {
			c.EncryptionKeyPrevious = append(c.EncryptionKeyPrevious, k)
		}
	}
	set(&c.Log.Level, "MCPGATE_LOG_LEVEL")
	set(&c.Log.Format, "MCPGATE_LOG_FORMAT")
	set(&c.Store.DSN, "MCPGATE_STORE_DSN")
	set(&c.Audit.Path, "MCPGATE_AUDIT_PATH")
	set(&c.Audit.Replica, "MCPGATE_AUDIT_REPLICA")
	set(&c.Auth.TrustedHeader.TeamDomain, "CLOUDFLARE_TEAM_DOMAIN")
	set(&c.Auth.TrustedHeader.Audience, "CLOUDFLARE_APPLICATION_AUDIENCE")
	return errors.Join(errs...)
}

// maxSecretFile bounds a file read for a secret.
const maxSecretFile = 64 << 10

// lookupFile resolves the variable name, or, when it is unset or empty, the
// file named by name_FILE (the convention of Docker and Kubernetes
// secrets), so that secrets need not sit in the environment, where every
// process of the same user may read them (/proc/PID/environ).
func lookupFile(lookup func(string) (string, bool), name string) (string, bool, error) {
	if v, ok := lookup(name); ok && v != "" {
		return v, true, nil
	}
	path, ok := lookup(name + "_FILE")
	if !ok || path == "" {
		return "", false, nil
	}
	v, err := ReadSecretFile(path)
	if err != nil {
		return "", false, fmt.Errorf("%s_FILE: %w", name, err)
	}
	return v, true, nil
}

// ReadSecretFile reads a secret from a file: its content less one trailing
// line break (as echo and most secret stores write it). It refuses an empty
// file and one over 64 KiB.
func ReadSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("%s: larger than %d bytes", path, maxSecretFile)
	}
	v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if v == "" {
		return "", fmt.Errorf("%s: empty", path)
	}
	return v, nil
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
