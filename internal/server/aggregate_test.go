package server_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/server/servertest"
)

// TestAggregatedEndpoint: one URL in front of an HTTP backend and a stdio
// backend. The Go SDK client sees prefixed tools filtered per user by the
// policy's per-backend grants (decided on the original name), calls a tool
// on each backend, gets 403 for a tool the policy denies on that backend,
// gets progress through the aggregate, and every call is audited with the
// backend and the original tool name.
func TestAggregatedEndpoint(t *testing.T) {
	idp := newTestIdP(t)
	httpDemo := httptest.NewServer(demo.Handler(demo.Options{}))
	t.Cleanup(httpDemo.Close)
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	var url string
	servertest.Start(t, func(base string) string {
		url = base + "/all/mcp"
		return jwtGatewayYAML(idp, url, `
  roles:
    ops: { backends: { vsphere: { tools: ["*"] }, local: { tools: ["get_*", "count"], prompts: ["*"], resources: ["*"] } } }
    dev: { backends: { local: { tools: ["get_*"] } } }
  groups: { ops: [ops], dev: [dev] }`, fmt.Sprintf(`
endpoints:
  - path: /all/mcp
    backends: [vsphere, local]
    rename: { vsphere/list_vms: inventory }
audit: { sink: file, path: %s }`, auditPath),
			"{ name: vsphere, url: "+httpDemo.URL+"/mcp }", stdioDemo(""))
	})

	ops := servertest.Connect(t, url, idp.tokenFor(t, "olga", url, map[string]any{"groups": []string{"ops"}}), nil)
	names := servertest.ToolNames(t, ops)
	slices.Sort(names)
	if !slices.Contains(names, "inventory") || !slices.Contains(names, "vsphere__delete_vm") ||
		!slices.Contains(names, "local__get_vm") || !slices.Contains(names, "local__count") ||
		slices.Contains(names, "local__delete_vm") || slices.Contains(names, "vsphere__list_vms") {
		t.Errorf("ops tools = %v", names)
	}
	if out, err := servertest.CallText(ops, "vsphere__get_vm", map[string]any{"vm_name": "web-1"}); err != nil || out != "web-1: poweredOn" {
		t.Errorf("vsphere__get_vm = %q, %v", out, err)
	}
	if out, err := servertest.CallText(ops, "local__get_vm", map[string]any{"vm_name": "dev-db"}); err != nil || out != "dev-db: poweredOff" {
		t.Errorf("local__get_vm = %q, %v", out, err)
	}
	if out, err := servertest.CallText(ops, "inventory", nil); err != nil || !strings.Contains(out, "web-1") {
		t.Errorf("inventory = %q, %v", out, err)
	}
	// Denied on that backend, though the same tool is allowed on the other.
	if _, err := servertest.CallText(ops, "local__delete_vm", map[string]any{"vm_name": "web-1"}); err == nil || !strings.Contains(err.Error(), "delete_vm") {
		t.Errorf("local__delete_vm: %v, want permission denied", err)
	}
	// Progress from the stdio backend reaches the client.
	var steps int
	progress := make(chan struct{}, 10)
	opsP := servertest.Connect(t, url, idp.tokenFor(t, "olga", url, map[string]any{"groups": []string{"ops"}}), &mcp.ClientOptions{
		ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) { progress <- struct{}{} },
	})
	params := &mcp.CallToolParams{Name: "local__count", Arguments: map[string]any{"to": 3}}
	params.SetProgressToken("p1")
	if _, err := opsP.CallTool(context.Background(), params); err != nil {
		t.Fatalf("count: %v", err)
	}
	for len(progress) > 0 {
		<-progress
		steps++
	}
	if steps != 3 {
		t.Errorf("%d progress notifications, want 3", steps)
	}
	// Prompts and resources, routed by name and by URI.
	if r, err := ops.GetPrompt(context.Background(), &mcp.GetPromptParams{Name: "local__vm_report"}); err != nil || len(r.Messages) != 1 {
		t.Errorf("prompt: %v %v", r, err)
	}
	if _, err := ops.ListResources(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if r, err := ops.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "demo://inventory"}); err != nil || len(r.Contents) != 1 {
		t.Errorf("resource: %v %v", r, err)
	}

	dev := servertest.Connect(t, url, idp.tokenFor(t, "dave", url, map[string]any{"groups": []string{"dev"}}), nil)
	names = servertest.ToolNames(t, dev)
	slices.Sort(names)
	if want := []string{"local__get_vm"}; !slices.Equal(names, want) {
		t.Errorf("dev tools = %v, want %v", names, want)
	}
	if _, err := servertest.CallText(dev, "vsphere__get_vm", map[string]any{"vm_name": "web-1"}); err == nil {
		t.Error("dev called a vsphere tool")
	}

	var calls []audit.Record
	for _, rec := range readAudit(t, auditPath) {
		if rec.Method == "tools/call" && (rec.Event == "" || rec.Event == audit.EventPermissionDenied) {
			calls = append(calls, rec)
		}
	}
	want := map[string]string{"vsphere/get_vm": "allow", "local/get_vm": "allow", "vsphere/list_vms": "allow", "local/delete_vm": "deny"}
	for _, rec := range calls {
		k := rec.Backend + "/" + rec.Tool
		if d, ok := want[k]; ok && string(rec.Decision) == d {
			delete(want, k)
		}
	}
	if len(want) > 0 {
		t.Errorf("audit lacks %v; tools/call records: %+v", want, calls)
	}
}

// TestAggregatedBackendFailure: through an aggregated endpoint, with
// tracing on, each backend call is a "backend NAME" span under the
// request's server span and the backend receives that span's traceparent;
// a call to a backend that is down is audited with result error, rpc_error
// -32603 and the reason the client got, the list that left the backend out
// with result error, and calls that worked stay successes. The policy
// scopes tools with "<backend>/*" patterns.
func TestAggregatedBackendFailure(t *testing.T) {
	rc, flush := withTracing(t)
	idp := newTestIdP(t)
	var mu sync.Mutex
	var tps []string
	var k8sDown atomic.Bool
	vsphere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tp := r.Header.Get("Traceparent"); tp != "" {
			mu.Lock()
			tps = append(tps, tp)
			mu.Unlock()
		}
		demo.Handler(demo.Options{Stateless: true}).ServeHTTP(w, r)
	}))
	t.Cleanup(vsphere.Close)
	k8sDemo := demo.Handler(demo.Options{Stateless: true})
	k8s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if k8sDown.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		k8sDemo.ServeHTTP(w, r)
	}))
	t.Cleanup(k8s.Close)
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	var url string
	servertest.Start(t, func(base string) string {
		url = base + "/all/mcp"
		return fmt.Sprintf(`
auth: { mode: jwt, jwt: { issuers: [ { issuer: %s, audience: %s, allow_private_issuer: true } ] } }
policy:
  roles:
    ops: { tools: ["vsphere/*", "k8s/get_*"] }
  groups: { ops: [ops] }
backends:
  - { name: vsphere, url: %s/mcp }
  - { name: k8s, url: %s/mcp }
endpoints:
  - { path: /all/mcp, backends: [vsphere, k8s], timeout: 2s }
audit: { sink: file, path: %s }
`, idp.srv.URL, url, vsphere.URL, k8s.URL, auditPath)
	})
	ops := servertest.Connect(t, url, idp.tokenFor(t, "olga", url, map[string]any{"groups": []string{"ops"}}), nil)
	names := servertest.ToolNames(t, ops)
	if !slices.Contains(names, "vsphere__delete_vm") || !slices.Contains(names, "k8s__get_vm") || slices.Contains(names, "k8s__delete_vm") {
		t.Errorf("tools %v: want vsphere's all, k8s's get_* only", names)
	}
	if out, err := servertest.CallText(ops, "vsphere__get_vm", map[string]any{"vm_name": "web-1"}); err != nil || out != "web-1: poweredOn" {
		t.Fatalf("vsphere__get_vm = %q, %v", out, err)
	}
	k8sDown.Store(true)
	if _, err := servertest.CallText(ops, "k8s__get_vm", map[string]any{"vm_name": "web-1"}); err == nil || !strings.Contains(err.Error(), "backend k8s unavailable") {
		t.Errorf("k8s__get_vm while k8s is down: %v", err)
	}
	if names := servertest.ToolNames(t, ops); slices.Contains(names, "k8s__get_vm") || !slices.Contains(names, "vsphere__get_vm") {
		t.Errorf("tools while k8s is down: %v", names)
	}
	flush()

	t.Run("audit", func(t *testing.T) {
		var vsCall, k8sCall, list *audit.Record
		// The outcome record follows the answer: wait for the second list's.
		var recs []audit.Record
		for range 200 {
			recs = readAudit(t, auditPath)
			n := 0
			for _, r := range recs {
				if r.Method == "tools/list" {
					n++
				}
			}
			if n >= 2 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		for i := range recs {
			r := &recs[i]
			switch {
			case r.Method == "tools/call" && r.Backend == "vsphere":
				vsCall = r
			case r.Method == "tools/call" && r.Backend == "k8s":
				k8sCall = r
			case r.Method == "tools/list":
				list = r // the last one: k8s was down
			}
		}
		if vsCall == nil || k8sCall == nil || list == nil {
			t.Fatalf("records missing: %+v", recs)
		}
		if vsCall.Result != audit.ResultSuccess || vsCall.RPCError != 0 {
			t.Errorf("successful call: result %q rpc_error %d", vsCall.Result, vsCall.RPCError)
		}
		if k8sCall.Result != audit.ResultError || k8sCall.RPCError != -32603 || k8sCall.Reason != "backend k8s unavailable" || k8sCall.Tool != "get_vm" {
			t.Errorf("failed call: %+v", k8sCall)
		}
		if list.Result != audit.ResultError || list.Reason != "backend k8s unavailable" || list.RPCError != 0 || list.Backend != "all-mcp" {
			t.Errorf("list without k8s: %+v", list)
		}
	})
	t.Run("spans", func(t *testing.T) {
		rc.mu.Lock()
		all := slices.Clone(rc.spans)
		rc.mu.Unlock()
		var call, failed *tracepb.Span
		for _, s := range all {
			if strAttr(s, "mcp.method.name") != "tools/call" {
				continue
			}
			switch s.Name {
			case "backend vsphere":
				call = s
			case "backend k8s":
				failed = s
			}
		}
		if call == nil || failed == nil {
			t.Fatalf("no tools/call backend spans: %d spans", len(all))
		}
		spans := rc.waitTrace(t, hex.EncodeToString(call.TraceId), "POST /all/mcp")
		root := spans["POST /all/mcp"]
		if root == nil || string(call.ParentSpanId) != string(root.SpanId) {
			t.Errorf("backend span's parent %x, want the server span (%v)", call.ParentSpanId, spanNames(spans))
		}
		if call.Kind != tracepb.Span_SPAN_KIND_CLIENT || strAttr(call, "mcpgate.backend") != "vsphere" || strAttr(call, "mcpgate.endpoint") != "all-mcp" {
			t.Errorf("backend span: %v %v", call.Kind, call.Attributes)
		}
		if failed.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || failed.Status.GetMessage() != "backend k8s unavailable" {
			t.Errorf("failed call's span status %v", failed.Status)
		}
		want := fmt.Sprintf("00-%x-%x-01", call.TraceId, call.SpanId)
		mu.Lock()
		defer mu.Unlock()
		if !slices.Contains(tps, want) {
			t.Errorf("vsphere got traceparents %v, want %s", tps, want)
		}
	})
}
