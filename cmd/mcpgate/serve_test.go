package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/server/servertest"
)

// TestPolicyHotReload: editing the policy file changes decisions for an
// existing MCP session, without a restart or a dropped connection; a broken
// edit keeps the previous policy.
func TestPolicyHotReload(t *testing.T) {
	backend := httptest.NewServer(demo.Handler(demo.Options{}))
	t.Cleanup(backend.Close)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "mcpgate.yaml")
	policyPath := filepath.Join(dir, "policy.yaml")
	write := func(path, text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(cfgPath, fmt.Sprintf(`
listen: %s
auth: { mode: none }
policy: { file: policy.yaml }
backends: [ { name: demo, url: %s/mcp } ]
audit: { sink: none }
`, addr, backend.URL))
	write(policyPath, `
roles: { reader: { tools: ["list_*"] } }
users: { "sub:anonymous": [reader] }
`)
	cfg, err := config.Load(cfgPath, config.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err = listen(cfg.Listen, "serve")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, cfg, ln, cfgPath, func() (*config.Config, error) { return config.Load(cfgPath, config.Overrides{}) })
	}()
	t.Cleanup(func() { cancel(); <-done })
	url := "http://" + addr + "/mcp"
	for i := 0; i < 50; i++ {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cs := servertest.Connect(t, url, "unused", nil)
	if got := servertest.ToolNames(t, cs); !slices.Equal(got, []string{"list_vms"}) {
		t.Fatalf("before reload: %v", got)
	}

	time.Sleep(1100 * time.Millisecond) // a new mtime even on coarse file systems
	write(policyPath, `
roles: { admin: { tools: ["*"] } }
users: { "sub:anonymous": [admin] }
`)
	waitFor(t, func() bool { return slices.Contains(servertest.ToolNames(t, cs), "delete_vm") })

	write(policyPath, "roles: [this is not a policy\n")
	time.Sleep(3 * time.Second) // at least one watch interval
	if got := servertest.ToolNames(t, cs); !slices.Contains(got, "delete_vm") {
		t.Errorf("a broken policy edit replaced the working policy: %v", got)
	}
	if _, err := servertest.CallText(cs, "delete_vm", map[string]any{"vm_name": "dev-db"}); err != nil && !strings.Contains(err.Error(), "deleted") {
		t.Errorf("session no longer works after reloads: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
