// Package identity holds the Principal, the authenticated caller of one
// request, as authentication (authn, the built-in authorization server)
// produces it and policy, audit and the proxy consume it.
package identity

import (
	"slices"
	"time"
)

// Principal is the authenticated caller of one request. Identity is keyed on
// Issuer+Subject; Username and Email are for display and audit only.
type Principal struct {
	Issuer        string
	Subject       string
	Username      string
	Email         string
	EmailVerified bool
	Groups        []string
	Scopes        []string
	ClientID      string
	TokenID       string // jti
	SessionID     string // tsid: binds a token issued by our authorization server to stored upstream tokens
	Audience      []string
	ExpiresAt     time.Time
	Claims        map[string]any // raw claims, for argument rules and identity headers
}

// Key is the stable identity of the principal: issuer and subject.
func (p *Principal) Key() string { return p.Issuer + "#" + p.Subject }

// HasScope reports whether the token carries scope s.
func (p *Principal) HasScope(s string) bool { return slices.Contains(p.Scopes, s) }

// DisplayName is the best human-readable name: username, then email, then subject.
func (p *Principal) DisplayName() string {
	switch {
	case p.Username != "":
		return p.Username
	case p.Email != "":
		return p.Email
	}
	return p.Subject
}
