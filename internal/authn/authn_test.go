package authn

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestBearerToken(t *testing.T) {
	tests := []struct {
		name    string
		target  string
		headers []string // Authorization values
		body    string
		want    string
		wantErr error
	}{
		{name: "bearer", target: "/mcp", headers: []string{"Bearer abc.def.ghi"}, want: "abc.def.ghi"},
		{name: "lowercase scheme", target: "/mcp", headers: []string{"bearer abc"}, want: "abc"},
		{name: "uppercase scheme", target: "/mcp", headers: []string{"BEARER abc"}, want: "abc"},
		{name: "extra spaces", target: "/mcp", headers: []string{"Bearer    abc"}, want: "abc"},
		{name: "b64token padding", target: "/mcp", headers: []string{"Bearer a+b/c~d-e_f.g=="}, want: "a+b/c~d-e_f.g=="},
		{name: "no header", target: "/mcp", wantErr: ErrNoToken},
		{name: "basic scheme", target: "/mcp", headers: []string{"Basic dXNlcjpwdw=="}, wantErr: ErrNoToken},
		{name: "bearer prefix without space", target: "/mcp", headers: []string{"Bearerabc"}, wantErr: ErrNoToken},
		{name: "scheme only", target: "/mcp", headers: []string{"Bearer"}, wantErr: ErrInvalidToken},
		{name: "scheme and blanks", target: "/mcp", headers: []string{"Bearer   "}, wantErr: ErrInvalidToken},
		{name: "two tokens", target: "/mcp", headers: []string{"Bearer abc def"}, wantErr: ErrInvalidToken},
		{name: "illegal characters", target: "/mcp", headers: []string{"Bearer ab!c"}, wantErr: ErrInvalidToken},
		{name: "padding in the middle", target: "/mcp", headers: []string{"Bearer ab=c"}, wantErr: ErrInvalidToken},
		{name: "only padding", target: "/mcp", headers: []string{"Bearer =="}, wantErr: ErrInvalidToken},
		{name: "two headers", target: "/mcp", headers: []string{"Bearer abc", "Bearer def"}, wantErr: ErrInvalidToken},
		{name: "query token", target: "/mcp?access_token=abc", wantErr: ErrTokenInQuery},
		{name: "query token with header", target: "/mcp?x=1&access_token=abc", headers: []string{"Bearer abc"}, wantErr: ErrTokenInQuery},
		{name: "escaped query key", target: "/mcp?access%5Ftoken=abc", headers: []string{"Bearer abc"}, wantErr: ErrTokenInQuery},
		{name: "malformed query still checked", target: "/mcp?%zz&access_token=abc", headers: []string{"Bearer abc"}, wantErr: ErrTokenInQuery},
		{name: "other query is fine", target: "/mcp?session=access_token", headers: []string{"Bearer abc"}, want: "abc"},
		{name: "form body token ignored", target: "/mcp", body: "access_token=abc", wantErr: ErrNoToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, tc.target, strings.NewReader(tc.body))
			if tc.body != "" {
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			for _, h := range tc.headers {
				r.Header.Add("Authorization", h)
			}
			got, err := BearerToken(r)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || got != "" {
					t.Fatalf("got %q, %v; want error %v", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestIsB64Token: the RFC 6750 §2.1 syntax that inbound bearer tokens and
// the backend credentials the gateway sends (internal/credential) share.
func TestIsB64Token(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"abc.def.ghi", true},
		{"a+b/c~d-e_f.g", true},
		{"AZaz09", true},
		{"abc==", true},
		{"", false},
		{"==", false},
		{"ab=c", false},
		{"a b", false},
		{"ab!c", false},
		{"tok\r\nX-Admin: 1", false},
		{"tok\x00", false},
		{"t\u00e9", false},
	} {
		if got := IsB64Token(tc.s); got != tc.want {
			t.Errorf("IsB64Token(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

func TestDescribe(t *testing.T) {
	secret := "eyJhbGciOi.secret-detail"
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{ErrNoToken, 401, ""},
		{ErrTokenInQuery, 400, "invalid_request"},
		{fmt.Errorf("%w: audience %q", ErrInvalidToken, secret), 401, "invalid_token"},
		{fmt.Errorf("%w: GET https://idp/jwks: %s", ErrUnavailable, secret), 503, ""},
		{errors.New("unexpected " + secret), 401, "invalid_token"}, // unknown errors fail closed
	}
	for _, tc := range tests {
		status, code, desc := Describe(tc.err)
		if status != tc.status || code != tc.code {
			t.Errorf("Describe(%v) = %d %q, want %d %q", tc.err, status, code, tc.status, tc.code)
		}
		if strings.Contains(desc, "secret") || strings.Contains(desc, "eyJ") {
			t.Errorf("Describe(%v) leaks detail: %q", tc.err, desc)
		}
	}
}

func TestCheckEndpoint(t *testing.T) {
	for _, tc := range []struct {
		raw          string
		allowPrivate bool
		wantErr      string
	}{
		{"https://auth.example.com/realms/x", false, ""},
		{"http://auth.example.com", false, "plain http"},
		{"http://auth.example.com", true, ""},
		{"https://10.0.0.5/realms/x", false, "private or loopback"},
		{"https://[::1]:8443", false, "private or loopback"},
		{"https://10.0.0.5/realms/x", true, ""},
		{"auth.example.com", false, "absolute https URL"},
		{"ftp://auth.example.com", false, "absolute https URL"},
		{"https://auth.example.com?x=1", false, "query or fragment"},
	} {
		err := checkEndpoint(tc.raw, tc.allowPrivate)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("checkEndpoint(%q, %v) = %v, want %q", tc.raw, tc.allowPrivate, err, tc.wantErr)
		}
	}
}
