package identity

import "testing"

func TestPrincipal(t *testing.T) {
	p := &Principal{Issuer: "https://idp.example.com", Subject: "u1", Scopes: []string{"mcp:read"}}
	if got := p.Key(); got != "https://idp.example.com#u1" {
		t.Errorf("Key = %q", got)
	}
	if !p.HasScope("mcp:read") || p.HasScope("mcp:write") || p.HasScope("") {
		t.Errorf("HasScope wrong for %v", p.Scopes)
	}
	for _, tc := range []struct {
		p    Principal
		want string
	}{
		{Principal{Subject: "s", Email: "e@x", Username: "u"}, "u"},
		{Principal{Subject: "s", Email: "e@x"}, "e@x"},
		{Principal{Subject: "s"}, "s"},
	} {
		if got := tc.p.DisplayName(); got != tc.want {
			t.Errorf("DisplayName(%+v) = %q, want %q", tc.p, got, tc.want)
		}
	}
}
