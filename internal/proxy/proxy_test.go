package proxy

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/stdio"
)

// TestRewriteForwardsAnAllowList drives Backend.Forward against a backend
// that records the request headers it gets, on both paths: a POST whose
// body the gateway read (Hop.Body: post) and one through ReverseProxy
// (rewrite), which GET and DELETE take.
func TestRewriteForwardsAnAllowList(t *testing.T) {
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
	}))
	defer srv.Close()

	for _, tc := range []struct {
		name   string
		cfg    BackendConfig
		in     map[string][]string // set on the client request as is (keys may be non-canonical)
		p      *identity.Principal
		want   map[string]string // "" means absent
		exists []string          // must be present, any value
	}{{
		name: "defaults",
		in: map[string][]string{
			"Content-Type": {"application/json"}, "Mcp-Session-Id": {"s1"}, "Last-Event-Id": {"9"},
			"Mcp-Param-Region": {"eu"}, "Traceparent": {"00-1-2-01"},
			"X-Forwarded-User": {"root"}, "Remote-User": {"root"}, "Authorization": {"Bearer client"},
			"Accept-Encoding": {"gzip"}, "Origin": {"https://evil.example"}, "Connection": {"close"},
			// Not canonical (as a hand-built request or a lenient parser may
			// leave it): not on the list, so dropped.
			"x-forwarded-user": {"root"}, "mcp-session-id": {"s2"},
		},
		want: map[string]string{
			"Content-Type": "application/json", "Mcp-Session-Id": "s1", "Last-Event-Id": "9",
			"Mcp-Param-Region": "eu", "Traceparent": "00-1-2-01", "Accept-Encoding": "identity",
			"X-Forwarded-User": "", "Remote-User": "", "Authorization": "", "Origin": "", "Connection": "",
		},
		exists: []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"},
	}, {
		// Hop-by-hop: what the client's Connection header names is for the
		// gateway alone (RFC 9110 §7.6.1), even an allowed header; without
		// a User-Agent the backend gets none (not Go's).
		name: "hop-by-hop",
		in: map[string][]string{
			"Connection": {"keep-alive, Mcp-Session-Id"}, "Mcp-Session-Id": {"s1"}, "Mcp-Protocol-Version": {"2025-06-18"},
			"Te": {"trailers"}, "Keep-Alive": {"timeout=5"}, "Forwarded": {"for=10.0.0.1"}, "X-Forwarded-For": {"10.0.0.1"},
		},
		want: map[string]string{
			"Mcp-Session-Id": "", "Mcp-Protocol-Version": "2025-06-18", "Te": "", "Keep-Alive": "", "Connection": "",
			"Forwarded": "", "X-Forwarded-For": "192.0.2.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "gw.example",
			"User-Agent": "",
		},
	}, {
		// The shape of a stdio backend: a static Authorization credential.
		name: "static credential replaces the client's",
		cfg:  BackendConfig{Credential: CredentialConfig{Type: "static", Header: "Authorization", Value: "Bearer bridge"}},
		in:   map[string][]string{"Authorization": {"Bearer client"}, "X-User": {"root"}},
		want: map[string]string{"Authorization": "Bearer bridge", "X-User": ""},
	}, {
		name: "forward_headers and identity headers",
		cfg: BackendConfig{ForwardHeaders: []string{"x-tenant", "User-Agent"},
			IdentityHeaders: IdentityHeaders{User: "X-Mcp-User", Email: "User-Agent"}},
		in: map[string][]string{"X-Tenant": {"t1"}, "X-Mcp-User": {"root"}, "User-Agent": {"forged@example.com"}},
		p:  &identity.Principal{Subject: "alice"},
		// The principal has no email: the identity header that shares its
		// name with a forwarded one is removed, not left as the client sent it.
		want: map[string]string{"X-Tenant": "t1", "X-Mcp-User": "alice", "User-Agent": ""},
	}, {
		// A stdio bridge learns the user from the gateway alone: a client's
		// copy is replaced, even when forward_headers names it.
		name: "stdio: the gateway names the user",
		cfg: BackendConfig{Stdio: stdio.Config{Command: []string{"srv"}}, ForwardHeaders: []string{stdio.UserHeader},
			Credential: CredentialConfig{Type: "static", Header: "Authorization", Value: "Bearer bridge"}},
		in:   map[string][]string{stdio.UserHeader: {"someone-else"}},
		p:    &identity.Principal{Issuer: "https://idp", Subject: "alice"},
		want: map[string]string{stdio.UserHeader: fmt.Sprintf("%x", sha256.Sum256([]byte("https://idp#alice")))},
	}, {
		name: "stdio without a principal: no user",
		cfg:  BackendConfig{Stdio: stdio.Config{Command: []string{"srv"}}, ForwardHeaders: []string{stdio.UserHeader}},
		in:   map[string][]string{stdio.UserHeader: {"someone-else"}},
		want: map[string]string{stdio.UserHeader: ""},
	}, {
		name: "HTTP backends are not told",
		p:    &identity.Principal{Issuer: "https://idp", Subject: "alice"},
		want: map[string]string{stdio.UserHeader: ""},
	}} {
		for _, path := range []string{"post", "rewrite"} {
			t.Run(tc.name+"/"+path, func(t *testing.T) {
				cfg := tc.cfg
				cfg.Name, cfg.URL = "b", srv.URL+"/mcp"
				cfg.SetDefaults(0)
				b, err := NewBackend(cfg, Options{})
				if err != nil {
					t.Fatal(err)
				}
				req := httptest.NewRequest("POST", "http://gw.example/mcp", strings.NewReader("{}"))
				for k, v := range tc.in {
					req.Header[k] = v
				}
				got = nil
				rec := httptest.NewRecorder()
				hop := Hop{Principal: tc.p}
				if path == "post" {
					hop.Body = []byte("{}")
				}
				b.Forward(rec, req, hop)
				if rec.Code != 200 || got == nil {
					t.Fatalf("status %d, backend reached: %v", rec.Code, got != nil)
				}
				for k, v := range tc.want {
					if g := strings.Join(got.Values(k), ","); g != v {
						t.Errorf("%s = %q, want %q", k, g, v)
					}
				}
				for _, k := range tc.exists {
					if got.Get(k) == "" {
						t.Errorf("%s missing", k)
					}
				}
			})
		}
	}
}
