package authserver

import (
	"encoding/json"
	"testing"
)

// accessClaims.AppendJSON writes the bytes encoding/json writes, so a
// token's claims do not depend on the signer's encoding path.
func TestAccessClaimsJSON(t *testing.T) {
	full := accessClaims{
		Issuer: "https://gw.example.com", Subject: "sub<&>\"\\", Audience: "https://gw.example.com/mcp", ClientID: "c\u2028",
		Scope: "mcp tools:read", Groups: []string{"admins", "", "g\x00"}, JTI: "j", TSID: "t", IssuedAt: 1767319200, Expiry: -1,
		Email: "a@example.com", EmailVerified: true, Username: "Ünïcödé", Name: "bad \xff utf-8",
	}
	cases := map[string]accessClaims{
		"zero":                 {},
		"full":                 full,
		"empty groups":         {Groups: []string{}},
		"verified, no email":   {EmailVerified: true},
		"only required fields": {Issuer: "i", Subject: "s", Audience: "a", ClientID: "c", JTI: "j", TSID: "t", IssuedAt: 1, Expiry: 2},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			want, err := json.Marshal(&c)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.AppendJSON(nil); string(got) != string(want) {
				t.Errorf("AppendJSON differs from encoding/json:\n got %s\nwant %s", got, want)
			}
		})
	}
}

func FuzzAccessClaimsJSON(f *testing.F) {
	f.Add("sub", "a@b", "g", "Name <x>", int64(1), true)
	f.Add("\xff", "", "\u2029", "", int64(-1), false)
	f.Fuzz(func(t *testing.T, sub, email, group, name string, n int64, verified bool) {
		c := accessClaims{Issuer: name, Subject: sub, Audience: email, ClientID: group, Scope: sub, Groups: []string{group, sub},
			JTI: email, TSID: name, IssuedAt: n, Expiry: -n, Email: email, EmailVerified: verified, Username: group, Name: name}
		want, err := json.Marshal(&c)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.AppendJSON(nil); string(got) != string(want) {
			t.Errorf("AppendJSON differs from encoding/json:\n got %s\nwant %s", got, want)
		}
	})
}

// The token response is appended as encoding/json writes it.
func TestTokenResponseJSON(t *testing.T) {
	for name, r := range map[string]tokenResponse{
		"zero":            {},
		"with refresh":    {AccessToken: "a.b.c", TokenType: "Bearer", ExpiresIn: 900, RefreshToken: "r-_", Scope: "mcp tools:read"},
		"without refresh": {AccessToken: "a.b.c", TokenType: "Bearer", ExpiresIn: 1, Scope: ""},
		"escaped":         {AccessToken: "<&>", Scope: "\"\\\n\xff"},
	} {
		t.Run(name, func(t *testing.T) {
			want, err := json.Marshal(&r)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.appendJSON(nil); string(got) != string(want) {
				t.Errorf("appendJSON differs from encoding/json:\n got %s\nwant %s", got, want)
			}
		})
	}
}
