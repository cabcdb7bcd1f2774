package gotest

import (
	"fmt"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/server/servertest"
)

// TestAggregatedEndpointWithGoSDK: the official Go SDK client on one
// aggregated URL (issue 13) in front of server-everything over stdio and the
// go-sdk demo server over HTTP, with IdP tokens: each user sees the
// prefixed tools the policy grants on each backend, and calls a tool on
// every backend.
func TestAggregatedEndpointWithGoSDK(t *testing.T) {
	idp := startIdP(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not on PATH")
	}
	everything := filepath.Join(e2eDir(t), "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js")
	backend := httptest.NewServer(demo.Handler(demo.Options{}))
	t.Cleanup(backend.Close)
	base := servertest.Start(t, func(base string) string {
		return fmt.Sprintf(`
auth:
  mode: jwt
  jwt:
    issuers:
      - { issuer: %s, audience: %s/mcp, require_typ: at+jwt, allow_private_issuer: true }
  scopes_supported: [mcp:tools]
policy:
  roles:
    reader: { backends: { demo: { tools: ["get_*"] }, everything: { tools: ["echo"] } } }
    admin:  { tools: ["*"] }
  groups:
    mcp-readers: [reader]
    mcp-admins: [admin]
backends:
  - name: demo
    url: %s/mcp
  - name: everything
    command: [%q, %q, stdio]
endpoints:
  - { path: /mcp, backends: [demo, everything] }
audit: { sink: none }
`, idp.Issuer, base, backend.URL, node, everything)
	})
	url := base + "/mcp"

	alice := servertest.Connect(t, url, idp.UserToken(t, "alice", url, "openid groups mcp:tools"), nil)
	names := servertest.ToolNames(t, alice)
	for _, want := range []string{"demo__delete_vm", "demo__get_vm", "everything__echo", "everything__get-sum"} {
		if !slices.Contains(names, want) {
			t.Errorf("alice lacks %s in %v", want, names)
		}
	}
	bob := servertest.Connect(t, url, idp.UserToken(t, "bob", url, "openid groups mcp:tools"), nil)
	names = servertest.ToolNames(t, bob)
	slices.Sort(names)
	if want := []string{"demo__get_vm", "everything__echo"}; !slices.Equal(names, want) {
		t.Errorf("bob's tools = %v, want %v", names, want)
	}
	if out, err := servertest.CallText(bob, "demo__get_vm", map[string]any{"vm_name": "web-1"}); err != nil || out != "web-1: poweredOn" {
		t.Errorf("demo__get_vm = %q, %v", out, err)
	}
	if out, err := servertest.CallText(bob, "everything__echo", map[string]any{"message": "via the aggregate"}); err != nil || !strings.Contains(out, "via the aggregate") {
		t.Errorf("everything__echo = %q, %v", out, err)
	}
	if _, err := servertest.CallText(bob, "demo__delete_vm", map[string]any{"vm_name": "web-1"}); err == nil {
		t.Error("bob called demo__delete_vm")
	}
}
