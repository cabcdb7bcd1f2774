package server_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/server/servertest"
)

// TestMain lets the test binary double as a stdio MCP server (the demo
// server), so stdio backends are tested with a real child process.
func TestMain(m *testing.M) {
	if os.Getenv("MCPGATE_TEST_STDIO_SERVER") == "1" {
		if err := demo.RunStdio(context.Background(), demo.Options{}); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestStdioBackend: a stdio MCP server behind the gateway, driven by the Go
// SDK client, with the same authentication and policy as HTTP backends.
func TestStdioBackend(t *testing.T) {
	idp := newTestIdP(t)
	var url string
	servertest.Start(t, func(base string) string {
		url = base + "/mcp"
		return fmt.Sprintf(`
auth: { mode: jwt, jwt: { issuers: [ { issuer: %s, audience: %s, allow_private_issuer: true } ] } }
policy: { roles: { reader: { tools: ["list_*", "get_*"] } }, groups: { readers: [reader] } }
backends:
  - name: local
    command: [%q, "-test.run=^$"]
    env: { MCPGATE_TEST_STDIO_SERVER: "1" }
audit: { sink: none }
`, idp.srv.URL, url, os.Args[0])
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
