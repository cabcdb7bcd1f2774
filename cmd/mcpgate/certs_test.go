package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/config"
)

func TestCertsInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	run := func(args ...string) (string, error) {
		cmd := newRootCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append([]string{"certs", "init", "--dir", dir}, args...))
		err := cmd.ExecuteContext(context.Background())
		return out.String(), err
	}
	out, err := run("--trust-domain", "corp.example", "--backend", "vsphere", "--backend", "k8s")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, f := range []string{"ca.crt", "ca.key", "server.crt", "server.key", "client-vsphere.crt", "client-vsphere.key", "client-k8s.crt", "client-k8s.key"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, ".key") && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", f, fi.Mode())
		}
	}
	// The printed configuration is valid as it stands.
	yamlPart := out[strings.Index(out, "internal_endpoint:"):strings.Index(out, "\nA backend")]
	cfgYAML := `
listen: 127.0.0.1:8080
encryption_key: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
auth: {mode: authorization_server, authorization_server: {upstream: {type: static, users: [{username: u, password_hash: '$2a$04$abcdefghijklmnopqrstuu5ySNkUqXqgS1c2.1qMcVLDPXrkvkzvG'}]}}}
backends: [{name: vsphere, url: 'http://127.0.0.1:9000/mcp'}, {name: k8s, url: 'http://127.0.0.1:9001/mcp'}]
` + yamlPart
	if _, err := config.Parse([]byte(cfgYAML), func(string) (string, bool) { return "", false }, config.Overrides{}); err != nil {
		t.Errorf("printed configuration: %v\n%s", err, cfgYAML)
	}
	if !strings.Contains(out, "spiffe_id: spiffe://corp.example/backend/k8s") {
		t.Errorf("output:\n%s", out)
	}
	// A second run refuses to overwrite.
	if out, err := run("--backend", "vsphere"); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Errorf("second run: %v %s", err, out)
	}
	if _, err := run("--dir", t.TempDir()); err == nil {
		t.Error("no --backend accepted")
	}
}
