package authserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/store"
)

// handleRevoke implements RFC 7009. Revoking a refresh token or an access
// token ends the whole grant (our access tokens are JWTs: the grant check
// in Authenticate is what revokes them). Invalid, unknown or foreign tokens
// get 200 as well (§2.2), so the endpoint reveals nothing.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	if err := s.revoke(w, r); err != nil {
		if !isAudited(err) {
			_ = s.audit(r.Context(), refused(&audit.Record{Event: audit.EventASRevocationRefused, ClientID: presentedClientID(r)}, err))
		}
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return invalidRequest("the request body could not be parsed")
	}
	tok, oe := singleValue(r.PostForm, "token")
	if oe != nil {
		return oe
	}
	cl, err := s.authenticateClient(r)
	if err != nil {
		return err
	}
	if tok == "" {
		return invalidRequest("token is required")
	}
	ctx := r.Context()
	grantID, clientID, err := s.lookupToken(ctx, tok)
	if err != nil || grantID == "" || clientID != cl.ID {
		if err == nil {
			_ = s.audit(ctx, &audit.Record{Event: audit.EventASTokenRevoked, ClientID: cl.ID, Status: http.StatusOK,
				Reason: "unknown, expired or another client's token: nothing revoked"})
		}
		return err // nil for unknown or foreign tokens: §2.2 answers 200
	}
	rec := s.withGrant(ctx, &audit.Record{Event: audit.EventASTokenRevoked, Status: http.StatusOK, Reason: "grant revoked by its client"}, grantID)
	if err := s.revokeGrant(ctx, grantID, "revoked by client"); err != nil {
		return err
	}
	// Best effort: a revocation is never held back by the audit log.
	_ = s.audit(ctx, rec)
	return nil
}

// lookupToken finds the grant a token belongs to: a refresh token (by
// hash), else one of our access tokens (signature checked, expiry ignored:
// revoking an expired token is harmless). Unknown tokens give "".
func (s *Server) lookupToken(ctx context.Context, tok string) (grantID, clientID string, err error) {
	rt, err := s.st.GetRefreshToken(ctx, store.TokenHash(tok))
	switch {
	case err == nil:
		return rt.GrantID, rt.ClientID, nil
	case !errors.Is(err, store.ErrNotFound):
		return "", "", err
	}
	if len(tok) > 16<<10 || strings.Count(tok, ".") != 2 {
		return "", "", nil // not a JWT
	}
	claims, err := s.verifier.SignedClaims(ctx, tok)
	if err != nil {
		return "", "", nil
	}
	grantID, _ = claims["tsid"].(string)
	clientID, _ = claims["client_id"].(string)
	return grantID, clientID, nil
}

// introspection is the RFC 7662 §2.2 response.
type introspection struct {
	Active    bool     `json:"active"`
	Scope     string   `json:"scope,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	Username  string   `json:"username,omitempty"`
	TokenType string   `json:"token_type,omitempty"`
	Exp       int64    `json:"exp,omitempty"`
	Iat       int64    `json:"iat,omitempty"`
	Sub       string   `json:"sub,omitempty"`
	Aud       string   `json:"aud,omitempty"`
	Iss       string   `json:"iss,omitempty"`
	JTI       string   `json:"jti,omitempty"`
	TSID      string   `json:"tsid,omitempty"`
	Groups    []string `json:"groups,omitempty"`
	Email     string   `json:"email,omitempty"`
}

// handleIntrospect implements RFC 7662 for confidential clients. Static
// clients (the operator's resource servers) may introspect any token;
// dynamically registered clients only their own. Anything invalid,
// expired, revoked or foreign is {"active": false}.
func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	resp, err := s.introspect(w, r)
	if err != nil {
		_ = s.audit(r.Context(), refused(&audit.Record{Event: audit.EventASIntrospectionRefused, ClientID: presentedClientID(r)}, err))
		s.writeError(w, r, err)
		return
	}
	// ClientID is the caller; the token's own user and session, when it is
	// active, are in the user fields and SessionID.
	rec := &audit.Record{Event: audit.EventASTokenIntrospected, ClientID: presentedClientID(r), Status: http.StatusOK, Reason: "inactive"}
	if resp.Active {
		rec.Reason = fmt.Sprintf("active %s of client %s", resp.TokenType, resp.ClientID)
		rec.Issuer, rec.Subject, rec.Username, rec.User = resp.Iss, resp.Sub, resp.Username, resp.Username
		rec.SessionID, rec.Scope, rec.Resource, rec.Email, rec.Groups = resp.TSID, resp.Scope, resp.Aud, resp.Email, resp.Groups
		if rec.User == "" {
			rec.User = resp.Sub
		}
	}
	if s.audit(r.Context(), rec) != nil {
		s.writeError(w, r, errAuditUnavailable)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) introspect(w http.ResponseWriter, r *http.Request) (*introspection, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return nil, invalidRequest("the request body could not be parsed")
	}
	tok, oe := singleValue(r.PostForm, "token")
	if oe != nil {
		return nil, oe
	}
	cl, err := s.authenticateClient(r)
	if err != nil {
		return nil, err
	}
	if !confidential(cl) {
		return nil, &oauthError{Code: errInvalidClient, Description: "introspection requires client authentication", Status: http.StatusUnauthorized}
	}
	ctx := r.Context()
	inactive := &introspection{Active: false}
	if tok == "" {
		return inactive, nil
	}
	// Operator-configured clients are trusted resource servers.
	allowed := func(clientID string) bool { return cl.Kind == store.ClientKindStatic || clientID == cl.ID }

	// An access token?
	if p, err := s.verify(ctx, tok, ""); err == nil {
		if !allowed(p.ClientID) {
			return inactive, nil
		}
		return &introspection{
			Active: true, Scope: strings.Join(p.Scopes, " "), ClientID: p.ClientID, Username: p.Username,
			TokenType: "Bearer", Exp: p.ExpiresAt.Unix(), Iat: claimInt(p.Claims["iat"]), Sub: p.Subject,
			Aud: p.Audience[0], Iss: p.Issuer, JTI: p.TokenID, TSID: p.SessionID, Groups: p.Groups, Email: p.Email,
		}, nil
	}
	// A current refresh token?
	rt, err := s.st.GetRefreshToken(ctx, store.TokenHash(tok))
	if errors.Is(err, store.ErrNotFound) {
		return inactive, nil
	}
	if err != nil {
		return nil, err
	}
	if !rt.RotatedAt.IsZero() || !allowed(rt.ClientID) {
		return inactive, nil
	}
	g, err := s.st.GetGrant(ctx, rt.GrantID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && g.Revoked) {
		return inactive, nil
	}
	if err != nil {
		return nil, err
	}
	out := &introspection{
		Active: true, Scope: strings.Join(g.Scopes, " "), ClientID: rt.ClientID, TokenType: "refresh_token",
		Exp: rt.ExpiresAt.Unix(), Iat: rt.CreatedAt.Unix(), Aud: g.Resource, Iss: s.issuer, TSID: g.ID,
	}
	var id struct {
		Subject  string `json:"sub"`
		Username string `json:"preferred_username"`
	}
	if json.Unmarshal(g.Identity, &id) == nil {
		out.Sub, out.Username = id.Subject, id.Username
	}
	return out, nil
}

func claimInt(v any) int64 {
	f, _ := v.(float64)
	return int64(f)
}
