package policy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/identity"
)

func TestExplain(t *testing.T) {
	e := mustCompile(t, testConfig())
	tests := []struct {
		name string
		x    *Explanation
		want func(t *testing.T, x *Explanation)
	}{
		{"roles and their sources", e.Explain(withEmail(user("x", "admins", "Domain Users"), "ops@example.com", true), call("list_vms", "")),
			func(t *testing.T, x *Explanation) {
				want := []RoleSource{
					{Role: "admin", Via: []string{"group admins"}},
					{Role: "operator", Via: []string{"inherited from admin (group admins)", "users[email:ops@example.com]"}},
					{Role: "reader", Via: []string{"inherited from admin (group admins)", "inherited from operator (users[email:ops@example.com])"}},
				}
				if diff := cmp.Diff(want, x.Roles); diff != "" {
					t.Errorf("roles (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff([]string{"Domain Users"}, x.UnknownGroups); diff != "" {
					t.Errorf("unknown groups (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff([]string{"role:reader tools:list_*"}, x.Matches); diff != "" {
					t.Errorf("matches (-want +got):\n%s", diff)
				}
			}},
		{"denied: which roles and groups would grant it", e.Explain(user("a", "readers"), call("power_on", `{"cpus":1}`)),
			func(t *testing.T, x *Explanation) {
				// Least privileged first.
				want := []string{
					"grant role breakglass (no group confers it; add it to policy.groups or policy.users)",
					"grant role operator via group admins or operators",
					"grant role admin via group admins",
				}
				if diff := cmp.Diff(want, x.Suggestions); diff != "" {
					t.Errorf("suggestions (-want +got):\n%s", diff)
				}
			}},
		{"denied: missing scope", e.Explain(withScopes(user("a", "admins"), "openid"), call("delete_vm", `{"vm_name":"web-1"}`)),
			func(t *testing.T, x *Explanation) {
				if diff := cmp.Diff([]string{"vm:delete"}, x.RequiredScopes); diff != "" {
					t.Errorf("required (-want +got):\n%s", diff)
				}
				if x.ScopesFrom != "token" || !strings.Contains(strings.Join(x.Suggestions, "\n"), "add scope vm:delete to the token") {
					t.Errorf("scopes from %q, suggestions %q", x.ScopesFrom, x.Suggestions)
				}
			}},
		{"denied: missing scope with no scope claim", e.Explain(user("a", "admins"), call("delete_vm", `{"vm_name":"web-1"}`)),
			func(t *testing.T, x *Explanation) {
				if x.ScopesFrom != "fallback_scopes" || !strings.Contains(strings.Join(x.Suggestions, "\n"), "policy.fallback_scopes") {
					t.Errorf("scopes from %q, suggestions %q", x.ScopesFrom, x.Suggestions)
				}
			}},
		{"denied: forbid rule", e.Explain(withScopes(user("a", "admins"), "vm:delete"), call("delete_vm", `{"vm_name":"prod-1"}`)),
			func(t *testing.T, x *Explanation) {
				var forbid RuleResult
				for _, r := range x.Rules {
					if r.ID == "no-prod" {
						forbid = r
					}
				}
				if diff := cmp.Diff(RuleResult{ID: "no-prod", Effect: "forbid", Matched: true}, forbid); diff != "" {
					t.Errorf("rule (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff([]string{"rule no-prod forbids this call: change the call's arguments or the rule"}, x.Suggestions); diff != "" {
					t.Errorf("suggestions (-want +got):\n%s", diff)
				}
			}},
		{"denied: forbid rule failed to evaluate", e.Explain(user("a", "operators"), call("power_on", `{"cpus":"many"}`)),
			func(t *testing.T, x *Explanation) {
				for _, r := range x.Rules {
					if r.ID == "big-vms" && r.Error == "" {
						t.Errorf("big-vms: %+v, want an evaluation error", r)
					}
				}
				if !strings.Contains(x.String(), "failed to evaluate") {
					t.Errorf("String() does not say the rule failed:\n%s", x)
				}
			}},
		{"denied: conditional permit is suggested", e.Explain(withScopes(user("a", "operators"), "vm:delete"), call("delete_vm", `{"vm_name":"web-1"}`)),
			func(t *testing.T, x *Explanation) {
				if len(x.Suggestions) == 0 || !strings.HasPrefix(x.Suggestions[0], "rule op-delete-dev permits this call when its conditions hold") {
					t.Errorf("suggestions %q", x.Suggestions)
				}
			}},
		{"denied: unknown method", e.Explain(user("a"), Request{Method: "tasks/list"}),
			func(t *testing.T, x *Explanation) {
				if diff := cmp.Diff([]string{`add "tasks/list" to policy.methods.allow`}, x.Suggestions); diff != "" {
					t.Errorf("suggestions (-want +got):\n%s", diff)
				}
			}},
		{"denied: no role anywhere grants it", e.Explain(user("a"), Request{Method: "prompts/get", Name: "secrets"}),
			func(t *testing.T, x *Explanation) {
				want := []string{`no role grants prompt "secrets": add a matching pattern to a role's prompts`}
				if diff := cmp.Diff(want, x.Suggestions); diff != "" {
					t.Errorf("suggestions (-want +got):\n%s", diff)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.want(t, tt.x)
			if tt.x.String() == "" {
				t.Error("empty String()")
			}
		})
	}
}

// Explain must report the same decision as Decide.
func TestExplainAgreesWithDecide(t *testing.T) {
	e := mustCompile(t, testConfig())
	for _, p := range []*identity.Principal{user("a"), user("a", "readers"), withScopes(user("a", "admins"), "vm:delete"), user("mallory", "admins")} {
		for _, req := range []Request{call("list_vms", ""), call("delete_vm", `{"vm_name":"prod-1"}`), call("delete_vm", `{"vm_name":"dev-1"}`), {Method: "ping"}, {Method: "x"}} {
			if diff := cmp.Diff(e.Decide(p, req), e.Explain(p, req).Decision); diff != "" {
				t.Errorf("%s %s: (-Decide +Explain):\n%s", p.Subject, req.Name, diff)
			}
		}
	}
}

func TestRunTestsDetectsFailures(t *testing.T) {
	e := mustCompile(t, testConfig())
	yes, no := true, false
	cases := []TestCase{
		{Case: "right", Sub: "a", Groups: []string{"readers"}, Tool: "list_vms", Expect: "allow", Visible: &yes},
		{Case: "wrong effect", Sub: "a", Groups: []string{"readers"}, Tool: "list_vms", Expect: "deny"},
		{Case: "wrong missing scopes", Sub: "a", Groups: []string{"admins"}, Scopes: []string{}, Tool: "delete_vm", Args: map[string]any{"vm_name": "x"}, Expect: "deny", MissingScopes: []string{"vm:other"}},
		{Case: "wrong visibility", Sub: "a", Groups: []string{"readers"}, Tool: "list_vms", Expect: "allow", Visible: &no},
		{Case: "bad expect", Sub: "a", Tool: "list_vms", Expect: "permit"},
		{Case: "tool and name differ", Sub: "a", Tool: "a", Name: "b", Expect: "deny"},
		{Case: "args not a mapping", Sub: "a", Tool: "a", Args: []any{1}, Expect: "deny"},
		{Case: "args as JSON text", Sub: "a", Groups: []string{"operators"}, Tool: "power_on", Args: `{"cpus": 64}`, Expect: "deny"},
		{Case: "bad ref", Sub: "a", Method: "completion/complete", Ref: "tool", Name: "x", Expect: "deny"},
	}
	var got []bool
	for _, r := range RunTests(e, cases) {
		got = append(got, r.Pass)
		if !r.Pass && r.Problem == "" {
			t.Errorf("%s failed without a problem", r.Case.Case)
		}
	}
	if diff := cmp.Diff([]bool{true, false, false, false, false, false, false, true, false}, got); diff != "" {
		t.Errorf("pass/fail (-want +got):\n%s", diff)
	}
}

func TestLoadTests(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"ok.yaml":       "policy: p.yaml\ncases:\n  - {sub: a, tool: x, expect: deny}\n",
		"nopolicy.yaml": "cases:\n  - {sub: a, tool: x, expect: deny}\n",
		"nocases.yaml":  "policy: p.yaml\n",
		"typo.yaml":     "policy: p.yaml\ncases:\n  - {sub: a, tool: x, expected: deny}\n",
	} {
		writeFile(t, filepath.Join(dir, name), content)
	}
	tf, policy, err := LoadTests(filepath.Join(dir, "ok.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if policy != filepath.Join(dir, "p.yaml") || len(tf.Cases) != 1 {
		t.Errorf("policy %q, %d cases", policy, len(tf.Cases))
	}
	for _, bad := range []string{"nopolicy.yaml", "nocases.yaml", "typo.yaml", "missing.yaml"} {
		if _, _, err := LoadTests(filepath.Join(dir, bad)); err == nil {
			t.Errorf("LoadTests(%s) accepted", bad)
		}
	}
}

// TestLoadTestsMessages: a mistake in a test table is reported by key path,
// without Go type names.
func TestLoadTestsMessages(t *testing.T) {
	dir := t.TempDir()
	for name, want := range map[string]string{
		"policy: p.yaml\ncases:\n  - {sub: a, tool: x, want: deny}\n":     "cases[0].want: unknown key (line 3)",
		"policy: p.yaml\ncases:\n  - {sub: a, groups: g, expect: deny}\n": `cases[0].groups: expected a list, found the text "g" (line 3)`,
		"policy: p.yaml\ncases: {sub: a}\n":                               "cases: expected a list, found a mapping (line 2)",
	} {
		path := filepath.Join(dir, "t.yaml")
		writeFile(t, path, name)
		_, _, err := LoadTests(path)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "policy.TestCase") {
			t.Errorf("LoadTests(%q) = %v, want %q", name, err, want)
		}
	}
}

func TestHolder(t *testing.T) {
	e1 := mustCompile(t, testConfig())
	h := NewHolder(e1)
	if h.Load() != e1 {
		t.Fatal("Load does not return the stored engine")
	}
	h.Store(nil)
	if h.Load() != e1 {
		t.Fatal("Store(nil) replaced the engine")
	}
	e2 := mustCompile(t, Config{})
	h.Store(e2)
	if h.Load() != e2 {
		t.Fatal("Store did not replace the engine")
	}
}

// TestWatch steps the watcher tick by tick: each step sends two ticks on an
// unbuffered channel, and the second is only taken once the first has been
// handled (reload included). Changes are atomic (rename, as editors save),
// so a tick still being handled sees the file before or after, never half
// written.
func TestWatch(t *testing.T) {
	dir := t.TempDir()
	f, g := filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "other.yaml")
	writeFile(t, f, "roles: {}\n")
	writeFile(t, g, "roles: {}\n")
	var reloads atomic.Int32
	tick := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		watch(ctx, tick, func() { reloads.Add(1) }, []string{f, g})
		close(done)
	}()
	step := func() { tick <- time.Time{}; tick <- time.Time{} }
	replace := func(path, content string) {
		writeFile(t, path+".tmp", content)
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	later := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name   string
		change func()
		want   int32
	}{
		{"no change", func() {}, 0},
		{"new content", func() { replace(f, "roles: {r: {tools: [x]}}\n") }, 1},
		{"same size, new mtime", func() { os.Chtimes(f, later, later) }, 2},
		{"nothing more", func() {}, 2},
		{"removed", func() { os.Remove(f) }, 3},
		{"still missing", func() {}, 3},
		{"back", func() { replace(f, "roles: {}\n") }, 4},
		{"second file", func() { replace(g, "roles: {a: {}}\n") }, 5},
	} {
		tc.change()
		step()
		if n := reloads.Load(); n != tc.want {
			t.Fatalf("%s: %d reloads, want %d", tc.name, n, tc.want)
		}
	}
	cancel()
	<-done

	// Watch itself runs on a real ticker and returns when ctx ends.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	Watch(ctx, 0, func() { t.Error("reload without a change") }, f)
}

func TestWithoutArguments(t *testing.T) {
	tests := []struct {
		rule string
		want string // the variant's Cedar text; "" when dropped
	}{
		{`permit (principal, action, resource) when { context.arguments.x == 1 };`,
			`permit ( principal, action, resource );`},
		{`permit (principal, action, resource) when { context.backend == "b" } when { context.arguments.x == 1 };`,
			`permit ( principal, action, resource ) when { context.backend == "b" };`},
		{`permit (principal, action, resource) unless { context has arguments };`,
			`permit ( principal, action, resource );`},
		{`permit (principal, action, resource) when { context == {} };`,
			`permit ( principal, action, resource );`},
		{`permit (principal, action, resource) when { principal.sub == "a" && context.scopes.contains("s") };`,
			`permit ( principal, action, resource ) when { principal.sub == "a" && context.scopes.contains("s") };`},
		{`forbid (principal, action, resource) when { context.arguments.x == 1 };`, ""},
		{`forbid (principal, action, resource) when { principal.sub == "m" } unless { context.arguments has dry_run };`, ""},
		{`forbid (principal, action, resource) when { principal.sub == "m" };`,
			`forbid ( principal, action, resource ) when { principal.sub == "m" };`},
	}
	for _, tt := range tests {
		e := mustCompile(t, Config{Rules: []string{tt.rule}})
		v := e.cedar[0].anyArgs
		got := ""
		if v != nil {
			got = strings.Join(strings.Fields(string(v.MarshalCedar())), " ")
		}
		if got != tt.want {
			t.Errorf("%s\n got  %q\n want %q", tt.rule, got, tt.want)
		}
	}
}

func TestRunTestFile(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.yaml"), "roles: {r: {tools: [a]}}\ngroups: {g: [r]}\n")
	writeFile(t, filepath.Join(dir, "t.yaml"), "policy: p.yaml\ncases:\n"+
		"  - {case: ok, sub: u, groups: [g], tool: a, expect: allow}\n"+
		"  - {case: wrong, sub: u, groups: [g], tool: b, expect: allow}\n")
	var out strings.Builder
	failed, err := RunTestFile(filepath.Join(dir, "t.yaml"), &out)
	if err != nil {
		t.Fatal(err)
	}
	want := "PASS  ok: allow (role:r tools:a)\nFAIL  wrong: got deny (default-deny), want allow\n1 passed, 1 failed\n"
	if failed != 1 || out.String() != want {
		t.Errorf("failed=%d, output:\n%s\nwant:\n%s", failed, out.String(), want)
	}
	writeFile(t, filepath.Join(dir, "bad.yaml"), "policy: p2.yaml\ncases: [{sub: u, tool: a, expect: allow}]\n")
	writeFile(t, filepath.Join(dir, "p2.yaml"), "roles: {r: {inherits: [r]}}\n")
	if _, err := RunTestFile(filepath.Join(dir, "bad.yaml"), &out); err == nil || !strings.Contains(err.Error(), "inheritance cycle") {
		t.Errorf("invalid policy: err = %v", err)
	}
}
