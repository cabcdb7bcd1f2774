package authserver

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/idp"
	"github.com/mcpgate/mcpgate/internal/jsonenc"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/telemetry"
)

// tokenResponse is RFC 6749 §5.1.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope"`
}

// appendJSON appends r as encoding/json writes it (TestTokenResponseJSON),
// without reflection: one answer per grant.
func (r *tokenResponse) appendJSON(b []byte) []byte {
	b = append(b, '{')
	b = jsonenc.AppendStringField(b, "access_token", r.AccessToken, false)
	b = jsonenc.AppendStringField(b, "token_type", r.TokenType, false)
	b = jsonenc.AppendIntField(b, "expires_in", r.ExpiresIn, false)
	b = jsonenc.AppendStringField(b, "refresh_token", r.RefreshToken, true)
	b = jsonenc.AppendStringField(b, "scope", r.Scope, false)
	return append(b, '}')
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	ctx, span := telemetry.Start(r.Context(), "authserver.token")
	defer span.End()
	if span.IsRecording() {
		r = r.WithContext(ctx) // the store's spans are its children
	}
	resp, err := s.token(w, r)
	if span.IsRecording() {
		traceToken(span, r, err)
	}
	if err != nil {
		if !isAudited(err) {
			_ = s.audit(r.Context(), refused(&audit.Record{
				Event: audit.EventASTokenRefused, Method: bounded(r.PostForm.Get("grant_type"), 64), ClientID: presentedClientID(r),
			}, err))
		}
		s.writeError(w, r, err)
		return
	}
	bp := answerPool.Get().(*[]byte)
	body := resp.appendJSON((*bp)[:0])
	writeJSONBody(w, http.StatusOK, body, "no-store")
	// A Writer keeps nothing of what it was given (io.Writer): the buffer
	// serves the next answer, cleared of this one's tokens.
	clear(body)
	if cap(body) <= maxPooledAnswer {
		*bp = body[:0]
		answerPool.Put(bp)
	}
}

// answerPool holds the buffers token answers are encoded into.
var answerPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// maxPooledAnswer keeps one unusually large answer from pinning its buffer.
const maxPooledAnswer = 16 << 10

// traceToken records the grant type (one of ours, else "other": the
// value is the client's) and the OAuth error code on the token span.
func traceToken(span trace.Span, r *http.Request, err error) {
	grant := r.PostForm.Get("grant_type")
	if grant != grantCode && grant != grantRT {
		grant = "other"
	}
	span.SetAttributes(attribute.String("oauth.grant_type", grant))
	var oe *oauthError
	if errors.As(err, &oe) {
		span.SetAttributes(attribute.String("oauth.error", oe.Code))
		span.SetStatus(codes.Error, oe.Code)
	} else if err != nil {
		span.SetStatus(codes.Error, "token request failed")
	}
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) (*tokenResponse, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if r.URL.RawQuery == "" {
		// The parameters are the body's (r.PostForm, below); with no query
		// there is nothing to merge, and an empty r.Form spares net/http
		// copying every body value into it. A query is still parsed, and a
		// malformed one refused, as before.
		r.Form = url.Values{}
	}
	if err := r.ParseForm(); err != nil {
		return nil, invalidRequest("the request body could not be parsed")
	}
	// Only the body counts (r.PostForm): OAuth token requests are POST bodies.
	for _, k := range []string{"grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "scope"} {
		if _, oe := singleValue(r.PostForm, k); oe != nil {
			return nil, oe
		}
	}
	cl, err := s.authenticateClient(r)
	if err != nil {
		return nil, err
	}
	grant := r.PostForm.Get("grant_type")
	switch grant {
	case grantCode, grantRT:
	case "":
		return nil, invalidRequest("grant_type is required")
	default:
		return nil, newError(errUnsupportedGrantType, http.StatusBadRequest, "supported grant types: authorization_code, refresh_token")
	}
	if !allowsGrant(cl, grant) {
		return nil, newError(errUnauthorizedClient, http.StatusBadRequest, "the client is not registered for this grant type")
	}
	if grant == grantCode {
		return s.exchangeCode(r, cl)
	}
	return s.refresh(r, cl)
}

// exchangeCode implements the authorization_code grant (OAuth 2.1 §4.1.3).
func (s *Server) exchangeCode(r *http.Request, cl *store.Client) (*tokenResponse, error) {
	ctx := r.Context()
	form := r.PostForm
	code, verifier, redirectURI := form.Get("code"), form.Get("code_verifier"), form.Get("redirect_uri")
	if code == "" {
		return nil, invalidRequest("code is required")
	}
	if verifier == "" {
		return nil, invalidRequest("code_verifier is required (PKCE)")
	}
	// The checks run inside the store's redemption so that the code, the
	// grant and its first refresh token change in one write; a refused
	// request still spends the code.
	var (
		rt      string
		rtHash  string
		now     = s.now()
		withRT  = allowsGrant(cl, grantRT)
		granted *store.Grant
	)
	if withRT {
		// Made before the store's write, not in it: the callback below runs
		// while the write holds the store's one writer.
		rt = newToken(now)
		rtHash = store.TokenHash(rt)
	}
	// The verifier's challenge too (RFC 7636 §4.6); the callback compares.
	var challenge string
	pkceShape := len(verifier) >= 43 && len(verifier) <= 128 && validPKCEValue(verifier)
	if pkceShape {
		challenge = pkceS256(verifier)
	}
	ac, err := s.st.RedeemAuthCode(ctx, store.TokenHash(code), func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
		if c.ClientID != cl.ID {
			return nil, nil, invalidGrant("the authorization code was issued to another client")
		}
		if redirectURI != c.RedirectURI {
			return nil, nil, invalidGrant("redirect_uri does not match the authorization request")
		}
		if !pkceShape || subtle.ConstantTimeCompare([]byte(challenge), []byte(c.CodeChallenge)) != 1 {
			return nil, nil, invalidGrant("PKCE verification failed")
		}
		resource, oe := s.resolveResource(form["resource"], c.Resource)
		if oe != nil {
			return nil, nil, oe
		}
		var secrets grantSecrets
		if err := s.openJSON(c.UpstreamTokens, aad("grant", c.GrantID), &secrets); err != nil {
			return nil, nil, err
		}
		g := &store.Grant{
			ID:             c.GrantID,
			ClientID:       cl.ID,
			UserKey:        c.UserKey,
			Resource:       resource,
			Scopes:         c.Scopes,
			Identity:       c.Identity,
			UpstreamTokens: c.UpstreamTokens,
			CreatedAt:      now,
			ExpiresAt:      now.Add(s.cfg.SessionLifetime),
		}
		if secrets.Upstream != nil {
			g.UpstreamExpiry = secrets.Upstream.Expiry
			// An upstream session that cannot be refreshed ends the grant
			// when it ends (unknown: after one access token).
			if end, limited := secrets.Upstream.SessionEnd(); limited {
				if end.IsZero() {
					end = now.Add(s.cfg.AccessTokenLifetime)
				}
				g.ExpiresAt = minTime(g.ExpiresAt, end)
			}
		}
		granted = g
		if !withRT {
			return g, nil, nil
		}
		return g, &store.RefreshToken{
			Hash:      rtHash,
			GrantID:   g.ID,
			ClientID:  cl.ID,
			CreatedAt: now,
			ExpiresAt: s.refreshExpiry(g, now),
		}, nil
	})
	switch {
	case errors.Is(err, store.ErrAlreadyUsed) && ac != nil:
		// RFC 6749 §4.1.2 / OAuth 2.1 §4.1.3: a replayed code means it
		// leaked; revoke everything issued from it. If the first redemption
		// succeeded, its grant exists by now: it was created in the same
		// write that spent the code.
		return nil, s.revokeLeaked(ctx, &audit.Record{Event: audit.EventASCodeReplayed, Method: grantCode, ClientID: cl.ID, SessionID: ac.GrantID},
			ac.Identity, invalidGrant("the authorization code was already used"), "authorization code replayed")
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrAlreadyUsed):
		return nil, invalidGrant("the authorization code is invalid or expired")
	case err != nil:
		return nil, err
	}
	// The identity is decoded after the write, not inside it (the callback
	// runs while the group commit holds the store's one writer); we wrote
	// it at sign-in, so it fails to decode only if the store was damaged.
	id, err := s.idents.decode(granted.Identity)
	if err != nil {
		if rerr := s.revokeGrant(ctx, granted.ID, "stored identity unreadable"); rerr != nil {
			s.log.ErrorContext(ctx, "revoke grant", "tsid", granted.ID, "err", rerr)
		}
		return nil, fmt.Errorf("authserver: stored identity of grant %s: %w", granted.ID, err)
	}
	resp, err := s.issueTokens(ctx, granted, id, granted.Scopes)
	if err != nil {
		return nil, err
	}
	resp.RefreshToken = rt
	// The audit record (AS_TOKEN_ISSUED) is the record of the issuance; this
	// line is for debugging only (a log write per grant costs as much as the
	// audit write; its arguments are not even built at info).
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.DebugContext(ctx, "tokens issued", "grant_type", grantCode, "client_id", cl.ID, "tsid", granted.ID)
	}
	if err := s.auditIssued(ctx, granted, id, resp, audit.EventASCodeRedeemed, audit.EventASTokenIssued); err != nil {
		// Nothing was handed out, and the code is spent: end the grant.
		if rerr := s.revokeGrant(ctx, granted.ID, "tokens could not be recorded"); rerr != nil {
			s.log.ErrorContext(ctx, "revoke unrecorded grant", "tsid", granted.ID, "err", rerr)
		}
		return nil, err
	}
	return resp, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func (s *Server) refreshExpiry(g *store.Grant, now time.Time) time.Time {
	exp := now.Add(s.cfg.RefreshTokenLifetime)
	if !g.ExpiresAt.IsZero() && g.ExpiresAt.Before(exp) {
		exp = g.ExpiresAt
	}
	return exp
}

func (s *Server) issueTokens(ctx context.Context, g *store.Grant, id *idp.Identity, scopes []string) (*tokenResponse, error) {
	at, exp, err := s.mintAccessToken(ctx, g, id, scopes)
	if err != nil {
		return nil, err
	}
	return &tokenResponse{
		AccessToken: at,
		TokenType:   "Bearer",
		ExpiresIn:   max(int64(exp.Sub(s.now()).Seconds()), 1),
		Scope:       strings.Join(scopes, " "),
	}, nil
}

// refresh implements the refresh_token grant with rotation (OAuth 2.1
// §4.3.1, §6.1). Each use of a current token rotates it to a successor.
// Presenting the immediately previous token again within refresh_grace
// returns the same successor (see deriveRefresh) and a new access token,
// so two concurrent refreshes do not end the session. Any other reuse of a
// rotated token means the token family leaked: the whole grant is revoked.
func (s *Server) refresh(r *http.Request, cl *store.Client) (*tokenResponse, error) {
	ctx := r.Context()
	form := r.PostForm
	presented := form.Get("refresh_token")
	if presented == "" {
		return nil, invalidRequest("refresh_token is required")
	}
	hash := store.TokenHash(presented)
	// The token and its grant in one read (issue 15: two reads were a
	// fifth of a refresh's CPU), taken before the grant's lock below.
	mark := s.upLocks.mark()
	rt, g, err := s.st.GetRefreshTokenGrant(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, invalidGrant("the refresh token is invalid or expired")
	}
	if err != nil {
		return nil, err
	}
	if rt.ClientID != cl.ID {
		return nil, invalidGrant("the refresh token was issued to another client")
	}
	// One refresh of a grant at a time in this process, from loading the
	// grant to rotating its token: the identity source (and an upstream
	// refresh token) is used once per refresh, and the grant read here is
	// the one reidentify works from. Across replicas the grant's version
	// decides (see reidentify).
	unlock := s.upLocks.lock(rt.GrantID)
	defer unlock()
	var secrets *grantSecrets
	if s.upLocks.releasedSince(rt.GrantID, mark) {
		// Another holder of this lock (a concurrent refresh, an upstream
		// refresh) may have written the grant after it was read: read it
		// again under the lock.
		g, secrets, err = s.loadGrant(ctx, rt.GrantID)
	} else {
		g, secrets, err = refreshable(s.openGrant(g))
	}
	if err != nil {
		return nil, err
	}
	// Validate the request before rotating, so a bad request does not use
	// up the token.
	scopes := g.Scopes
	if raw := form.Get("scope"); raw != "" {
		req := strings.Fields(raw)
		if !subset(req, g.Scopes) {
			return nil, newError(errInvalidScope, http.StatusBadRequest, "scope exceeds the original grant")
		}
		scopes = req // RFC 6749 §6: narrower access token, same grant
	}
	if _, oe := s.resolveResource(form["resource"], g.Resource); oe != nil {
		return nil, oe
	}
	now := s.now()
	successor := deriveRefresh(secrets.RefreshKey, presented, rt, now)
	succHash := store.TokenHash(successor)
	// A reused token is refused before the identity source is asked.
	if err := s.checkReuse(ctx, rt, g, succHash, now); err != nil {
		return nil, err
	}
	// Never mint from the identity saved at login: ask the identity source
	// again, before rotating, so that a failure to reach it leaves the
	// client's refresh token usable.
	id, err := s.reidentify(ctx, g, secrets)
	if err != nil {
		return nil, err
	}
	if rt.RotatedAt.IsZero() {
		err := s.st.RotateRefreshToken(ctx, hash, &store.RefreshToken{
			Hash:      succHash,
			GrantID:   g.ID,
			ClientID:  cl.ID,
			CreatedAt: now,
			ExpiresAt: s.refreshExpiry(g, now),
		}, now)
		switch {
		case err == nil:
		case errors.Is(err, store.ErrConflict):
			// A concurrent request rotated it first: treat as a reuse.
			if rt, err = s.st.GetRefreshToken(ctx, hash); err != nil {
				return nil, invalidGrant("the refresh token is invalid or expired")
			}
			// Its successor carries the winner's time prefix.
			successor = deriveRefresh(secrets.RefreshKey, presented, rt, now)
			succHash = store.TokenHash(successor)
			if err := s.checkReuse(ctx, rt, g, succHash, now); err != nil {
				return nil, err
			}
		case errors.Is(err, store.ErrNotFound):
			return nil, invalidGrant("the refresh token is invalid or expired")
		default:
			return nil, err
		}
	}
	resp, err := s.issueTokens(ctx, g, id, scopes)
	if err != nil {
		return nil, err
	}
	resp.RefreshToken = successor
	if err := s.auditIssued(ctx, g, id, resp, audit.EventASTokenRefreshed); err != nil {
		// The rotation stands: a retry within refresh_grace gets this successor.
		return nil, err
	}
	return resp, nil
}

// checkReuse lets a rotated refresh token of grant g through only inside
// the grace window (withinGrace); any other reuse revokes the grant.
func (s *Server) checkReuse(ctx context.Context, rt *store.RefreshToken, g *store.Grant, succHash string, now time.Time) error {
	if rt.RotatedAt.IsZero() {
		return nil
	}
	if !s.withinGrace(ctx, rt, succHash, now) {
		return s.revokeLeaked(ctx, &audit.Record{Event: audit.EventASRefreshTokenReused, Method: grantRT, ClientID: rt.ClientID, SessionID: g.ID, Resource: g.Resource},
			g.Identity, invalidGrant("the refresh token was already used"), "refresh token reuse")
	}
	s.log.InfoContext(ctx, "refresh token reused within grace window", "client_id", rt.ClientID, "tsid", g.ID)
	return nil
}

// withinGrace reports whether a rotated token may still be used: it was
// rotated at most refresh_grace ago, and its successor is the current token
// of the family (so it is the immediately previous token). A grace of 0
// allows no reuse at all, not even in the same instant.
func (s *Server) withinGrace(ctx context.Context, rt *store.RefreshToken, succHash string, now time.Time) bool {
	grace := s.cfg.refreshGrace()
	if grace <= 0 || rt.ReplacedBy != succHash || now.Sub(rt.RotatedAt) > grace {
		return false
	}
	next, err := s.st.GetRefreshToken(ctx, succHash)
	return err == nil && next.RotatedAt.IsZero()
}
