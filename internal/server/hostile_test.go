package server_test

import (
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/demo"
)

// TestHostileInput sends malformed and smuggling attempts through the
// running gateway as a reader: each gets its documented status and nothing
// the policy would deny reaches the backend.
func TestHostileInput(t *testing.T) {
	env := startGateway(t, "", demo.Options{})
	reader := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-readers"}})
	call := func(name string) string {
		return `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"` + name + `","arguments":{}}}`
	}
	cases := []struct {
		name   string
		body   string
		hdr    map[string]string
		status int
	}{
		{"deeply nested JSON", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_vm","arguments":` + strings.Repeat(`{"a":`, 200) + `1` + strings.Repeat(`}`, 200) + `}}`, nil, 400},
		{"invalid UTF-8", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"get_\xff\"}}", nil, 400},
		{"duplicate name keys", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_vm","name":"delete_vm"}}`, nil, 400},
		{"duplicate name keys differing in case", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_vm","Name":"delete_vm"}}`, nil, 400},
		{"duplicate method keys", `{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"delete_vm"}}`, nil, 400},
		{"method case variant", `{"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{"name":"delete_vm"}}`, nil, 403},
		{"forbidden call", call("delete_vm"), nil, 403},
		{"forbidden call hidden in a batch", `[` + call("get_vm") + `,` + strings.Replace(call("delete_vm"), `"id":7`, `"id":8`, 1) + `]`, nil, 403},
		{"empty batch", `[]`, nil, 400},
		{"header/body mismatch", call("get_vm"), map[string]string{"Mcp-Method": "tools/list"}, 400},
		{"name header mismatch", call("delete_vm"), map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "get_vm"}, 400},
		{"trailing data after message", call("get_vm") + call("delete_vm"), nil, 400},
		{"not JSON", "hello", nil, 400},
		{"null id", `{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"delete_vm"}}`, nil, 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := env.seenCount.Load()
			r := do(t, "POST", env.url, reader, tc.body, tc.hdr)
			if r.status != tc.status {
				t.Errorf("status = %d, want %d: %s", r.status, tc.status, r.body)
			}
			if env.seenCount.Load() != before {
				t.Error("request reached the backend")
			}
			if !strings.Contains(r.body, `"jsonrpc":"2.0"`) {
				t.Errorf("body is not a JSON-RPC error: %s", r.body)
			}
		})
	}
}
