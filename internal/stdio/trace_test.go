package stdio

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/mcpgate/mcpgate/internal/telemetry"
)

// TestTraceContextInMeta: with tracing on, the traceparent the bridge
// receives (the gateway's backend span) reaches the child in
// params._meta, replacing a client's, beside the client's other _meta
// keys; with tracing off the child's params are what the client sent.
func TestTraceContextInMeta(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	call := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"_meta":{"progressToken":7,"traceparent":"00-11111111111111111111111111111111-2222222222222222-01"},"name":"meta","arguments":{}}}`
	bare := `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"meta","arguments":{}}}`
	cases := []struct {
		name, body string
		on         bool
		want       []string
		notWant    []string
	}{
		{"on, client _meta kept, traceparent replaced", call, true, []string{`"traceparent":"` + tp + `"`, `"tracestate":"k=v"`, `"progressToken":7`}, []string{"1111"}},
		{"on, no _meta", bare, true, []string{`"traceparent":"` + tp + `"`}, nil},
		{"off, as sent", call, false, []string{`"traceparent":"00-1111`}, []string{tp}},
		{"off, nothing invented", bare, false, []string{`"meta":{}`}, []string{"traceparent"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.on {
				tr := telemetry.New(tracetest.NewInMemoryExporter())
				telemetry.Install(tr)
				defer tr.Shutdown(context.Background())
			}
			e := newTestEnv(t, nil)
			id := e.rawSession(t)
			resp := e.do(t, rawReq{method: "POST", session: id, body: tc.body, header: map[string]string{"Traceparent": tp, "Tracestate": "k=v"}})
			events := readEvents(t, resp.Body)
			if len(events) != 1 {
				t.Fatalf("events %q", events)
			}
			for _, w := range tc.want {
				if !strings.Contains(events[0], strings.ReplaceAll(w, `"`, `\"`)) && !strings.Contains(events[0], w) {
					t.Errorf("child saw no %s: %s", w, events[0])
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(events[0], w) {
					t.Errorf("child saw %s: %s", w, events[0])
				}
			}
		})
	}
}

func TestAddTraceMetaLeavesOddParamsAlone(t *testing.T) {
	for _, params := range []string{`[1,2]`, `{"_meta":[1]}`, `{"_meta":"x"}`, `"s"`} {
		if _, ok := addTraceMeta([]byte(params), "00-a-b-01", ""); ok {
			t.Errorf("params %s were rewritten", params)
		}
	}
	for _, params := range []string{``, `null`, `{}`, `{"_meta":{}}`} {
		out, ok := addTraceMeta([]byte(params), "00-a-b-01", "")
		if !ok || !strings.Contains(string(out), `"_meta":{"traceparent":"00-a-b-01"}`) {
			t.Errorf("params %q → %s, %v", params, out, ok)
		}
	}
}
