package metrics

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// series returns the label sets of mcpgate_requests_total and their values.
func series(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "mcpgate_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			key := ""
			for _, l := range m.GetLabel() {
				key += l.GetName() + "=" + l.GetValue() + ","
			}
			out[key] = m.GetCounter().GetValue()
		}
	}
	return out
}

// A client's method name never becomes a label value: unknown methods share
// the "other" series (issue 11.3).
func TestObserveBoundsLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := NewGateway(reg)
	g.Observe("demo", "tools/call", "allow", 200)
	for i := range 10_000 {
		g.Observe("demo", fmt.Sprintf("evil/%d", i), "deny", 403)
	}
	g.Observe("demo", "x", "deny", 1000) // a backend's out-of-range status
	got := series(t, reg)
	if len(got) != 3 {
		t.Fatalf("series = %v, want 3 (tools/call, other/403, other/other)", got)
	}
	if v := got["backend=demo,decision=deny,mcp_method=other,status=403,"]; v != 10_000 {
		t.Errorf("other = %v, want 10000 (series %v)", v, got)
	}
}

func TestMethodLabel(t *testing.T) {
	for in, want := range map[string]string{
		"tools/call": "tools/call", "initialize": "initialize", "": "",
		"Tools/Call": OtherMethod, "tools/call ": OtherMethod, "x": OtherMethod,
	} {
		if got := MethodLabel(in); got != want {
			t.Errorf("MethodLabel(%q) = %q, want %q", in, got, want)
		}
	}
}
