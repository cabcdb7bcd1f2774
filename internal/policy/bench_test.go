package policy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/mcp"
)

func benchEngine(b *testing.B, rules bool) *Engine {
	cfg, err := LoadFile("../../examples/policies/vsphere.yaml")
	if err != nil {
		b.Fatal(err)
	}
	if !rules {
		cfg.Rules = nil
	}
	e, err := Compile(*cfg)
	if err != nil {
		b.Fatal(err)
	}
	return e
}

var benchPrincipal = &identity.Principal{Issuer: "https://idp.test", Subject: "bob", Username: "bob",
	Groups: []string{"Domain Users", "vsphere-operators", "staff"}, Scopes: []string{"openid", "vsphere:host"}}

// BenchmarkDecide: a role-granted call, no Cedar rule applies.
func BenchmarkDecide(b *testing.B) {
	e := benchEngine(b, false)
	req := Request{Method: "tools/call", Backend: "vsphere", Name: "power_on", Arguments: []byte(`{"vm_name":"web-1"}`)}
	b.ReportAllocs()
	for b.Loop() {
		if !e.Decide(benchPrincipal, req).Allow {
			b.Fatal("denied")
		}
	}
}

// BenchmarkDecideCedar: the same call with the example's Cedar rules, one of
// which applies to every tool and reads the arguments.
func BenchmarkDecideCedar(b *testing.B) {
	e := benchEngine(b, true)
	req := Request{Method: "tools/call", Backend: "vsphere", Name: "power_off", Arguments: []byte(`{"vm_name":"web-1","force":false,"timeout":30}`)}
	b.ReportAllocs()
	for b.Loop() {
		if !e.Decide(benchPrincipal, req).Allow {
			b.Fatal("denied")
		}
	}
}

// BenchmarkDecideProtocol: a protocol method (ping).
func BenchmarkDecideProtocol(b *testing.B) {
	e := benchEngine(b, true)
	req := Request{Method: "ping"}
	b.ReportAllocs()
	for b.Loop() {
		e.Decide(benchPrincipal, req)
	}
}

func listOf(n int) []byte {
	names := []string{"list_vms", "get_vm_info", "power_on", "delete_vm", "create_snapshot", "run_command_in_guest", "reboot_host", "start_service"}
	var sb strings.Builder
	sb.WriteString(`{"jsonrpc":"2.0","id":1,"result":{"tools":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteString(",")
		}
		name := names[i%len(names)]
		if i >= len(names) {
			name = fmt.Sprintf("%s_%d", name, i)
		}
		fmt.Fprintf(&sb, `{"name":%q,"description":"Tool %d.","inputSchema":{"type":"object","properties":{"vm_name":{"type":"string"}},"required":["vm_name"]}}`, name, i)
	}
	sb.WriteString(`]}}`)
	return []byte(sb.String())
}

// BenchmarkListFilter100: filtering a 100-tool tools/list response through
// Visible, as the gateway does (with the example's Cedar rules).
func BenchmarkListFilter100(b *testing.B) {
	e := benchEngine(b, true)
	msg := listOf(100)
	keep := func(name string) bool { return e.Visible(benchPrincipal, "tools/list", "vsphere", name) }
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := mcp.FilterList(msg, "tools/list", keep); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVisible100: Visible alone, for 100 names.
func BenchmarkVisible100(b *testing.B) {
	e := benchEngine(b, true)
	var names []string
	for i := 0; i < 100; i++ {
		names = append(names, fmt.Sprintf("tool_%d", i))
	}
	names[0], names[1] = "delete_vm", "power_off" // names with argument rules
	b.ReportAllocs()
	for b.Loop() {
		for _, n := range names {
			e.Visible(benchPrincipal, "tools/list", "vsphere", n)
		}
	}
}
