package server_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/server/servertest"
	"github.com/mcpgate/mcpgate/internal/telemetry"
)

// otlpReceiver is an OTLP/HTTP trace receiver (POST /v1/traces,
// application/x-protobuf) that decodes with the official OTLP types.
type otlpReceiver struct {
	srv   *httptest.Server
	mu    sync.Mutex
	spans []*tracepb.Span
	posts int
	flush func() // set by withTracing
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	rc := &otlpReceiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			t.Errorf("receiver: unexpected %s %s (%s)", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
			return
		}
		body, _ := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			t.Errorf("receiver: %v", err)
			http.Error(w, "bad protobuf", http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		rc.posts++
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				rc.spans = append(rc.spans, ss.Spans...)
			}
		}
		rc.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

// trace returns the received spans of trace id (hex) by name.
func (rc *otlpReceiver) trace(id string) map[string]*tracepb.Span {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := map[string]*tracepb.Span{}
	for _, s := range rc.spans {
		if hex.EncodeToString(s.TraceId) == id {
			out[s.Name] = s
		}
	}
	return out
}

// withTracing installs tracing configured by OTEL_* variables pointing at
// a fresh receiver, as `mcpgate serve` does; flush sends what is batched
// (and may be called again: the exporter stops at the test's end).
func withTracing(t *testing.T) (rc *otlpReceiver, flush func()) {
	rc = newOTLPReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rc.srv.URL)
	t.Setenv("OTEL_SERVICE_NAME", "mcpgate-test")
	tr, err := telemetry.Setup(context.Background(), "test", nil)
	if err != nil || tr == nil {
		t.Fatalf("Setup = %v, %v", tr, err)
	}
	telemetry.Install(tr)
	t.Cleanup(func() {
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	rc.flush = func() {
		if err := tr.Flush(context.Background()); err != nil {
			t.Errorf("Flush: %v", err)
		}
	}
	return rc, rc.flush
}

// waitTrace returns the spans of trace id by name once every one of names
// has arrived. A server span ends when its handler returns, which can be
// after the client read the answer it waited for (an SSE stream), so the
// spans are flushed and looked for until they come, for at most 5 s.
func (rc *otlpReceiver) waitTrace(t *testing.T, id string, names ...string) map[string]*tracepb.Span {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		rc.flush()
		spans := rc.trace(id)
		missing := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return spans[n] != nil })
		if len(missing) == 0 || time.Now().After(deadline) {
			return spans
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const echoCall = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"secret-arg"}}}`

func postMCP(t *testing.T, url, token, body, traceparent string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	req.Header.Set("Authorization", "Bearer "+token)
	if traceparent != "" {
		req.Header.Set("Traceparent", traceparent)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// parseTraceparent splits a W3C traceparent into trace id and parent id.
func parseTraceparent(t *testing.T, v string) (traceID, spanID string) {
	t.Helper()
	f := strings.Split(v, "-")
	if len(f) != 4 || f[0] != "00" || len(f[1]) != 32 || len(f[2]) != 16 {
		t.Fatalf("traceparent %q is not W3C version 00", v)
	}
	return f[1], f[2]
}

func auditTraceIDs(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, `"trace_id":"`); i >= 0 {
			ids = append(ids, line[i+len(`"trace_id":"`):][:32])
		}
	}
	return ids
}

// TestTracingToolsCall: one tools/call is one trace whose server span has
// the edge, authn, policy and backend spans as children, in that order;
// the backend receives a traceparent of that trace whose parent is the
// backend span; the audit records and the spans share the trace id; a
// client's traceparent is continued.
func TestTracingToolsCall(t *testing.T) {
	rc, flush := withTracing(t)
	env := startGateway(t, "", demo.Options{Stateless: true})
	token := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-readers"}})

	if resp := postMCP(t, env.url, token, echoCall, ""); resp.StatusCode != 200 {
		t.Fatalf("tools/call: %d", resp.StatusCode)
	}
	tid, parent := parseTraceparent(t, env.lastHeaders().Get("Traceparent"))

	const clientTrace, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	if resp := postMCP(t, env.url, token, echoCall, "00-"+clientTrace+"-"+clientSpan+"-01"); resp.StatusCode != 200 {
		t.Fatalf("tools/call with traceparent: %d", resp.StatusCode)
	}
	tid2, parent2 := parseTraceparent(t, env.lastHeaders().Get("Traceparent"))
	if tid2 != clientTrace || parent2 == clientSpan {
		t.Errorf("backend traceparent = %s/%s, want the client's trace %s with the gateway's span as parent", tid2, parent2, clientTrace)
	}

	// A denied call: a policy span saying so, and no backend span.
	denied := strings.Replace(echoCall, `"echo"`, `"delete_vm"`, 1)
	if resp := postMCP(t, env.url, token, denied, "00-"+strings.Repeat("ab", 16)+"-"+clientSpan+"-01"); resp.StatusCode != 403 {
		t.Fatalf("denied call: %d", resp.StatusCode)
	}
	// Probes are not traced.
	if resp, err := http.Get(strings.TrimSuffix(env.url, "/mcp") + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	flush()
	rc.mu.Lock()
	for _, s := range rc.spans {
		if strings.Contains(s.Name, "healthz") || s.Name == "GET" {
			t.Errorf("a probe was traced: %s", s.Name)
		}
	}
	rc.mu.Unlock()

	for _, tc := range []struct {
		name, trace, parent, cacheHit, backendParent string
	}{
		{"new trace", tid, "", "false", parent},
		{"client's trace", clientTrace, clientSpan, "true", parent2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spans := rc.waitTrace(t, tc.trace, "POST /mcp", "mcpgate.edge", "mcpgate.authn", "mcpgate.policy", "backend demo")
			root := spans["POST /mcp"]
			if root == nil {
				t.Fatalf("no server span in trace %s; got %v", tc.trace, spanNames(spans))
			}
			if root.Kind != tracepb.Span_SPAN_KIND_SERVER || hex.EncodeToString(root.ParentSpanId) != tc.parent {
				t.Errorf("server span kind %v parent %x, want server, parent %q", root.Kind, root.ParentSpanId, tc.parent)
			}
			var prev *tracepb.Span
			for _, name := range []string{"mcpgate.edge", "mcpgate.authn", "mcpgate.policy", "backend demo"} {
				s := spans[name]
				if s == nil {
					t.Fatalf("no span %q in trace; got %v", name, spanNames(spans))
				}
				if string(s.ParentSpanId) != string(root.SpanId) {
					t.Errorf("%s: parent %x, want the server span %x", name, s.ParentSpanId, root.SpanId)
				}
				if prev != nil && s.StartTimeUnixNano < prev.EndTimeUnixNano {
					t.Errorf("%s starts before %s ended", name, prev.Name)
				}
				prev = s
			}
			if got := boolAttr(spans["mcpgate.authn"], "mcpgate.authn.cache_hit"); got != tc.cacheHit {
				t.Errorf("authn cache_hit = %q, want %s", got, tc.cacheHit)
			}
			pol := spans["mcpgate.policy"]
			if strAttr(pol, "mcpgate.policy.decision") != "allow" || strAttr(pol, "mcpgate.tool") != "echo" || strAttr(pol, "mcpgate.policy.rule") == "" {
				t.Errorf("policy span attributes: %v", pol.Attributes)
			}
			be := spans["backend demo"]
			if be.Kind != tracepb.Span_SPAN_KIND_CLIENT || hex.EncodeToString(be.SpanId) != tc.backendParent {
				t.Errorf("backend span %x kind %v; the backend's traceparent names %s", be.SpanId, be.Kind, tc.backendParent)
			}
		})
	}
	t.Run("denied", func(t *testing.T) {
		spans := rc.waitTrace(t, strings.Repeat("ab", 16), "POST /mcp", "mcpgate.policy")
		if pol := spans["mcpgate.policy"]; pol == nil || strAttr(pol, "mcpgate.policy.decision") != "deny" {
			t.Fatalf("policy span of a denied call: %v", pol)
		}
		if spans["backend demo"] != nil {
			t.Error("a denied call has a backend span")
		}
	})
	t.Run("never in spans", func(t *testing.T) {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		for _, s := range rc.spans {
			dump := s.String()
			if strings.Contains(dump, "secret-arg") || strings.Contains(dump, token) || strings.Contains(dump, "Bearer") {
				t.Errorf("span %s carries an argument or a token: %s", s.Name, dump)
			}
		}
	})
	t.Run("audit", func(t *testing.T) {
		ids := auditTraceIDs(t, env.auditPath)
		count := map[string]int{}
		for _, id := range ids {
			count[id]++
		}
		// FORWARD and outcome record of each forwarded call.
		if count[tid] != 2 || count[clientTrace] != 2 || count[strings.Repeat("ab", 16)] != 1 {
			t.Errorf("audit trace ids = %v", count)
		}
	})
}

// TestTracingOff: without OTEL_* variables nothing is exported, the
// client's traceparent reaches the backend unchanged, none is invented,
// and audit records carry no trace id.
func TestTracingOff(t *testing.T) {
	if telemetry.On() {
		t.Fatal("tracing installed by another test")
	}
	env := startGateway(t, "", demo.Options{Stateless: true})
	token := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-readers"}})
	postMCP(t, env.url, token, echoCall, "")
	if got := env.lastHeaders().Get("Traceparent"); got != "" {
		t.Errorf("backend got traceparent %q; the client sent none", got)
	}
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	postMCP(t, env.url, token, echoCall, tp)
	if got := env.lastHeaders().Get("Traceparent"); got != tp {
		t.Errorf("backend got traceparent %q, want the client's %q", got, tp)
	}
	if ids := auditTraceIDs(t, env.auditPath); len(ids) != 0 {
		t.Errorf("audit records carry trace ids with tracing off: %v", ids)
	}
}

func spanNames(m map[string]*tracepb.Span) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func strAttr(s *tracepb.Span, key string) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value.GetStringValue()
		}
	}
	return ""
}

func boolAttr(s *tracepb.Span, key string) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			if _, ok := kv.Value.Value.(*commonpb.AnyValue_BoolValue); ok {
				if kv.Value.GetBoolValue() {
					return "true"
				}
				return "false"
			}
		}
	}
	return ""
}

// TestTracingStdio: through a stdio backend, the bridge call is the
// backend span, and the child receives that span's trace context in the
// tools/call's params._meta.traceparent.
func TestTracingStdio(t *testing.T) {
	rc, flush := withTracing(t)
	idp := newTestIdP(t)
	stdinLog := filepath.Join(t.TempDir(), "stdin.log")
	var url string
	servertest.Start(t, func(base string) string {
		url = base + "/mcp"
		return jwtGatewayYAML(idp, url, readerPolicy, "", stdioDemo("", fmt.Sprintf("MCPGATE_TEST_STDIO_STDIN_LOG: %q", stdinLog)))
	})
	cs := servertest.Connect(t, url, idp.token(t, url, map[string]any{"groups": []string{"readers"}}), nil)
	if out, err := servertest.CallText(cs, "get_vm", map[string]any{"vm_name": "web-1"}); err != nil || out != "web-1: poweredOn" {
		t.Fatalf("get_vm = %q, %v", out, err)
	}
	cs.Close()
	flush()

	data, err := os.ReadFile(stdinLog)
	if err != nil {
		t.Fatal(err)
	}
	var traceparent string
	for _, line := range strings.Split(string(data), "\n") {
		var msg struct {
			Method string `json:"method"`
			Params struct {
				Meta map[string]any `json:"_meta"`
			} `json:"params"`
		}
		if json.Unmarshal([]byte(line), &msg) == nil && msg.Method == "tools/call" {
			traceparent, _ = msg.Params.Meta["traceparent"].(string)
		}
	}
	if traceparent == "" {
		t.Fatalf("the child's tools/call has no _meta.traceparent:\n%s", data)
	}
	tid, parent := parseTraceparent(t, traceparent)
	spans := rc.waitTrace(t, tid, "backend local", "POST /mcp", "mcpgate.policy")
	be := spans["backend local"]
	if be == nil || spans["POST /mcp"] == nil || spans["mcpgate.policy"] == nil {
		t.Fatalf("trace %s of the child's traceparent: spans %v", tid, spanNames(spans))
	}
	if hex.EncodeToString(be.SpanId) != parent {
		t.Errorf("the child's parent span %s is not the bridge call's span %x", parent, be.SpanId)
	}
}
