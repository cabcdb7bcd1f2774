package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

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

// TestServeRefusesUnsupportedTracing: an OTEL_* setting mcpgate cannot
// honour stops serve with a message naming it, rather than running
// untraced.
func TestServeRefusesUnsupportedTracing(t *testing.T) {
	cfg, err := config.Parse([]byte(`
listen: 127.0.0.1:0
auth: { mode: none }
policy: { roles: { r: { tools: ["*"] } }, users: { "sub:anonymous": [r] } }
backends: [ { name: demo, url: http://127.0.0.1:9/mcp } ]
audit: { sink: none }
`), func(string) (string, bool) { return "", false }, config.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ key, value string }{
		{"OTEL_TRACES_EXPORTER", "zipkin"},
		{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
			t.Setenv(tc.key, tc.value)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			err = serve(context.Background(), cfg, ln, "", nil)
			if err == nil || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("serve = %v, want an error naming %s", err, tc.key)
			}
		})
	}
}

// TestServeFlushesTracesAtShutdown: with OTEL_EXPORTER_OTLP_ENDPOINT set,
// serve traces requests and, at shutdown, sends the spans its batcher
// still holds (the batch delay here is far longer than the test).
func TestServeFlushesTracesAtShutdown(t *testing.T) {
	var mu sync.Mutex
	var names []string
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, &req) != nil {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					names = append(names, s.Name)
				}
			}
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(receiver.Close)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")

	backend := httptest.NewServer(demo.Handler(demo.Options{Stateless: true}))
	t.Cleanup(backend.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
listen: %s
auth: { mode: none }
policy: { roles: { r: { tools: ["*"] } }, users: { "sub:anonymous": [r] } }
backends: [ { name: demo, url: %s/mcp } ]
audit: { sink: none }
`, ln.Addr(), backend.URL)), func(string) (string, bool) { return "", false }, config.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, ln, "", nil) }()
	cs := servertest.Connect(t, "http://"+ln.Addr().String()+"/mcp", "unused", nil)
	if _, err := servertest.CallText(cs, "echo", map[string]any{"text": "hi"}); err != nil {
		t.Fatal(err)
	}
	cs.Close()
	mu.Lock()
	before := len(names)
	mu.Unlock()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if before != 0 || !slices.Contains(names, "backend demo") || !slices.Contains(names, "POST /mcp") {
		t.Fatalf("exported before shutdown: %d spans; at shutdown: %v", before, names)
	}
}
