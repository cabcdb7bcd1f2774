package main

import (
	"context"
	"fmt"
	"net"
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
	// Watch every 20 ms, and hear of every reload: the test waits for those
	// instead of sleeping through watch intervals.
	reloads := make(chan error, 16)
	policyWatchInterval, reloaded = 20*time.Millisecond, func(err error) { reloads <- err }
	t.Cleanup(func() { policyWatchInterval, reloaded = 0, nil })
	waitReload := func(wantErr bool) {
		t.Helper()
		select {
		case err := <-reloads:
			if (err != nil) != wantErr {
				t.Fatalf("reload error %v, want an error: %v", err, wantErr)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no reload within 10s")
		}
	}
	// Each edit is one atomic change, as editors save: a file written in
	// place can be read half-written (valid YAML with less in it) and its
	// content and modification time seen by different polls. Each gets a
	// distinct modification time, even on coarse file systems.
	stamp := time.Now()
	edit := func(text string) {
		t.Helper()
		write(policyPath+".tmp", text)
		stamp = stamp.Add(time.Hour)
		if err := os.Chtimes(policyPath+".tmp", stamp, stamp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(policyPath+".tmp", policyPath); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, cfg, ln, cfgPath, func() (*config.Config, error) { return config.Load(cfgPath, config.Overrides{}) })
	}()
	t.Cleanup(func() { cancel(); <-done })
	url := "http://" + addr + "/mcp" // bound already: no need to wait for it
	cs := servertest.Connect(t, url, "unused", nil)
	if got := servertest.ToolNames(t, cs); !slices.Equal(got, []string{"list_vms"}) {
		t.Fatalf("before reload: %v", got)
	}

	edit(`
roles: { admin: { tools: ["*"] } }
users: { "sub:anonymous": [admin] }
`)
	waitReload(false)
	if got := servertest.ToolNames(t, cs); !slices.Contains(got, "delete_vm") {
		t.Fatalf("after reload: %v", got)
	}
	edit("roles: [this is not a policy\n")
	waitReload(true)
	if got := servertest.ToolNames(t, cs); !slices.Contains(got, "delete_vm") {
		t.Errorf("a broken policy edit replaced the working policy: %v", got)
	}
	if _, err := servertest.CallText(cs, "delete_vm", map[string]any{"vm_name": "dev-db"}); err != nil && !strings.Contains(err.Error(), "deleted") {
		t.Errorf("session no longer works after reloads: %v", err)
	}
}
