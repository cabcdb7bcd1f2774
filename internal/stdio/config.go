package stdio

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/validate"
)

// Defaults.
const (
	DefaultMaxSessions = 64
	// DefaultMaxSessionsPerUser is the default share of one user (capped at
	// max_sessions): enough for a few clients at once (an editor, a CLI, an
	// inspector), and at least eight users' worth of the default 64.
	DefaultMaxSessionsPerUser = 8
	DefaultIdleTimeout        = 30 * time.Minute
	DefaultMaxMessageBytes    = 16 << 20
)

// maxID is the largest uid or gid accepted (beyond it ids are rare and
// differ between platforms).
const maxID = 1<<31 - 1

// Config describes a stdio MCP server the bridge runs, one child process per
// MCP session.
type Config struct {
	// Command is the program and its arguments, e.g. ["python", "-m", "srv"].
	// It is run directly, never through a shell.
	Command []string `yaml:"command"`
	// Env is added to a minimal environment (PATH and HOME of the gateway);
	// nothing else of the gateway's environment, which holds its secrets,
	// reaches the child.
	Env map[string]string `yaml:"env" secret:"true"`
	// Dir is the child's working directory (default: the gateway's).
	Dir string `yaml:"dir"`
	// MaxSessions bounds concurrent sessions, hence child processes
	// (default 64). See MaxSessionsPerUser for what happens when it is
	// reached.
	MaxSessions int `yaml:"max_sessions"`
	// MaxSessionsPerUser bounds one user's concurrent sessions (default 8,
	// at most max_sessions). A user at the limit who initializes again
	// loses their own idlest session. When the backend is full, a user
	// below the limit takes the idlest session of the user holding the
	// most sessions, only if that user holds at least two more than the
	// newcomer and that session has no call in flight; otherwise 503.
	MaxSessionsPerUser int `yaml:"max_sessions_per_user"`
	// RunAs runs every child as this uid and gid, with no supplementary
	// groups, so it cannot read the gateway's files or memory. It requires
	// the gateway to run as root, which refuses to start if that user could
	// read one of its secret files. The production setup for servers you do
	// not fully trust. Default: the gateway's own user.
	RunAs *RunAs `yaml:"run_as"`
	// IdleTimeout stops a session's child when no HTTP request of the session
	// (including a standalone GET stream) has been open for this long
	// (default 30m). There is no per-call timeout: tool calls may be slow.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxMessageBytes bounds one JSON-RPC message in either direction: a
	// request body, or one line the child writes (default 16 MiB).
	MaxMessageBytes int `yaml:"max_message_bytes"`
}

// RunAs is a uid and gid (numeric, as in /etc/passwd) to run children as.
type RunAs struct {
	// UID is the children's numeric user id, not root (1 or more).
	UID int `yaml:"uid"`
	// GID is the children's numeric group id, not root (1 or more).
	GID int `yaml:"gid"`
}

// SetDefaults fills in defaults.
func (c *Config) SetDefaults() {
	c.MaxSessions = cmp.Or(c.MaxSessions, DefaultMaxSessions)
	c.MaxSessionsPerUser = cmp.Or(c.MaxSessionsPerUser, min(DefaultMaxSessionsPerUser, max(c.MaxSessions, 1)))
	c.IdleTimeout = cmp.Or(c.IdleTimeout, DefaultIdleTimeout)
	c.MaxMessageBytes = cmp.Or(c.MaxMessageBytes, DefaultMaxMessageBytes)
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
	switch {
	case c.MaxSessionsPerUser < 0:
		p.Add(validate.Join(path, "max_sessions_per_user"), "must not be negative")
	case c.MaxSessions > 0 && c.MaxSessionsPerUser > c.MaxSessions:
		p.Add(validate.Join(path, "max_sessions_per_user"), "must not exceed max_sessions (%d)", c.MaxSessions)
	}
	if r := c.RunAs; r != nil {
		// 0 is root: a child running as root could read everything the
		// gateway holds (CAP_SYS_PTRACE), which run_as exists to prevent.
		if r.UID <= 0 || r.UID > maxID {
			p.Add(validate.Join(path, "run_as", "uid"), "must be a non-root user id, 1 to %d (got %d)", maxID, r.UID)
		}
		if r.GID <= 0 || r.GID > maxID {
			p.Add(validate.Join(path, "run_as", "gid"), "must be a non-root group id, 1 to %d (got %d)", maxID, r.GID)
		}
	}
	if c.IdleTimeout < 0 {
		p.Add(validate.Join(path, "idle_timeout"), "must not be negative")
	}
	if c.MaxMessageBytes < 0 {
		p.Add(validate.Join(path, "max_message_bytes"), "must not be negative")
	}
}
