package server

import (
	"slices"
	"testing"

	"github.com/mcpgate/mcpgate/internal/metrics"
)

// Every route of the authorization server, with or without an issuer path,
// maps to a name of the fixed endpoint label set.
func TestASEndpoint(t *testing.T) {
	for route, want := range map[string]string{
		"/.well-known/oauth-authorization-server":        "metadata",
		"/.well-known/openid-configuration/tenant":       "metadata",
		"/tenant/.well-known/oauth-authorization-server": "metadata",
		"/token":             "token",
		"/tenant/token":      "token",
		"/authorize":         "authorize",
		"/callback":          "callback",
		"/login":             "login",
		"/consent":           "consent",
		"/register":          "register",
		"/revoke":            "revoke",
		"/tenant/introspect": "introspect",
		"/jwks":              "jwks",
	} {
		got := asEndpoint(route)
		if got != want {
			t.Errorf("asEndpoint(%q) = %q, want %q", route, got, want)
		}
		if !slices.Contains(metrics.AuthServerEndpoints, got) {
			t.Errorf("asEndpoint(%q) = %q is not in metrics.AuthServerEndpoints", route, got)
		}
	}
}
