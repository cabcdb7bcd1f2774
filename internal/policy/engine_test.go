package policy

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/mcp"
)

const iss = "https://idp.test"

func user(sub string, groups ...string) *identity.Principal {
	return &identity.Principal{Issuer: iss, Subject: sub, Username: sub, Groups: groups}
}

func withScopes(p *identity.Principal, scopes ...string) *identity.Principal {
	c := *p
	c.Scopes = append([]string{}, scopes...) // non-nil: the token has a scope claim
	return &c
}

func withEmail(p *identity.Principal, email string, verified bool) *identity.Principal {
	c := *p
	c.Email, c.EmailVerified = email, verified
	return &c
}

func call(tool string, args string) Request {
	r := Request{Method: "tools/call", Backend: "vsphere", Name: tool}
	if args != "" {
		r.Arguments = json.RawMessage(args)
	}
	return r
}

// testConfig is a small policy exercising every feature.
func testConfig() Config {
	return Config{
		Roles: map[string]Role{
			"reader":     {Tools: []string{"list_*", "get_?m_info"}, Prompts: []string{"summary"}, Resources: []string{"file:///docs/*"}},
			"operator":   {Inherits: []string{"reader"}, Tools: []string{"power_*", "*_snapshot"}},
			"admin":      {Inherits: []string{"operator"}, Tools: []string{"delete_vm", "run_*"}},
			"auditor":    {Backends: map[string]Grants{"logs": {Tools: []string{"search"}, Resources: []string{"log://*"}}}},
			"breakglass": {Tools: []string{"*"}},
		},
		Groups: map[string][]string{
			"readers":   {"reader"},
			"operators": {"operator"},
			"admins":    {"admin"},
			"auditors":  {"auditor"},
		},
		Users: map[string][]string{
			iss + "#root-1":         {"breakglass"},
			"sub:svc-backup":        {"operator"},
			"email:ops@example.com": {"operator"},
			"plain-subject":         {"reader"},
		},
		ToolScopes: map[string][]string{
			"delete_*": {"vm:delete"},
			"run_*":    {"vm:exec", "vm:write"},
			"run_cmd":  {"vm:write", "audit"},
		},
		Rules: []string{
			`@id("op-delete-dev") permit (principal in Role::"operator", action == Action::"tools/call", resource == Tool::"delete_vm") when { context.arguments.vm_name like "dev-*" };`,
			`@id("no-prod") forbid (principal, action == Action::"tools/call", resource) when { context.arguments has vm_name && context.arguments.vm_name like "prod-*" } unless { principal in Role::"breakglass" };`,
			`@id("big-vms") forbid (principal, action == Action::"tools/call", resource == Tool::"power_on") when { context.arguments.cpus > 16 };`,
			`@id("ban-mallory") forbid (principal, action, resource) when { principal.sub == "mallory" };`,
			`@id("contractor-readonly") forbid (principal in Group::"contractors", action == Action::"tools/call", resource) unless { context.backend == "sandbox" };`,
		},
	}
}

func mustCompile(t testing.TB, c Config) *Engine {
	t.Helper()
	e, err := Compile(c)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return e
}

func TestDecide(t *testing.T) {
	e := mustCompile(t, testConfig())
	tests := []struct {
		name string
		p    *identity.Principal
		req  Request
		want Decision
	}{
		// RBAC and globs
		{"glob prefix", user("a", "readers"), call("list_vms", ""),
			Decision{Allow: true, Effect: "allow", Rule: "role:reader tools:list_*"}},
		{"glob ? matches one character", user("a", "readers"), call("get_vm_info", ""),
			Decision{Allow: true, Effect: "allow", Rule: "role:reader tools:get_?m_info"}},
		{"glob ? does not match two", user("a", "readers"), call("get_vvm_info", ""),
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: no role grants tool "get_vvm_info" (the caller's roles: reader)`}},
		{"glob suffix", user("a", "operators"), call("create_snapshot", `{"vm_name":"web-1"}`),
			Decision{Allow: true, Effect: "allow", Rule: "role:operator tools:*_snapshot"}},
		{"match is case-sensitive", user("a", "readers"), call("LIST_VMS", ""),
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: no role grants tool "LIST_VMS" (the caller's roles: reader)`}},
		{"inheritance two levels", user("a", "admins"), call("list_hosts", ""),
			Decision{Allow: true, Effect: "allow", Rule: "role:reader tools:list_*"}},
		{"inherited role does not grant upward", user("a", "operators"), call("run_cmd", ""),
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: no role grants tool "run_cmd" (the caller's roles: operator, reader)`}},
		{"groups add up", user("a", "readers", "auditors"), Request{Method: "tools/call", Backend: "logs", Name: "search"},
			Decision{Allow: true, Effect: "allow", Rule: "role:auditor backends.logs.tools:search"}},
		{"backend grant only on its backend", user("a", "auditors"), call("search", ""),
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: no role grants tool "search" (the caller's roles: auditor)`}},
		{"no groups", user("a"), call("list_vms", ""),
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: no role grants tool "list_vms" (the caller has no roles)`}},
		{"unknown groups", user("a", "Readers", "everyone"), call("list_vms", ""),
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: no role grants tool "list_vms" (the caller has no roles)`}},
		{"nil principal", nil, call("list_vms", ""),
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: no role grants tool "list_vms" (the caller has no roles)`}},

		// Per-user grants
		{"user by issuer and subject", withScopes(user("root-1"), "vm:delete"), call("delete_everything", ""),
			Decision{Allow: true, Effect: "allow", Rule: "role:breakglass tools:*"}},
		{"user key needs the same issuer", &identity.Principal{Issuer: "https://other.test", Subject: "root-1"}, call("list_vms", ""),
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: no role grants tool "list_vms" (the caller has no roles)`}},
		{"user by sub: any issuer", &identity.Principal{Issuer: "https://other.test", Subject: "svc-backup"}, call("power_off", ""),
			Decision{Allow: true, Effect: "allow", Rule: "role:operator tools:power_*"}},
		{"user by bare subject", user("plain-subject"), call("list_vms", ""),
			Decision{Allow: true, Effect: "allow", Rule: "role:reader tools:list_*"}},
		{"user by verified email, any case", withEmail(user("x"), "OPS@example.com", true), call("power_off", ""),
			Decision{Allow: true, Effect: "allow", Rule: "role:operator tools:power_*"}},
		{"unverified email is ignored", withEmail(user("x"), "ops@example.com", false), call("power_off", ""),
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: no role grants tool "power_off" (the caller has no roles)`}},
		{"user grants add to group roles", withEmail(user("x", "readers"), "ops@example.com", true), call("list_vms", ""),
			Decision{Allow: true, Effect: "allow", Rule: "role:reader tools:list_*"}},

		// Scopes
		{"scope shortfall", withScopes(user("a", "admins"), "openid"), call("delete_vm", `{"vm_name":"web-1"}`),
			Decision{Effect: "deny", Rule: "tool_scopes:delete_*", Reason: `insufficient scope: tool "delete_vm" requires scope vm:delete`, MissingScopes: []string{"vm:delete"}}},
		{"scope present", withScopes(user("a", "admins"), "vm:delete"), call("delete_vm", `{"vm_name":"web-1"}`),
			Decision{Allow: true, Effect: "allow", Rule: "role:admin tools:delete_vm"}},
		{"scopes of all matching patterns add up", withScopes(user("a", "admins"), "vm:exec"), call("run_cmd", ""),
			Decision{Effect: "deny", Rule: "tool_scopes:run_*", Reason: `insufficient scope: tool "run_cmd" requires scope audit vm:write`, MissingScopes: []string{"audit", "vm:write"}}},
		{"no scope claim, no fallback: fail closed", user("a", "admins"), call("delete_vm", `{"vm_name":"web-1"}`),
			Decision{Effect: "deny", Rule: "tool_scopes:delete_*", Reason: `insufficient scope: tool "delete_vm" requires scope vm:delete`, MissingScopes: []string{"vm:delete"}}},
		{"scopes never grant", withScopes(user("a", "readers"), "vm:delete"), call("delete_vm", `{"vm_name":"web-1"}`),
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: no role grants tool "delete_vm" (the caller's roles: reader) and no rule permits it with these arguments`}},

		// Cedar argument rules
		{"permit rule grants beyond roles", withScopes(user("a", "operators"), "vm:delete"), call("delete_vm", `{"vm_name":"dev-7"}`),
			Decision{Allow: true, Effect: "allow", Rule: "cedar:op-delete-dev"}},
		{"permit rule condition false", withScopes(user("a", "operators"), "vm:delete"), call("delete_vm", `{"vm_name":"web-7"}`),
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: no role grants tool "delete_vm" (the caller's roles: operator, reader) and no rule permits it with these arguments`}},
		{"permit rule that errors grants nothing", withScopes(user("a", "operators"), "vm:delete"), call("delete_vm", `{"vm":"dev-7"}`),
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: no role grants tool "delete_vm" (the caller's roles: operator, reader) and no rule permits it with these arguments`}},
		{"scopes still apply to a permit rule", withScopes(user("a", "operators")), call("delete_vm", `{"vm_name":"dev-7"}`),
			Decision{Effect: "deny", Rule: "tool_scopes:delete_*", Reason: `insufficient scope: tool "delete_vm" requires scope vm:delete`, MissingScopes: []string{"vm:delete"}}},
		{"forbid rule beats roles", withScopes(user("a", "admins"), "vm:delete"), call("delete_vm", `{"vm_name":"prod-db"}`),
			Decision{Effect: "deny", Rule: "cedar:no-prod", Reason: `permission denied: tool "delete_vm" is forbidden by rule no-prod`}},
		{"forbid rule on another tool", user("a", "operators"), call("power_off", `{"vm_name":"prod-db"}`),
			Decision{Effect: "deny", Rule: "cedar:no-prod", Reason: `permission denied: tool "power_off" is forbidden by rule no-prod`}},
		{"forbid rule unless clause", withScopes(user("root-1"), "vm:delete"), call("delete_vm", `{"vm_name":"prod-db"}`),
			Decision{Allow: true, Effect: "allow", Rule: "role:breakglass tools:*"}},
		{"forbid rule on a number", user("a", "operators"), call("power_on", `{"cpus":32}`),
			Decision{Effect: "deny", Rule: "cedar:big-vms", Reason: `permission denied: tool "power_on" is forbidden by rule big-vms`}},
		{"forbid rule number below limit", user("a", "operators"), call("power_on", `{"cpus":8}`),
			Decision{Allow: true, Effect: "allow", Rule: "role:operator tools:power_*"}},
		{"forbid rule that errors denies (string for a number)", user("a", "operators"), call("power_on", `{"cpus":"32"}`),
			Decision{Effect: "deny", Rule: "cedar:big-vms", Reason: `permission denied: tool "power_on" is forbidden by rule big-vms`}},
		{"forbid rule that errors denies (missing argument)", user("a", "operators"), call("power_on", `{}`),
			Decision{Effect: "deny", Rule: "cedar:big-vms", Reason: `permission denied: tool "power_on" is forbidden by rule big-vms`}},
		{"forbid rule that errors denies (float that is not a decimal)", user("a", "operators"), call("power_on", `{"cpus":1.00001}`),
			Decision{Effect: "deny", Rule: "cedar:big-vms", Reason: `permission denied: tool "power_on" is forbidden by rule big-vms`}},
		{"integral float is a Long", user("a", "operators"), call("power_on", `{"cpus":8.0}`),
			Decision{Allow: true, Effect: "allow", Rule: "role:operator tools:power_*"}},
		{"forbid on principal attribute", user("mallory", "admins"), call("list_vms", ""),
			Decision{Effect: "deny", Rule: "cedar:ban-mallory", Reason: `permission denied: tool "list_vms" is forbidden by rule ban-mallory`}},
		{"forbid on group and backend", user("c", "readers", "contractors"), call("list_vms", ""),
			Decision{Effect: "deny", Rule: "cedar:contractor-readonly", Reason: `permission denied: tool "list_vms" is forbidden by rule contractor-readonly`}},

		// Prompts and resources
		{"prompts/get granted", user("a", "readers"), Request{Method: "prompts/get", Name: "summary"},
			Decision{Allow: true, Effect: "allow", Rule: "role:reader prompts:summary"}},
		{"prompts/get not granted", user("a", "readers"), Request{Method: "prompts/get", Name: "secrets"},
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: no role grants prompt "secrets" (the caller's roles: reader)`}},
		{"tool pattern does not grant a prompt", user("a", "readers"), Request{Method: "prompts/get", Name: "list_vms"},
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: no role grants prompt "list_vms" (the caller's roles: reader)`}},
		{"resources/read granted", user("a", "readers"), Request{Method: "resources/read", Name: "file:///docs/a/b.md"},
			Decision{Allow: true, Effect: "allow", Rule: "role:reader resources:file:///docs/*"}},
		{"resources/read not granted", user("a", "readers"), Request{Method: "resources/read", Name: "file:///etc/passwd"},
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: no role grants resource "file:///etc/passwd" (the caller's roles: reader)`}},
		{"resources/subscribe uses resource grants", user("a", "readers"), Request{Method: "resources/subscribe", Name: "file:///docs/x"},
			Decision{Allow: true, Effect: "allow", Rule: "role:reader resources:file:///docs/*"}},
		// Resource URIs are matched in RFC 3986 normal form (issue 11.8).
		{"dot segments leave the granted prefix", user("a", "readers"), Request{Method: "resources/read", Name: "file:///docs/../etc/passwd"},
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: no role grants resource "file:///docs/../etc/passwd" (the caller's roles: reader)`}},
		{"encoded dot segments leave the granted prefix", user("a", "readers"), Request{Method: "resources/read", Name: "file:///docs/%2e%2e/etc/passwd"},
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: no role grants resource "file:///docs/%2e%2e/etc/passwd" (the caller's roles: reader)`}},
		{"subscribe with dot segments", user("a", "readers"), Request{Method: "resources/subscribe", Name: "file:///docs/a/../../etc/x"},
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: no role grants resource "file:///docs/a/../../etc/x" (the caller's roles: reader)`}},
		{"listen with dot segments", user("a", "readers"), Request{Method: "subscriptions/listen", Subscriptions: []string{"file:///docs/%2E%2E/etc/x"}},
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: no role grants resource "file:///docs/%2E%2E/etc/x" (the caller's roles: reader)`}},
		{"malformed percent-encoding", user("a", "readers"), Request{Method: "resources/read", Name: "file:///docs/%zz"},
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: no role grants resource "file:///docs/%zz" (the caller's roles: reader)`}},
		{"dot segments that stay inside the grant", user("a", "readers"), Request{Method: "resources/read", Name: "file:///docs/a/../b"},
			Decision{Allow: true, Effect: "allow", Rule: "role:reader resources:file:///docs/*"}},
		{"named method without a name", user("a", "readers"), Request{Method: "tools/call"},
			Decision{Effect: "deny", Rule: "default-deny", Reason: "permission denied: tools/call without a tool name"}},

		// Protocol methods
		{"initialize", user("a"), Request{Method: "initialize"}, Decision{Allow: true, Effect: "allow", Rule: "methods.allow:initialize"}},
		{"ping", nil, Request{Method: "ping"}, Decision{Allow: true, Effect: "allow", Rule: "methods.allow:ping"}},
		{"notifications glob", user("a"), Request{Method: "notifications/initialized"}, Decision{Allow: true, Effect: "allow", Rule: "methods.allow:notifications/*"}},
		{"logging/setLevel", user("a"), Request{Method: "logging/setLevel"}, Decision{Allow: true, Effect: "allow", Rule: "methods.allow:logging/setLevel"}},
		{"tools/list", user("a"), Request{Method: "tools/list"}, Decision{Allow: true, Effect: "allow", Rule: "list:tools/list"}},
		{"resources/templates/list", user("a"), Request{Method: "resources/templates/list"}, Decision{Allow: true, Effect: "allow", Rule: "list:resources/templates/list"}},
		{"unknown method", user("a", "admins"), Request{Method: "admin/shutdown"},
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: method "admin/shutdown" is not allowed`}},
		{"method names are case-sensitive", user("a", "admins"), Request{Method: "Tools/Call", Name: "list_vms"},
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: method "Tools/Call" is not allowed`}},
		{"tasks are not allowed by default", user("a", "admins"), Request{Method: "tasks/result"},
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: method "tasks/result" is not allowed`}},
		{"client response", user("a"), Request{Response: true}, Decision{Allow: true, Effect: "allow", Rule: "client-response"}},
		{"empty method", user("a"), Request{}, Decision{Effect: "deny", Rule: "default-deny", Reason: "permission denied: message has no method"}},

		// completion/complete and subscriptions/listen follow what they name
		{"completion of a visible prompt", user("a", "readers"), Request{Method: "completion/complete", RefKind: mcp.RefPrompt, Name: "summary"},
			Decision{Allow: true, Effect: "allow", Rule: "methods.allow:completion/complete"}},
		{"completion of a hidden prompt", user("a", "readers"), Request{Method: "completion/complete", RefKind: mcp.RefPrompt, Name: "secrets"},
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: no role grants prompt "secrets" (the caller's roles: reader)`}},
		{"completion of a resource template", user("a", "readers"), Request{Method: "completion/complete", RefKind: mcp.RefResource, Name: "file:///docs/{name}"},
			Decision{Allow: true, Effect: "allow", Rule: "methods.allow:completion/complete"}},
		{"completion without a reference", user("a", "readers"), Request{Method: "completion/complete", Name: "summary"},
			Decision{Effect: "deny", Rule: "default-deny", Reason: "permission denied: completion/complete without a prompt or resource reference"}},
		{"listen to allowed resources", user("a", "readers"), Request{Method: "subscriptions/listen", Subscriptions: []string{"file:///docs/a", "file:///docs/b"}},
			Decision{Allow: true, Effect: "allow", Rule: "methods.allow:subscriptions/listen"}},
		{"listen to a forbidden resource", user("a", "readers"), Request{Method: "subscriptions/listen", Subscriptions: []string{"file:///docs/a", "file:///etc/shadow"}},
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: no role grants resource "file:///etc/shadow" (the caller's roles: reader)`}},
		{"listen without resources", user("a"), Request{Method: "subscriptions/listen"},
			Decision{Allow: true, Effect: "allow", Rule: "methods.allow:subscriptions/listen"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.Decide(tt.p, tt.req)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Decide mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecideMethodsConfig(t *testing.T) {
	c := testConfig()
	c.Methods = Methods{Allow: []string{"ping", "tasks/*"}, Deny: []string{"tasks/cancel", "prompts/*"}}
	e := mustCompile(t, c)
	tests := []struct {
		name string
		req  Request
		want Decision
	}{
		{"allow replaces the defaults", Request{Method: "initialize"},
			Decision{Effect: "deny", Rule: "default-deny", Reason: `permission denied: method "initialize" is not allowed`}},
		{"allowed by glob", Request{Method: "tasks/get"}, Decision{Allow: true, Effect: "allow", Rule: "methods.allow:tasks/*"}},
		{"deny wins over allow", Request{Method: "tasks/cancel"},
			Decision{Effect: "deny", Rule: "methods.deny:tasks/cancel", Reason: `permission denied: method "tasks/cancel" is not allowed`}},
		{"deny blocks a named method", Request{Method: "prompts/get", Name: "summary"},
			Decision{Effect: "deny", Rule: "methods.deny:prompts/*", Reason: `permission denied: method "prompts/get" is not allowed`}},
		{"deny blocks a list method", Request{Method: "prompts/list"},
			Decision{Effect: "deny", Rule: "methods.deny:prompts/*", Reason: `permission denied: method "prompts/list" is not allowed`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, e.Decide(user("a", "readers"), tt.req)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if e.Visible(user("a", "readers"), "prompts/list", "", "summary") {
		t.Error("a prompt is visible although prompts/* is denied")
	}
}

func TestFallbackScopes(t *testing.T) {
	c := testConfig()
	c.FallbackScopes = []string{"vm:delete"}
	e := mustCompile(t, c)
	req := call("delete_vm", `{"vm_name":"web-1"}`)
	if d := e.Decide(user("a", "admins"), req); !d.Allow {
		t.Errorf("token without scope claim: %+v, want allowed by fallback scopes", d)
	}
	// A scope claim, even an empty one, replaces the fallback.
	if d := e.Decide(withScopes(user("a", "admins")), req); d.Allow || len(d.MissingScopes) != 1 {
		t.Errorf("token with empty scope claim: %+v, want denied for vm:delete", d)
	}
	// Fallback scopes never grant.
	if d := e.Decide(user("a", "readers"), req); d.Allow {
		t.Errorf("fallback scopes granted a tool: %+v", d)
	}
}

func TestShadowMode(t *testing.T) {
	c := testConfig()
	c.Mode = ModeShadow
	e := mustCompile(t, c)
	tests := []struct {
		name string
		p    *identity.Principal
		req  Request
		want Decision
	}{
		{"denial becomes would_deny", user("a", "readers"), call("delete_vm", ""),
			Decision{Allow: true, Effect: "would_deny", Rule: "default-deny", Reason: `permission denied: no role grants tool "delete_vm" (the caller's roles: reader) and no rule permits it with these arguments`}},
		{"scope denial keeps missing scopes", withScopes(user("a", "admins")), call("delete_vm", `{"vm_name":"web-1"}`),
			Decision{Allow: true, Effect: "would_deny", Rule: "tool_scopes:delete_*", Reason: `insufficient scope: tool "delete_vm" requires scope vm:delete`, MissingScopes: []string{"vm:delete"}}},
		{"unknown method", user("a"), Request{Method: "x/y"},
			Decision{Allow: true, Effect: "would_deny", Rule: "default-deny", Reason: `permission denied: method "x/y" is not allowed`}},
		{"allow stays allow", user("a", "readers"), call("list_vms", ""),
			Decision{Allow: true, Effect: "allow", Rule: "role:reader tools:list_*"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, e.Decide(tt.p, tt.req)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if !e.Visible(user("a"), "tools/list", "vsphere", "delete_vm") {
		t.Error("shadow mode hides a tool; it must list what it lets through")
	}
}

func TestVisible(t *testing.T) {
	e := mustCompile(t, testConfig())
	tests := []struct {
		name            string
		p               *identity.Principal
		method, backend string
		item            string
		want            bool
	}{
		{"role-granted tool", user("a", "readers"), "tools/list", "vsphere", "list_vms", true},
		{"ungranted tool", user("a", "readers"), "tools/list", "vsphere", "power_on", false},
		{"call method accepted too", user("a", "readers"), "tools/call", "vsphere", "list_vms", true},
		{"argument permit makes it listable", withScopes(user("a", "operators"), "vm:delete"), "tools/list", "vsphere", "delete_vm", true},
		{"argument forbid does not hide", withScopes(user("a", "admins"), "vm:delete"), "tools/list", "vsphere", "delete_vm", true},
		{"unconditional forbid hides", user("mallory", "admins"), "tools/list", "vsphere", "list_vms", false},
		{"non-argument condition is evaluated", user("c", "readers", "contractors"), "tools/list", "vsphere", "list_vms", false},
		{"non-argument condition can pass", user("c", "readers", "contractors"), "tools/list", "sandbox", "list_vms", true},
		{"missing scope does not hide (step-up)", withScopes(user("a", "admins")), "tools/list", "vsphere", "delete_vm", true},
		{"prompt", user("a", "readers"), "prompts/list", "", "summary", true},
		{"resource", user("a", "readers"), "resources/list", "", "file:///docs/x", true},
		{"resource template by uriTemplate", user("a", "readers"), "resources/templates/list", "", "file:///docs/{path}", true},
		{"hidden resource", user("a", "readers"), "resources/list", "", "file:///etc/x", false},
		{"resource listed with dot segments", user("a", "readers"), "resources/list", "", "file:///docs/../etc/x", false},
		{"backend grant", user("a", "auditors"), "tools/list", "logs", "search", true},
		{"backend grant elsewhere", user("a", "auditors"), "tools/list", "vsphere", "search", false},
		{"unknown list method", user("a", "admins"), "things/list", "", "x", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := e.Visible(tt.p, tt.method, tt.backend, tt.item); got != tt.want {
				t.Errorf("Visible = %v, want %v", got, tt.want)
			}
		})
	}
}

// Visible and Decide must agree: a listed tool is callable (with no
// arguments, unless a rule reads the arguments), and a hidden tool is not
// callable with any arguments.
func TestVisibleAgreesWithDecide(t *testing.T) {
	e := mustCompile(t, testConfig())
	tools := []string{"list_vms", "get_vm_info", "power_on", "power_off", "create_snapshot", "delete_vm",
		"run_cmd", "run_script", "search", "delete_everything", "LIST_VMS", "x"}
	principals := []*identity.Principal{
		user("nobody"), user("a", "readers"), user("a", "operators"), withScopes(user("a", "operators"), "vm:delete"),
		user("a", "admins"), withScopes(user("a", "admins"), "vm:delete", "vm:exec", "vm:write", "audit"),
		user("a", "auditors"), user("mallory", "admins"), user("c", "readers", "contractors"),
		withScopes(user("root-1"), "vm:delete"), withEmail(user("x"), "ops@example.com", true),
	}
	argSets := []string{"", `{}`, `{"vm_name":"dev-1"}`, `{"vm_name":"prod-1"}`, `{"vm_name":"web-1","cpus":4}`, `{"cpus":64}`}
	readsArgs := func(tool string) bool {
		for _, c := range e.cedar {
			if c.applies("tools/call", TypeTool, tool) && strings.Contains(string(c.policy.MarshalCedar()), "context.arguments") {
				return true
			}
		}
		return false
	}
	for _, backend := range []string{"vsphere", "logs", "sandbox"} {
		for _, p := range principals {
			for _, tool := range tools {
				visible := e.Visible(p, "tools/list", backend, tool)
				noArgs := e.Decide(p, Request{Method: "tools/call", Backend: backend, Name: tool})
				if visible && !noArgs.Allow && !readsArgs(tool) {
					t.Errorf("%s/%s for %s: listed but a call is denied (%s)", backend, tool, p.Subject, noArgs.Rule)
				}
				if !visible && noArgs.Allow {
					t.Errorf("%s/%s for %s: hidden but a call is allowed (%s)", backend, tool, p.Subject, noArgs.Rule)
				}
				if !visible {
					for _, a := range argSets {
						if d := e.Decide(p, call(tool, a)); d.Allow && backend == "vsphere" {
							t.Errorf("%s/%s for %s: hidden but allowed with %s (%s)", backend, tool, p.Subject, a, d.Rule)
						}
					}
				}
			}
		}
	}
}

func TestDecideConcurrent(t *testing.T) {
	e := mustCompile(t, testConfig())
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				p := user(fmt.Sprintf("u%d", j%17), "readers")
				if d := e.Decide(p, call("list_vms", "")); !d.Allow {
					t.Errorf("denied: %+v", d)
					return
				}
				if d := e.Decide(p, call("power_on", `{"cpus":1}`)); d.Allow {
					t.Errorf("allowed: %+v", d)
					return
				}
			}
		}(i)
	}
	wg.Wait()
}

// The role cache is bounded and a cached resolution never leaks between
// principals that differ only in groups.
func TestRoleCache(t *testing.T) {
	e := mustCompile(t, testConfig())
	if d := e.Decide(user("same", "admins"), call("run_x", "")); d.Rule == RuleDefaultDeny {
		t.Fatalf("admin denied: %+v", d)
	}
	if d := e.Decide(user("same", "readers"), call("run_x", "")); d.Allow {
		t.Fatalf("cached admin roles leaked to the same subject with other groups: %+v", d)
	}
	for i := 0; i < maxCached+10; i++ {
		e.resolve(user(fmt.Sprintf("u%d", i)))
	}
	if n := e.cache.n.Load(); n > maxCached {
		t.Errorf("cache holds %d entries, more than %d", n, maxCached)
	}
}

func TestRequestFor(t *testing.T) {
	m, err := mcp.Decode([]byte(`[{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p"}}},` +
		`{"jsonrpc":"2.0","id":2,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":["u"]}}},` +
		`{"jsonrpc":"2.0","id":3,"result":{}}]`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Request{
		{Method: "completion/complete", Backend: "b", Name: "p", RefKind: "prompt"},
		{Method: "subscriptions/listen", Backend: "b", Subscriptions: []string{"u"}},
		{Backend: "b", Response: true},
	}
	for i := range m.Calls {
		if diff := cmp.Diff(want[i], RequestFor("b", &m.Calls[i])); diff != "" {
			t.Errorf("call %d (-want +got):\n%s", i, diff)
		}
	}
}

// Group names are claim values: one containing a separator must not make
// two principals share a cached resolution.
func TestRoleCacheKeyIsUnambiguous(t *testing.T) {
	e := mustCompile(t, testConfig())
	if d := e.Decide(user("u", "readers", "operators"), call("power_off", "")); !d.Allow {
		t.Fatalf("setup: %+v", d)
	}
	for _, g := range []string{"readers\x00operators", "readers\x00\x00operators", "7:readers9:operators"} {
		if d := e.Decide(user("u", g), call("power_off", "")); d.Allow {
			t.Errorf("group %q got another principal's roles: %+v", g, d)
		}
	}
}

// Changing the config after Compile does not change the engine.
func TestEngineIndependentOfConfig(t *testing.T) {
	c := testConfig()
	e := mustCompile(t, c)
	c.Groups["readers"][0] = "admin"
	c.Users["plain-subject"][0] = "admin"
	if d := e.Decide(user("a", "readers"), call("run_x", "")); d.Allow || d.Rule != RuleDefaultDeny {
		t.Errorf("config change leaked into the engine: %+v", d)
	}
	if d := e.Decide(user("plain-subject"), call("run_x", "")); d.Allow || d.Rule != RuleDefaultDeny {
		t.Errorf("config change leaked into the engine: %+v", d)
	}
}

// TestCedarForbidUnrepresentable: a forbid guarded by `has` cannot be
// skipped with a null or a number Cedar cannot represent: the value is
// present but unreadable, so the rule fails to evaluate and denies.
func TestCedarForbidUnrepresentable(t *testing.T) {
	e := mustCompile(t, Config{
		Roles:  map[string]Role{"all": {Tools: []string{"*"}}},
		Groups: map[string][]string{"g": {"all"}},
		Rules: []string{
			`@id("big") forbid (principal, action == Action::"tools/call", resource == Tool::"power_on") when { context.arguments has cpus && context.arguments.cpus > 16 };`,
			`@id("prod") forbid (principal, action == Action::"tools/call", resource == Tool::"delete_vm") when { context.arguments has vm && context.arguments.vm like "prod-*" };`,
			`@id("mode") forbid (principal, action == Action::"tools/call", resource == Tool::"set_mode") when { context.arguments.mode == "unsafe" };`,
		},
	})
	p := user("a", "g")
	for _, tt := range []struct {
		name, tool, args string
		allow            bool
	}{
		{"small number", "power_on", `{"cpus":8}`, true},
		{"big number", "power_on", `{"cpus":32}`, false},
		{"absent", "power_on", `{}`, true},
		{"null", "power_on", `{"cpus":null}`, false},
		{"huge float", "power_on", `{"cpus":1e300}`, false},
		{"beyond int64", "power_on", `{"cpus":99999999999999999999}`, false},
		{"too many decimals", "power_on", `{"cpus":16.00001}`, false},
		{"exponent out of range", "power_on", `{"cpus":1e999999999}`, false},
		{"string pattern: null", "delete_vm", `{"vm":null}`, false},
		{"string pattern: dev", "delete_vm", `{"vm":"dev-1"}`, true},
		{"string pattern: prod", "delete_vm", `{"vm":"prod-1"}`, false},
		// Equality cannot be evaluated on a value Cedar cannot hold: deny.
		{"equality with null", "set_mode", `{"mode":null}`, false},
		{"equality with an unrepresentable number", "set_mode", `{"mode":1.000000000000000001}`, false},
		{"equality with another value", "set_mode", `{"mode":"safe"}`, true},
		{"null in another tool's arguments", "list_vms", `{"filter":null}`, true},
		{"equality match", "set_mode", `{"mode":"unsafe"}`, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := e.Decide(p, call(tt.tool, tt.args))
			if d.Allow != tt.allow {
				t.Errorf("%s %s: %+v, want allow=%v", tt.tool, tt.args, d, tt.allow)
			}
		})
	}
}

func TestGrantsNothing(t *testing.T) {
	c := testConfig()
	c.Rules = c.Rules[1:] // forbid rules only
	e := mustCompile(t, c)
	for _, tc := range []struct {
		name string
		p    *identity.Principal
		want bool
	}{
		{"no groups", &identity.Principal{Issuer: iss, Subject: "nobody"}, true},
		{"unmapped groups", &identity.Principal{Issuer: iss, Subject: "nobody", Groups: []string{"staff"}}, true},
		{"mapped group", &identity.Principal{Issuer: iss, Subject: "u", Groups: []string{"staff", "readers"}}, false},
		{"users entry", &identity.Principal{Issuer: iss, Subject: "svc-backup"}, false},
		{"unverified email entry", &identity.Principal{Issuer: iss, Subject: "x", Email: "ops@example.com"}, true},
	} {
		if got := e.GrantsNothing(tc.p); got != tc.want {
			t.Errorf("%s: GrantsNothing = %v, want %v", tc.name, got, tc.want)
		}
	}
	// A permit rule may grant without a role; shadow mode lets everything through.
	if mustCompile(t, testConfig()).GrantsNothing(&identity.Principal{Issuer: iss, Subject: "nobody"}) {
		t.Error("GrantsNothing with a permit rule")
	}
	c.Mode = ModeShadow
	if mustCompile(t, c).GrantsNothing(&identity.Principal{Issuer: iss, Subject: "nobody"}) {
		t.Error("GrantsNothing in shadow mode")
	}
}
