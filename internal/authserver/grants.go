package authserver

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/mcpgate/mcpgate/internal/idp"
	"github.com/mcpgate/mcpgate/internal/store"
)

// GrantInfo is a grant (token session) as an operator sees it: who, which
// client, with what, until when. It holds no secret.
type GrantInfo struct {
	ID        string    `json:"tsid"`
	ClientID  string    `json:"client_id"`
	UserKey   string    `json:"user_key"`
	Subject   string    `json:"sub"`
	Username  string    `json:"username,omitempty"`
	Groups    []string  `json:"groups"`
	Scopes    []string  `json:"scopes"`
	Resource  string    `json:"resource"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Revoked   bool      `json:"revoked"`
}

// GrantSelector selects grants by user and client for the operator's
// commands. user is the subject the upstream connector cfg gives the user
// (a built-in user's username; an OIDC subject as `grants list` shows it);
// subjects, not usernames, because an IdP may give a username to another
// person later. Empty values match every grant.
func GrantSelector(cfg *Config, user, clientID string) store.GrantFilter {
	f := store.GrantFilter{ClientID: clientID}
	if user != "" {
		f.UserKey = idp.UserKey(&cfg.Upstream, cfg.PublicURL, user)
	}
	return f
}

// ListGrants returns the unexpired grants f selects, revoked ones included.
// The identity shown is the one of the last sign-in or refresh.
func ListGrants(ctx context.Context, st store.Store, f store.GrantFilter) ([]GrantInfo, error) {
	gs, err := st.ListGrants(ctx, f)
	if err != nil {
		return nil, err
	}
	out := make([]GrantInfo, 0, len(gs))
	for _, g := range gs {
		var id idp.Identity
		if err := json.Unmarshal(g.Identity, &id); err != nil {
			return nil, err
		}
		out = append(out, GrantInfo{
			ID: g.ID, ClientID: g.ClientID, UserKey: g.UserKey, Subject: id.Subject, Username: id.Username,
			Groups: id.Groups, Scopes: g.Scopes, Resource: g.Resource,
			CreatedAt: g.CreatedAt, ExpiresAt: g.ExpiresAt, Revoked: g.Revoked,
		})
	}
	return out, nil
}

// RevokeGrants ends every active grant f selects, as a revocation does
// (endGrant), and returns their IDs. A filter that selects everything is
// refused. Gateways sharing the store refuse the grants' access tokens
// once notified (PostgreSQL: within about a second), at the latest after
// revocation_cache_ttl; their refresh tokens are gone at once.
func RevokeGrants(ctx context.Context, st store.Store, f store.GrantFilter) ([]string, error) {
	if f == (store.GrantFilter{}) {
		return nil, errors.New("authserver: revoking grants needs a user or a client")
	}
	gs, err := st.ListGrants(ctx, f)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, g := range gs {
		if g.Revoked {
			continue
		}
		if err := endGrant(ctx, st, g.ID); err != nil {
			return ids, err
		}
		ids = append(ids, g.ID)
	}
	return ids, nil
}

// endGrant revokes a grant and deletes its refresh tokens; its access
// tokens fail the grant check in Authenticate, on other replicas as soon as
// the change notification reaches them (store.Changes), at the latest
// after revocation_cache_ttl.
func endGrant(ctx context.Context, st store.Store, tsid string) error {
	if err := st.RevokeGrant(ctx, tsid); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err := st.RevokeRefreshTokensForGrant(ctx, tsid); err != nil {
		return err
	}
	// Told after the commit, so a replica that re-reads sees it revoked. A
	// failed notification leaves the TTL as the bound: not an error of
	// the revocation, which holds.
	_ = st.Notify(ctx, store.Change{Kind: store.ChangeGrant, ID: tsid})
	return nil
}
