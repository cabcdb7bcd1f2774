package policy

import (
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/identity"
)

// FuzzCedarPolicy: any Cedar text either fails to load with an error, or
// yields an engine that denies by default: alone, it allows a call only by
// one of its own permit policies, and appended to a policy with forbid
// rules it never overrides them (a banned user stays banned). Deciding
// and list filtering never panic, whatever the request.
func FuzzCedarPolicy(f *testing.F) {
	for _, r := range testConfig().Rules {
		f.Add(r, "delete_vm", []byte(`{"vm_name":"dev-1"}`))
	}
	for _, s := range []string{
		`@id("x") permit (principal, action, resource);`,
		`@id("x") forbid (principal, action, resource);`,
		`permit (principal, action == Action::"tools/call", resource == Tool::"power_on") when { context.arguments.cpus <= 16 };`,
		`permit (principal in Group::"ops", action in [Action::"tools/call", Action::"prompts/get"], resource);`,
		`permit (principal is User in Role::"admin", action, resource is Tool) unless { context.arguments has dry_run };`,
		`permit (principal, action, resource) when { principal.sub == "mallory" };`,
		`permit (principal, action, resource) when { principal.groups.contains("admins") && context.scopes.containsAll(["vm:write"]) };`,
		`permit (principal, action, resource) when { context.arguments.x.y.z == 1 };`,
		`permit (principal, action, resource) when { context.arguments["a b"] like "*" };`,
		`permit (principal, action, resource) when { 1 / 0 == 0 };`,
		`permit (principal, action, resource) when { 9223372036854775807 + 1 > 0 };`,
		`forbid (principal, action, resource) when { context.arguments.n > 2 } unless { ip("10.0.0.1").isLoopback() };`,
		`permit (principal, action == Action::"tool/call", resource);`,
		`permit (principal == Tool::"x", action, resource);`,
		`permit (principal, action, resource) when { resource.owner == "x" };`,
		`@id("ban-mallory") permit (principal, action, resource);`,
		`@id("") permit (principal, action, resource);`,
		`@id("a") permit (principal, action, resource); @id("a") forbid (principal, action, resource);`,
		"// comment only\n",
		"permit (principal, action, resource) when { " + strings.Repeat("(", 200) + "true" + strings.Repeat(")", 200) + " };",
		`permit (principal, action, resource) when { "` + strings.Repeat(`\u{1F600}`, 50) + `" like "*" };`,
		``, `;`, `permit`, `permit (`, "\xff",
	} {
		f.Add(s, "power_on", []byte(`{"cpus":32,"vm_name":"prod-1"}`))
	}
	mallory := withScopes(user("mallory", "admins", "ops"), "vm:delete", "vm:exec", "vm:write", "audit")
	someone := withScopes(user("alice", "ops"), "vm:write")
	banned := testConfig() // its ban-mallory forbid must survive any addition
	f.Fuzz(func(t *testing.T, text, name string, args []byte) {
		reqs := []Request{
			{Method: "tools/call", Backend: "vsphere", Name: name, Arguments: args},
			{Method: "tools/call", Backend: "vsphere", Name: name},
			{Method: "prompts/get", Backend: "vsphere", Name: name},
			{Method: "resources/read", Backend: "vsphere", Name: name},
			{Method: "tools/list", Backend: "vsphere"},
		}

		// Alone: default deny; an allow names one of the loaded permits.
		e, err := Compile(Config{Rules: []string{text}})
		if err == nil {
			if e == nil {
				t.Fatal("nil engine without error")
			}
			permits := map[string]bool{}
			for _, c := range e.cedar {
				if !c.forbid {
					permits["cedar:"+string(c.id)] = true
				}
			}
			for _, p := range []*identity.Principal{someone, mallory} {
				e.Decide(p, reqs[4]) // not a named call: decided by methods, just no panic
				for _, req := range reqs[:4] {
					d := e.Decide(p, req)
					if d.Allow && !permits[d.Rule] {
						t.Fatalf("%s %q allowed by %q, which is no loaded permit (%v)", req.Method, req.Name, d.Rule, permits)
					}
				}
				for _, m := range []string{"tools/list", "prompts/list", "resources/list", "resources/templates/list"} {
					if e.Visible(p, m, "vsphere", name) && len(permits) == 0 {
						t.Fatalf("%s shows %q without any permit", m, name)
					}
				}
			}
		}

		// Appended to a policy that bans mallory: still banned.
		cfg := banned
		cfg.Rules = append(append([]string(nil), banned.Rules...), text)
		e, err = Compile(cfg)
		if err != nil {
			return
		}
		for _, req := range reqs[:4] {
			if d := e.Decide(mallory, req); d.Allow {
				t.Fatalf("banned user allowed %s %q by %q", req.Method, req.Name, d.Rule)
			}
			e.Decide(someone, req)
		}
		if e.Visible(mallory, "tools/list", "vsphere", name) {
			t.Fatalf("banned user sees tool %q", name)
		}
	})
}
