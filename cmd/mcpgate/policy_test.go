package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/policy"
)

func runPolicy(args ...string) (string, error) {
	cmd := newPolicyCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// aggregateConfig is a full config with an aggregated endpoint in front of
// vsphere and k8s; the policy scopes tools per backend.
const aggregateConfig = `
auth: { mode: jwt, jwt: { issuers: [ { issuer: "${IDP_ISSUER}", audience: x } ] } }
encryption_key: ${NOT_SET_FOR_EXPLAIN}
policy:
  roles:
    vs: { tools: ["vsphere/*"] }
    pods: { tools: ["k8s/get_*"], prompts: ["k8s/triage"] }
  groups: { vs: [vs], pods: [pods] }
backends:
  - { name: vsphere, url: "http://vsphere:8000/mcp" }
  - { name: k8s, url: "http://k8s:8000/mcp" }
  - { name: solo, url: "http://solo:8000/mcp", path: /solo }
endpoints:
  - path: /mcp
    backends: [vsphere, k8s]
    rename: { vsphere/list_vms: inventory }
  - { path: /one, name: one, backends: [k8s], unprefixed: k8s }
`

// TestPolicyExplainAggregated: at an aggregated endpoint, explain takes the
// name a client sees (prefixed or renamed) and explains it as the backend
// and original name the gateway decides; a full config needs no secrets.
func TestPolicyExplainAggregated(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "mcpgate.yaml")
	if err := os.WriteFile(cfg, []byte(aggregateConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"explain", "--config", cfg, "--sub", "alice"}
	tests := []struct {
		name    string
		args    []string
		allow   bool
		backend string
		target  string
		out     string // in the text output
		errText string // an error, not a decision
	}{
		{"prefixed name by endpoint path", []string{"--groups", "vs", "--endpoint", "/mcp", "--tool", "vsphere__get_vm"},
			true, "vsphere", "get_vm", "request:  tools/call get_vm (backend vsphere; vsphere__get_vm at endpoint mcp)", ""},
		{"renamed name", []string{"--groups", "vs", "--endpoint", "mcp", "--tool", "inventory"},
			true, "vsphere", "list_vms", "matching role patterns: role:vs tools:vsphere/*", ""},
		{"the endpoint's name as --backend routes too", []string{"--groups", "vs", "--backend", "mcp", "--tool", "vsphere__power_off"},
			true, "vsphere", "power_off", "vsphere__power_off at endpoint mcp", ""},
		{"vsphere/* grants nothing on k8s", []string{"--groups", "vs", "--endpoint", "/mcp", "--tool", "k8s__get_pods"},
			false, "k8s", "get_pods", `to allow: grant role pods`, ""},
		{"the renamed tool's prefixed name reaches nothing", []string{"--groups", "vs", "--endpoint", "/mcp", "--tool", "vsphere__list_vms"},
			false, "", "", "", `endpoint mcp exposes no tool or prompt "vsphere__list_vms"`},
		{"prompt", []string{"--groups", "pods", "--endpoint", "/mcp", "--method", "prompts/get", "--name", "k8s__triage"},
			true, "k8s", "triage", "role:pods prompts:k8s/triage", ""},
		{"unprefixed endpoint", []string{"--groups", "pods", "--endpoint", "/one", "--tool", "get_nodes"},
			true, "k8s", "get_nodes", "", ""},
		{"resource at a one-backend endpoint", []string{"--groups", "pods", "--endpoint", "one", "--method", "resources/read", "--name", "k8s://pods"},
			false, "k8s", "k8s://pods", "(backend k8s, at endpoint one)", ""},
		{"resource at a several-backend endpoint", []string{"--groups", "pods", "--endpoint", "mcp", "--method", "resources/read", "--name", "k8s://pods"},
			false, "", "", "", "explain it with --backend"},
		{"a list is decided as the endpoint", []string{"--groups", "pods", "--endpoint", "mcp", "--method", "tools/list"},
			true, "mcp", "", "", ""},
		{"a backend's own path is not rerouted", []string{"--groups", "pods", "--backend", "k8s", "--tool", "get_pods"},
			true, "k8s", "get_pods", "", ""},
		{"unknown endpoint", []string{"--endpoint", "/nope", "--tool", "x"}, false, "", "", "", "no such endpoint; the config has mcp (/mcp), one (/one)"},
		{"--backend and --endpoint disagree", []string{"--endpoint", "/mcp", "--backend", "k8s", "--tool", "get_pods"}, false, "", "", "", "give one of them"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string{}, base...), tt.args...)
			out, err := runPolicy(args...)
			if tt.errText != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("err = %v, want %q; out:\n%s", err, tt.errText, out)
				}
				return
			}
			if (err == nil) != tt.allow {
				t.Errorf("err = %v, want allow=%v; out:\n%s", err, tt.allow, out)
			}
			if tt.out != "" && !strings.Contains(out, tt.out) {
				t.Errorf("output lacks %q:\n%s", tt.out, out)
			}
			js, _ := runPolicy(append(args, "--json")...)
			var x policy.Explanation
			if err := json.Unmarshal([]byte(js), &x); err != nil {
				t.Fatalf("--json: %v\n%s", err, js)
			}
			if x.Request.Backend != tt.backend || x.Request.Name != tt.target {
				t.Errorf("explained (%q, %q), want (%q, %q)", x.Request.Backend, x.Request.Name, tt.backend, tt.target)
			}
		})
	}
}

// A full config whose policy names a backend it does not have is refused
// by explain as by the gateway; a policy file alone names no backends to
// check against, and cannot resolve an endpoint.
func TestPolicyExplainChecksBackends(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "mcpgate.yaml")
	bad := strings.Replace(aggregateConfig, `["vsphere/*"]`, `["vshpere/*"]`, 1)
	if err := os.WriteFile(cfg, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runPolicy("explain", "--config", cfg, "--sub", "a", "--tool", "x"); err == nil ||
		!strings.Contains(err.Error(), `policy.roles.vs.tools[0]: names no backend or aggregated endpoint "vshpere"`) {
		t.Errorf("unknown backend: %v", err)
	}
	only := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(only, []byte("roles: { vs: { tools: [\"vsphere/*\"] } }\ngroups: { vs: [vs] }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runPolicy("explain", "--config", only, "--sub", "a", "--groups", "vs", "--backend", "vsphere", "--tool", "get_vm"); err != nil {
		t.Errorf("policy file: %v\n%s", err, out)
	}
	if _, err := runPolicy("explain", "--config", only, "--sub", "a", "--endpoint", "/mcp", "--tool", "vsphere__get_vm"); err == nil ||
		!strings.Contains(err.Error(), "configures no aggregated endpoint") {
		t.Errorf("--endpoint with a policy file: %v", err)
	}
}
