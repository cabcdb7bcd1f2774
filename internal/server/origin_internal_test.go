package server

import (
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/mcpgate/mcpgate/internal/config"
)

// TestAllowedOriginLoopbackNames: the loopback names allowed as Host are
// allowed as Origin only when the public URL is loopback too.
func TestAllowedOriginLoopbackNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  config.Config
		ok   []string
		no   []string
	}{
		{"loopback", config.Config{Listen: "127.0.0.1:8080", PublicURL: "http://127.0.0.1:8080"},
			[]string{"http://127.0.0.1:8080", "http://localhost:8080", "http://LOCALHOST:8080", "http://[::1]:8080"},
			[]string{"http://localhost:8081", "https://localhost:8080", "http://localhost", "http://evil.example"}},
		{"public name, loopback listener (behind a proxy)", config.Config{Listen: "127.0.0.1:8080", PublicURL: "https://mcp.example.com"},
			[]string{"https://mcp.example.com"},
			[]string{"http://localhost:8080", "http://127.0.0.1:8080", "https://localhost:8080"}},
		{"explicit allowed_hosts", config.Config{Listen: "127.0.0.1:8080", PublicURL: "http://localhost:8080", Security: config.SecurityConfig{AllowedHosts: []string{"localhost:8080", "example.test:8080"}}},
			[]string{"http://localhost:8080"},
			[]string{"http://127.0.0.1:8080", "http://example.test:8080"}},
	} {
		e := newEdge(&tc.cfg)
		for _, o := range append(tc.ok, tc.no...) {
			r := httptest.NewRequest("POST", "/mcp", nil)
			r.Header.Set("Origin", o)
			want := slices.Contains(tc.ok, o)
			if got := e.allowedOrigin(r); got != want {
				t.Errorf("%s: Origin %s allowed = %v, want %v", tc.name, o, got, want)
			}
		}
	}
}
