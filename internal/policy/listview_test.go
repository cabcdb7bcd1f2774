package policy

import (
	"testing"

	"github.com/mcpgate/mcpgate/internal/identity"
)

// TestListViewKey: callers share a key exactly when their roles are the
// same, unless Cedar rules (which may read any attribute) make every
// caller his own; the backend is part of the key.
func TestListViewKey(t *testing.T) {
	noRules := testConfig()
	noRules.Rules = nil
	e := mustCompile(t, noRules)
	key := func(e *Engine, p *identity.Principal, backend string) string { return e.ListView(p, backend).Key() }

	same := [][2]*identity.Principal{
		{user("alice", "readers"), user("bob", "readers")},
		{user("alice", "readers"), user("bob", "readers", "no-such-group")},                                // an unmapped group adds no role
		{user("alice", "operators"), &identity.Principal{Issuer: "https://x.test", Subject: "svc-backup"}}, // group and users entry alike
		{user("alice", "operators"), user("bob", "operators", "readers")},                                  // reader is inherited anyway
		{withScopes(user("alice", "admins"), "vm:delete"), user("bob", "admins")},                          // scopes hide nothing
	}
	for _, pair := range same {
		if a, b := key(e, pair[0], "vsphere"), key(e, pair[1], "vsphere"); a != b {
			t.Errorf("%s and %s: keys %q and %q, want equal", pair[0].Key(), pair[1].Key(), a, b)
		}
	}
	differ := [][2]*identity.Principal{
		{user("alice", "readers"), user("bob", "operators")},
		{user("alice", "readers"), user("bob")},
		{user("alice", "readers"), user("bob", "readers", "auditors")},
	}
	for _, pair := range differ {
		if a, b := key(e, pair[0], "vsphere"), key(e, pair[1], "vsphere"); a == b {
			t.Errorf("%s and %s share key %q", pair[0].Key(), pair[1].Key(), a)
		}
	}
	if key(e, user("alice", "readers"), "vsphere") == key(e, user("alice", "readers"), "logs") {
		t.Error("two backends share a key")
	}

	// With Cedar rules ("ban-mallory" reads principal.sub) nobody shares.
	withRules := mustCompile(t, testConfig())
	alice, mallory := user("alice", "readers"), user("mallory", "readers")
	if key(withRules, alice, "vsphere") == key(withRules, mallory, "vsphere") {
		t.Error("with Cedar rules, alice and mallory share a key")
	}
	if !withRules.ListView(alice, "vsphere").Visible("tools/list", "list_vms") || withRules.ListView(mallory, "vsphere").Visible("tools/list", "list_vms") {
		t.Error("ban-mallory is not applied through ListView")
	}

	// Shadow mode shows everything to everyone.
	shadow := noRules
	shadow.Mode = ModeShadow
	s := mustCompile(t, shadow)
	if key(s, user("a"), "vsphere") != key(s, user("b", "admins"), "vsphere") {
		t.Error("shadow mode: keys differ")
	}
}

// TestListViewAgreesWithVisible: for every pair of callers with the same
// key, ListView.Visible decides every item alike, and as Engine.Visible
// does. This is what makes sharing a filtered list between them safe.
func TestListViewAgreesWithVisible(t *testing.T) {
	principals := []*identity.Principal{
		nil, user("a"), user("b", "readers"), user("c", "readers", "x"), user("d", "operators"),
		user("e", "admins"), withScopes(user("f", "admins"), "vm:delete", "vm:exec"), user("mallory", "readers"),
		user("g", "auditors"), &identity.Principal{Issuer: "https://x.test", Subject: "svc-backup"},
		withEmail(user("h"), "ops@example.com", true), withEmail(user("i"), "ops@example.com", false),
		user("j", "contractors", "readers"), user("root-1"),
	}
	names := []string{"list_vms", "get_vm_info", "power_on", "create_snapshot", "delete_vm", "run_cmd", "search",
		"summary", "file:///docs/a", "file:///docs/../etc/passwd", "log://x", "anything"}
	methods := []string{"tools/list", "prompts/list", "resources/list", "resources/templates/list"}
	for _, withRules := range []bool{false, true} {
		c := testConfig()
		if !withRules {
			c.Rules = nil
		}
		e := mustCompile(t, c)
		for _, backend := range []string{"vsphere", "logs", "sandbox"} {
			seen := map[string]*identity.Principal{}
			for _, p := range principals {
				v := e.ListView(p, backend)
				for _, m := range methods {
					for _, n := range names {
						if got, want := v.Visible(m, n), e.Visible(p, m, backend, n); got != want {
							t.Fatalf("rules=%v %s %s %s: ListView %v, Engine %v", withRules, backend, m, n, got, want)
						}
					}
				}
				q, ok := seen[v.Key()]
				if !ok {
					seen[v.Key()] = p
					continue
				}
				for _, m := range methods {
					for _, n := range names {
						if e.Visible(p, m, backend, n) != e.Visible(q, m, backend, n) {
							t.Errorf("rules=%v %s: %s and %s share key %q but differ on %s %s", withRules, backend, who(p), who(q), v.Key(), m, n)
						}
					}
				}
			}
			if !withRules && len(seen) >= len(principals) {
				t.Errorf("%s: no two callers share a key without rules", backend)
			}
		}
	}
}

// TestListViewGeneration: every compiled engine has its own generation, so
// a reload never serves a list filtered under the old policy.
func TestListViewGeneration(t *testing.T) {
	a, b := mustCompile(t, testConfig()), mustCompile(t, testConfig())
	p := user("alice", "readers")
	if a.ListView(p, "vsphere").Generation() == b.ListView(p, "vsphere").Generation() {
		t.Error("two compiled engines share a generation")
	}
	if a.ListView(p, "vsphere").Generation() != a.ListView(user("bob"), "logs").Generation() {
		t.Error("one engine has two generations")
	}
}

func who(p *identity.Principal) string {
	if p == nil {
		return "nobody"
	}
	return p.Key()
}
