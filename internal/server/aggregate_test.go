package server_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

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
		return fmt.Sprintf(`
auth: { mode: jwt, jwt: { issuers: [ { issuer: %s, audience: %s, allow_private_issuer: true } ] } }
policy:
  roles:
    ops: { backends: { vsphere: { tools: ["*"] }, local: { tools: ["get_*", "count"], prompts: ["*"], resources: ["*"] } } }
    dev: { backends: { local: { tools: ["get_*"] } } }
  groups: { ops: [ops], dev: [dev] }
backends:
  - name: vsphere
    url: %s/mcp
  - name: local
    command: [%q, "-test.run=^$"]
    env: { MCPGATE_TEST_STDIO_SERVER: "1" }
endpoints:
  - path: /all/mcp
    backends: [vsphere, local]
    rename: { vsphere/list_vms: inventory }
audit: { sink: file, path: %s }
`, idp.srv.URL, url, httpDemo.URL, os.Args[0], auditPath)
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
