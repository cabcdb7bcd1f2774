package server_test

import (
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/demo"
)

// TestStepUpInsufficientScope: a scope-gated tool called without the scope
// gets 403 with an insufficient_scope challenge naming the scopes to ask for
// (existing plus missing), so MCP clients can step up.
func TestStepUpInsufficientScope(t *testing.T) {
	env := startGateway(t, "", demo.Options{}, func(y string) string {
		return strings.Replace(y, "policy:\n", "policy:\n  tool_scopes:\n    \"delete_*\": [vm:write]\n", 1)
	})
	call := `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"delete_vm","arguments":{"vm_name":"dev-db"}}}`

	admin := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-admins"}, "scope": "mcp:tools"})
	r := do(t, "POST", env.url, admin, call, nil)
	want := `error="insufficient_scope"`
	if r.status != 403 || !strings.Contains(r.header.Get("WWW-Authenticate"), want) ||
		!strings.Contains(r.header.Get("WWW-Authenticate"), `scope="mcp:tools vm:write"`) ||
		!strings.Contains(r.header.Get("WWW-Authenticate"), `resource_metadata="`) {
		t.Fatalf("no step-up: %d %q %s", r.status, r.header.Get("WWW-Authenticate"), r.body)
	}
	if !strings.Contains(r.body, "vm:write") {
		t.Errorf("error does not name the missing scope: %s", r.body)
	}

	// With the scope, the admin may call it; a reader may not, scope or not:
	// scopes never grant what roles don't.
	stepped := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-admins"}, "scope": "mcp:tools vm:write"})
	if r := do(t, "POST", env.url, stepped, call, nil); r.status != 200 {
		t.Errorf("with scope: %d %s", r.status, r.body)
	}
	reader := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-readers"}, "scope": "mcp:tools vm:write"})
	r = do(t, "POST", env.url, reader, call, nil)
	if r.status != 403 || strings.Contains(r.header.Get("WWW-Authenticate"), "insufficient_scope") {
		t.Errorf("reader with scope: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
	if !strings.Contains(r.body, "delete_vm") {
		t.Errorf("denial does not name the tool: %s", r.body)
	}
}
