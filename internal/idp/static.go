package idp

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"

	"golang.org/x/crypto/bcrypt"
)

// staticConnector checks users listed in the configuration.
type staticConnector struct {
	cfg    Config
	issuer string
	users  map[string]User
	// dummy is compared against when the user is unknown, so an unknown
	// user costs the same bcrypt work as a wrong password and usernames
	// cannot be enumerated by timing.
	dummy []byte
}

func newStatic(cfg Config, o Options) (*staticConnector, error) {
	if o.Issuer == "" {
		return nil, fmt.Errorf("idp: static connector needs the issuer")
	}
	c := &staticConnector{cfg: cfg, issuer: staticIssuer(o.Issuer), users: make(map[string]User, len(cfg.Users))}
	cost := bcrypt.DefaultCost
	for _, u := range cfg.Users {
		c.users[u.Username] = u
		if uc, err := bcrypt.Cost([]byte(u.PasswordHash)); err == nil && uc > cost {
			cost = uc
		}
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte(rand.Text()), cost)
	if err != nil {
		return nil, fmt.Errorf("idp: dummy hash: %w", err)
	}
	c.dummy = dummy
	return c, nil
}

func (c *staticConnector) Type() string { return TypeStatic }

func (c *staticConnector) Login(_ context.Context, username, password string) (*Identity, error) {
	u, ok := c.users[username]
	hash := c.dummy
	if ok {
		hash = []byte(u.PasswordHash)
	}
	if err := bcrypt.CompareHashAndPassword(hash, []byte(password)); err != nil || !ok {
		return nil, ErrInvalidCredentials
	}
	return c.identity(u)
}

// Reidentify reads the user from the current configuration: their groups
// and email as configured now, ErrUserGone if they were removed. A changed
// password does not end a session (`mcpgate grants revoke --user` does).
func (c *staticConnector) Reidentify(_ context.Context, prev *Identity, _ *Tokens) (*Identity, *Tokens, error) {
	if prev == nil || prev.Issuer != c.issuer {
		return nil, nil, ErrUserGone
	}
	u, ok := c.users[prev.Subject]
	if !ok {
		return nil, nil, ErrUserGone
	}
	id, err := c.identity(u)
	return id, nil, err
}

// identity describes a configured user, gated by allowed_groups and
// allowed_email_domains.
func (c *staticConnector) identity(u User) (*Identity, error) {
	id := &Identity{
		Issuer:        c.issuer,
		Subject:       u.Username,
		Username:      u.Username,
		Email:         u.Email,
		EmailVerified: u.Email != "", // the operator vouches for configured emails
		Groups:        slices.Clone(u.Groups),
	}
	if err := checkAllowed(&c.cfg, id); err != nil {
		return nil, err
	}
	return id, nil
}
