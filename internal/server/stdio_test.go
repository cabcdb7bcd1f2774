package server_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/server/servertest"
)

// TestMain lets the test binary double as a stdio MCP server (the demo
// server), so stdio backends are tested with a real child process.
func TestMain(m *testing.M) {
	if os.Getenv("MCPGATE_TEST_STDIO_SERVER") == "1" {
		if path := os.Getenv("MCPGATE_TEST_STDIO_STDIN_LOG"); path != "" {
			teeStdin(path) // what the child received, for TestTracingStdio
		}
		if err := demo.RunStdio(context.Background(), demo.Options{}); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// teeStdin copies everything the process reads on stdin to the file path.
func teeStdin(path string) {
	f, err := os.Create(path)
	if err != nil {
		os.Exit(2)
	}
	r, w, err := os.Pipe()
	if err != nil {
		os.Exit(2)
	}
	in := os.Stdin
	os.Stdin = r
	go func() {
		io.Copy(io.MultiWriter(w, f), in)
		w.Close()
	}()
}

// TestStdioBackend: a stdio MCP server behind the gateway, driven by the Go
// SDK client, with the same authentication and policy as HTTP backends.
func TestStdioBackend(t *testing.T) {
	idp := newTestIdP(t)
	var url string
	servertest.Start(t, func(base string) string {
		url = base + "/mcp"
		return jwtGatewayYAML(idp, url, readerPolicy, "", stdioDemo(""))
	})
	cs := servertest.Connect(t, url, idp.token(t, url, map[string]any{"groups": []string{"readers"}}), nil)
	names := servertest.ToolNames(t, cs)
	slices.Sort(names)
	if want := []string{"get_vm", "list_vms"}; !slices.Equal(names, want) {
		t.Errorf("tools = %v, want %v", names, want)
	}
	if out, err := servertest.CallText(cs, "get_vm", map[string]any{"vm_name": "web-1"}); err != nil || out != "web-1: poweredOn" {
		t.Errorf("get_vm = %q, %v", out, err)
	}
	if _, err := servertest.CallText(cs, "delete_vm", map[string]any{"vm_name": "web-1"}); err == nil || !strings.Contains(err.Error(), "delete_vm") {
		t.Errorf("delete_vm: %v", err)
	}
}

// TestStdioFairness: a caller to whom the policy grants nothing on a stdio
// backend is refused at initialize (403) and takes no slot, however often
// they try; a user over max_sessions_per_user loses their own idlest
// session, never someone else's.
func TestStdioFairness(t *testing.T) {
	idp := newTestIdP(t)
	var url string
	servertest.Start(t, func(base string) string {
		url = base + "/mcp"
		return jwtGatewayYAML(idp, url, readerPolicy, "", stdioDemo("max_sessions: 2, max_sessions_per_user: 1"))
	})
	readers := map[string]any{"groups": []string{"readers"}}
	alice := servertest.Connect(t, url, idp.tokenFor(t, "alice", url, readers), nil)

	nobody := idp.tokenFor(t, "nobody", url, map[string]any{"groups": []string{"strangers"}})
	for range 5 {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(
			`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`))
		req.Header.Set("Authorization", "Bearer "+nobody)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Mcp-Session-Id") != "" ||
			!strings.Contains(string(body), `grants no tool, prompt or resource on backend \"local\"`) {
			t.Fatalf("initialize by a user without roles: %d %s", resp.StatusCode, body)
		}
	}
	// The second slot is still free for bob, and alice keeps hers.
	bob := servertest.Connect(t, url, idp.tokenFor(t, "bob", url, readers), nil)
	for name, cs := range map[string]*mcp.ClientSession{"alice": alice, "bob": bob} {
		if _, err := servertest.CallText(cs, "list_vms", nil); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	// alice opens a second session: over her share of 1, she loses her
	// first; bob keeps his.
	alice2 := servertest.Connect(t, url, idp.tokenFor(t, "alice", url, readers), nil)
	if _, err := servertest.CallText(alice2, "list_vms", nil); err != nil {
		t.Errorf("alice's new session: %v", err)
	}
	if _, err := servertest.CallText(alice, "list_vms", nil); err == nil {
		t.Error("alice's first session survived her exceeding max_sessions_per_user")
	}
	if _, err := servertest.CallText(bob, "list_vms", nil); err != nil {
		t.Errorf("bob lost his session to alice: %v", err)
	}
}
