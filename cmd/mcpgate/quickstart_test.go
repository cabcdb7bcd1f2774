package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestQuickstart: the README's first command starts the gateway with its own
// authorization server, prints the generated passwords once, keeps its
// secrets private, and comes back with the same state on a second start.
func TestQuickstart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	t.Setenv("MCPGATE_ENCRYPTION_KEY", "")
	t.Setenv("MCPGATE_ENCRYPTION_KEY_FILE", "") // quickstart sets it; restored after the test
	t.Setenv("MCPGATE_BACKEND_URL", "")

	run := func() string {
		ctx, cancel := context.WithCancel(context.Background())
		var out lockedBuffer
		done := make(chan error, 1)
		go func() { done <- quickstart(ctx, &out, dir, addr) }()
		defer func() { cancel(); <-done }()
		deadline := time.Now().Add(20 * time.Second)
		for {
			resp, err := http.Get("http://" + addr + "/.well-known/oauth-authorization-server")
			if err == nil {
				var meta map[string]any
				json.NewDecoder(resp.Body).Decode(&meta)
				resp.Body.Close()
				if meta["issuer"] != "http://"+addr || meta["registration_endpoint"] == nil {
					t.Errorf("metadata: %v", meta)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("quickstart did not come up: %v\n%s", err, out.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
		resp, err := http.Post("http://"+addr+"/mcp", "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "resource_metadata=") {
			t.Errorf("unauthenticated MCP request: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		return out.String()
	}

	first := run()
	if !strings.Contains(first, "alice / ") || !strings.Contains(first, "http://"+addr+"/mcp") {
		t.Errorf("first start output:\n%s", first)
	}
	for _, f := range []string{"encryption.key", "mcpgate.yaml", "mcpgate.db"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: %v (mode %v): secrets must be private", f, err, fi.Mode())
		}
	}
	second := run()
	if strings.Contains(second, "alice / ") {
		t.Errorf("passwords printed again on restart:\n%s", second)
	}
}
