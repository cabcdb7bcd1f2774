package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/sqlite"
)

func TestKeysRotate(t *testing.T) {
	_, db, cfgPath := staticASConfig(t, "")

	runArgs := func(args ...string) (string, error) { return runKeys(cfgPath, args...) }
	run := func() (string, error) { return runArgs("rotate") }
	out, err := run()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.HasPrefix(out, "signing key rotated: active ") {
		t.Errorf("output = %q", out)
	}
	if _, err := run(); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ks, err := st.ListSigningKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, k := range ks {
		count[k.Status]++
	}
	if count[store.KeyActive] != 1 || count[store.KeyNext] != 1 || count[store.KeyRetired] != 2 {
		t.Errorf("key statuses after two rotations: %v", count)
	}

	// `keys revoke` of the active key: gone from the store, the next key
	// signs, there is a new next key.
	var active string
	for _, k := range ks {
		if k.Status == store.KeyActive {
			active = k.ID
		}
	}
	out, err = runArgs("revoke", active)
	if err != nil || !strings.Contains(out, "signing key "+active+" revoked") {
		t.Fatalf("revoke: %v %q", err, out)
	}
	ks, _ = st.ListSigningKeys(context.Background())
	count = map[string]int{}
	for _, k := range ks {
		if k.ID == active {
			t.Error("the revoked key is still in the store")
		}
		count[k.Status]++
	}
	if count[store.KeyActive] != 1 || count[store.KeyNext] != 1 {
		t.Errorf("key statuses after revoke: %v", count)
	}
	if _, err := runArgs("revoke", "no-such-kid"); err == nil || !strings.Contains(err.Error(), "no such signing key") {
		t.Errorf("revoke of an unknown kid: %v", err)
	}
	if _, err := runArgs("revoke"); err == nil {
		t.Error("revoke without a kid")
	}

	// Without the encryption key the command refuses.
	t.Setenv("MCPGATE_ENCRYPTION_KEY", "")
	if _, err := run(); err == nil {
		t.Error("rotated without the encryption key")
	}
}

// staticASConfig writes a config for the built-in authorization server with
// one static user (alice) and a SQLite store in a temporary directory, and
// sets the encryption key in the environment, as an operator running the
// CLI beside a gateway would have it. extra is added at the top level.
func staticASConfig(t *testing.T, extra string) (dir, db, cfgPath string) {
	t.Helper()
	dir = t.TempDir()
	db = filepath.Join(dir, "mcpgate.db")
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	cfgPath = filepath.Join(dir, "mcpgate.yaml")
	cfg := `
listen: 127.0.0.1:8080
` + extra + `
auth:
  mode: authorization_server
  authorization_server:
    upstream:
      type: static
      users: [{username: alice, password_hash: "` + string(hash) + `"}]
backends: [{name: demo, url: "http://127.0.0.1:9000/mcp"}]
store: {driver: sqlite, dsn: "` + db + `"}
`
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	t.Setenv("MCPGATE_ENCRYPTION_KEY", base64.StdEncoding.EncodeToString(key))
	return dir, db, cfgPath
}

// TestKeysReseal: after a change of encryption key, the store opens only
// with the old key listed as previous; `keys reseal` seals the signing
// keys again, after which the new key alone opens them.
func TestKeysReseal(t *testing.T) {
	_, _, cfgPath := staticASConfig(t, "")
	run := func(args ...string) (string, error) { return runKeys(cfgPath, args...) }
	if out, err := run("rotate"); err != nil { // creates the keys under the first key
		t.Fatalf("%v: %s", err, out)
	}
	oldKey := os.Getenv("MCPGATE_ENCRYPTION_KEY")
	newKey := make([]byte, 32)
	rand.Read(newKey)
	t.Setenv("MCPGATE_ENCRYPTION_KEY", base64.StdEncoding.EncodeToString(newKey))
	if out, err := run("reseal"); err == nil || !strings.Contains(err.Error(), "MCPGATE_ENCRYPTION_KEY_PREVIOUS") {
		t.Fatalf("reseal without the previous key: %v %q, want a refusal naming MCPGATE_ENCRYPTION_KEY_PREVIOUS", err, out)
	}
	t.Setenv("MCPGATE_ENCRYPTION_KEY_PREVIOUS", oldKey)
	out, err := run("reseal")
	if err != nil || !strings.Contains(out, "grants: 0 with upstream tokens") {
		t.Fatalf("reseal: %v %q", err, out)
	}
	t.Setenv("MCPGATE_ENCRYPTION_KEY_PREVIOUS", "")
	if out, err := run("rotate"); err != nil {
		t.Fatalf("the new key alone after reseal: %v %s", err, out)
	}
}

// runKeys runs `mcpgate keys ARGS --config cfgPath` and returns its output.
func runKeys(cfgPath string, args ...string) (string, error) {
	cmd := newKeysCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append(args, "--config", cfgPath))
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}
