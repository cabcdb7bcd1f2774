package policy

import (
	"strings"
	"testing"

	"github.com/cedar-policy/cedar-go/types"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// FuzzDecideArguments: any tools/call the decoder accepts is decided
// without panicking, and a forbid rule is never bypassed by the shape of
// the arguments.
func FuzzDecideArguments(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_vm","arguments":{"vm_name":"prod-1"}}}`))
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"power_on","arguments":{"cpus":1e400}}}`))
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"power_on","arguments":{"cpus":[32],"x":{"y":null}}}}`))
	e, err := Compile(testConfig())
	if err != nil {
		f.Fatal(err)
	}
	p := withScopes(user("a", "admins"), "vm:delete", "vm:exec", "vm:write", "audit")
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := mcp.Decode(body)
		if err != nil {
			return
		}
		for i := range m.Calls {
			req := RequestFor("vsphere", &m.Calls[i])
			d := e.Decide(p, req)
			if d.Allow && req.Method == "tools/call" {
				args, err := argumentsRecord(req.Arguments)
				if err != nil {
					t.Fatalf("allowed a call whose arguments cannot be converted: %s", req.Arguments)
				}
				// no-prod must hold whenever vm_name is a prod-* string.
				v, has := args.Get("vm_name")
				if s, isStr := v.(types.String); has && (!isStr || strings.HasPrefix(string(s), "prod-")) {
					t.Fatalf("no-prod bypassed: %s %s", req.Name, req.Arguments)
				}
			}
			e.Visible(p, "tools/list", "vsphere", req.Name)
		}
	})
}
