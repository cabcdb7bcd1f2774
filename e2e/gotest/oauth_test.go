package gotest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/server/servertest"
)

// authServerConfig is mcpgate as the OAuth 2.1 authorization server,
// federating login to the real IdP.
func authServerConfig(t *testing.T, idp *IdP, backendURL string) func(string) string {
	var k [32]byte
	rand.Read(k[:])
	dir := t.TempDir()
	return func(base string) string {
		return fmt.Sprintf(`
encryption_key: %s
auth:
  mode: authorization_server
  authorization_server:
    scopes: [mcp]
    upstream:
      type: oidc
      issuer: %s
      client_id: mcpgate
      client_secret: mcpgate-secret
      scopes: [openid, profile, email, groups]
      allow_private_issuer: true
%s
backends:
  - name: demo
    url: %s/mcp
store: { driver: sqlite, dsn: %s }
audit: { sink: file, path: %s }
`, base64.StdEncoding.EncodeToString(k[:]), idp.Issuer, readerAdminPolicy, backendURL, filepath.Join(dir, "mcpgate.db"), filepath.Join(dir, "audit.log"))
	}
}

// goSDKOAuthClient connects with the Go SDK's own OAuth handler: discovery
// from the 401, dynamic client registration, PKCE, resource indicator; the
// user's browser is played by headlessLogin.
func goSDKOAuthClient(t *testing.T, mcpURL, user string) *mcp.ClientSession {
	t.Helper()
	const redirect = "http://127.0.0.1:33333/callback"
	h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{
			Metadata: &oauthex.ClientRegistrationMetadata{ClientName: "go-sdk e2e", RedirectURIs: []string{redirect}},
		},
		RedirectURL: redirect,
		AuthorizationCodeFetcher: func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
			u, err := headlessLogin(ctx, args.URL, redirect, user, user+"-pw")
			if err != nil {
				return nil, err
			}
			q := u.Query()
			if e := q.Get("error"); e != "" {
				return nil, fmt.Errorf("authorization error %s: %s", e, q.Get("error_description"))
			}
			return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "go-sdk-e2e", Version: "1"}, nil)
	cs, err := client.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: mcpURL, OAuthHandler: h, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// TestAuthorizationServerWithGoSDK: the official Go SDK client registers with
// mcpgate, logs in through mcpgate at the real upstream IdP, and calls tools
// with the token mcpgate issued; policy follows the IdP's groups.
func TestAuthorizationServerWithGoSDK(t *testing.T) {
	idp := startIdP(t)
	var sawAuth bool
	backend := httptest.NewServer(demo.Handler(demo.Options{OnRequest: func(r *http.Request) {
		sawAuth = sawAuth || r.Header.Get("Authorization") != ""
	}}))
	t.Cleanup(backend.Close)
	base := servertest.Start(t, authServerConfig(t, idp, backend.URL))

	alice := goSDKOAuthClient(t, base+"/mcp", "alice")
	if names := servertest.ToolNames(t, alice); !slices.Contains(names, "delete_vm") {
		t.Errorf("alice tools = %v", names)
	}
	if out, err := servertest.CallText(alice, "power_on_vm", map[string]any{"vm_name": "dev-db"}); err != nil || !strings.Contains(out, "powering on") {
		t.Errorf("alice power_on_vm = %q, %v", out, err)
	}

	bob := goSDKOAuthClient(t, base+"/mcp", "bob")
	names := servertest.ToolNames(t, bob)
	slices.Sort(names)
	if want := []string{"get_vm", "list_vms"}; !slices.Equal(names, want) {
		t.Errorf("bob tools = %v, want %v", names, want)
	}
	if _, err := servertest.CallText(bob, "delete_vm", map[string]any{"vm_name": "web-1"}); err == nil {
		t.Error("bob deleted a VM")
	}
	if sawAuth {
		t.Error("backend received an Authorization header")
	}
}
