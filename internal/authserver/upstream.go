package authserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/idp"
	"github.com/mcpgate/mcpgate/internal/store"
)

var (
	// ErrNoUpstreamToken: the grant has no upstream access token (static
	// users, or a grant that never had one).
	ErrNoUpstreamToken = errors.New("authserver: no upstream token for this session")
	// ErrSessionInvalid: the grant is unknown, expired or revoked.
	ErrSessionInvalid = errors.New("authserver: token session is not active")
	// ErrUpstreamReauth: the IdP refused to refresh; the user must sign in again.
	ErrUpstreamReauth = errors.New("authserver: upstream session expired, sign in again")
)

// UpstreamToken returns the user's upstream (IdP) access token for the token
// session tsid, for credential passthrough to backends (see UpstreamGrantToken).
func (s *Server) UpstreamToken(ctx context.Context, tsid string) (string, error) {
	t, err := s.UpstreamGrantToken(ctx, tsid)
	if err != nil {
		return "", err
	}
	return t.AccessToken, nil
}

// GrantUpstream is a grant's upstream access token, as handed to a backend:
// the token, when it expires (zero: the IdP did not say) and the RFC 8707
// resource the grant was issued for.
type GrantUpstream struct {
	AccessToken string
	Expiry      time.Time
	Resource    string
}

// UpstreamGrantToken returns the upstream access token of the active grant
// tsid. A token within upstream_refresh_skew of its expiry is refreshed
// first: one refresh at a time per grant (in process by lock, across
// replicas by the grant's optimistic version), and the rotated upstream
// refresh token is stored in the same write as the access token. The grant
// is read from the store, so a revocation anywhere takes effect at once.
func (s *Server) UpstreamGrantToken(ctx context.Context, tsid string) (*GrantUpstream, error) {
	g, secrets, err := s.loadGrantSecrets(ctx, tsid)
	if err != nil {
		return nil, err
	}
	if t, ok := s.freshUpstream(g, secrets); ok {
		return t, nil
	}
	unlock := s.upLocks.lock(tsid)
	defer unlock()
	// Another caller may have refreshed while we waited.
	if g, secrets, err = s.loadGrantSecrets(ctx, tsid); err != nil {
		return nil, err
	}
	if t, ok := s.freshUpstream(g, secrets); ok {
		return t, nil
	}
	conn, ok := s.conn.(idp.CallbackConnector)
	if !ok {
		return nil, ErrNoUpstreamToken
	}
	nt, rerr := conn.Refresh(ctx, secrets.Upstream)
	if rerr != nil {
		// Another replica may be refreshing at the same time; with a rotating
		// IdP only one refresh succeeds. Wait briefly for its result.
		if t, ok := s.awaitConcurrentRefresh(ctx, tsid, g.Version); ok {
			return t, nil
		}
		s.log.WarnContext(ctx, "upstream token refresh failed", "tsid", tsid, "err", rerr)
		// Called from the request that needed the token: its own record
		// (same session_id) has the client's address.
		rec := &audit.Record{Event: audit.EventASUpstreamRefreshFailed, Result: audit.ResultError, ClientID: g.ClientID, SessionID: tsid, Resource: g.Resource,
			Reason: "the upstream identity provider could not refresh the user's token"}
		if errors.Is(rerr, idp.ErrRefreshRejected) {
			rec.Reason = "the upstream identity provider rejected the refresh: the user must sign in again"
		}
		_ = s.audit(ctx, s.withStoredIdentity(rec, g.Identity))
		if errors.Is(rerr, idp.ErrRefreshRejected) {
			return nil, ErrUpstreamReauth
		}
		return nil, fmt.Errorf("authserver: upstream refresh: %w", rerr)
	}
	secrets.Upstream = nt
	sealed, err := s.sealJSON(secrets, aad("grant", tsid))
	if err != nil {
		return nil, err
	}
	err = s.st.UpdateGrantUpstream(ctx, tsid, nil, sealed, nt.Expiry, g.Version)
	switch {
	case err == nil:
	case errors.Is(err, store.ErrConflict):
		// Another replica stored a refresh first. Both results are valid
		// access tokens; the stored one carries the refresh token that the
		// IdP will accept next, so do not overwrite it.
		s.log.InfoContext(ctx, "concurrent upstream refresh", "tsid", tsid)
	case errors.Is(err, store.ErrNotFound):
		return nil, ErrSessionInvalid
	default:
		return nil, err
	}
	return &GrantUpstream{AccessToken: nt.AccessToken, Expiry: nt.Expiry, Resource: g.Resource}, nil
}

// awaitConcurrentRefresh waits for a refresh stored by another replica
// and returns its upstream access token.
func (s *Server) awaitConcurrentRefresh(ctx context.Context, tsid string, version int64) (*GrantUpstream, bool) {
	if !s.awaitVersionChange(ctx, tsid, version) {
		return nil, false
	}
	g, secrets, err := s.loadGrantSecrets(ctx, tsid)
	if err != nil {
		return nil, false
	}
	return s.freshUpstream(g, secrets)
}

// awaitVersionChange polls the grant for up to half a second for a refresh
// stored by another replica (the version moves past version).
func (s *Server) awaitVersionChange(ctx context.Context, tsid string, version int64) bool {
	t := time.NewTimer(0)
	defer t.Stop()
	for range 5 {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		g, err := s.st.GetGrant(ctx, tsid)
		if err != nil || g.Revoked {
			return false
		}
		if g.Version != version {
			return true
		}
		t.Reset(125 * time.Millisecond)
	}
	return false
}

func (s *Server) loadGrantSecrets(ctx context.Context, tsid string) (*store.Grant, *grantSecrets, error) {
	g, secrets, err := s.activeGrant(ctx, tsid)
	if errors.Is(err, errGrantInactive) {
		return nil, nil, ErrSessionInvalid
	}
	if err != nil {
		return nil, nil, err
	}
	if secrets.Upstream == nil || secrets.Upstream.AccessToken == "" {
		return nil, nil, ErrNoUpstreamToken
	}
	return g, secrets, nil
}

// errGrantInactive: the grant is unknown or revoked.
var errGrantInactive = errors.New("authserver: grant unknown or revoked")

// activeGrant loads grant tsid and opens its sealed secrets (the upstream
// tokens and the refresh key); errGrantInactive when it is unknown or
// revoked. Refresh (loadGrant) and upstream passthrough (loadGrantSecrets)
// start here.
func (s *Server) activeGrant(ctx context.Context, tsid string) (*store.Grant, *grantSecrets, error) {
	g, err := s.st.GetGrant(ctx, tsid)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, errGrantInactive
	}
	if err != nil {
		return nil, nil, err
	}
	return s.openGrant(g)
}

// openGrant is activeGrant for a grant already read (unknown and expired
// grants are not returned by the store): errGrantInactive when it is
// revoked, else g and its opened secrets.
func (s *Server) openGrant(g *store.Grant) (*store.Grant, *grantSecrets, error) {
	if g.Revoked {
		return nil, nil, errGrantInactive
	}
	var secrets grantSecrets
	if err := s.openJSON(g.UpstreamTokens, aad("grant", g.ID), &secrets); err != nil {
		return nil, nil, fmt.Errorf("authserver: open grant secrets: %w", err)
	}
	return g, &secrets, nil
}

// freshUpstream returns the upstream access token if it is not about to
// expire. A token without a known expiry is used as is.
func (s *Server) freshUpstream(g *store.Grant, secrets *grantSecrets) (*GrantUpstream, bool) {
	t := secrets.Upstream
	if t.Expiry.IsZero() || s.now().Add(s.cfg.UpstreamRefreshSkew).Before(t.Expiry) {
		return &GrantUpstream{AccessToken: t.AccessToken, Expiry: t.Expiry, Resource: g.Resource}, true
	}
	return nil, false
}
