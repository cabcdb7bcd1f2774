package stdio

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mcpgate/mcpgate/internal/validate"
)

func TestSetDefaults(t *testing.T) {
	var c Config
	c.SetDefaults()
	want := Config{MaxSessions: 64, MaxSessionsPerUser: 8, IdleTimeout: 30 * time.Minute, MaxMessageBytes: 16 << 20}
	if d := cmp.Diff(want, c); d != "" {
		t.Errorf("defaults (-want +got):\n%s", d)
	}
	c = Config{MaxSessions: 3, IdleTimeout: time.Second, MaxMessageBytes: 10}
	c.SetDefaults()
	if c.MaxSessions != 3 || c.IdleTimeout != time.Second || c.MaxMessageBytes != 10 {
		t.Errorf("SetDefaults overrode explicit values: %+v", c)
	}
	if c.MaxSessionsPerUser != 3 {
		t.Errorf("max_sessions_per_user default = %d, want max_sessions (3) when below 8", c.MaxSessionsPerUser)
	}
	c = Config{MaxSessions: 64, MaxSessionsPerUser: 1}
	c.SetDefaults()
	if c.MaxSessionsPerUser != 1 {
		t.Errorf("SetDefaults overrode max_sessions_per_user: %d", c.MaxSessionsPerUser)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"ok", Config{Command: []string{"srv", "--flag"}, Env: map[string]string{"A": "1"}}, nil},
		{"no command", Config{}, []string{"backends[0].command: is required (program and arguments)"}},
		{"empty program", Config{Command: []string{""}}, []string{"backends[0].command: is required (program and arguments)"}},
		{"NUL in argument", Config{Command: []string{"srv", "a\x00b"}}, []string{"backends[0].command[1]: must not contain NUL"}},
		{"bad env names", Config{Command: []string{"srv"}, Env: map[string]string{"": "x", "A=B": "y", "OK": "v\x00"}}, []string{
			`backends[0].env: invalid variable name ""`,
			`backends[0].env: invalid variable name "A=B"`,
			"backends[0].env.OK: must not contain NUL",
		}},
		{"negatives", Config{Command: []string{"srv"}, MaxSessions: -1, IdleTimeout: -time.Second, MaxMessageBytes: -1, Dir: "a\x00"}, []string{
			"backends[0].dir: must not contain NUL",
			"backends[0].max_sessions: must not be negative",
			"backends[0].idle_timeout: must not be negative",
			"backends[0].max_message_bytes: must not be negative",
		}},
		{"per-user limit", Config{Command: []string{"srv"}, MaxSessions: 4, MaxSessionsPerUser: 5}, []string{
			"backends[0].max_sessions_per_user: must not exceed max_sessions (4)",
		}},
		{"negative per-user limit", Config{Command: []string{"srv"}, MaxSessions: 4, MaxSessionsPerUser: -1}, []string{
			"backends[0].max_sessions_per_user: must not be negative",
		}},
		{"run_as ok", Config{Command: []string{"srv"}, RunAs: &RunAs{UID: 65534, GID: 65534}}, nil},
		{"run_as root or missing", Config{Command: []string{"srv"}, RunAs: &RunAs{UID: 0, GID: -1}}, []string{
			"backends[0].run_as.uid: must be a non-root user id, 1 to 2147483647 (got 0)",
			"backends[0].run_as.gid: must be a non-root group id, 1 to 2147483647 (got -1)",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p validate.Problems
			tc.cfg.Validate("backends[0]", &p)
			if d := cmp.Diff(tc.want, p.List()); d != "" {
				t.Errorf("problems (-want +got):\n%s", d)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	notDir, err := os.CreateTemp(t.TempDir(), "f")
	if err != nil {
		t.Fatal(err)
	}
	notDir.Close()
	tests := []struct {
		name, want string
		cfg        Config
	}{
		{"invalid config", "command: is required", Config{}},
		{"unknown program", "no-such-program-mcpgate", Config{Command: []string{"no-such-program-mcpgate"}}},
		{"missing path", "no such file", Config{Command: []string{"./no-such-program"}, Dir: t.TempDir()}},
		{"dir is a file", "is not a directory", Config{Command: []string{exe}, Dir: notDir.Name()}},
		{"missing dir", "is not a directory", Config{Command: []string{exe}, Dir: "/no/such/dir"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v, want error containing %q", err, tc.want)
			}
		})
	}
}
