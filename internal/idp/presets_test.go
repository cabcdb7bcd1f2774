package idp

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/validate"
)

func TestPresets(t *testing.T) {
	base := Config{Issuer: "https://idp.example.com", ClientID: "c", ClientSecret: "s"}
	tests := []struct {
		name                  string
		mod                   func(*Config)
		scopes                []string
		groups, user, missing string
	}{
		{"dex", func(c *Config) { c.Preset = "dex" }, []string{"openid", "profile", "email", "groups", "offline_access"}, "groups", "preferred_username", ""},
		{"dex without groups scope", func(c *Config) { c.Preset = "dex"; c.Scopes = []string{"openid", "email"} },
			[]string{"openid", "email"}, "groups", "preferred_username", "groups"},
		{"keycloak realm roles", func(c *Config) { c.Preset = "keycloak"; c.GroupsClaim = "realm_access.roles" },
			[]string{"openid", "profile", "email", "offline_access"}, "realm_access.roles", "preferred_username", ""},
		{"entra", func(c *Config) { c.Preset = "entra" }, []string{"openid", "profile", "email", "offline_access"}, "roles", "preferred_username", ""},
		{"okta", func(c *Config) { c.Preset = "okta" }, []string{"openid", "profile", "email", "groups", "offline_access"}, "groups", "preferred_username", ""},
		{"google", func(c *Config) { c.Preset = "google" }, []string{"openid", "profile", "email"}, "groups", "email", ""},
		{"auth0 namespaced claim", func(c *Config) { c.Preset = "auth0"; c.GroupsClaim = "https://example.com/groups" },
			[]string{"openid", "profile", "email", "offline_access"}, "https://example.com/groups", "nickname", ""},
		{"authentik", func(c *Config) { c.Preset = "authentik" }, []string{"openid", "profile", "email", "offline_access"}, "groups", "preferred_username", ""},
		// Without a preset the groups claim defaults to groups, whose scope
		// is not requested unless groups_claim is set explicitly.
		{"no preset", func(c *Config) { c.Type = TypeOIDC }, []string{"openid", "profile", "email"}, "groups", "preferred_username", "groups"},
		{"no preset, groups_claim set", func(c *Config) { c.Type = TypeOIDC; c.GroupsClaim = "groups" },
			[]string{"openid", "profile", "email", "groups"}, "groups", "preferred_username", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.mod(&c)
			c.SetDefaults()
			var p validate.Problems
			c.Validate("upstream", &p)
			if err := p.Err(); err != nil {
				t.Fatal(err)
			}
			if c.Type != TypeOIDC || !cmp.Equal(c.Scopes, tc.scopes) || c.GroupsClaim != tc.groups || c.UsernameClaim != tc.user {
				t.Errorf("type %q scopes %v groups %q username %q", c.Type, c.Scopes, c.GroupsClaim, c.UsernameClaim)
			}
			if got := c.GroupsScopeMissing(); got != tc.missing {
				t.Errorf("GroupsScopeMissing = %q, want %q", got, tc.missing)
			}
		})
	}
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Preset = "ping" }, `upstream.preset: unknown preset "ping": choose one of auth0, authentik, dex, entra, google, keycloak, okta`},
		{func(c *Config) { c.Preset = "dex"; c.Type = TypeStatic }, "upstream.preset: is only valid for type oidc"},
	} {
		c := base
		tc.mod(&c)
		c.SetDefaults()
		var p validate.Problems
		c.Validate("upstream", &p)
		if err := p.Err(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate = %v, want %q", err, tc.want)
		}
	}
}
