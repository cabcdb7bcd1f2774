package store

import (
	"cmp"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/validate"
)

// Drivers accepted in Config.Driver.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
	DriverMemory   = "memory"
)

// DefaultSQLitePath is the database file used when driver is sqlite and no dsn is set.
const DefaultSQLitePath = "./mcpgate.db"

// DefaultSweepInterval is how often expired objects are deleted.
const DefaultSweepInterval = 5 * time.Minute

// Config is the `store:` section of the configuration file.
type Config struct {
	// Driver is sqlite | postgres | memory: sqlite (default, embedded),
	// postgres (shared by replicas) or memory (tests and development only: all state is lost on restart).
	Driver string `yaml:"driver"`
	// DSN is the SQLite file path or a PostgreSQL connection string
	// (postgres://user:pass@host/db?sslmode=verify-full); MCPGATE_STORE_DSN,
	// or MCPGATE_STORE_DSN_FILE for a DSN with a password. A new SQLite file
	// is created 0600 in a 0700 directory.
	DSN string `yaml:"dsn" secret:"true"`
	// SweepInterval is how often expired objects are deleted (0 = default).
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// RefreshCacheMiB bounds, for driver sqlite, the memory that keeps each
	// active session's current refresh token with its grant, so that a
	// refresh does not read them from the database (0 = default, 128 MiB):
	// about 850 bytes per session with built-in users, more with an IdP's
	// upstream tokens; the oldest sessions leave first. 1 to 4096.
	RefreshCacheMiB int `yaml:"refresh_cache_mib"`
}

// DefaultRefreshCacheMiB is RefreshCacheMiB's default: about 150k sessions
// with built-in users.
const DefaultRefreshCacheMiB = 128

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	c.Driver = cmp.Or(c.Driver, DriverSQLite)
	if c.Driver == DriverSQLite && c.DSN == "" {
		c.DSN = DefaultSQLitePath
	}
	c.SweepInterval = cmp.Or(c.SweepInterval, DefaultSweepInterval)
	if c.Driver == DriverSQLite {
		c.RefreshCacheMiB = cmp.Or(c.RefreshCacheMiB, DefaultRefreshCacheMiB)
	}
}

// Validate reports every problem under path (e.g. "store").
func (c *Config) Validate(path string, p *validate.Problems) {
	switch c.Driver {
	case DriverSQLite:
		if c.DSN == "" {
			p.Add(validate.Join(path, "dsn"), "is required for driver sqlite (a file path)")
		} else if strings.ContainsAny(c.DSN, "?#") || strings.HasPrefix(c.DSN, "file:") {
			p.Add(validate.Join(path, "dsn"), "must be a plain file path for driver sqlite (no file: URI or query parameters)")
		}
	case DriverPostgres:
		if c.DSN == "" {
			p.Add(validate.Join(path, "dsn"), "is required for driver postgres (a connection string)")
		}
	case DriverMemory:
		if c.DSN != "" {
			p.Add(validate.Join(path, "dsn"), "must be empty for driver memory")
		}
	default:
		p.Add(validate.Join(path, "driver"), "must be one of sqlite, postgres, memory (got %q)", c.Driver)
	}
	switch {
	case c.RefreshCacheMiB != 0 && c.Driver != DriverSQLite:
		p.Add(validate.Join(path, "refresh_cache_mib"), "is for driver sqlite only")
	case c.RefreshCacheMiB < 0 || c.RefreshCacheMiB > 4096:
		p.Add(validate.Join(path, "refresh_cache_mib"), "must be 1 to 4096 (got %d)", c.RefreshCacheMiB)
	}
	if c.SweepInterval < time.Second {
		p.Add(validate.Join(path, "sweep_interval"), "must be at least 1s (got %s)", c.SweepInterval)
	}
}
