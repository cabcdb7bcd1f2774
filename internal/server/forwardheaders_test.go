package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/demo"
)

// identityHeaders are request headers that authenticating proxies (oauth2-proxy,
// Authelia, Pomerium, cloud load balancers, web servers) set and that a
// backend may trust: a client sending them must not reach the backend.
var identityHeaders = []string{
	"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Preferred-Username", "X-Forwarded-Groups",
	"X-Forwarded-Access-Token", "X-Auth-Request-User", "X-Auth-Request-Email",
	"X-Auth-Request-Preferred-Username", "X-Auth-Request-Groups", "X-Auth-Request-Access-Token",
	"Remote-User", "Remote-Email", "Remote-Groups", "Remote-Name", "X-Remote-User", "X-User", "X-Userinfo",
	"X-Email", "X-Webauth-User", "X-Authenticated-User", "X-Ms-Client-Principal-Name",
	"X-Goog-Authenticated-User-Email", "X-Amzn-Oidc-Identity", "X-Amzn-Oidc-Data",
	"Cf-Access-Authenticated-User-Email", "Cf-Access-Jwt-Assertion", "X-Real-Ip", "X-Client-Ip",
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Original-Url",
	"Proxy-Authorization", "Cookie", "Authorization",
	// The gateway's own identity headers and credential header, forged.
	"X-Mcp-User", "X-Mcp-Groups", "X-Mcp-Email", "X-Backend-Key",
}

// TestForwardedHeadersAreAnAllowList: a backend that records every header it
// receives sees none of the identity headers a client sends, only the MCP
// headers, trace context, User-Agent, the configured forward_headers, and
// what the gateway sets itself.
func TestForwardedHeadersAreAnAllowList(t *testing.T) {
	env := startGateway(t, "", demo.Options{}, func(y string) string {
		return strings.Replace(y, "    url: ", `    identity_headers: { user: X-MCP-User, groups: X-MCP-Groups, email: X-MCP-Email }
    credential: { type: static, header: X-Backend-Key, value: k123 }
    forward_headers: [X-Tenant]
    url: `, 1)
	})
	tok := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-admins", "ops"}, "preferred_username": "alice"})
	const forged = "forged-by-client"
	hdr := map[string]string{
		"Traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "Tracestate": "vendor=x",
		"Baggage": "k=v", "User-Agent": "test-client/1", "X-Tenant": "t1", "X-Not-Listed": forged,
		"Accept-Encoding": "gzip, br", "Mcp-Protocol-Version": "2025-11-25", "Accept-Language": forged,
		"Te": "trailers", "Via": forged, "Mcp-Param-Region": "eu",
	}
	for _, h := range identityHeaders {
		hdr[h] = forged
	}
	delete(hdr, "Authorization") // the bearer token, set by do
	r := do(t, "POST", env.url, tok, initBody, hdr)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	h := env.lastHeaders()
	for name, vs := range h {
		if strings.Contains(strings.Join(vs, ","), forged) {
			t.Errorf("backend received the client's %s: %q", name, vs)
		}
	}
	if strings.Contains(h.Get("Authorization"), tok) {
		t.Error("backend received the client's bearer token")
	}
	want := map[string]string{
		// The gateway's own identity headers and credential.
		"X-Mcp-User": "alice", "X-Mcp-Groups": "mcp-admins,ops", "X-Backend-Key": "k123",
		"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http",
		"X-Forwarded-Host": strings.TrimPrefix(strings.TrimSuffix(env.url, "/mcp"), "http://"),
		"Accept-Encoding":  "identity",
		// What MCP needs, trace context, User-Agent and forward_headers.
		"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
		"Mcp-Protocol-Version": "2025-11-25", "Traceparent": hdr["Traceparent"], "Tracestate": "vendor=x",
		"Baggage": "k=v", "User-Agent": "test-client/1", "X-Tenant": "t1", "Mcp-Param-Region": "eu",
	}
	for k, v := range want {
		if got := strings.Join(h.Values(k), ","); got != v {
			t.Errorf("backend %s = %q, want %q", k, got, v)
		}
	}
	// Nothing else: the set is closed.
	for k := range h {
		if _, ok := want[k]; !ok && k != "Content-Length" {
			t.Errorf("backend received unexpected header %s: %q", k, h[k])
		}
	}
	// The principal has no email: the forged X-MCP-Email is not replaced, it is gone.
	if _, ok := h["X-Mcp-Email"]; ok {
		t.Errorf("backend received X-MCP-Email %q for a principal without email", h.Get("X-Mcp-Email"))
	}
}

// TestBackendErrorsCarryTheCallID: a 502 or 504 answers the client's single
// call with its id (JSON-RPC 2.0 §5), and a batch or notification with null.
func TestBackendErrorsCarryTheCallID(t *testing.T) {
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Slow") != "" {
			// Answers nothing until the gateway gives up (its 504) and hangs
			// up; reading the body lets the server notice that.
			io.Copy(io.Discard, r.Body)
			<-r.Context().Done()
			return
		}
		http.Error(w, "no", http.StatusInternalServerError)
	})
	env := startGatewayTo(t, slow, "", func(y string) string {
		return strings.Replace(y, "    url: ", "    response_header_timeout: 200ms\n    forward_headers: [X-Slow]\n    url: ", 1)
	})
	tok := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-admins"}})
	down := startGateway(t, "", demo.Options{})
	down.backend.Close()
	downTok := down.idp.token(t, down.url, map[string]any{"groups": []string{"mcp-admins"}})

	for _, tc := range []struct {
		name, url, tok, body string
		hdr                  map[string]string
		status               int
		id                   string
	}{
		{"502 number id", down.url, downTok, `{"jsonrpc":"2.0","id":42,"method":"tools/list"}`, nil, 502, "42"},
		{"502 string id", down.url, downTok, `{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"echo"}}`, nil, 502, `"a-1"`},
		{"502 batch", down.url, downTok, `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]`, nil, 502, "null"},
		{"502 notification", down.url, downTok, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil, 502, "null"},
		{"504 id", env.url, tok, `{"jsonrpc":"2.0","id":7,"method":"ping"}`, map[string]string{"X-Slow": "1"}, 504, "7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, "POST", tc.url, tc.tok, tc.body, tc.hdr)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			var msg struct{ ID json.RawMessage }
			if err := json.Unmarshal([]byte(r.body), &msg); err != nil || string(msg.ID) != tc.id {
				t.Errorf("body %s: id %s, want %s (%v)", r.body, msg.ID, tc.id, err)
			}
		})
	}
}
