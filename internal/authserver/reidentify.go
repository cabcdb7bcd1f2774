package authserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/idp"
	"github.com/mcpgate/mcpgate/internal/store"
)

// reidentify resolves the user of grant tsid again at the identity source
// (idp.Connector.Reidentify), so that a refresh never mints an access
// token from the identity saved at login: a built-in user removed from the
// configuration, or one the IdP no longer knows or no longer lets refresh,
// is refused, and changed groups take effect.
//
// What the connector returns is stored in one versioned write: the new
// identity and, when the IdP issued them, the new upstream tokens (sealed;
// a rotated upstream refresh token is stored even when the identity is then
// refused). When the user's session is over the grant is ended and the
// result is invalid_grant; when the IdP could not be asked it is
// temporarily_unavailable (503) and the grant is kept, so the client can
// retry with the same refresh token.
//
// The caller holds s.upLocks for the grant and loaded g and its secrets
// under it (loadGrant), so in this process nothing changed them since.
func (s *Server) reidentify(ctx context.Context, g *store.Grant, secrets *grantSecrets) (*idp.Identity, error) {
	tsid := g.ID
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			var err error
			if g, secrets, err = s.loadGrant(ctx, tsid); err != nil {
				return nil, err
			}
		}
		prev, err := s.idents.decode(g.Identity)
		if err != nil {
			return nil, err
		}
		id, nt, rerr := s.conn.Reidentify(ctx, prev, secrets.Upstream)
		if rerr != nil && nt == nil && attempt == 0 && errors.Is(rerr, idp.ErrRefreshRejected) &&
			secrets.Upstream != nil && secrets.Upstream.RefreshToken != "" && s.awaitVersionChange(ctx, tsid, g.Version) {
			// Another replica refreshed upstream with the same (rotating)
			// refresh token first: try again with the one it stored.
			continue
		}
		if err := s.storeReidentified(ctx, g, secrets, prev, id, nt, rerr == nil); err != nil {
			return nil, err
		}
		switch {
		case rerr == nil:
			return id, nil
		case idp.SessionEnded(rerr):
			return nil, s.revokeLeaked(ctx, &audit.Record{Event: audit.EventASTokenRefused, Method: grantRT, ClientID: g.ClientID, SessionID: g.ID, Resource: g.Resource},
				g.Identity, invalidGrant("the user's sign-in is no longer valid; sign in again"), "identity refused on refresh: "+rerr.Error())
		default:
			s.log.WarnContext(ctx, "identity provider unavailable on refresh", "tsid", tsid, "err", rerr)
			return nil, newError(errTemporarilyUnavailable, http.StatusServiceUnavailable, "the identity provider could not be reached; try again later")
		}
	}
}

// loadGrant reads grant tsid and opens its secrets (activeGrant); a
// missing, expired or revoked grant is invalid_grant.
func (s *Server) loadGrant(ctx context.Context, tsid string) (*store.Grant, *grantSecrets, error) {
	return refreshable(s.activeGrant(ctx, tsid))
}

// refreshable passes on what activeGrant or openGrant returned, with an
// inactive grant as the refresh's invalid_grant.
func refreshable(g *store.Grant, secrets *grantSecrets, err error) (*store.Grant, *grantSecrets, error) {
	if errors.Is(err, errGrantInactive) {
		return nil, nil, invalidGrant("the refresh token is invalid or expired")
	}
	return g, secrets, err
}

// storeReidentified writes what a Reidentify returned: new upstream tokens
// (nt, if any) and, when ok, the identity id if it differs from prev, the
// grant's stored identity (compared as values: most refreshes change
// nothing, and encoding id to compare bytes cost a JSON encoding each).
func (s *Server) storeReidentified(ctx context.Context, g *store.Grant, secrets *grantSecrets, prev, id *idp.Identity, nt *idp.Tokens, ok bool) error {
	var identity []byte
	if ok && !id.Equal(prev) {
		b, err := json.Marshal(id)
		if err != nil {
			return err
		}
		identity = b
	}
	if identity == nil && nt == nil {
		return nil
	}
	sealed, expiry := g.UpstreamTokens, g.UpstreamExpiry
	if nt != nil {
		secrets.Upstream = nt
		var err error
		if sealed, err = s.sealJSON(secrets, aad("grant", g.ID)); err != nil {
			return err
		}
		expiry = nt.Expiry
	}
	err := s.st.UpdateGrantUpstream(ctx, g.ID, identity, sealed, expiry, g.Version)
	switch {
	case err == nil:
	case errors.Is(err, store.ErrConflict):
		// Another replica stored a refresh first; its upstream refresh token
		// is the one the IdP honours next, so keep it (as UpstreamToken does).
		s.log.InfoContext(ctx, "concurrent upstream refresh", "tsid", g.ID)
	case errors.Is(err, store.ErrNotFound):
		return invalidGrant("the refresh token is invalid or expired") // revoked or expired meanwhile
	default:
		return err
	}
	return nil
}
