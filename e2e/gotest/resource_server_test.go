package gotest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/server/servertest"
)

// TestResourceServerModeWithRealIdP: mcpgate in jwt mode discovers the real
// IdP, fetches its JWKS and validates tokens it minted for the gateway's
// resource; policy follows the IdP's groups.
func TestResourceServerModeWithRealIdP(t *testing.T) {
	idp := startIdP(t)
	var backendSawAuth bool
	backend := httptest.NewServer(demo.Handler(demo.Options{OnRequest: func(r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			backendSawAuth = true
		}
	}}))
	t.Cleanup(backend.Close)
	base := servertest.Start(t, func(base string) string {
		return fmt.Sprintf(`
auth:
  mode: jwt
  jwt:
    issuers:
      - issuer: %s
        audience: %s/mcp
        require_typ: at+jwt
        allow_private_issuer: true
  scopes_supported: [mcp:tools]
%s
backends:
  - name: demo
    url: %s/mcp
audit: { sink: none }
`, idp.Issuer, base, readerAdminPolicy, backend.URL)
	})
	resource := base + "/mcp"

	t.Run("admin sees and calls everything", func(t *testing.T) {
		cs := servertest.Connect(t, resource, idp.UserToken(t, "alice", resource, "openid groups mcp:tools"), nil)
		names := servertest.ToolNames(t, cs)
		if !slices.Contains(names, "delete_vm") || !slices.Contains(names, "list_vms") {
			t.Errorf("alice tools = %v", names)
		}
		if out, err := servertest.CallText(cs, "delete_vm", map[string]any{"vm_name": "dev-db"}); err != nil || !strings.Contains(out, "deleted") {
			t.Errorf("delete_vm = %q, %v", out, err)
		}
	})
	t.Run("reader sees read tools only and is denied writes", func(t *testing.T) {
		cs := servertest.Connect(t, resource, idp.UserToken(t, "bob", resource, "openid groups mcp:tools"), nil)
		names := servertest.ToolNames(t, cs)
		slices.Sort(names)
		if want := []string{"get_vm", "list_vms"}; !slices.Equal(names, want) {
			t.Errorf("bob tools = %v, want %v", names, want)
		}
		if _, err := servertest.CallText(cs, "power_on_vm", map[string]any{"vm_name": "web-1"}); err == nil {
			t.Error("bob called power_on_vm")
		}
	})
	t.Run("user without groups gets nothing", func(t *testing.T) {
		cs := servertest.Connect(t, resource, idp.UserToken(t, "carol", resource, "openid groups mcp:tools"), nil)
		if names := servertest.ToolNames(t, cs); len(names) != 0 {
			t.Errorf("carol tools = %v", names)
		}
	})
	t.Run("client credentials token", func(t *testing.T) {
		cs := servertest.Connect(t, resource, idp.ClientToken(t, resource, "mcp:tools"), nil)
		if out, err := servertest.CallText(cs, "list_vms", nil); err != nil || !strings.Contains(out, "web-1") {
			t.Errorf("list_vms = %q, %v", out, err)
		}
	})
	t.Run("token for another resource is rejected", func(t *testing.T) {
		tok := idp.UserToken(t, "alice", "http://127.0.0.1:1/other", "openid groups mcp:tools")
		req, _ := http.NewRequest("POST", resource, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("wrong audience: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	})
	if backendSawAuth {
		t.Error("backend received an Authorization header")
	}
}

// TestProtocolRevisionsWithGoSDK: the Go SDK client forced to each MCP
// revision it speaks initializes, lists and calls through mcpgate, with the
// policy applied the same way. 2026-07-28 (server/discover, Mcp-Method and
// Mcp-Name headers, no sessions) is negotiated only by a stateless backend;
// the older revisions use a stateful one.
func TestProtocolRevisionsWithGoSDK(t *testing.T) {
	idp := startIdP(t)
	gateway := func(stateless bool) (url, token string) {
		backend := httptest.NewServer(demo.Handler(demo.Options{Stateless: stateless}))
		t.Cleanup(backend.Close)
		base := servertest.Start(t, func(base string) string {
			return fmt.Sprintf(`
auth: { mode: jwt, jwt: { issuers: [ { issuer: %s, audience: %s/mcp, allow_private_issuer: true } ] } }
policy: { roles: { reader: { tools: ["list_*", "get_*"] } }, groups: { mcp-readers: [reader] } }
backends: [ { name: demo, url: %s/mcp } ]
audit: { sink: none }
`, idp.Issuer, base, backend.URL)
		})
		return base + "/mcp", idp.UserToken(t, "bob", base+"/mcp", "openid groups mcp:tools")
	}
	statefulURL, statefulTok := gateway(false)
	statelessURL, statelessTok := gateway(true)
	for _, v := range []string{"2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"} {
		t.Run(v, func(t *testing.T) {
			url, tok := statefulURL, statefulTok
			if v == "2026-07-28" {
				url, tok = statelessURL, statelessTok
			}
			client := mcp.NewClient(&mcp.Implementation{Name: "rev-" + v, Version: "1"}, nil)
			tr := &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: &http.Client{Transport: servertest.Bearer{Token: tok}}, MaxRetries: -1}
			cs, err := client.Connect(context.Background(), tr, &mcp.ClientSessionOptions{ProtocolVersion: v})
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			defer cs.Close()
			if got := cs.InitializeResult().ProtocolVersion; got != v {
				t.Errorf("negotiated %s, want %s", got, v)
			}
			names := servertest.ToolNames(t, cs)
			slices.Sort(names)
			if want := []string{"get_vm", "list_vms"}; !slices.Equal(names, want) {
				t.Errorf("tools = %v, want %v", names, want)
			}
			if out, err := servertest.CallText(cs, "get_vm", map[string]any{"vm_name": "web-1"}); err != nil || !strings.Contains(out, "web-1") {
				t.Errorf("get_vm = %q, %v", out, err)
			}
			if _, err := servertest.CallText(cs, "delete_vm", map[string]any{"vm_name": "web-1"}); err == nil {
				t.Error("delete_vm allowed")
			}
		})
	}
}
