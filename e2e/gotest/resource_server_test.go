package gotest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

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
policy:
  roles:
    reader: { tools: ["list_*", "get_*"] }
    admin:  { tools: ["*"] }
  groups:
    mcp-readers: [reader]
    mcp-admins: [admin]
backends:
  - name: demo
    url: %s/mcp
audit: { sink: none }
`, idp.Issuer, base, backend.URL)
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
