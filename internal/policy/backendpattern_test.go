package policy

import (
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/validate"
)

// backendConfig scopes tools per backend with `<backend>/<glob>` patterns,
// next to the backends: form and a pattern for every backend.
func backendConfig() Config {
	return Config{
		Roles: map[string]Role{
			"vs":    {Tools: []string{"vsphere/*"}, Prompts: []string{"vsphere/vm_report"}},
			"pods":  {Tools: []string{"k8s/get_pods", `odd/a\/b`}},
			"mixed": {Tools: []string{"ping"}, Backends: map[string]Grants{"db": {Tools: []string{"query"}}}},
			"glob":  {Tools: []string{"k8s/get_*", "k8s/list_?"}},
		},
		Groups: map[string][]string{"vs": {"vs"}, "pods": {"pods"}, "mixed": {"mixed"}, "glob": {"glob"}},
		ToolScopes: map[string][]string{
			"vsphere/delete_*": {"vsphere:admin"},
			"delete_*":         {"delete"},
		},
	}
}

func TestBackendPatterns(t *testing.T) {
	e := mustCompile(t, backendConfig())
	tests := []struct {
		name            string
		groups          []string
		scopes          []string // nil: no scope claim
		method, backend string
		target          string
		effect, rule    string
		missing         string
	}{
		{"vsphere/* grants every vsphere tool", []string{"vs"}, nil, "tools/call", "vsphere", "get_vm", EffectAllow, "role:vs tools:vsphere/*", ""},
		{"vsphere/* grants nothing on k8s", []string{"vs"}, nil, "tools/call", "k8s", "get_vm", EffectDeny, RuleDefaultDeny, ""},
		{"vsphere/* grants nothing on the endpoint itself", []string{"vs"}, nil, "tools/call", "mcp", "get_vm", EffectDeny, RuleDefaultDeny, ""},
		{"one named tool", []string{"pods"}, nil, "tools/call", "k8s", "get_pods", EffectAllow, "role:pods tools:k8s/get_pods", ""},
		{"one named tool: not its neighbour", []string{"pods"}, nil, "tools/call", "k8s", "delete_pod", EffectDeny, RuleDefaultDeny, ""},
		{"one named tool: not on another backend", []string{"pods"}, nil, "tools/call", "vsphere", "get_pods", EffectDeny, RuleDefaultDeny, ""},
		{"a tool name is not split: the backend is the request's", []string{"pods"}, nil, "tools/call", "", "k8s/get_pods", EffectDeny, RuleDefaultDeny, ""},
		{`\/ is a literal slash in the name`, []string{"pods"}, nil, "tools/call", "odd", "a/b", EffectAllow, `role:pods tools:odd/a\/b`, ""},
		{"name glob after the backend", []string{"glob"}, nil, "tools/call", "k8s", "get_nodes", EffectAllow, "role:glob tools:k8s/get_*", ""},
		{"? after the backend", []string{"glob"}, nil, "tools/call", "k8s", "list_x", EffectAllow, "role:glob tools:k8s/list_?", ""},
		{"name glob is anchored", []string{"glob"}, nil, "tools/call", "k8s", "xget_nodes", EffectDeny, RuleDefaultDeny, ""},
		{"prompt pattern with a backend", []string{"vs"}, nil, "prompts/get", "vsphere", "vm_report", EffectAllow, "role:vs prompts:vsphere/vm_report", ""},
		{"prompt pattern: other backend", []string{"vs"}, nil, "prompts/get", "k8s", "vm_report", EffectDeny, RuleDefaultDeny, ""},
		{"tools pattern does not grant a prompt", []string{"vs"}, nil, "prompts/get", "vsphere", "other", EffectDeny, RuleDefaultDeny, ""},
		{"unprefixed and backends: forms still work", []string{"mixed"}, nil, "tools/call", "db", "query", EffectAllow, "role:mixed backends.db.tools:query", ""},
		{"unprefixed pattern: every backend", []string{"mixed"}, nil, "tools/call", "k8s", "ping", EffectAllow, "role:mixed tools:ping", ""},
		{"tool_scopes per backend: both apply on vsphere", []string{"vs"}, []string{}, "tools/call", "vsphere", "delete_vm", EffectDeny, "tool_scopes:delete_*", "delete vsphere:admin"},
		{"tool_scopes per backend: satisfied", []string{"vs"}, []string{"delete", "vsphere:admin"}, "tools/call", "vsphere", "delete_vm", EffectAllow, "role:vs tools:vsphere/*", ""},
		{"tool_scopes per backend: not on k8s", []string{"glob"}, []string{"delete"}, "tools/call", "k8s", "get_delete_x", EffectAllow, "role:glob tools:k8s/get_*", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := user("u", tt.groups...)
			if tt.scopes != nil {
				p = withScopes(p, tt.scopes...)
			}
			req := Request{Method: tt.method, Backend: tt.backend, Name: tt.target}
			d := e.Decide(p, req)
			if d.Effect != tt.effect || d.Rule != tt.rule || strings.Join(d.MissingScopes, " ") != tt.missing {
				t.Errorf("Decide = %+v, want effect %s rule %q missing %q", d, tt.effect, tt.rule, tt.missing)
			}
			// Listing agrees (scopes never hide an item).
			if got, want := e.Visible(p, tt.method, tt.backend, tt.target), tt.effect == EffectAllow || tt.missing != ""; got != want {
				t.Errorf("Visible = %v, want %v", got, want)
			}
		})
	}
}

// A role whose patterns all name backends opens sessions on those only.
func TestBackendPatternsSession(t *testing.T) {
	e := mustCompile(t, backendConfig())
	for _, tt := range []struct {
		group, backend string
		allow          bool
	}{
		{"vs", "vsphere", true},
		{"vs", "k8s", false},
		{"pods", "k8s", true},
		{"pods", "odd", true},
		{"pods", "vsphere", false},
		{"mixed", "anything", true}, // "ping" is granted everywhere
	} {
		if d := e.DecideSession(user("u", tt.group), tt.backend); d.Allow != tt.allow {
			t.Errorf("%s on %s: %+v, want allow=%v", tt.group, tt.backend, d, tt.allow)
		}
	}
}

func TestBackendPatternProblems(t *testing.T) {
	cfg := Config{
		Roles: map[string]Role{"a": {
			Tools:    []string{"*/get_vm", "/x", "vsphere/", `v\*s/x`, "ok/fine"},
			Prompts:  []string{"vs?/p"},
			Backends: map[string]Grants{"db": {Tools: []string{"k8s/x", `a\/b`}}},
		}},
		ToolScopes: map[string][]string{"*/delete": {"s"}, "vsphere/": {"s"}},
	}
	want := []string{
		`policy.roles.a.tools[0]: pattern "*/get_vm": the part before '/' names a backend and cannot be a glob`,
		`policy.roles.a.tools[1]: pattern "/x": no backend name before '/'`,
		`policy.roles.a.tools[2]: pattern "vsphere/": no name after "vsphere/"`,
		`policy.roles.a.prompts[0]: pattern "vs?/p": the part before '/' names a backend`,
		`policy.roles.a.backends.db.tools[0]: pattern "k8s/x" names backend "k8s" inside backends.db`,
		`policy.tool_scopes.*/delete: pattern "*/delete": the part before '/' names a backend`,
		`policy.tool_scopes.vsphere/: pattern "vsphere/": no name after`,
	}
	var p validate.Problems
	cfg.Validate("policy", &p)
	got := p.List()
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("problem %d = %q, want it to contain %q", i, got[i], want[i])
		}
	}
}

func TestCheckBackends(t *testing.T) {
	known := map[string]bool{"vsphere": true, "k8s": true, "mcp": true}
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"all known", backendConfigKnown(), nil},
		{"every unknown name, each where it is", Config{
			Roles: map[string]Role{
				"a": {Tools: []string{"vsphere/*", "vshpere/*", "get_vm", `no\/split`}, Prompts: []string{"ghost/p"},
					Backends: map[string]Grants{"k8s": {}, "k9s": {Tools: []string{"x"}}}},
				"b": {Tools: []string{"mcp/x"}},
			},
			ToolScopes: map[string][]string{"dbb/drop_*": {"db:admin"}, "k8s/delete_*": {"k8s:admin"}, "delete_*": {"d"}},
		}, []string{
			`policy.roles.a.backends.k9s: names no backend or aggregated endpoint "k9s" (known: k8s, mcp, vsphere)`,
			`policy.roles.a.tools[1]: names no backend or aggregated endpoint "vshpere"`,
			`policy.roles.a.prompts[0]: names no backend or aggregated endpoint "ghost"`,
			`policy.tool_scopes.dbb/drop_*: names no backend or aggregated endpoint "dbb"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p validate.Problems
			tt.cfg.CheckBackends("policy", known, &p)
			got := p.List()
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for i := range got {
				if !strings.Contains(got[i], tt.want[i]) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func backendConfigKnown() Config {
	c := backendConfig()
	c.Roles["pods"] = Role{Tools: []string{"k8s/get_pods"}}
	c.Roles["mixed"] = Role{Tools: []string{"ping"}, Backends: map[string]Grants{"mcp": {Tools: []string{"x"}}}}
	return c
}

// The file a policy names is checked too, under policy.file.
func TestCheckBackendsFollowsFile(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/p.yaml", "roles:\n  r: {tools: [\"nope/x\"]}\n")
	c := Config{File: "p.yaml"}
	c.SetBaseDir(dir)
	var p validate.Problems
	c.CheckBackends("policy", map[string]bool{"vsphere": true}, &p)
	if got := p.List(); len(got) != 1 || !strings.Contains(got[0], `policy.file.roles.r.tools[0]: names no backend or aggregated endpoint "nope"`) {
		t.Errorf("problems = %q", got)
	}
}

func TestExplainBackendPattern(t *testing.T) {
	e := mustCompile(t, backendConfig())
	x := e.Explain(user("u", "vs"), Request{Method: "tools/call", Backend: "vsphere", Name: "get_vm"})
	if x.Decision.Effect != EffectAllow || len(x.Matches) != 1 || x.Matches[0] != "role:vs tools:vsphere/*" {
		t.Errorf("explain vsphere/get_vm: %+v matches %v", x.Decision, x.Matches)
	}
	x = e.Explain(user("u", "vs"), Request{Method: "tools/call", Backend: "k8s", Name: "delete_pod"})
	if x.Decision.Allow || len(x.Matches) != 0 {
		t.Fatalf("explain k8s/delete_pod: %+v matches %v", x.Decision, x.Matches)
	}
	if s := strings.Join(x.Suggestions, "\n"); !strings.Contains(s, `add "k8s/delete_pod" (backend k8s only)`) {
		t.Errorf("suggestions = %s", s)
	}
	// Scopes required on this backend only.
	x = e.Explain(user("u", "vs"), Request{Method: "tools/call", Backend: "vsphere", Name: "delete_vm"})
	if strings.Join(x.RequiredScopes, " ") != "delete vsphere:admin" {
		t.Errorf("required scopes on vsphere = %v", x.RequiredScopes)
	}
	x = e.Explain(user("u", "glob"), Request{Method: "tools/call", Backend: "k8s", Name: "delete_vm"})
	if strings.Join(x.RequiredScopes, " ") != "delete" {
		t.Errorf("required scopes on k8s = %v", x.RequiredScopes)
	}
	if got := escapeGlob(`a*b?c\d/e`); got != `a\*b\?c\\d\/e` {
		t.Errorf("escapeGlob = %q", got)
	}
}
