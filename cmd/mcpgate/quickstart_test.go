package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

// lockedBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type lockedBuffer = testutil.SyncBuffer

// freeAddr is a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startQuickstart runs quickstart until the test ends or stop is called, and
// returns once the gateway serves its authorization server metadata at
// wantIssuer, served on addr.
func startQuickstart(t *testing.T, o quickstartOptions, addr, wantIssuer string) (out *lockedBuffer, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out = &lockedBuffer{}
	done := make(chan error, 1)
	go func() { done <- quickstart(ctx, out, o) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("quickstart: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(60 * time.Second) // bcrypt and key generation under -race on a loaded machine
	for {
		select {
		case err := <-done:
			stopped = true
			t.Fatalf("quickstart stopped: %v\n%s", err, out)
		default:
		}
		resp, err := http.Get("http://" + addr + "/.well-known/oauth-authorization-server")
		if err == nil {
			var meta map[string]any
			json.NewDecoder(resp.Body).Decode(&meta)
			resp.Body.Close()
			if meta["issuer"] != wantIssuer || meta["registration_endpoint"] == nil {
				t.Errorf("metadata: %v", meta)
			}
			return out, stop
		}
		if time.Now().After(deadline) {
			t.Fatalf("quickstart did not come up on %s: %v\n%s", addr, err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestQuickstart: the README's first command starts the gateway with its own
// authorization server, prints the generated passwords once, keeps its
// secrets private, and comes back with the same state on a second start,
// where --listen and --public-url are honoured although the config exists.
func TestQuickstart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	addr := freeAddr(t)
	t.Setenv("MCPGATE_ENCRYPTION_KEY", "")
	t.Setenv("MCPGATE_ENCRYPTION_KEY_FILE", "")
	t.Setenv("MCPGATE_BACKEND_URL", "")

	out, stop := startQuickstart(t, quickstartOptions{DataDir: dir, Listen: addr}, addr, "http://"+addr)
	resp, err := http.Post("http://"+addr+"/mcp", "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "resource_metadata=") {
		t.Errorf("unauthenticated MCP request: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	stop()
	first := out.String()
	if !strings.Contains(first, "alice / ") || !strings.Contains(first, "http://"+addr+"/mcp") {
		t.Errorf("first start output:\n%s", first)
	}
	for _, f := range []string{"encryption.key", "mcpgate.yaml", "mcpgate.db"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: %v (mode %v): secrets must be private", f, err, fi.Mode())
		}
	}

	// Second run, flags given: they win over the file written by the first.
	addr2 := freeAddr(t)
	out, stop = startQuickstart(t, quickstartOptions{DataDir: dir, Listen: addr2}, addr2, "http://"+addr2)
	stop()
	if second := out.String(); strings.Contains(second, "alice / ") || !strings.Contains(second, "http://"+addr2+"/mcp") {
		t.Errorf("second start output (want no passwords, the new URL):\n%s", second)
	}
	// Third run: a public URL (a tunnel, say) becomes the issuer.
	out, _ = startQuickstart(t, quickstartOptions{DataDir: dir, Listen: addr, PublicURL: "http://localhost:" + port(addr)}, addr, "http://localhost:"+port(addr))
	if !strings.Contains(out.String(), "http://localhost:"+port(addr)+"/mcp") {
		t.Errorf("third start output:\n%s", out)
	}
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// TestQuickstartBusyPort: a port in use stops quickstart with a message that
// says so and what to do, before a password is generated or printed, on the
// first run and on later ones.
func TestQuickstartBusyPort(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	dir := filepath.Join(t.TempDir(), "data")
	for _, run := range []string{"first", "later"} {
		var out bytes.Buffer
		err := quickstart(context.Background(), &out, quickstartOptions{DataDir: dir, Listen: addr})
		if err == nil || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), "--listen 127.0.0.1:") {
			t.Errorf("%s run: err = %v", run, err)
		}
		if strings.Contains(out.String(), "alice") {
			t.Errorf("%s run printed before failing:\n%s", run, out.String())
		}
		if _, err := os.Stat(filepath.Join(dir, "mcpgate.yaml")); run == "first" && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("first run wrote a config whose passwords nobody saw: %v", err)
		}
		if run == "first" {
			// A config from an earlier successful run.
			a := freeAddr(t)
			_, stop := startQuickstart(t, quickstartOptions{DataDir: dir, Listen: a}, a, "http://"+a)
			stop()
		}
	}
}

// TestQuickstartRefusesNonLoopback: quickstart's generated passwords and
// plain http stay on loopback, whether the address comes from the flag or
// the environment.
func TestQuickstartRefusesNonLoopback(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	err := quickstart(context.Background(), io.Discard, quickstartOptions{DataDir: dir, Listen: "0.0.0.0:0"})
	if err == nil || !strings.Contains(err.Error(), "loopback only") {
		t.Errorf("flag: %v", err)
	}
	t.Setenv("MCPGATE_LISTEN", "0.0.0.0:0")
	err = quickstart(context.Background(), io.Discard, quickstartOptions{DataDir: dir})
	if err == nil || !strings.Contains(err.Error(), "loopback only") {
		t.Errorf("env: %v", err)
	}
}

// TestQuickstartConfigStandalone: the generated file is a complete config:
// `mcpgate config check`, `serve --config` and `keys rotate` read it with no
// MCPGATE_* variable set, and it names the demo backend's default address.
func TestQuickstartConfigStandalone(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	addr := freeAddr(t)
	_, stop := startQuickstart(t, quickstartOptions{DataDir: dir, Listen: addr}, addr, "http://"+addr)
	stop()
	for _, k := range []string{"MCPGATE_ENCRYPTION_KEY", "MCPGATE_ENCRYPTION_KEY_FILE", "MCPGATE_BACKEND_URL", "MCPGATE_LISTEN", "MCPGATE_PUBLIC_URL", "MCPGATE_CONFIG"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	cfgPath := filepath.Join(dir, "mcpgate.yaml")
	cfg, err := config.Load(cfgPath, config.Overrides{})
	if err != nil {
		t.Fatalf("serve --config on the generated file: %v", err)
	}
	if cfg.Backends[0].URL != demoBackendURL || cfg.Listen != addr {
		t.Errorf("backend %q listen %q", cfg.Backends[0].URL, cfg.Listen)
	}
	for _, args := range [][]string{{"config", "check", cfgPath}, {"keys", "rotate", "--config", cfgPath}} {
		root := newRootCmd()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(args)
		if err := root.Execute(); err != nil {
			t.Errorf("mcpgate %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
	}
}

// TestQuickstartMigratesLegacyConfig: a data dir from an earlier version
// (key file and backend URL from the environment) is rewritten so that it,
// too, loads without environment variables.
func TestQuickstartMigratesLegacyConfig(t *testing.T) {
	dir := t.TempDir()
	for _, k := range []string{"MCPGATE_ENCRYPTION_KEY", "MCPGATE_ENCRYPTION_KEY_FILE", "MCPGATE_BACKEND_URL"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	legacy := strings.Replace(quickstartConfig, "encryption_key_file: %[2]s/encryption.key\n", "", 1)
	h, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	text := fmt.Sprintf(legacy, "127.0.0.1:8080", dir, "${MCPGATE_BACKEND_URL}", h, h)
	cfgPath, keyPath := filepath.Join(dir, "mcpgate.yaml"), filepath.Join(dir, "encryption.key")
	os.WriteFile(cfgPath, []byte(text), 0o600)
	if err := createKeyIfMissing(keyPath); err != nil {
		t.Fatal(err)
	}
	key, _ := os.ReadFile(keyPath)
	if _, err := config.Load(cfgPath, config.Overrides{}); err == nil {
		t.Fatal("legacy config loads without its environment: the test is wrong")
	}
	var out bytes.Buffer
	if err := migrateQuickstartConfig(&out, cfgPath, keyPath); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath, config.Overrides{})
	if err != nil {
		t.Fatalf("after migration: %v", err)
	}
	if cfg.EncryptionKey != string(key) || cfg.Backends[0].URL != demoBackendURL || !strings.Contains(out.String(), "updated") {
		t.Errorf("key %v backend %q out %q", cfg.EncryptionKey == string(key), cfg.Backends[0].URL, out.String())
	}
	// Idempotent, and a config not written by quickstart is never touched.
	before, _ := os.ReadFile(cfgPath)
	migrateQuickstartConfig(io.Discard, cfgPath, keyPath)
	if after, _ := os.ReadFile(cfgPath); !bytes.Equal(before, after) {
		t.Error("second migration changed the file")
	}
	other := filepath.Join(dir, "other.yaml")
	os.WriteFile(other, []byte("backends: [{name: a, url: ${MCPGATE_BACKEND_URL}}]\n"), 0o600)
	migrateQuickstartConfig(io.Discard, other, keyPath)
	if b, _ := os.ReadFile(other); !strings.Contains(string(b), "${MCPGATE_BACKEND_URL}") {
		t.Error("a user's own config was rewritten")
	}
}
