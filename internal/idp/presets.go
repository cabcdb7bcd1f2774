package idp

import (
	"slices"
	"strings"
)

// preset is what one identity provider needs from an oidc connector: the
// scopes to request and where its claims are. upstream.preset fills the
// keys left unset; keys set explicitly win.
type preset struct {
	Scopes        []string
	GroupsClaim   string // "" leaves the default ("groups")
	UsernameClaim string
	// GroupsScope is the scope without which the IdP never sends the groups
	// claim ("" when the claim does not depend on a scope).
	GroupsScope string
}

// presets by upstream.preset value. Sources: each IdP's OIDC documentation
// (see docs/idp-guides.md).
var presets = map[string]preset{
	// Dex puts groups in the ID token only when the groups scope is
	// requested, and issues refresh tokens only for offline_access.
	"dex": {Scopes: []string{"openid", "profile", "email", "groups", "offline_access"}, GroupsClaim: "groups", GroupsScope: "groups"},
	// Keycloak: a "Group Membership" mapper named groups (full path off);
	// for realm roles set groups_claim: realm_access.roles.
	"keycloak": {Scopes: []string{"openid", "profile", "email", "offline_access"}, GroupsClaim: "groups"},
	// Entra ID: app roles arrive by name in roles (groups holds object IDs);
	// refresh tokens only with offline_access. Entra sends no email_verified.
	"entra": {Scopes: []string{"openid", "profile", "email", "offline_access"}, GroupsClaim: "roles"},
	// Okta: the groups scope and a groups claim (with a filter) on the
	// authorization server; refresh tokens only with offline_access.
	"okta": {Scopes: []string{"openid", "profile", "email", "groups", "offline_access"}, GroupsClaim: "groups", GroupsScope: "groups"},
	// Google has no groups claim and refuses unknown scopes; grant by
	// verified e-mail. It has no preferred_username.
	"google": {Scopes: []string{"openid", "profile", "email"}, UsernameClaim: "email"},
	// Auth0: groups only through an Action adding a namespaced claim, whose
	// name the operator chooses (groups_claim: https://example.com/groups).
	"auth0": {Scopes: []string{"openid", "profile", "email", "offline_access"}, UsernameClaim: "nickname"},
	// Authentik: groups is in its default profile scope mapping.
	"authentik": {Scopes: []string{"openid", "profile", "email", "offline_access"}, GroupsClaim: "groups"},
}

// PresetNames lists the presets, sorted, for messages.
func PresetNames() string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// applyPreset fills what c leaves unset from its preset.
func (c *Config) applyPreset() {
	pr, ok := presets[c.Preset]
	if !ok {
		return
	}
	if c.Type == "" {
		c.Type = TypeOIDC
	}
	if len(c.Scopes) == 0 {
		c.Scopes = slices.Clone(pr.Scopes)
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = pr.GroupsClaim
	}
	if c.UsernameClaim == "" {
		c.UsernameClaim = pr.UsernameClaim
	}
}

// GroupsScopeMissing names the scope without which the IdP never sends the
// groups claim, when it is not among the scopes requested ("" otherwise).
func (c *Config) GroupsScopeMissing() string {
	if c.Type != TypeOIDC {
		return ""
	}
	if pr, ok := presets[c.Preset]; ok {
		if pr.GroupsScope != "" && c.GroupsClaim == pr.GroupsClaim && !slices.Contains(c.Scopes, pr.GroupsScope) {
			return pr.GroupsScope
		}
		return ""
	}
	// No preset: a groups claim named groups is, at Dex, Okta and others,
	// sent only for the groups scope.
	if c.GroupsClaim == "groups" && !slices.Contains(c.Scopes, "groups") {
		return "groups"
	}
	return ""
}
