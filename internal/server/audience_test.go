package server_test

import (
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/server/servertest"
)

// TestTokenBoundToOneBackend: with two backends, a token minted for one
// backend's resource is refused at the other (RFC 8707 audience binding);
// a token with a generic audience works at both.
func TestTokenBoundToOneBackend(t *testing.T) {
	idp := newTestIdP(t)
	a := httptest.NewServer(demo.Handler(demo.Options{}))
	t.Cleanup(a.Close)
	b := httptest.NewServer(demo.Handler(demo.Options{}))
	t.Cleanup(b.Close)
	base := servertest.Start(t, func(base string) string {
		return jwtGatewayYAML(idp, fmt.Sprintf("[%[1]s/mcp, %[1]s/b/mcp, mcpgate]", base), `{ roles: { all: { tools: ["*"] } }, groups: { g: [all] } }`, "",
			"{ name: a, url: "+a.URL+"/mcp }", "{ name: b, url: "+b.URL+"/mcp, path: /b/mcp }")
	})
	claims := map[string]any{"groups": []string{"g"}}
	forA := idp.token(t, base+"/mcp", claims)
	generic := idp.token(t, "mcpgate", claims)
	cases := []struct {
		name, path, token string
		status            int
	}{
		{"token for a at a", "/mcp", forA, 200},
		{"token for a at b", "/b/mcp", forA, 401},
		{"generic audience at a", "/mcp", generic, 200},
		{"generic audience at b", "/b/mcp", generic, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if r := do(t, "POST", base+tc.path, tc.token, initBody, nil); r.status != tc.status {
				t.Errorf("status = %d, want %d: %s", r.status, tc.status, r.body)
			}
		})
	}
}
