package metrics

import (
	"fmt"
	"net/http"
	"net/http/httptest"
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

// The authorization server's endpoints are timed under a fixed endpoint
// label and a bounded status label.
func TestAuthServerInstrument(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := NewAuthServer(reg)
	handler := func(status int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if status != 0 {
				w.WriteHeader(status)
			}
			w.Write([]byte("{}"))
		})
	}
	for _, tc := range []struct {
		endpoint string
		status   int
	}{
		{"token", 0}, // implicit 200
		{"token", http.StatusBadRequest},
		{"token", http.StatusEarlyHints}, // informational, then 200
		{"/evil/path", http.StatusOK},    // not an endpoint name: "other"
		{"token", http.StatusBadRequest}, // the cached series of another route of the endpoint
		{"token", 999},                   // not an HTTP status: "other"
	} {
		a.Instrument(tc.endpoint, handler(tc.status)).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/token", nil))
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "mcpgate_authserver_request_duration_seconds" {
			t.Fatalf("unexpected family %s", mf.GetName())
		}
		for _, m := range mf.GetMetric() {
			key := ""
			for _, l := range m.GetLabel() {
				key += l.GetName() + "=" + l.GetValue() + ","
			}
			got[key] = m.GetHistogram().GetSampleCount()
		}
	}
	want := map[string]uint64{
		"endpoint=token,status=400,":   2,
		"endpoint=token,status=other,": 1,
		"endpoint=token,status=200,":   2,
		"endpoint=other,status=200,":   1,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("series = %v, want %v", got, want)
	}
	var nilA *AuthServer
	h := handler(0)
	if got := nilA.Instrument("token", h); fmt.Sprintf("%p", got) != fmt.Sprintf("%p", h) {
		t.Error("a nil *AuthServer must return the handler unchanged")
	}
}
