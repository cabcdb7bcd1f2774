package server

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// TestPRMDocument pins the RFC 9728 document's bytes as served: the members
// mcpgate fills, in oauthex's order, and nothing it leaves empty.
func TestPRMDocument(t *testing.T) {
	tests := []struct {
		name string
		doc  oauthex.ProtectedResourceMetadata
		want string
	}{
		{"full", oauthex.ProtectedResourceMetadata{
			Resource: "https://mcp.example.com/mcp", AuthorizationServers: []string{"https://idp.example.com"},
			ScopesSupported: []string{"mcp:tools"}, BearerMethodsSupported: []string{"header"}, ResourceName: "mcpgate: demo",
		}, `{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://idp.example.com"],"scopes_supported":["mcp:tools"],"bearer_methods_supported":["header"],"resource_name":"mcpgate: demo"}`},
		{"no authorization server, no scopes", oauthex.ProtectedResourceMetadata{
			Resource: "http://127.0.0.1:8080/mcp", AuthorizationServers: []string{}, BearerMethodsSupported: []string{"header"}, ResourceName: "mcpgate: x",
		}, `{"resource":"http://127.0.0.1:8080/mcp","bearer_methods_supported":["header"],"resource_name":"mcpgate: x"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := prmHandler(tt.doc)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/.well-known/oauth-protected-resource/mcp", nil))
			if rec.Code != http.StatusOK || rec.Body.String() != tt.want {
				t.Errorf("%d %s\nwant %s", rec.Code, rec.Body.String(), tt.want)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			rec = httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/.well-known/oauth-protected-resource/mcp", nil))
			if rec.Code != http.StatusMethodNotAllowed {
				t.Errorf("POST: %d", rec.Code)
			}
		})
	}
}
