package ratelimit

import (
	"context"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/validate"
)

func TestToolLimits(t *testing.T) {
	ctx := context.Background()
	s, err := NewSet(ctx, Config{PerTool: []ToolLimit{
		{Tools: []string{"delete_*", "drop_table"}, RPS: 0.001, Burst: 2},
		{Tools: []string{"delete_vm"}, Backends: []string{"vsphere"}, RPS: 0.001, Burst: 1},
	}}, SharedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	take := func(user, backend, tool string) bool {
		ok, _ := s.PerTool.Take(ctx, user, backend, tool)
		return ok
	}
	// Rule 1 gives each (user, backend, tool) two calls.
	for i, want := range []bool{true, true, false} {
		if got := take("alice", "k8s", "delete_pod"); got != want {
			t.Errorf("alice delete_pod call %d: %v, want %v", i, got, want)
		}
	}
	if !take("bob", "k8s", "delete_pod") {
		t.Error("bob shares alice's bucket")
	}
	if !take("alice", "k8s", "delete_node") {
		t.Error("another tool shares delete_pod's bucket")
	}
	if !take("alice", "db", "delete_pod") {
		t.Error("the same tool on another backend shares the bucket")
	}
	for range 10 {
		if !take("alice", "k8s", "list_pods") {
			t.Fatal("a tool no rule names was limited")
		}
	}
	// Both rules match delete_vm on vsphere: the stricter one decides.
	if !take("alice", "vsphere", "delete_vm") {
		t.Error("first delete_vm refused")
	}
	ok, retry := s.PerTool.Take(ctx, "alice", "vsphere", "delete_vm")
	if ok || retry <= 0 {
		t.Errorf("second delete_vm on vsphere: ok=%v retry=%s, want refused with a wait", ok, retry)
	}
	// Rule 2 is for vsphere only.
	if !take("alice", "other", "delete_vm") || !take("alice", "other", "delete_vm") {
		t.Error("rule 2 applied to another backend")
	}
	var none *ToolLimits
	if ok, _ := none.Take(ctx, "a", "b", "c"); !ok {
		t.Error("nil ToolLimits must allow")
	}
}

func TestRateLimitConfigErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
		want []string
	}{
		{"per_tool without tools", Config{PerTool: []ToolLimit{{RPS: 1, Burst: 1}}}, []string{"rate_limit.per_tool[0].tools: must name at least one"}},
		{"per_tool bad glob and rate", Config{PerTool: []ToolLimit{{Tools: []string{"a\\"}, RPS: -1, Burst: 0}}},
			[]string{"per_tool[0].tools[0]", "per_tool[0].rps", "per_tool[0].burst"}},
		{"per_tool empty backend", Config{PerTool: []ToolLimit{{Tools: []string{"x"}, Backends: []string{""}, RPS: 1, Burst: 1}}}, []string{"per_tool[0].backends[0]"}},
		{"shared store unknown", Config{Shared: SharedConfig{Store: "redis"}}, []string{"rate_limit.shared.store"}},
		{"shared on_error unknown", Config{Shared: SharedConfig{Store: "postgres", OnError: OnError{PerTool: "open"}}}, []string{"rate_limit.shared.on_error.per_tool"}},
		{"shared bounds", Config{Shared: SharedConfig{Store: "postgres", Timeout: -1, MaxConns: -1}}, []string{"shared.timeout", "shared.max_conns"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.SetDefaults()
			var p validate.Problems
			tt.cfg.Validate("rate_limit", &p)
			err := p.Err()
			if err == nil {
				t.Fatalf("no error, want %v", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	ok := Config{PerTool: []ToolLimit{{Tools: []string{"delete_*"}, RPS: 0.1, Burst: 1}}, Shared: SharedConfig{Store: "postgres"}}
	ok.SetDefaults()
	var p validate.Problems
	ok.Validate("rate_limit", &p)
	if err := p.Err(); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
}
