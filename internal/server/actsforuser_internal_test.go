package server

import (
	"testing"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// TestActsForUser: only requests that act for the user at the backend
// need a linked account; initialize, lists, notifications and responses
// do not (they reach the backend without a credential until it is linked).
func TestActsForUser(t *testing.T) {
	for _, tc := range []struct {
		body string
		want bool
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`, true},
		{`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"x"}}`, true},
		{`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///x"}}`, true},
		{`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x"}}]`, true},
		{`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}`, false},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, false},
		{`{"jsonrpc":"2.0","method":"notifications/initialized"}`, false},
		{`{"jsonrpc":"2.0","id":1,"result":{}}`, false},
	} {
		m, err := mcp.Decode([]byte(tc.body))
		if err != nil {
			t.Fatalf("%s: %v", tc.body, err)
		}
		if got := actsForUser(m); got != tc.want {
			t.Errorf("%s: actsForUser = %v, want %v", tc.body, got, tc.want)
		}
	}
}
