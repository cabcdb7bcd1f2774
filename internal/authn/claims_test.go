package authn

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func decodeClaims(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestGroupsClaim(t *testing.T) {
	tests := []struct {
		name, path, claims string
		want               []string
	}{
		{"array", "groups", `{"groups":["a","b"]}`, []string{"a", "b"}},
		{"space separated", "groups", `{"groups":"a b  c"}`, []string{"a", "b", "c"}},
		{"comma separated", "groups", `{"groups":"a,b, c"}`, []string{"a", "b", "c"}},
		{"keycloak realm roles", "realm_access.roles", `{"realm_access":{"roles":["admin","user"]}}`, []string{"admin", "user"}},
		{"keycloak client roles", "resource_access.mcp-gw.roles", `{"resource_access":{"mcp-gw":{"roles":["op"]}}}`, []string{"op"}},
		{"cognito colon key", "cognito:groups", `{"cognito:groups":["pool-admins"]}`, []string{"pool-admins"}},
		{"auth0 namespaced key with dots", "https://mcp.example.com/roles", `{"https://mcp.example.com/roles":["r1"]}`, []string{"r1"}},
		{"nested key with dots", "ext.https://x.io/g", `{"ext":{"https://x.io/g":"g1 g2"}}`, []string{"g1", "g2"}},
		{"literal dotted key wins", "a.b", `{"a.b":["lit"],"a":{"b":["nested"]}}`, []string{"lit"}},
		{"non-string elements ignored", "groups", `{"groups":["a",1,null,{"x":1},"b"]}`, []string{"a", "b"}},
		{"missing", "groups", `{"roles":["a"]}`, nil},
		{"path through a non-object", "realm_access.roles", `{"realm_access":"x"}`, nil},
		{"wrong type", "groups", `{"groups":42}`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cc := ClaimsConfig{GroupsClaim: tc.path}
			cc.SetDefaults()
			p := principalFromClaims(decodeClaims(t, tc.claims), &cc)
			if diff := cmp.Diff(tc.want, p.Groups); diff != "" {
				t.Errorf("groups (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUsernameScopesEmail(t *testing.T) {
	tests := []struct {
		name, claims, usernameClaim string
		wantUser                    string
		wantScopes                  []string
		wantVerified                bool
	}{
		{"preferred_username", `{"sub":"s","preferred_username":"alice","email":"a@x","scope":"read write"}`, "", "alice", []string{"read", "write"}, false},
		{"fallback username (Cognito)", `{"sub":"s","username":"bob","email":"b@x"}`, "", "bob", nil, false},
		{"fallback email", `{"sub":"s","email":"c@x","email_verified":true}`, "", "c@x", nil, true},
		{"fallback sub", `{"sub":"s","preferred_username":""}`, "", "s", nil, false},
		{"custom nested claim", `{"sub":"s","ext":{"login":"dora"},"preferred_username":"x"}`, "ext.login", "dora", nil, false},
		{"scp array (Okta)", `{"sub":"s","scp":["a","b"]}`, "", "s", []string{"a", "b"}, false},
		{"scp string (Entra)", `{"sub":"s","scp":"a b"}`, "", "s", []string{"a", "b"}, false},
		{"scope wins over scp", `{"sub":"s","scope":"x","scp":["y"]}`, "", "s", []string{"x"}, false},
		{"email_verified string", `{"sub":"s","email_verified":"true"}`, "", "s", nil, true},
		{"email_verified false string", `{"sub":"s","email_verified":"false"}`, "", "s", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cc := ClaimsConfig{UsernameClaim: tc.usernameClaim}
			cc.SetDefaults()
			p := principalFromClaims(decodeClaims(t, tc.claims), &cc)
			if p.Username != tc.wantUser || p.EmailVerified != tc.wantVerified || !cmp.Equal(p.Scopes, tc.wantScopes) {
				t.Errorf("got user %q scopes %q verified %v; want %q %q %v", p.Username, p.Scopes, p.EmailVerified,
					tc.wantUser, tc.wantScopes, tc.wantVerified)
			}
		})
	}
}

func TestNumericDate(t *testing.T) {
	tests := []struct {
		claims  string
		want    time.Time
		ok, bad bool
	}{
		{`{"exp":1700000000}`, time.Unix(1700000000, 0), true, false},
		{`{"exp":1700000000.5}`, time.Unix(1700000000, 5e8), true, false},
		{`{}`, time.Time{}, false, false},
		{`{"exp":"1700000000"}`, time.Time{}, true, true},
		{`{"exp":-1}`, time.Time{}, true, true},
		{`{"exp":1e300}`, time.Time{}, true, true},
		{`{"exp":null}`, time.Time{}, true, true},
	}
	for _, tc := range tests {
		got, ok, bad := numericDate(decodeClaims(t, tc.claims), "exp")
		if !got.Equal(tc.want) || ok != tc.ok || bad != tc.bad {
			t.Errorf("%s: got %v %v %v, want %v %v %v", tc.claims, got, ok, bad, tc.want, tc.ok, tc.bad)
		}
	}
}
