package aggregate

import (
	"context"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/telemetry"
)

// TestOutcome: Serve reports the request's backend calls that failed or
// timed out, for the audit record; a backend's own JSON-RPC error and a
// backend on which the caller has nothing are not failures.
func TestOutcome(t *testing.T) {
	f := newFixture(t, Config{Timeout: 2 * time.Second, CallTimeout: 300 * time.Millisecond}, "slow")
	cs := f.connect(t, nil)
	toolNames(t, cs)
	if got, err := callText(t, cs, "vsphere__get_vm"); err != nil || got != "vsphere/get_vm:hi" {
		t.Fatalf("vsphere__get_vm = %q, %v", got, err)
	}
	if got := f.takeFailures(); len(got) != 0 {
		t.Errorf("failures of successful requests: %+v", got)
	}

	// The backend answers a JSON-RPC error itself: passed on, no failure.
	if _, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "k8s__no_such_tool"}); err == nil {
		t.Error("k8s__no_such_tool succeeded")
	}
	if got := f.takeFailures(); len(got) != 0 {
		t.Errorf("a backend's JSON-RPC error counted as a failure: %+v", got)
	}

	// Slower than call_timeout.
	if r, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "vsphere__slow", Arguments: map[string]any{"text": "x"}}); err == nil ||
		!strings.Contains(err.Error(), "backend vsphere timed out") {
		t.Errorf("slow call: %v %+v", err, r)
	}
	if got, want := f.takeFailures(), []Failure{{Backend: "vsphere", Message: "backend vsphere timed out", Call: true}}; !slices.Equal(got, want) {
		t.Errorf("failures %+v, want %+v", got, want)
	}

	// Down: the call fails, and the list leaves the backend out.
	f.k8s.down()
	if _, err := callText(t, cs, "k8s__get_pods"); err == nil {
		t.Error("call to a down backend succeeded")
	}
	if got, want := f.takeFailures(), []Failure{{Backend: "k8s", Message: "backend k8s unavailable", Call: true}}; !slices.Equal(got, want) {
		t.Errorf("failures %+v, want %+v", got, want)
	}
	if got := toolNames(t, cs); slices.Contains(got, "k8s__get_pods") {
		t.Errorf("tools while k8s is down: %v", got)
	}
	got := f.takeFailures()
	if want := []Failure{{Backend: "k8s", Message: "backend k8s unavailable"}}; !slices.Equal(got, want) {
		t.Errorf("list failures %+v, want %+v", got, want)
	}
	out := Outcome{Failures: append(got, Failure{Backend: "vsphere", Message: "backend vsphere timed out", Call: true})}
	for _, tc := range []struct {
		backend string
		call    bool
		want    string
	}{
		{"k8s", false, "backend k8s unavailable"},
		{"vsphere", true, "backend vsphere timed out"},
		{"k8s", true, ""},
	} {
		if r := out.Reason(tc.backend, tc.call); r != tc.want {
			t.Errorf("Reason(%s, %v) = %q, want %q", tc.backend, tc.call, r, tc.want)
		}
	}

	// bob has nothing on vsphere: no session, no failure, even with it down.
	f.vsphere.down()
	f.identity.Store(bob)
	cb := f.connect(t, nil)
	f.k8s.up()
	f.takeFailures()
	if got := toolNames(t, cb); !slices.Equal(got, []string{"k8s__get_nodes", "k8s__get_pods"}) {
		t.Errorf("bob's tools %v", got)
	}
	if got := f.takeFailures(); len(got) != 0 {
		t.Errorf("failures for a backend bob has nothing on: %+v", got)
	}
}

// TestBackendSpans: with tracing on, each backend call is a client span
// "backend NAME" under the request's span at the gateway, with the
// endpoint, backend and method, and an error status when it fails; the
// backend receives that span's trace context. With tracing off, no
// traceparent is sent.
func TestBackendSpans(t *testing.T) {
	if telemetry.On() {
		t.Fatal("tracing installed by another test")
	}
	f := newFixture(t, Config{Timeout: 2 * time.Second})
	cs := f.connect(t, nil)
	if _, err := callText(t, cs, "vsphere__get_vm"); err != nil {
		t.Fatal(err)
	}
	f.vsphere.mu.Lock()
	if len(f.vsphere.tps) != 0 {
		t.Errorf("tracing off, the backend got traceparents %v", f.vsphere.tps)
	}
	f.vsphere.mu.Unlock()

	exp := tracetest.NewInMemoryExporter()
	tr := telemetry.New(exp)
	telemetry.Install(tr)
	t.Cleanup(func() { telemetry.Install(nil); tr.Shutdown(context.Background()) })
	// The gateway's span of each request (its server span).
	reqSpans := make(chan trace.SpanContext, 100)
	fn := func(r *http.Request) context.Context {
		ctx, span := telemetry.Start(r.Context(), "POST /mcp")
		span.End()
		reqSpans <- span.SpanContext()
		return ctx
	}
	f.ctx.Store(&fn)
	for len(reqSpans) > 0 {
		<-reqSpans
	}

	if _, err := callText(t, cs, "vsphere__get_vm"); err != nil {
		t.Fatal(err)
	}
	var parent trace.SpanContext
	for len(reqSpans) > 0 {
		if sc := <-reqSpans; !parent.IsValid() {
			parent = sc // the tools/call's POST comes first
		}
	}
	f.k8s.down()
	if _, err := callText(t, cs, "k8s__get_pods"); err == nil {
		t.Fatal("call to a down backend succeeded")
	}

	var call, failed *tracetest.SpanStub
	spans := exp.GetSpans()
	for i := range spans {
		s := &spans[i]
		attrs := map[attribute.Key]string{}
		for _, kv := range s.Attributes {
			attrs[kv.Key] = kv.Value.Emit()
		}
		switch {
		case s.Name == "backend vsphere" && attrs["mcp.method.name"] == "tools/call":
			call = s
			if attrs["mcpgate.backend"] != "vsphere" || attrs["mcpgate.endpoint"] != "mcp" || s.SpanKind != trace.SpanKindClient {
				t.Errorf("backend span: kind %v attributes %v", s.SpanKind, attrs)
			}
		case s.Name == "backend k8s" && attrs["mcp.method.name"] == "tools/call":
			failed = s
		}
	}
	if call == nil || failed == nil {
		var names []string
		for _, s := range spans {
			names = append(names, s.Name)
		}
		t.Fatalf("spans %v: no tools/call span of vsphere or of k8s", names)
	}
	if call.Parent.SpanID() != parent.SpanID() || call.SpanContext.TraceID() != parent.TraceID() {
		t.Errorf("vsphere span's parent %v, want the request's span %v", call.Parent.SpanID(), parent.SpanID())
	}
	if call.Status.Code == codes.Error {
		t.Errorf("successful call's span status %+v", call.Status)
	}
	if failed.Status.Code != codes.Error || failed.Status.Description != "backend k8s unavailable" {
		t.Errorf("failed call's span status %+v", failed.Status)
	}
	want := "00-" + call.SpanContext.TraceID().String() + "-" + hex.EncodeToString(func() []byte { id := call.SpanContext.SpanID(); return id[:] }()) + "-01"
	f.vsphere.mu.Lock()
	defer f.vsphere.mu.Unlock()
	if !slices.Contains(f.vsphere.tps, want) {
		t.Errorf("vsphere got traceparents %v, want %s (the backend span's)", f.vsphere.tps, want)
	}
}
