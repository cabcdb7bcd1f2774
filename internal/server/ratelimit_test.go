package server_test

import (
	"testing"

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
