package keys

import (
	"cmp"
	"time"

	"github.com/mcpgate/mcpgate/internal/validate"
)

// Config is the `keys:` section: how the authorization server's signing
// keys rotate. (The algorithm is auth.authorization_server.signing_alg; the
// sealing key comes from encryption_key, never from this section.)
type Config struct {
	// RotateEvery rotates the signing keys by themselves (default 720h, 30
	// days; at least 1h). The next key is published that long before it
	// signs (publish-ahead), so verifiers that cache the JWKS for less
	// know it in time. One replica rotates, under the store's lock.
	RotateEvery time.Duration `yaml:"rotate_every"`
	// RetiredKeyOverlap is how long a rotated-out key stays in the JWKS
	// (retire-after; default 24h); it must be at least the access token
	// lifetime, or tokens it signed stop verifying before they expire.
	RetiredKeyOverlap time.Duration `yaml:"retired_key_overlap"`
}

// DefaultRotateEvery is Config.RotateEvery's default.
const DefaultRotateEvery = 30 * 24 * time.Hour

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	c.RotateEvery = cmp.Or(c.RotateEvery, DefaultRotateEvery)
	c.RetiredKeyOverlap = cmp.Or(c.RetiredKeyOverlap, DefaultOverlap)
}

// Validate reports every problem under path.
func (c *Config) Validate(path string, p *validate.Problems) {
	if c.RotateEvery < time.Hour {
		p.Add(validate.Join(path, "rotate_every"), "must be at least 1h (got %s)", c.RotateEvery)
	}
	if c.RetiredKeyOverlap < time.Minute {
		p.Add(validate.Join(path, "retired_key_overlap"), "must be at least 1m (got %s)", c.RetiredKeyOverlap)
	}
}
