package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cedar-policy/cedar-go"
	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/validate"
)

func TestValidateReportsEveryProblem(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings, one per expected problem, in order
	}{
		{"valid", testConfig(), nil},
		{"bad mode and default", Config{Mode: "audit", Default: "allow"}, []string{
			`policy.mode: must be "enforce" or "shadow", not "audit"`,
			`policy.default: only "deny" is supported`,
		}},
		{"inheritance cycle", Config{Roles: map[string]Role{
			"a": {Inherits: []string{"b"}}, "b": {Inherits: []string{"c"}}, "c": {Inherits: []string{"a"}},
		}}, []string{
			"policy.roles.a.inherits: inheritance cycle: a -> b -> c -> a",
			"policy.roles.b.inherits: inheritance cycle: b -> c -> a -> b",
			"policy.roles.c.inherits: inheritance cycle: c -> a -> b -> c",
		}},
		{"self inheritance", Config{Roles: map[string]Role{"a": {Inherits: []string{"a"}}}}, []string{
			"policy.roles.a.inherits: inheritance cycle: a -> a",
		}},
		{"unknown references", Config{
			Roles:  map[string]Role{"a": {Inherits: []string{"ghost"}}},
			Groups: map[string][]string{"g": {"a", "phantom"}},
			Users:  map[string][]string{"u": {"nobody"}},
		}, []string{
			`policy.roles.a.inherits[0]: unknown role "ghost"`,
			`policy.groups.g[1]: unknown role "phantom"`,
			`policy.users.u[0]: unknown role "nobody"`,
		}},
		{"bad patterns", Config{Roles: map[string]Role{"a": {
			Tools:    []string{"", "ok", "trailing\\"},
			Backends: map[string]Grants{"b": {Resources: []string{"bad\x01"}}},
		}}}, []string{
			"policy.roles.a.tools[0]: empty pattern",
			`policy.roles.a.tools[2]: pattern "trailing\\" ends with a lone backslash`,
			"policy.roles.a.backends.b.resources[0]: pattern",
		}},
		{"resource patterns not in normal form", Config{Roles: map[string]Role{"a": {
			Resources: []string{"demo://public/*", "demo://public/../*", "DEMO://x/*", "file:///%7Ehome/*", "demo://x/%zz"},
		}}}, []string{
			`policy.roles.a.resources[1]: resource pattern "demo://public/../*" would never match: URIs are matched in RFC 3986 normal form; write "demo://public/*"`,
			`policy.roles.a.resources[2]: resource pattern "DEMO://x/*" would never match`,
			`policy.roles.a.resources[3]: resource pattern "file:///%7Ehome/*" would never match`,
			`policy.roles.a.resources[4]: resource pattern "demo://x/%zz": malformed percent-encoding`,
		}},
		{"bad user keys", Config{Roles: map[string]Role{"a": {}}, Users: map[string][]string{
			"email:nobody": {"a"}, "#sub": {"a"}, "iss#": {"a"}, "sub:": {"a"},
		}}, []string{
			"policy.users.#sub:",
			`policy.users.email:nobody: "nobody" is not an email address`,
			"policy.users.iss#:",
			"policy.users.sub:: empty subject",
		}},
		{"bad scopes", Config{ToolScopes: map[string][]string{"x": {}, "y": {"a b", "ok", "a\x7fb"}}, FallbackScopes: []string{""}}, []string{
			"policy.tool_scopes.x: lists no scopes",
			`policy.tool_scopes.y[0]: invalid scope "a b"`,
			`policy.tool_scopes.y[2]: invalid scope "a\x7fb"`,
			`policy.fallback_scopes[0]: invalid scope ""`,
		}},
		{"methods.allow cannot grant tools", Config{Methods: Methods{Allow: []string{"ping", "tools/call", "tools/list"}}}, []string{
			"policy.methods.allow[1]: tools/call is decided by roles",
			"policy.methods.allow[2]: tools/list is decided by roles",
		}},
		{"file and inline", Config{File: "x.yaml", Mode: ModeShadow}, []string{
			"policy.file: cannot be combined with an inline policy",
		}},
		{"missing cedar file", Config{CedarFile: "/nonexistent/rules.cedar"}, []string{
			"policy.cedar_file: open /nonexistent/rules.cedar",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p validate.Problems
			c := tt.cfg
			c.Validate("policy", &p)
			got := p.List()
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for i := range got {
				if !strings.Contains(got[i], tt.want[i]) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], tt.want[i])
				}
			}
			_, err := Compile(tt.cfg)
			if (err == nil) != (len(tt.want) == 0) {
				t.Errorf("Compile error = %v, want error: %v", err, len(tt.want) > 0)
			}
			var ve *validate.Error
			if err != nil && tt.cfg.File == "" && !errors.As(err, &ve) {
				t.Errorf("Compile error %T is not a *validate.Error", err)
			}
		})
	}
}

func TestCedarRulesAreChecked(t *testing.T) {
	tests := []struct {
		name, rule, want string
	}{
		{"syntax error", `permit (principal, action, resource) when {`, "policy.rules[0]: cedar:"},
		{"misspelt action", `permit (principal, action == Action::"tool/call", resource);`, `action "tool/call" does not exist`},
		{"action in set with a bad one", `permit (principal, action in [Action::"tools/call", Action::"tools/run"], resource);`, `action "tools/run" does not exist`},
		{"action of the wrong type", `permit (principal, action == Tool::"tools/call", resource);`, `is not an Action entity`},
		{"unknown resource type", `permit (principal, action, resource == Function::"x");`, "resource entity type Function"},
		{"unknown principal type", `permit (principal == Tool::"x", action, resource);`, "principal entity type Tool"},
		{"principal is not a User", `permit (principal is Group, action, resource);`, "principal is always a User"},
		{"resource type never with action", `permit (principal, action == Action::"prompts/get", resource == Tool::"x");`, "resource type Tool never occurs with action(s) prompts/get"},
		{"misspelt context attribute", `forbid (principal, action, resource) when { context.argument.x == 1 };`, `context has no attribute "argument"`},
		{"misspelt principal attribute", `forbid (principal, action, resource) when { principal.group.contains("x") };`, `principal has no attribute "group"`},
		{"unknown entity literal", `forbid (principal, action, resource) when { principal in Team::"x" };`, "unknown entity type Team"},
		{"unknown action literal", `forbid (principal, action, resource) when { action == Action::"tools/delete" };`, `action "tools/delete" does not exist`},
		{"resource attributes", `forbid (principal, action, resource) when { resource.owner == "x" };`, "resource has no attributes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(Config{Rules: []string{tt.rule}})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Compile error = %v, want it to mention %q", err, tt.want)
			}
		})
	}
	_, err := Compile(Config{Rules: []string{
		`@id("x") permit (principal, action, resource);`, `@id("x") forbid (principal, action, resource);`,
	}})
	if err == nil || !strings.Contains(err.Error(), `policy id "x" is used twice`) {
		t.Errorf("duplicate ids: %v", err)
	}
}

func TestCedarPolicyIDs(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "extra.cedar")
	writeFile(t, file, "permit (principal, action, resource == Tool::\"a\");\n\nforbid (principal, action, resource == Tool::\"b\");\n")
	e := mustCompile(t, Config{
		Rules: []string{
			`permit (principal, action, resource == Tool::"c");`,
			"@id(\"named\") permit (principal, action, resource == Tool::\"d\");\npermit (principal, action, resource == Tool::\"e\");",
		},
		CedarFile: file,
	})
	var ids []string
	for _, c := range e.cedar {
		ids = append(ids, string(c.id))
	}
	want := []string{"rules[0]", "named", "rules[1]:2", "extra.cedar:1", "extra.cedar:3"}
	if diff := cmp.Diff(want, ids); diff != "" {
		t.Errorf("ids (-want +got):\n%s", diff)
	}
}

func TestArgumentsRecord(t *testing.T) {
	dec := func(i int64, exp int) cedar.Value {
		d, err := cedar.NewDecimal(i, exp)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	rec := func(m cedar.RecordMap) cedar.Record { return cedar.NewRecord(m) }
	tests := []struct {
		in   string
		want cedar.Record
	}{
		{``, rec(nil)},
		{`{}`, rec(nil)},
		{`{"s":"x","b":true,"f":false,"n":null}`, rec(cedar.RecordMap{"s": cedar.String("x"), "b": cedar.True, "f": cedar.False, "n": unrepresentable})},
		{`{"i":42,"neg":-7,"f":1.0,"e":1e2}`, rec(cedar.RecordMap{"i": cedar.Long(42), "neg": cedar.Long(-7), "f": cedar.Long(1), "e": cedar.Long(100)})},
		{`{"d":1.25,"tiny":0.0001,"n":-2.5e-1}`, rec(cedar.RecordMap{"d": dec(125, -2), "tiny": dec(1, -4), "n": dec(-25, -2)})},
		{`{"toofine":0.00001,"huge":1e300,"big":99999999999999999999,"exp":1e999999999}`, rec(cedar.RecordMap{
			"toofine": unrepresentable, "huge": unrepresentable, "big": unrepresentable, "exp": unrepresentable,
		})},
		{`{"a":[1,"x",null,[true]],"o":{"k":{"z":"y"}}}`, rec(cedar.RecordMap{
			"a": cedar.NewSet(cedar.Long(1), cedar.String("x"), unrepresentable, cedar.NewSet(cedar.True)),
			"o": rec(cedar.RecordMap{"k": rec(cedar.RecordMap{"z": cedar.String("y")})}),
		})},
	}
	for _, tt := range tests {
		got, err := argumentsRecord([]byte(tt.in))
		if err != nil {
			t.Errorf("argumentsRecord(%s): %v", tt.in, err)
			continue
		}
		if !got.Equal(tt.want) {
			t.Errorf("argumentsRecord(%s) = %s, want %s", tt.in, got.MarshalCedar(), tt.want.MarshalCedar())
		}
	}
	for _, bad := range []string{`[1]`, `"x"`, `{"a":1,"a":2}`, `{`, `{} {}`} {
		if _, err := argumentsRecord([]byte(bad)); err == nil {
			t.Errorf("argumentsRecord(%s) accepted", bad)
		}
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern string
		yes, no []string
	}{
		{"list_*", []string{"list_", "list_vms", "list_a/b"}, []string{"lis", "xlist_vms", "LIST_VMS"}},
		{"*_snapshot", []string{"create_snapshot", "_snapshot"}, []string{"snapshot", "create_snapshots"}},
		{"*guest*", []string{"guest", "run_in_guest", "guest_file", "a_guest_b"}, []string{"gues"}},
		{"a?c", []string{"abc", "aéc"}, []string{"ac", "abbc"}},
		{"file:///docs/*", []string{"file:///docs/", "file:///docs/a/b"}, []string{"file:///doc", "file:///etc/docs/a"}},
		{`q\*`, []string{"q*"}, []string{"qa", "q"}},
		{`a\?b`, []string{"a?b"}, []string{"axb"}},
		{"exact", []string{"exact"}, []string{"exac", "exactly"}},
		{"*", []string{"", "anything"}, nil},
		{"**a**b**", []string{"ab", "xaybz"}, []string{"ba"}},
		{"*a*a*a*a*a*b", []string{"aaaaab"}, []string{strings.Repeat("a", 5000)}},
	}
	for _, tt := range tests {
		g, err := compileGlob(tt.pattern)
		if err != nil {
			t.Fatalf("compileGlob(%q): %v", tt.pattern, err)
		}
		for _, s := range tt.yes {
			if !g.match(s) {
				t.Errorf("%q does not match %q", tt.pattern, s)
			}
		}
		for _, s := range tt.no {
			if g.match(s) {
				t.Errorf("%q matches %q", tt.pattern, s)
			}
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	standalone := filepath.Join(dir, "policy.yaml")
	writeFile(t, standalone, "roles:\n  reader: {tools: [list_*]}\ngroups:\n  g: [reader]\ncedar_file: rules.cedar\n")
	writeFile(t, filepath.Join(dir, "rules.cedar"), `forbid (principal, action, resource == Tool::"list_secrets");`)
	full := filepath.Join(dir, "mcpgate.yaml")
	writeFile(t, full, "listen: 127.0.0.1:8080\nauth: {mode: jwt}\npolicy:\n  mode: shadow\n  roles:\n    r: {tools: [x]}\n")
	indirect := filepath.Join(dir, "indirect.yaml")
	writeFile(t, indirect, "policy:\n  file: policy.yaml\n")
	loop := filepath.Join(dir, "loop.yaml")
	writeFile(t, loop, "file: indirect.yaml\n")
	unknown := filepath.Join(dir, "unknown.yaml")
	writeFile(t, unknown, "roles:\n  r: {tool: [x]}\n")
	mixed := filepath.Join(dir, "mixed.yaml")
	writeFile(t, mixed, "file: policy.yaml\nmode: shadow\n")

	cfg, err := LoadFile(standalone)
	if err != nil {
		t.Fatal(err)
	}
	e := mustCompile(t, *cfg)
	p := user("a", "g")
	if !e.Decide(p, call("list_vms", "")).Allow || e.Decide(p, call("list_secrets", "")).Allow {
		t.Error("standalone policy with a relative cedar_file not applied")
	}
	if diff := cmp.Diff([]string{filepath.Join(dir, "rules.cedar")}, cfg.Files()); diff != "" {
		t.Errorf("Files (-want +got):\n%s", diff)
	}

	cfg, err = LoadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Mode != ModeShadow || len(cfg.Roles) != 1 || cfg.Methods.Allow == nil {
		t.Errorf("full config: got %+v", cfg)
	}

	outer := Config{File: "policy.yaml"}
	outer.SetBaseDir(dir)
	if diff := cmp.Diff([]string{standalone, filepath.Join(dir, "rules.cedar")}, outer.Files()); diff != "" {
		t.Errorf("Files through file: (-want +got):\n%s", diff)
	}

	// Compile follows policy.file relative to the config's directory.
	e, err = Compile(Config{File: "indirect.yaml", dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !e.Decide(p, call("list_vms", "")).Allow {
		t.Error("policy loaded through file: indirection not applied")
	}

	for path, want := range map[string]string{
		loop:                          "cannot name another policy file",
		unknown:                       "roles.r.tool: unknown key",
		mixed:                         "cannot be combined",
		filepath.Join(dir, "missing"): "no such file",
	} {
		if _, err := LoadFile(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadFile(%s) = %v, want error containing %q", filepath.Base(path), err, want)
		}
	}
}
