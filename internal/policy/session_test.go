package policy

import (
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/identity"
)

func TestDecideSession(t *testing.T) {
	e := mustCompile(t, testConfig())
	cedarOnly := mustCompile(t, Config{
		Rules: []string{
			// Grants through Cedar alone: a permit whose principal and
			// backend conditions hold for some callers, whatever the tool
			// and arguments.
			`@id("oncall") permit (principal in Group::"oncall", action == Action::"tools/call", resource == Tool::"restart") when { context.backend == "vsphere" && context.arguments.force == false };`,
			`@id("by-sub") permit (principal, action, resource) when { principal.sub == "carol" && resource == Tool::"x" };`,
		},
	})
	shadow := mustCompile(t, Config{Mode: ModeShadow})
	tests := []struct {
		name    string
		e       *Engine
		p       *identity.Principal
		backend string
		allow   bool
	}{
		{"reader: global tool grants", e, user("a", "readers"), "vsphere", true},
		{"reader on another backend: global grants apply everywhere", e, user("a", "readers"), "logs", true},
		{"auditor on its backend", e, user("a", "auditors"), "logs", true},
		{"auditor elsewhere: its grants are for logs only", e, user("a", "auditors"), "vsphere", false},
		{"no roles", e, user("nobody"), "vsphere", false},
		{"unknown groups only", e, user("nobody", "strangers"), "vsphere", false},
		{"user grant by subject", e, user("svc-backup"), "vsphere", true},
		{"cedar permit: group and backend hold", cedarOnly, user("a", "oncall"), "vsphere", true},
		{"cedar permit: wrong backend", cedarOnly, user("a", "oncall"), "logs", false},
		{"cedar permit: wrong group", cedarOnly, user("a", "readers"), "vsphere", false},
		{"cedar permit on principal attribute, resource condition ignored", cedarOnly, user("carol"), "logs", true},
		{"shadow mode never refuses", shadow, user("nobody"), "vsphere", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for range 2 { // the second answer comes from the cache
				d := tc.e.DecideSession(tc.p, tc.backend)
				if d.Allow != tc.allow {
					t.Fatalf("DecideSession = %+v, want allow=%v", d, tc.allow)
				}
				if !d.Allow && (d.Effect != EffectDeny || !strings.Contains(d.Reason, `no tool, prompt or resource on backend "`+tc.backend+`"`)) {
					t.Errorf("denial = %+v", d)
				}
			}
		})
	}
	if d := shadow.DecideSession(user("nobody"), "vsphere"); d.Effect != EffectWouldDeny {
		t.Errorf("shadow: effect %q, want would_deny", d.Effect)
	}
}
