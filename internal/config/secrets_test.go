package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes, base64

// asYAML is a minimal authorization_server config; extra is appended.
func asYAML(extra string) string {
	return `
listen: 127.0.0.1:8080
auth:
  mode: authorization_server
  authorization_server:
    upstream:
      type: static
      users: [ { username: alice, password_hash: "$2a$10$abcdefghijklmnopqrstuu3Xr4Ijk2ZxzSnqzeW9HVXTO8gkUXWZ2" } ]
backends: [ { name: demo, url: http://127.0.0.1:9000/mcp } ]
audit: { sink: stdout }
` + extra
}

func writeSecret(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Secrets can come from files, so that they need not sit in the
// environment: the encryption key (encryption_key_file or
// MCPGATE_ENCRYPTION_KEY_FILE), any ${NAME} (NAME_FILE) and any MCPGATE_*
// override (MCPGATE_*_FILE).
func TestSecretsFromFiles(t *testing.T) {
	keyFile := writeSecret(t, testKey+"\n")
	tokenFile := writeSecret(t, "s3cr3t\r\n")
	dsnFile := writeSecret(t, "/var/lib/mcpgate/x.db")

	cfg, err := Parse([]byte(asYAML("encryption_key_file: "+keyFile+"\n")), env(nil), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.EncryptionKey != testKey || cfg.EncryptionKeyFile != keyFile {
		t.Errorf("encryption_key_file: key %q file %q", cfg.EncryptionKey, cfg.EncryptionKeyFile)
	}

	y := strings.Replace(asYAML(""), "url: http://127.0.0.1:9000/mcp", `url: http://127.0.0.1:9000/mcp, credential: { type: static, value: "Bearer ${BACKEND_TOKEN}" }`, 1)
	cfg, err = Parse([]byte(y), env(map[string]string{
		"MCPGATE_ENCRYPTION_KEY_FILE": keyFile,
		"BACKEND_TOKEN_FILE":          tokenFile,
		"MCPGATE_STORE_DSN_FILE":      dsnFile,
	}), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.EncryptionKey != testKey || cfg.EncryptionKeyFile != keyFile {
		t.Errorf("MCPGATE_ENCRYPTION_KEY_FILE: key %q file %q", cfg.EncryptionKey, cfg.EncryptionKeyFile)
	}
	if got := cfg.Backends[0].Credential.Value; got != "Bearer s3cr3t" {
		t.Errorf("${BACKEND_TOKEN} from BACKEND_TOKEN_FILE = %q", got)
	}
	if cfg.Store.DSN != "/var/lib/mcpgate/x.db" {
		t.Errorf("MCPGATE_STORE_DSN_FILE: dsn %q", cfg.Store.DSN)
	}

	// The variable itself wins over its _FILE twin, and the environment
	// over the file's keys.
	cfg, err = Parse([]byte(asYAML("encryption_key_file: /nonexistent\n")), env(map[string]string{"MCPGATE_ENCRYPTION_KEY": testKey, "MCPGATE_ENCRYPTION_KEY_FILE": "/nonexistent"}), Overrides{})
	if err != nil || cfg.EncryptionKey != testKey || cfg.EncryptionKeyFile != "" {
		t.Errorf("MCPGATE_ENCRYPTION_KEY over files: %v %q %q", err, cfg.EncryptionKey, cfg.EncryptionKeyFile)
	}
}

func TestSecretFileErrors(t *testing.T) {
	keyFile := writeSecret(t, testKey)
	empty := writeSecret(t, "\n")
	huge := writeSecret(t, strings.Repeat("x", 70<<10))
	tests := []struct {
		name, yaml string
		env        map[string]string
		want       []string
	}{
		{"both key and key file", asYAML("encryption_key: " + testKey + "\nencryption_key_file: " + keyFile + "\n"), nil,
			[]string{"encryption_key_file: cannot be combined with encryption_key"}},
		{"missing key file", asYAML("encryption_key_file: /no/such/key\n"), nil,
			[]string{"encryption_key_file: open /no/such/key: no such file or directory"}},
		{"empty key file", asYAML(""), map[string]string{"MCPGATE_ENCRYPTION_KEY_FILE": empty},
			[]string{"encryption_key_file: " + empty + ": empty"}},
		{"not a key", asYAML("encryption_key_file: " + writeSecret(t, "short") + "\n"), nil,
			[]string{"encryption_key:"}},
		{"oversized _FILE", strings.Replace(asYAML("encryption_key: "+testKey+"\n"), "127.0.0.1:8080", "${LISTEN}", 1),
			map[string]string{"LISTEN_FILE": huge}, []string{"listen: LISTEN_FILE: " + huge + ": larger than 65536 bytes"}},
		{"missing _FILE of an override", asYAML("encryption_key: " + testKey + "\n"),
			map[string]string{"MCPGATE_STORE_DSN_FILE": "/no/such/dsn"}, []string{"MCPGATE_STORE_DSN_FILE: open /no/such/dsn"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), env(tc.env), Overrides{})
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}
