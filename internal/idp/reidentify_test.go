package idp

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/idp/idptest"
)

func TestStaticReidentify(t *testing.T) {
	ctx := context.Background()
	users := []User{
		{Username: "alice", PasswordHash: hash(t, "pw"), Email: "alice@example.com", Groups: []string{"admins"}},
		{Username: "bob", PasswordHash: hash(t, "pw"), Groups: []string{"readers"}},
	}
	before, _ := New(Config{Type: TypeStatic, Users: users}, Options{Issuer: "https://gw.example.com"})
	alice, err := before.(PasswordConnector).Login(ctx, "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	bob, _ := before.(PasswordConnector).Login(ctx, "bob", "pw")

	// The configuration changes: alice is demoted, bob removed.
	after, _ := New(Config{Type: TypeStatic, Users: []User{
		{Username: "alice", PasswordHash: users[0].PasswordHash, Email: "alice@example.com", Groups: []string{"readers"}},
	}}, Options{Issuer: "https://gw.example.com"})
	id, toks, err := after.Reidentify(ctx, alice, nil)
	if err != nil || toks != nil {
		t.Fatalf("alice: %v %v", err, toks)
	}
	want := &Identity{Issuer: "https://gw.example.com#static", Subject: "alice", Username: "alice", Email: "alice@example.com", EmailVerified: true, Groups: []string{"readers"}}
	if d := cmp.Diff(want, id); d != "" {
		t.Errorf("alice (-want +got):\n%s", d)
	}
	if _, _, err := after.Reidentify(ctx, bob, nil); !errors.Is(err, ErrUserGone) || !SessionEnded(err) {
		t.Errorf("bob removed: err = %v, want ErrUserGone", err)
	}
	// An identity from another issuer (another connector, or another
	// gateway's built-in users) never maps onto a built-in user.
	for _, prev := range []*Identity{
		{Issuer: "https://idp.example.com", Subject: "alice"},
		{Issuer: "https://other.example.com#static", Subject: "alice"},
		nil,
	} {
		if _, _, err := after.Reidentify(ctx, prev, nil); !errors.Is(err, ErrUserGone) {
			t.Errorf("Reidentify(%+v): err = %v, want ErrUserGone", prev, err)
		}
	}
	// allowed_groups is applied again.
	gated, _ := New(Config{Type: TypeStatic, Users: after.(*staticConnector).cfg.Users, AllowedGroups: []string{"admins"}},
		Options{Issuer: "https://gw.example.com"})
	if _, _, err := gated.Reidentify(ctx, alice, nil); !errors.Is(err, ErrNotAllowed) || !SessionEnded(err) {
		t.Errorf("alice outside allowed_groups: err = %v", err)
	}
	if UserKey(&Config{Type: TypeStatic}, "https://gw.example.com", "alice") != alice.Key() {
		t.Errorf("UserKey does not match Identity.Key for a built-in user")
	}
}

func TestOIDCReidentify(t *testing.T) {
	ctx := context.Background()
	login := func(t *testing.T, mod func(*Config), setup func(*idptest.Provider)) (*idptest.Provider, Connector, *Identity, *Tokens) {
		t.Helper()
		p := idptest.New(t)
		p.Set(func(p *idptest.Provider) {
			p.IDTokenClaims = map[string]any{"groups": []string{"admins"}, "preferred_username": "al", "email": "al@example.com", "email_verified": true}
			if setup != nil {
				setup(p)
			}
		})
		c := newOIDCConnector(t, p, mod)
		id, toks, err := runFlow(t, c, "n")
		if err != nil {
			t.Fatal(err)
		}
		if UserKey(&Config{Type: TypeOIDC, Issuer: p.Issuer()}, "https://gw.example.com", "user-1") != id.Key() {
			t.Errorf("UserKey does not match Identity.Key for an OIDC user")
		}
		return p, c, id, toks
	}

	t.Run("groups changed at the IdP", func(t *testing.T) {
		p, c, id, toks := login(t, nil, nil)
		p.Set(func(p *idptest.Provider) { p.IDTokenClaims["groups"] = []string{"readers"} })
		got, nt, err := c.Reidentify(ctx, id, toks)
		if err != nil {
			t.Fatal(err)
		}
		want := *id
		want.Groups = []string{"readers"}
		if d := cmp.Diff(&want, got); d != "" {
			t.Errorf("identity (-want +got):\n%s", d)
		}
		if nt == nil || nt.RefreshToken == toks.RefreshToken || !p.ValidAccessToken(nt.AccessToken) || p.RefreshCount() != 1 {
			t.Errorf("upstream tokens not refreshed and rotated: %+v", nt)
		}
		// The rotated refresh token is the one that works next.
		if _, _, err := c.Reidentify(ctx, got, nt); err != nil {
			t.Errorf("second refresh with the rotated token: %v", err)
		}
	})

	t.Run("no id_token on refresh: old claims are not reused", func(t *testing.T) {
		p, c, id, toks := login(t, nil, func(p *idptest.Provider) { p.NoRefreshIDToken = true })
		p.Set(func(p *idptest.Provider) {
			p.UserInfoClaims = map[string]any{"groups": []string{"readers"}, "email": "al@example.com"}
		})
		got, _, err := c.Reidentify(ctx, id, toks)
		if err != nil {
			t.Fatal(err)
		}
		// Only what userinfo says now: the login id_token's "admins" is gone.
		want := &Identity{Issuer: id.Issuer, Subject: id.Subject, Email: "al@example.com", Groups: []string{"readers"}}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("identity (-want +got):\n%s", d)
		}
	})

	t.Run("allowed_groups and allowed_email_domains re-applied", func(t *testing.T) {
		p, c, id, toks := login(t, func(c *Config) { c.AllowedGroups = []string{"admins"} }, nil)
		p.Set(func(p *idptest.Provider) { p.IDTokenClaims["groups"] = []string{"readers"} })
		_, nt, err := c.Reidentify(ctx, id, toks)
		if !errors.Is(err, ErrNotAllowed) || !SessionEnded(err) {
			t.Errorf("left allowed_groups: err = %v", err)
		}
		if nt == nil || nt.RefreshToken == toks.RefreshToken {
			t.Error("rotated upstream tokens not returned with the error")
		}

		p, c, id, toks = login(t, func(c *Config) { c.AllowedEmailDomains = []string{"example.com"} }, nil)
		p.Set(func(p *idptest.Provider) { p.IDTokenClaims["email"] = "al@elsewhere.example" })
		if _, _, err := c.Reidentify(ctx, id, toks); !errors.Is(err, ErrNotAllowed) {
			t.Errorf("email left the allowed domain: err = %v", err)
		}
	})

	t.Run("upstream session ended", func(t *testing.T) {
		p, c, id, toks := login(t, nil, nil)
		p.RevokeRefreshTokens()
		if _, nt, err := c.Reidentify(ctx, id, toks); !errors.Is(err, ErrRefreshRejected) || !SessionEnded(err) || nt != nil {
			t.Errorf("revoked upstream refresh token: %v %v", nt, err)
		}
	})

	t.Run("subject changed", func(t *testing.T) {
		p, c, id, toks := login(t, nil, nil)
		p.Set(func(p *idptest.Provider) { p.Subject = "user-2" })
		if _, _, err := c.Reidentify(ctx, id, toks); !errors.Is(err, ErrUserGone) {
			t.Errorf("another subject: err = %v", err)
		}
	})

	t.Run("IdP unreachable is transient", func(t *testing.T) {
		p, c, id, toks := login(t, nil, nil)
		p.Server.Close()
		_, _, err := c.Reidentify(ctx, id, toks)
		if err == nil || SessionEnded(err) {
			t.Errorf("unreachable IdP: err = %v, want a transient error", err)
		}
	})

	t.Run("identity of another issuer", func(t *testing.T) {
		_, c, id, toks := login(t, nil, nil)
		other := *id
		other.Issuer = "https://gw.example.com#static"
		for _, tc := range []struct {
			id *Identity
			t  *Tokens
		}{{&other, toks}, {id, nil}, {nil, toks}, {id, &Tokens{}}} {
			if _, _, err := c.Reidentify(ctx, tc.id, tc.t); !errors.Is(err, ErrUserGone) {
				t.Errorf("Reidentify(%v, %v): err = %v", tc.id, tc.t != nil, err)
			}
		}
	})

	t.Run("no upstream refresh token", func(t *testing.T) {
		p, c, id, toks := login(t, nil, func(p *idptest.Provider) { p.NoRefreshToken = true })
		if toks.RefreshToken != "" {
			t.Fatal("the IdP issued a refresh token")
		}
		// Userinfo is read again with the access token in hand.
		p.Set(func(p *idptest.Provider) { p.UserInfoClaims = map[string]any{"groups": []string{"readers"}} })
		got, nt, err := c.Reidentify(ctx, id, toks)
		if err != nil || nt != nil || p.RefreshCount() != 0 {
			t.Fatalf("%v %v", nt, err)
		}
		if d := cmp.Diff([]string{"readers"}, got.Groups); d != "" {
			t.Errorf("groups (-want +got):\n%s", d)
		}
		// Once the access token expired the session is over.
		expired := *toks
		expired.Expiry = time.Now().Add(-time.Second)
		if _, _, err := c.Reidentify(ctx, id, &expired); !errors.Is(err, ErrRefreshRejected) {
			t.Errorf("expired without refresh token: err = %v", err)
		}
	})
}

func TestTokensSessionEnd(t *testing.T) {
	exp := time.Unix(1_900_000_000, 0)
	idt := "e30." + "eyJleHAiOjE5MDAwMDAwMDB9" + ".sig" // {"exp":1900000000}
	tests := []struct {
		name   string
		t      Tokens
		want   time.Time
		wantOK bool
	}{
		{"refreshable", Tokens{RefreshToken: "r", Expiry: exp}, time.Time{}, false},
		{"access token expiry", Tokens{Expiry: exp, IDToken: idt}, exp, true},
		{"id_token exp", Tokens{IDToken: idt}, exp, true},
		{"unknown", Tokens{AccessToken: "a"}, time.Time{}, true},
	}
	for _, tc := range tests {
		end, ok := tc.t.SessionEnd()
		if !end.Equal(tc.want) || ok != tc.wantOK {
			t.Errorf("%s: SessionEnd = %v, %v; want %v, %v", tc.name, end, ok, tc.want, tc.wantOK)
		}
	}
}
