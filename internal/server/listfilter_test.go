package server_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/demo"
)

// TestListFiltering: list responses are filtered through the policy whether
// the backend answers with SSE or with JSON, and in a batch.
func TestListFiltering(t *testing.T) {
	for _, tc := range []struct {
		name        string
		json        bool
		contentType string
	}{{"sse", false, "text/event-stream"}, {"json", true, "application/json"}} {
		t.Run(tc.name, func(t *testing.T) {
			env := startGateway(t, "", demo.Options{JSONResponse: tc.json})
			reader := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-readers"}})
			r := do(t, "POST", env.url, reader, initBody, nil)
			hdr := map[string]string{"Mcp-Session-Id": r.header.Get("Mcp-Session-Id"), "Mcp-Protocol-Version": "2025-11-25"}
			do(t, "POST", env.url, reader, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, hdr)

			r = do(t, "POST", env.url, reader, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, hdr)
			if !strings.HasPrefix(r.header.Get("Content-Type"), tc.contentType) {
				t.Fatalf("content type %q, want %s", r.header.Get("Content-Type"), tc.contentType)
			}
			got := names(t, r.body)
			if want := []string{"count", "echo", "get_vm", "list_vms"}; !slices.Equal(got, want) {
				t.Errorf("tools = %v, want %v", got, want)
			}
		})
	}
}

// names extracts tool names from a JSON or SSE tools/list response.
func names(t *testing.T, body string) []string {
	t.Helper()
	payload := body
	if strings.Contains(body, "data:") {
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, "data:") {
				payload = strings.TrimSpace(strings.TrimPrefix(line, "data:"))
			}
		}
	}
	var resp struct {
		Result struct{ Tools []struct{ Name string } }
	}
	if err := json.Unmarshal([]byte(payload), &resp); err != nil {
		t.Fatalf("response %q: %v", body, err)
	}
	var out []string
	for _, tool := range resp.Result.Tools {
		out = append(out, tool.Name)
	}
	slices.Sort(out)
	return out
}
