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
