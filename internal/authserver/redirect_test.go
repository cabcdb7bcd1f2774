package authserver

import (
	"net/url"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/netguard"
)

func TestMatchRedirectURI(t *testing.T) {
	tests := []struct {
		registered, requested string
		want                  bool
	}{
		{"https://app.example.com/cb", "https://app.example.com/cb", true},
		{"https://app.example.com/cb", "https://app.example.com/cb/", false},
		{"https://app.example.com/cb", "https://app.example.com/cb/x", false},
		{"https://app.example.com/cb", "https://app.example.com:443/cb", false},
		{"https://app.example.com/cb", "https://app.example.com/cb?", false},
		{"https://app.example.com/cb", "https://app.example.com/cb#", false},
		{"https://app.example.com:8443/cb", "https://app.example.com:9443/cb", false},
		{"http://127.0.0.1:8080/cb", "http://127.0.0.1:9090/cb", true},
		{"http://127.0.0.1/cb", "http://127.0.0.1:9090/cb", true},
		{"http://[::1]:8080/cb", "http://[::1]:1/cb", true},
		{"http://localhost:8080/cb", "http://localhost:1234/cb", true},
		{"http://localhost:8080/cb", "http://127.0.0.1:8080/cb", false},
		{"http://127.0.0.1:8080/cb", "http://127.0.0.1:8080/cb#frag", false},
		{"http://127.0.0.1:8080/cb", "http://127.0.0.1:8080/cb/", false},
		{"http://127.0.0.1:8080/cb?a=1", "http://127.0.0.1:9/cb?a=1", true},
		{"http://127.0.0.1:8080/cb?a=1", "http://127.0.0.1:9/cb?a=2", false},
		{"http://127.0.0.1:8080/cb", "http://user@127.0.0.1:9/cb", false},
		{"http://127.0.0.1:8080/cb", "https://127.0.0.1:9/cb", false},
		{"http://127.0.0.1:8080/cb", "http://127.0.0.1.evil.com:8080/cb", false},
		{"cursor://anysphere.cursor-mcp/oauth/callback", "cursor://anysphere.cursor-mcp/oauth/callback", true},
		{"cursor://anysphere.cursor-mcp/oauth/callback", "cursor://anysphere.cursor-mcp:1/oauth/callback", false},
	}
	for _, tc := range tests {
		if got := matchRedirectURI([]string{tc.registered}, tc.requested); got != tc.want {
			t.Errorf("match(%q, %q) = %v, want %v", tc.registered, tc.requested, got, tc.want)
		}
	}
}

func FuzzRedirectURIMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"https://app.example.com/cb", "https://app.example.com/cb"},
		{"http://127.0.0.1:8080/cb", "http://127.0.0.1:9/cb"},
		{"http://localhost/cb?x=1", "http://localhost:1/cb?x=1"},
		{"http://[::1]/cb", "http://[::1]:80/cb#x"},
		{"cursor://a.b/c", "cursor://a.b/c"},
		{"com.example.app:/oauth", "com.example.app:/oauth"},
	} {
		f.Add(s[0], s[1])
	}
	trusted := []string{"cursor"}
	f.Fuzz(func(t *testing.T, registered, requested string) {
		if validateRedirectURI(registered, trusted) != nil {
			return // only validated URIs are ever registered
		}
		if !matchRedirectURI([]string{registered}, requested) || requested == registered {
			return
		}
		// A non-exact match is only the loopback port exception.
		if strings.Contains(requested, "#") {
			t.Fatalf("matched a fragment: %q ~ %q", registered, requested)
		}
		reg, err1 := url.Parse(registered)
		req, err2 := url.Parse(requested)
		if err1 != nil || err2 != nil {
			t.Fatalf("matched unparsable URIs: %q ~ %q", registered, requested)
		}
		if reg.Scheme != "http" || req.Scheme != "http" || !netguard.IsLoopbackHost(req.Hostname()) ||
			reg.Hostname() != req.Hostname() || reg.EscapedPath() != req.EscapedPath() || reg.RawQuery != req.RawQuery || req.User != nil {
			t.Fatalf("non-loopback inexact match: %q ~ %q", registered, requested)
		}
	})
}

func TestValidateRedirectURI(t *testing.T) {
	trusted := []string{"cursor", "vscode"}
	good := []string{"https://a.example/cb", "http://127.0.0.1/cb", "http://[::1]:1/cb", "http://localhost:9/x?y=1",
		"cursor://anysphere.cursor-mcp/oauth/callback", "com.example.app:/cb", "vscode://x/y"}
	bad := []string{"", "http://a.example/cb", "https://a.example/cb#", "https://*.example/cb", "javascript:alert(1)", "JAVASCRIPT:x",
		"data:text/html,x", "file:///etc/passwd", "myapp://cb", "/relative", "https:///nohost", "https://u@a.example/cb",
		"https://a.example/c b", "https://a.example/\\cb", "https://a.example/cb\x00", "http://127.0.0.1.nip.io/cb"}
	for _, u := range good {
		if err := validateRedirectURI(u, trusted); err != nil {
			t.Errorf("%q rejected: %v", u, err)
		}
	}
	for _, u := range bad {
		if err := validateRedirectURI(u, trusted); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}
