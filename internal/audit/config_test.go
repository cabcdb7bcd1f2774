package audit

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/mcpgate/mcpgate/internal/validate"
)

func TestConfigDefaults(t *testing.T) {
	var c Config
	c.SetDefaults()
	want := Config{Sink: SinkStdout, MaxSizeMB: 100, Fsync: FsyncInterval, FsyncInterval: time.Second,
		MaxArgsBytes: 4096, OnError: OnErrorFail, CheckpointEvery: 1000}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	c = Config{Path: "/var/log/mcpgate/audit.jsonl"}
	c.SetDefaults()
	if c.Sink != SinkFile {
		t.Errorf("a path alone should imply sink: file, got %q", c.Sink)
	}
	var p validate.Problems
	c.Validate("audit", &p)
	if p.Err() != nil {
		t.Errorf("defaults should validate: %v", p.Err())
	}
}

func TestConfigYAML(t *testing.T) {
	src := `
sink: file
path: /tmp/a.log
fsync: always
fsync_interval: 250ms
checkpoint_interval: 1m
redact_keys: [ssn]
on_error: continue
`
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	want := Config{Sink: SinkFile, Path: "/tmp/a.log", Fsync: FsyncAlways, FsyncInterval: 250 * time.Millisecond,
		CheckpointInterval: time.Minute, RedactKeys: []string{"ssn"}, OnError: OnErrorContinue}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("decode (-want +got):\n%s", diff)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Setenv("SHORT_KEY", "too-short")
	tests := []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"bad sink", func(c *Config) { c.Sink = "syslog" }, []string{`audit.sink: must be one of stdout, file, none (got "syslog")`}},
		{"file without path", func(c *Config) { c.Sink = SinkFile }, []string{"audit.path: is required with sink: file"}},
		{"path with stdout", func(c *Config) { c.Path = "/x" }, []string{`audit.path: is only used with sink: file (sink is "stdout")`}},
		{"every numeric problem", func(c *Config) {
			c.MaxSizeMB, c.MaxBackups, c.FsyncInterval, c.MaxArgsBytes, c.CheckpointEvery, c.CheckpointInterval = -1, -1, -time.Second, 10, -5, -time.Second
		}, []string{
			"audit.max_size_mb: must be at least 1 (got -1)",
			"audit.max_backups: must be 0 (keep all) or more (got -1)",
			"audit.fsync_interval: must be positive (got -1s)",
			"audit.max_args_bytes: must be between 64 and 262144 (got 10)",
			"audit.checkpoint_every: must be at least 1 (got -5)",
			"audit.checkpoint_interval: must not be negative (got -1s)",
		}},
		{"bad enums", func(c *Config) { c.Fsync, c.OnError = "sometimes", "ignore" }, []string{
			`audit.fsync: must be one of always, interval, never (got "sometimes")`,
			`audit.on_error: must be fail or continue (got "ignore")`,
		}},
		{"empty redact key", func(c *Config) { c.RedactKeys = []string{"ok", "-_"} }, []string{"audit.redact_keys[1]: must not be empty"}},
		{"hmac env unset", func(c *Config) { c.HMACKeyEnv = "MCPGATE_TEST_UNSET_KEY" }, []string{"audit.hmac_key_env: environment variable MCPGATE_TEST_UNSET_KEY must hold at least 32 bytes (has 0)"}},
		{"anchor file is the log", func(c *Config) { c.Sink, c.Path, c.AnchorFile = SinkFile, "/var/log/a.jsonl", "/var/log/./a.jsonl" },
			[]string{`audit.anchor_file: must be another path than the audit log (got "/var/log/./a.jsonl")`}},
		{"replica with a space", func(c *Config) { c.Replica = "gw 1" }, []string{`audit.replica: must be 1 to 253 letters, digits, '.', '_', ':' or '-' (got "gw 1")`}},
		{"replica with a quote", func(c *Config) { c.Replica = `gw"` }, []string{`audit.replica: must be 1 to 253 letters, digits, '.', '_', ':' or '-' (got "gw\"")`}},
		{"replica too long", func(c *Config) { c.Replica = strings.Repeat("a", 254) }, []string{`audit.replica: must be 1 to 253 letters, digits, '.', '_', ':' or '-' (got "` + strings.Repeat("a", 254) + `")`}},
		{"hmac key short", func(c *Config) { c.HMACKeyEnv = "SHORT_KEY" }, []string{"audit.hmac_key_env: environment variable SHORT_KEY must hold at least 32 bytes (has 9)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			c.SetDefaults()
			tc.edit(&c)
			var p validate.Problems
			c.Validate("audit", &p)
			if diff := cmp.Diff(tc.want, p.List()); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			if _, err := New(c); err == nil {
				t.Errorf("New accepted an invalid config")
			}
		})
	}
}
