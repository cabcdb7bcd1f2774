package server_test

import (
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/demo"
)

// TestHomePage: GET / tells a person who opens the gateway in a browser the
// MCP URL and where to read on, as an HTML page with the pages' security
// headers, under the Host check; other unknown paths stay 404.
func TestHomePage(t *testing.T) {
	env := startGateway(t, "", demo.Options{})
	base := strings.TrimSuffix(env.url, "/mcp")
	r := do(t, "GET", base+"/", "", "", nil)
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %q", r.status, r.header.Get("Content-Type"))
	}
	for _, want := range []string{
		"<code class=\"host\">" + env.url + "</code>",
		`href="` + base + `/.well-known/oauth-protected-resource/mcp"`,
		`href="https://github.com/mcpgate/mcpgate/tree/main/docs"`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("page lacks %s:\n%s", want, r.body)
		}
	}
	// jwt mode: no authorization server of our own to link.
	if strings.Contains(r.body, "oauth-authorization-server") {
		t.Error("links an authorization server the gateway does not run")
	}
	h := r.header
	if h.Get("X-Frame-Options") != "DENY" || !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") ||
		h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("security headers: %v", h)
	}
	if r := do(t, "GET", base+"/", "", "", map[string]string{"Host": "evil.example.com"}); r.status != 403 {
		t.Errorf("GET / with a foreign Host = %d", r.status)
	}
	if r := do(t, "GET", base+"/nothing-here", "", "", nil); r.status != 404 {
		t.Errorf("GET /nothing-here = %d", r.status)
	}
	if r := do(t, "POST", base+"/", "", "{}", nil); r.status != 405 {
		t.Errorf("POST / = %d", r.status)
	}
}

// TestLoopbackOriginAliases: on a loopback gateway, a browser page opened
// under another loopback name of the same port (localhost vs 127.0.0.1) is
// accepted, as its Host is; foreign origins and other ports are not.
func TestLoopbackOriginAliases(t *testing.T) {
	env := startGateway(t, "", demo.Options{})
	tok := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-admins"}})
	port := env.url[strings.LastIndex(env.url, ":")+1 : strings.LastIndex(env.url, "/")]
	for _, tc := range []struct {
		origin string
		status int
	}{
		{"http://localhost:" + port, 200},
		{"http://127.0.0.1:" + port, 200},
		{"http://[::1]:" + port, 200},
		{"http://localhost:1", 403},
		{"https://localhost:" + port, 403},
		{"http://localhost.evil.example:" + port, 403},
	} {
		r := do(t, "POST", env.url, tok, initBody, map[string]string{"Origin": tc.origin, "Host": "localhost:" + port})
		if r.status != tc.status {
			t.Errorf("Origin %s: %d, want %d: %s", tc.origin, r.status, tc.status, r.body)
		}
	}
}
