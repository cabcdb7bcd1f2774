package server

import (
	"net/http/httptest"
	"testing"

	"github.com/mcpgate/mcpgate/internal/config"
)

func TestClientAddrTrustedProxies(t *testing.T) {
	cfg := &config.Config{Security: config.SecurityConfig{TrustedProxies: []string{"10.0.0.0/8", "192.0.2.7"}}}
	cfg.PublicURL = "https://mcp.example.com"
	cfg.Listen = "0.0.0.0:8080"
	e := newEdge(cfg)
	none := newEdge(&config.Config{PublicURL: "https://mcp.example.com", Listen: "0.0.0.0:8080"})
	cases := []struct {
		name, peer, xff, want string
		edge                  *edge
	}{
		{"no trusted proxies: header ignored", "203.0.113.9:5000", "1.2.3.4", "203.0.113.9", none},
		{"untrusted peer: header ignored", "203.0.113.9:5000", "1.2.3.4", "203.0.113.9", e},
		{"trusted peer: client from the header", "10.1.1.1:5000", "1.2.3.4", "1.2.3.4", e},
		{"forged left entries are skipped", "10.1.1.1:5000", "6.6.6.6, 1.2.3.4, 10.2.2.2", "1.2.3.4", e},
		{"single trusted address", "192.0.2.7:443", "1.2.3.4", "1.2.3.4", e},
		{"malformed hop: stop at the last trusted one", "10.1.1.1:5000", "1.2.3.4, not-an-ip", "10.1.1.1", e},
		{"all hops trusted: the leftmost", "10.1.1.1:5000", "10.3.3.3, 10.2.2.2", "10.3.3.3", e},
		{"trusted peer without header", "10.1.1.1:5000", "", "10.1.1.1", e},
		{"IPv6 client", "10.1.1.1:5000", "2001:db8::1", "2001:db8::1", e},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/mcp", nil)
			r.RemoteAddr = tc.peer
			if tc.xff != "" {
				r.Header.Set("X-Forwarded-For", tc.xff)
			}
			if got := tc.edge.clientIP(r); got != tc.want {
				t.Errorf("clientIP = %s, want %s", got, tc.want)
			}
		})
	}
}
