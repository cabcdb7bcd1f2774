package keys

import (
	"time"

	"github.com/mcpgate/mcpgate/internal/validate"
)

// Config is the signing key section of the configuration (the sealing key
// itself comes from the MCPGATE_ENCRYPTION_KEY environment variable, never
// from the file).
type Config struct {
	// Algorithm for new signing keys: ES256 (default) or RS256.
	Algorithm string `yaml:"algorithm"`
	// RetiredKeyOverlap is how long a rotated-out key stays in the JWKS; it
	// must be at least the access token lifetime.
	RetiredKeyOverlap time.Duration `yaml:"retired_key_overlap"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.Algorithm == "" {
		c.Algorithm = ES256
	}
	if c.RetiredKeyOverlap == 0 {
		c.RetiredKeyOverlap = DefaultOverlap
	}
}

// Validate reports every problem under path.
func (c *Config) Validate(path string, p *validate.Problems) {
	if c.Algorithm != ES256 && c.Algorithm != RS256 {
		p.Add(validate.Join(path, "algorithm"), "must be ES256 or RS256 (got %q)", c.Algorithm)
	}
	if c.RetiredKeyOverlap < time.Minute {
		p.Add(validate.Join(path, "retired_key_overlap"), "must be at least 1m (got %s)", c.RetiredKeyOverlap)
	}
}

// Options returns Manager options for this configuration.
func (c *Config) Options() Options {
	return Options{Algorithm: c.Algorithm, Overlap: c.RetiredKeyOverlap}
}
