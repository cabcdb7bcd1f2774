package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestErrorMessages: mistakes are reported by key path, with what was
// expected and what was found, and never in Go type names or parser terms.
func TestErrorMessages(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want []string
	}{
		{"limit as a number", validJWT + "rate_limit:\n  per_user: 50\n",
			[]string{"rate_limit.per_user: expected a mapping (keys burst, rps), found the number 50 (line"}},
		{"number as text", validJWT + "security:\n  max_body_bytes: lots\n",
			[]string{`security.max_body_bytes: expected a whole number, found the text "lots"`}},
		{"bad duration", validJWT + "shutdown_timeout: 5\n",
			[]string{"shutdown_timeout: expected a duration such as 30s, 5m or 1h, found the number 5"}},
		{"list where a mapping goes", validJWT + "metrics: [1]\n",
			[]string{"metrics: expected a mapping (keys enabled), found a list"}},
		{"mapping where a list goes", strings.Replace(validJWT, "backends:\n  - name: demo\n    url: http://127.0.0.1:9000/mcp", "backends:\n  name: demo", 1),
			[]string{"backends: expected a list, found a mapping"}},
		{"bool", validJWT + "metrics:\n  enabled: yes please\n",
			[]string{`metrics.enabled: expected true or false, found the text "yes please"`}},
		{"custom duration", strings.Replace(validJWT, "  mode: jwt\n", "  mode: jwt\n  authorization_server:\n    refresh_grace: soon\n", 1),
			[]string{`auth.authorization_server.refresh_grace: expected 0 or a duration such as 30s, found the text "soon"`}},
		{"audience list", strings.Replace(validJWT, "audience: http://127.0.0.1:8080/mcp", "audience: {a: b}", 1),
			[]string{"auth.jwt.issuers[0].audience: expected text or a list of text, found a mapping"}},
		{"misspelt key", validJWT + "Shutdown-Timeout: 5s\n",
			[]string{"Shutdown-Timeout: unknown key (line", "did you mean shutdown_timeout?"}},
		{"not YAML", "listen: [\n", []string{"not valid YAML: line"}},
		{"secret cut short", validJWT + "security:\n  max_body_bytes: s3cr3t-0123456789-abcdefghijkl\n",
			[]string{`found the text "s3cr3t-0123456789-ab..."`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), env(nil), Overrides{})
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q\nlacks %q", msg, w)
				}
			}
			for _, bad := range []string{"!!", "unmarshal", "ratelimit.", "time.Duration", "config.", "authn.", "yaml:", "0123456789-abcdefghijkl"} {
				if strings.Contains(msg, bad) {
					t.Errorf("error %q mentions %q", msg, bad)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	_, err := Load("nope.yaml", Overrides{})
	want := "config file not found: tried nope.yaml (" + filepath.Join(dir, "nope.yaml") + "); pass the file with --config or MCPGATE_CONFIG"
	if err == nil || err.Error() != want {
		t.Errorf("Load(missing) = %v\nwant %s", err, want)
	}
	if err := os.WriteFile("locked.yaml", nil, 0); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() != 0 {
		if _, err := Load("locked.yaml", Overrides{}); err == nil || !strings.Contains(err.Error(), "is not readable by this user") {
			t.Errorf("Load(unreadable) = %v", err)
		}
	}
}
