package validate

import (
	"slices"
	"testing"
)

func TestIsScopeToken(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"read", true},
		{"api://backend/.default", true},
		{"mcp:tools#x!~", true},
		{"", false},
		{"a b", false},
		{`a"b`, false},
		{`a\b`, false},
		{"a\tb", false},
		{"a\nb", false},
		{"a\x7fb", false},
		{"caf\u00e9", false},
	} {
		if got := IsScopeToken(tc.s); got != tc.want {
			t.Errorf("IsScopeToken(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

func TestScopes(t *testing.T) {
	var p Problems
	Scopes("x.scopes", []string{"ok", "a b", "", "fine"}, &p)
	want := []string{
		`x.scopes[1]: invalid scope "a b" (RFC 6749 §3.3 scope-token)`,
		`x.scopes[2]: invalid scope "" (RFC 6749 §3.3 scope-token)`,
	}
	if !slices.Equal(p.List(), want) {
		t.Errorf("problems %q, want %q", p.List(), want)
	}
}

func TestEndpointURL(t *testing.T) {
	const (
		badURL   = "must be an absolute URL without user info or fragment"
		notHTTPS = "must be https (http only with allow_private_network)"
	)
	for _, tc := range []struct {
		raw       string
		allowHTTP bool
		want      string // "" = no problem
	}{
		{"https://sts.example.com/token", false, ""},
		{"http://10.0.0.1/token", true, ""},
		{"http://sts.example.com/token", false, notHTTPS},
		{"ftp://sts.example.com/token", true, notHTTPS},
		{"/token", false, badURL},
		{"https://user:pw@sts.example.com/token", false, badURL},
		{"https://sts.example.com/token#frag", false, badURL},
		{"https://sts.example.com/%zz", false, badURL},
	} {
		var p Problems
		EndpointURL("u", tc.raw, tc.allowHTTP, &p)
		var want []string
		if tc.want != "" {
			want = []string{"u: " + tc.want}
		}
		if !slices.Equal(p.List(), want) {
			t.Errorf("EndpointURL(%q, %v): %q, want %q", tc.raw, tc.allowHTTP, p.List(), want)
		}
	}
}
