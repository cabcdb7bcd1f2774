package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/demo"
)

const initBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`

type rawResp struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, method, url, token, body string, hdr map[string]string) rawResp {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return rawResp{resp.StatusCode, resp.Header, string(b)}
}

func TestEdgeChecks(t *testing.T) {
	env := startGateway(t, `
security:
  cors_origins: ["http://app.example.com"]
  max_body_bytes: 2048
`, demo.Options{})
	tok := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-admins"}})

	cases := []struct {
		name   string
		method string
		body   string
		hdr    map[string]string
		status int
	}{
		{"foreign Host (DNS rebinding)", "POST", initBody, map[string]string{"Host": "evil.example.com"}, 403},
		{"foreign Origin", "POST", initBody, map[string]string{"Origin": "http://evil.example.com"}, 403},
		{"null Origin", "POST", initBody, map[string]string{"Origin": "null"}, 403},
		{"allowed CORS origin", "POST", initBody, map[string]string{"Origin": "http://app.example.com"}, 200},
		{"oversize body", "POST", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"` + strings.Repeat("a", 4096) + `"}}}`, nil, 413},
		{"invalid JSON", "POST", `{"jsonrpc":`, nil, 400},
		{"method not allowed", "PUT", initBody, nil, 405},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := env.seenCount.Load()
			r := do(t, tc.method, env.url, tok, tc.body, tc.hdr)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d: %s", r.status, tc.status, r.body)
			}
			if r.header.Get("X-Content-Type-Options") != "nosniff" {
				t.Error("security headers missing")
			}
			if tc.status != 200 && env.seenCount.Load() != before {
				t.Error("rejected request reached the backend")
			}
		})
	}

	t.Run("CORS preflight", func(t *testing.T) {
		r := do(t, "OPTIONS", env.url, "", "", map[string]string{"Origin": "http://app.example.com", "Access-Control-Request-Method": "POST"})
		if r.status != 204 || r.header.Get("Access-Control-Allow-Origin") != "http://app.example.com" ||
			!strings.Contains(r.header.Get("Access-Control-Allow-Headers"), "Mcp-Session-Id") {
			t.Errorf("preflight: %d %v", r.status, r.header)
		}
		r = do(t, "OPTIONS", env.url, "", "", map[string]string{"Origin": "http://other.example.com", "Access-Control-Request-Method": "POST"})
		if r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Error("CORS granted to an unconfigured origin")
		}
	})

	t.Run("health endpoints accept any Host", func(t *testing.T) {
		base := strings.TrimSuffix(env.url, "/mcp")
		if r := do(t, "GET", base+"/healthz", "", "", map[string]string{"Host": "10.1.2.3:8080"}); r.status != 200 {
			t.Errorf("healthz = %d", r.status)
		}
		if r := do(t, "GET", base+"/readyz", "", "", nil); r.status != 200 {
			t.Errorf("readyz = %d %s", r.status, r.body)
		}
		if r := do(t, "GET", base+"/.well-known/oauth-protected-resource", "", "", map[string]string{"Host": "evil.example.com"}); r.status != 403 {
			t.Errorf("metadata with foreign Host = %d", r.status)
		}
	})
}

func TestSessionBoundToUser(t *testing.T) {
	env := startGateway(t, "", demo.Options{})
	alice := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-admins"}})
	r := do(t, "POST", env.url, alice, initBody, nil)
	sid := r.header.Get("Mcp-Session-Id")
	if r.status != 200 || sid == "" {
		t.Fatalf("initialize: %d %q", r.status, r.body)
	}
	mallory := env.idp.tokenFor(t, "mallory", env.url, map[string]any{"groups": []string{"mcp-admins"}})
	list := `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
	hdr := map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-11-25"}
	if r := do(t, "POST", env.url, mallory, list, hdr); r.status != 404 {
		t.Errorf("another user's session: status %d, want 404", r.status)
	}
	if r := do(t, "POST", env.url, alice, list, hdr); r.status != 200 {
		t.Errorf("owner's session: status %d: %s", r.status, r.body)
	}
}

func TestBackendDown(t *testing.T) {
	env := startGateway(t, "", demo.Options{})
	env.backend.Close()
	tok := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-admins"}})
	r := do(t, "POST", env.url, tok, initBody, nil)
	if r.status != 502 {
		t.Fatalf("status = %d, want 502", r.status)
	}
	var msg struct {
		Error struct {
			Code    int
			Message string
		}
	}
	if err := json.Unmarshal([]byte(r.body), &msg); err != nil || msg.Error.Code != -32603 || strings.Contains(r.body, "127.0.0.1") {
		t.Errorf("body = %s (want a JSON-RPC error without internals)", r.body)
	}
}

func TestIdentityHeadersAndStaticCredential(t *testing.T) {
	env := startGateway(t, "", demo.Options{}, func(y string) string {
		return strings.Replace(y, "    url: ", "    identity_headers: { user: X-MCP-User, groups: X-MCP-Groups }\n    credential: { type: static, header: X-Backend-Key, value: k123 }\n    url: ", 1)
	})
	tok := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-admins", "ops"}, "preferred_username": "alice"})
	r := do(t, "POST", env.url, tok, initBody, map[string]string{"X-MCP-User": "root", "X-Forwarded-For": "1.2.3.4"})
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	h := env.lastHeaders()
	if h.Get("X-MCP-User") != "alice" || h.Get("X-MCP-Groups") != "mcp-admins,ops" || h.Get("X-Backend-Key") != "k123" {
		t.Errorf("backend headers: %v", h)
	}
	if strings.Contains(h.Get("X-Forwarded-For"), "1.2.3.4") {
		t.Errorf("client-supplied X-Forwarded-For passed through: %q", h.Get("X-Forwarded-For"))
	}
}
