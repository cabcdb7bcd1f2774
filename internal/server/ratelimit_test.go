package server_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/demo"
)

// TestUserRateLimit: calls over the per-user limit get 429 with
// Retry-After, but a body of only replies/notifications is never limited
// (refusing a sampling reply would hang the user's own tool call).
func TestUserRateLimit(t *testing.T) {
	env := startGateway(t, "rate_limit: { per_user: { rps: 0.001, burst: 1 } }\n", demo.Options{})
	tok := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-readers"}})
	r := do(t, "POST", env.url, tok, initBody, nil)
	if r.status != 200 {
		t.Fatalf("initialize: %d", r.status)
	}
	hdr := map[string]string{"Mcp-Session-Id": r.header.Get("Mcp-Session-Id"), "Mcp-Protocol-Version": "2025-11-25"}
	if r := do(t, "POST", env.url, tok, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, hdr); r.status != 202 {
		t.Errorf("notification over the limit: %d, want 202", r.status)
	}
	if r := do(t, "POST", env.url, tok, `{"jsonrpc":"2.0","id":"s1","result":{}}`, hdr); r.status == 429 {
		t.Errorf("reply to a server request was rate limited")
	}
	r = do(t, "POST", env.url, tok, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, hdr)
	if r.status != 429 || r.header.Get("Retry-After") == "" {
		t.Errorf("call over the limit: %d (Retry-After %q), want 429", r.status, r.header.Get("Retry-After"))
	}
}

// TestToolRateLimit: rate_limit.per_tool throttles one tool per user and
// tool: the user's other tools and other users' calls of the same tool go
// on, a call the policy denies uses none of the budget, and the refusal is
// audited.
func TestToolRateLimit(t *testing.T) {
	env := startGateway(t, "rate_limit: { per_tool: [ { tools: [echo, delete_*], rps: 0.001, burst: 1 } ] }\n", demo.Options{})
	session := func(tok string) map[string]string {
		r := do(t, "POST", env.url, tok, initBody, nil)
		if r.status != 200 {
			t.Fatalf("initialize: %d", r.status)
		}
		return map[string]string{"Mcp-Session-Id": r.header.Get("Mcp-Session-Id"), "Mcp-Protocol-Version": "2025-11-25"}
	}
	call := func(tok string, hdr map[string]string, tool string) rawResp {
		return do(t, "POST", env.url, tok, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"`+tool+`","arguments":{"message":"hi","vm_name":"x"}}}`, hdr)
	}
	alice := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-readers"}})
	bob := env.idp.tokenFor(t, "bob", env.url, map[string]any{"groups": []string{"mcp-readers"}})
	ha, hb := session(alice), session(bob)

	// delete_vm is denied to readers: the denial does not use alice's budget
	// for it (nor would an allowed call of it touch echo's).
	if r := call(alice, ha, "delete_vm"); r.status != 403 {
		t.Fatalf("denied tool: %d, want 403", r.status)
	}
	if r := call(alice, ha, "echo"); r.status != 200 {
		t.Fatalf("first echo: %d %s", r.status, r.body)
	}
	r := call(alice, ha, "echo")
	if r.status != 429 || r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "-32029") {
		t.Errorf("second echo: %d (Retry-After %q) %s, want 429 with JSON-RPC -32029", r.status, r.header.Get("Retry-After"), r.body)
	}
	if r := call(alice, ha, "count"); r.status != 200 {
		t.Errorf("another tool of the same user: %d, want 200", r.status)
	}
	if r := call(bob, hb, "echo"); r.status != 200 {
		t.Errorf("another user's echo: %d, want 200", r.status)
	}
	recs := readAuditRecords(t, env.auditPath)
	limited := 0
	for _, rec := range recs {
		if rec.Event == audit.EventRateLimited {
			limited++
			if rec.Tool != "echo" || rec.Subject != "alice" || rec.Status != 429 || rec.Reason != "tool rate limit exceeded" {
				t.Errorf("rate-limited record = %+v", rec)
			}
		}
	}
	if limited != 1 {
		t.Errorf("%d RATE_LIMITED records, want 1", limited)
	}
}

func readAuditRecords(t *testing.T, path string) []audit.Record {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Record
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var rec audit.Record
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("bad audit line %q: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}
