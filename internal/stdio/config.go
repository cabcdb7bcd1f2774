package stdio

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/validate"
)

// Defaults.
const (
	DefaultMaxSessions     = 64
	DefaultIdleTimeout     = 30 * time.Minute
	DefaultMaxMessageBytes = 16 << 20
)

// Config describes a stdio MCP server the bridge runs, one child process per
// MCP session.
type Config struct {
	// Command is the program and its arguments, e.g. ["python", "-m", "srv"].
	// It is run directly, never through a shell.
	Command []string `yaml:"command"`
	// Env is added to a minimal environment (PATH and HOME of the gateway);
	// nothing else of the gateway's environment, which holds its secrets,
	// reaches the child.
	Env map[string]string `yaml:"env"`
	// Dir is the child's working directory (default: the gateway's).
	Dir string `yaml:"dir"`
	// MaxSessions bounds concurrent sessions, hence child processes
	// (default 64). Initializing beyond it yields 503.
	MaxSessions int `yaml:"max_sessions"`
	// IdleTimeout stops a session's child when no HTTP request of the session
	// (including a standalone GET stream) has been open for this long
	// (default 30m). There is no per-call timeout: tool calls may be slow.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxMessageBytes bounds one JSON-RPC message in either direction: a
	// request body, or one line the child writes (default 16 MiB).
	MaxMessageBytes int `yaml:"max_message_bytes"`
}

// SetDefaults fills in defaults.
func (c *Config) SetDefaults() {
	if c.MaxSessions == 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
}

// Validate reports every problem with the configuration; path is the key path
// of this Config (e.g. "backends[1]").
func (c *Config) Validate(path string, p *validate.Problems) {
	if len(c.Command) == 0 || c.Command[0] == "" {
		p.Add(validate.Join(path, "command"), "is required (program and arguments)")
	}
	for i, a := range c.Command {
		if strings.ContainsRune(a, 0) {
			p.Add(validate.Index(validate.Join(path, "command"), i), "must not contain NUL")
		}
	}
	for _, k := range slices.Sorted(maps.Keys(c.Env)) {
		v := c.Env[k]
		if k == "" || strings.ContainsAny(k, "=\x00") {
			p.Add(validate.Join(path, "env"), "invalid variable name %q", k)
		}
		if strings.ContainsRune(v, 0) {
			p.Add(validate.Join(path, "env", k), "must not contain NUL")
		}
	}
	if strings.ContainsRune(c.Dir, 0) {
		p.Add(validate.Join(path, "dir"), "must not contain NUL")
	}
	if c.MaxSessions < 0 {
		p.Add(validate.Join(path, "max_sessions"), "must not be negative")
	}
	if c.IdleTimeout < 0 {
		p.Add(validate.Join(path, "idle_timeout"), "must not be negative")
	}
	if c.MaxMessageBytes < 0 {
		p.Add(validate.Join(path, "max_message_bytes"), "must not be negative")
	}
}
