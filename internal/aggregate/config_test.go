package aggregate

import (
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/validate"
)

func TestConfigValidate(t *testing.T) {
	known := map[string]bool{"vsphere": true, "k8s": true, "a": true, "a__b": true}
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string // substrings of the problems, all reported at once
	}{
		{"valid", Config{Path: "/mcp", Backends: []string{"vsphere", "k8s"}, Rename: map[string]string{"vsphere/get_vm": "vm"}}, nil},
		{"every problem", Config{Path: "mcp/", Name: "k8s", Backends: []string{"nope", "k8s", "k8s"}, Separator: "/",
			Rename: map[string]string{"vsphere/x": "k8s/y", "bad": "k8s__z"}, Timeout: -time.Second},
			[]string{"endpoints[0].path: must start", "endpoints[0].name: \"k8s\" is also a backend name", "unknown backend \"nope\"",
				"listed twice", "separator: must be", "rename.bad: key must be", "would collide with backend k8s", "rename.vsphere/x: key must be",
				"not a tool name", "timeouts must not be negative"}},
		{"ambiguous prefixes", Config{Path: "/mcp", Backends: []string{"a", "a__b"}}, []string{`names "a" and "a__b" are ambiguous`}},
		{"two renames to one name", Config{Path: "/mcp", Backends: []string{"vsphere", "k8s"},
			Rename: map[string]string{"vsphere/x": "same", "k8s/y": "same"}}, []string{`"same" is also the name of k8s/y`}},
		{"no backends", Config{Path: "/mcp"}, []string{"at least one backend"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg
			c.SetDefaults()
			var p validate.Problems
			c.Validate("endpoints[0]", known, &p)
			got := strings.Join(p.List(), "\n")
			if len(tc.want) == 0 && got != "" {
				t.Fatalf("unexpected problems:\n%s", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing %q in:\n%s", w, got)
				}
			}
		})
	}
}

func TestNames(t *testing.T) {
	c := Config{Backends: []string{"vsphere", "k8s"}, Separator: "__", Rename: map[string]string{"vsphere/get_vm": "vm"}}
	n := newNames(&c)
	for _, tc := range []struct {
		exposed string
		ok      bool
		backend int
		name    string
	}{
		{"vm", true, 0, "get_vm"},
		{"vsphere__get_vm", false, 0, ""}, // renamed: only the new name reaches it
		{"vsphere__power_off", true, 0, "power_off"},
		{"k8s__get__pods", true, 1, "get__pods"},
		{"k8s__", false, 0, ""},
		{"k8s_x", false, 0, ""},
		{"other__x", false, 0, ""},
	} {
		got, ok := n.resolve(tc.exposed)
		if ok != tc.ok || ok && (got.backend != tc.backend || got.name != tc.name) {
			t.Errorf("resolve(%q) = %+v %v", tc.exposed, got, ok)
		}
		if ok && n.expose(got.backend, got.name) != tc.exposed {
			t.Errorf("expose(resolve(%q)) = %q", tc.exposed, n.expose(got.backend, got.name))
		}
	}
}

// TestUnprefixed: one backend keeps its names; one of them that another
// backend's prefix or a rename also yields is not exposed (a collision).
func TestUnprefixed(t *testing.T) {
	c := Config{Backends: []string{"vsphere", "k8s"}, Separator: "__", Unprefixed: "vsphere", Rename: map[string]string{"k8s/get_pods": "pods"}}
	n := newNames(&c)
	for _, tc := range []struct {
		backend int
		name    string
		want    string
		ok      bool
	}{
		{0, "get_vm", "get_vm", true},
		{0, "k8s__x", "k8s__x", false}, // would reach k8s's x
		{0, "pods", "pods", false},     // would reach the renamed k8s/get_pods
		{1, "get_nodes", "k8s__get_nodes", true},
		{1, "get_pods", "pods", true},
	} {
		got, ok := n.exposeChecked(tc.backend, tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("exposeChecked(%d, %q) = %q %v, want %q %v", tc.backend, tc.name, got, ok, tc.want, tc.ok)
		}
	}
	if got, ok := n.resolve("get_vm"); !ok || got.backend != 0 || got.name != "get_vm" {
		t.Errorf("resolve(get_vm) = %+v %v", got, ok)
	}
	var p validate.Problems
	c2 := Config{Path: "/mcp", Backends: []string{"vsphere"}, Unprefixed: "k8s"}
	c2.SetDefaults()
	c2.Validate("e", map[string]bool{"vsphere": true, "k8s": true}, &p)
	if !strings.Contains(strings.Join(p.List(), "\n"), `unprefixed: "k8s" is not a backend of this endpoint`) {
		t.Errorf("problems: %v", p.List())
	}
}
