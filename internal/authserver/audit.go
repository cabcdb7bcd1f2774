package authserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/idp"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/telemetry"
)

// Auditor records authorization-server events. *audit.Logger implements it;
// the gateway passes the logger its MCP endpoints use, so both write one
// hash chain. An error means the record was not written (audit.on_error:
// fail). Log (and LogBatch, see batchAuditor) must not keep rec once it
// returns: the token endpoint reuses its records.
type Auditor interface {
	Log(ctx context.Context, rec *audit.Record) error
}

// What the server does when a record cannot be written (on_error: fail):
// the record of anything that hands out or discloses a credential — a
// successful login, consent, authorization code, token, registration or
// introspection — is written before the response, and if it cannot be, the
// response is 503 and nothing is handed out (a client that retries a
// refresh within refresh_grace gets the same successor; a spent code means
// signing in again). Records of refusals, revocations and background events
// are best effort: a revocation must happen even when it cannot be
// recorded, and the write failure is logged and counted by the audit logger.

// errAuditUnavailable answers a request whose success could not be recorded.
var errAuditUnavailable = audited(&oauthError{
	Code: errTemporarilyUnavailable, Description: "the audit log is unavailable; try again later", Status: http.StatusServiceUnavailable,
})

// auditedError marks an error whose audit record was already written, so
// the endpoint does not write a generic refusal for it too.
type auditedError struct{ error }

func (e auditedError) Unwrap() error { return e.error }

func audited(err error) error { return auditedError{err} }

func isAudited(err error) bool {
	var ae auditedError
	return errors.As(err, &ae)
}

// reqMeta is what every record of one request carries about its caller.
type reqMeta struct{ id, ip, ua string }

type reqMetaKey struct{}

// metaContext is the request's context with its reqMeta, in one
// allocation (context.WithValue and the meta would be two), and the
// X-Request-Id header value.
type metaContext struct {
	context.Context
	m   reqMeta
	hdr [1]string
}

func (c *metaContext) Value(key any) any {
	if key == (reqMetaKey{}) {
		return &c.m
	}
	return c.Context.Value(key)
}

// withRequestMeta tags each request with an id (also sent as X-Request-Id,
// as on the MCP endpoints) and the caller's address, for the records
// written while serving it.
func (s *Server) withRequestMeta(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b [12]byte
		_, _ = rand.Read(b[:])
		c := &metaContext{Context: r.Context(), m: reqMeta{id: hex.EncodeToString(b[:]), ip: s.clientIP(r), ua: r.UserAgent()}}
		c.hdr[0] = c.m.id
		w.Header()["X-Request-Id"] = c.hdr[:] // set once, never appended to
		next.ServeHTTP(w, r.WithContext(c))
	})
}

// requestIP is the client address withRequestMeta found for r (computed
// once per request), or clientIP's answer outside it.
func (s *Server) requestIP(r *http.Request) string {
	if m, ok := r.Context().Value(reqMetaKey{}).(*reqMeta); ok {
		return m.ip
	}
	return s.clientIP(r)
}

// batchAuditor is an Auditor that writes several records in one write
// (*audit.Logger: one group commit, the records adjacent in the chain).
type batchAuditor interface {
	LogBatch(ctx context.Context, recs []*audit.Record) error
}

// audit writes rec with Source "authserver" and the request's id, client
// IP and user agent. It returns the write error (on_error: fail) after
// logging it; callers decide whether the action may proceed (see above).
func (s *Server) audit(ctx context.Context, rec *audit.Record) error {
	return s.auditAll(ctx, rec)
}

// auditAll is audit for the records of one action, written in one write
// when the auditor can (an exchange's two records cost one commit).
func (s *Server) auditAll(ctx context.Context, recs ...*audit.Record) error {
	if s.auditor == nil {
		return nil
	}
	m, _ := ctx.Value(reqMetaKey{}).(*reqMeta)
	traceID := telemetry.TraceID(ctx)
	for _, rec := range recs {
		rec.Source = audit.SourceAuthServer
		if m != nil {
			rec.RequestID, rec.ClientIP, rec.UserAgent = m.id, m.ip, m.ua
		}
		if rec.Result == "" {
			rec.Result = audit.ResultSuccess
		}
		rec.TraceID = traceID
	}
	var err error
	ctx = context.WithoutCancel(ctx)
	if b, ok := s.auditor.(batchAuditor); ok && len(recs) > 1 {
		err = b.LogBatch(ctx, recs)
	} else {
		for _, rec := range recs {
			if err = s.auditor.Log(ctx, rec); err != nil {
				break
			}
		}
	}
	if err != nil {
		events := make([]string, len(recs))
		for i, rec := range recs {
			events[i] = rec.Event
		}
		s.log.ErrorContext(ctx, "authorization server: audit write failed", "event", strings.Join(events, ","), "err", err)
	}
	return err
}

// refused fills the outcome of a refusal from err: the OAuth error code and
// its client-facing description (never internal detail), and the status.
func refused(rec *audit.Record, err error) *audit.Record {
	rec.Result = audit.ResultError
	var oe *oauthError
	if !errors.As(err, &oe) {
		oe = errServer
	}
	rec.Status, rec.Reason = oe.Status, oe.Error()
	return rec
}

// withIdentity sets the user fields of rec. The issuer is this server's:
// the pair (issuer, subject) is the one the gateway's records of the same
// user carry, since access tokens are issued under it.
func (s *Server) withIdentity(rec *audit.Record, id *idp.Identity) *audit.Record {
	if id == nil {
		return rec
	}
	rec.Issuer, rec.Subject = s.issuer, id.Subject
	rec.Username, rec.Email, rec.Groups = id.Username, id.Email, id.Groups
	rec.User = (&identity.Principal{Subject: id.Subject, Username: id.Username, Email: id.Email}).DisplayName()
	return rec
}

// withStoredIdentity is withIdentity for an identity stored as JSON (codes,
// grants); an unreadable one leaves the user fields empty.
func (s *Server) withStoredIdentity(rec *audit.Record, raw json.RawMessage) *audit.Record {
	var id idp.Identity
	if len(raw) == 0 || json.Unmarshal(raw, &id) != nil {
		return rec
	}
	return s.withIdentity(rec, &id)
}

// withGrant sets the user, client and token session of a stored grant.
func (s *Server) withGrant(ctx context.Context, rec *audit.Record, tsid string) *audit.Record {
	rec.SessionID = tsid
	if g, err := s.st.GetGrant(ctx, tsid); err == nil {
		rec.ClientID, rec.Resource = g.ClientID, g.Resource
		s.withStoredIdentity(rec, g.Identity)
	}
	return rec
}

// revokeLeaked ends the grant rec names after a replayed code, a reused
// refresh token or an identity refused on refresh (why, for the log) and
// records it; the client gets oe. The
// revocation does not wait for the record.
func (s *Server) revokeLeaked(ctx context.Context, rec *audit.Record, identity json.RawMessage, oe *oauthError, why string) error {
	err := s.revokeGrant(ctx, rec.SessionID, why)
	refused(rec, oe)
	rec.Reason += "; the grant (token family) is revoked"
	if err != nil {
		rec.Reason = oe.Error() + "; revoking the grant failed"
	}
	_ = s.audit(ctx, s.withStoredIdentity(rec, identity))
	if err != nil {
		return audited(err)
	}
	return audited(oe)
}

// presentedClientID is the client_id a refused request claimed (form or
// HTTP Basic), for the record; it is not authenticated. Bounded like
// getClient bounds client IDs.
func presentedClientID(r *http.Request) string {
	id := r.PostForm.Get("client_id")
	if u, _, ok := r.BasicAuth(); ok {
		if v, err := url.QueryUnescape(u); err == nil {
			id = v
		}
	}
	return bounded(id, 2048)
}

// bounded cuts client-supplied text for a record.
func bounded(s string, n int) string {
	if len(s) > n {
		return strings.ToValidUTF8(s[:n], "")
	}
	return s
}

func scopeString(scopes []string) string { return strings.Join(scopes, " ") }

// auditCIMD records the fetch of a client ID metadata document: the first
// use of such a client, and each re-fetch once its cache lifetime ends.
func (s *Server) auditCIMD(ctx context.Context, id string, c *store.Client, err error) {
	rec := &audit.Record{Event: audit.EventASClientMetadataFetched, ClientID: bounded(id, 2048)}
	if err != nil {
		rec.Event, rec.Result, rec.Reason = audit.EventASClientMetadataRejected, audit.ResultError, bounded(err.Error(), 512)
	} else {
		rec.Reason = "client ID metadata document of " + displayName(c)
		rec.Scope = bounded(c.Scope, 512)
	}
	_ = s.audit(ctx, rec) // the client is not trusted with anything yet: its login, consent and code are recorded
}

// flowRecord is a record about a pending authorization request: its
// client, scopes, resource and, once signed in, its user.
func (s *Server) flowRecord(f *flow, event, result, reason string) *audit.Record {
	rec := &audit.Record{
		Event: event, Result: result, Reason: reason,
		ClientID: f.ar.ClientID, Scope: scopeString(f.ar.Scopes), Resource: f.ar.Resource,
	}
	return s.withIdentity(rec, f.fs.Identity)
}

// auditLogin records a successful sign-in (f.fs.Identity is set). When the
// record cannot be written the flow stops with an error page, so nobody
// signs in unrecorded; it reports whether the flow may go on.
func (s *Server) auditLogin(w http.ResponseWriter, r *http.Request, f *flow, how string) bool {
	if err := s.audit(r.Context(), s.flowRecord(f, audit.EventASLoginSuccess, audit.ResultSuccess, how)); err != nil {
		s.auditUnavailablePage(w, r)
		return false
	}
	s.rememberSignIn(w, r, f.fs.Identity)
	return true
}

// auditLoginFailed records a failed sign-in. username is what was typed on
// the built-in login page ("" for upstream logins), bounded.
func (s *Server) auditLoginFailed(r *http.Request, f *flow, username, reason string) {
	rec := s.flowRecord(f, audit.EventASLoginFailed, audit.ResultError, reason)
	if username != "" {
		rec.Username = cleanName(bounded(username, 256))
		rec.User = rec.Username
	}
	_ = s.audit(r.Context(), rec)
}

// upstreamFailure describes a failed upstream login for the record: the
// IdP's error code (RFC 6749 §4.1.2.1, cleaned and bounded), or the kind of
// failure; never the IdP's free-text description or a token.
func upstreamFailure(err error) string {
	var ce *idp.CallbackError
	switch {
	case errors.As(err, &ce):
		return fmt.Sprintf("upstream identity provider returned error %q", cleanName(bounded(ce.Code, 64)))
	case errors.Is(err, idp.ErrEmailNotVerified):
		return "the user's email address is not verified by the identity provider"
	case errors.Is(err, idp.ErrNotAllowed):
		return "the user is not allowed to use this service"
	}
	return "sign-in at the upstream identity provider failed"
}

func (s *Server) auditUnavailablePage(w http.ResponseWriter, r *http.Request) {
	s.errorPage(w, r, http.StatusServiceUnavailable, "Temporarily unavailable",
		"The sign-in cannot be recorded right now, so it cannot be completed. Please try again later.")
}

// auditIssued records tokens about to be returned for grant g, one record
// per event (a code redemption is AS_CODE_REDEEMED then AS_TOKEN_ISSUED),
// in one write.
// On failure it returns errAuditUnavailable: the tokens must not be sent.
func (s *Server) auditIssued(ctx context.Context, g *store.Grant, id *idp.Identity, resp *tokenResponse, events ...string) error {
	method := grantCode
	if events[0] == audit.EventASTokenRefreshed {
		method = grantRT
	}
	reason := "access token"
	if resp.RefreshToken != "" {
		reason = "access token and refresh token"
	}
	ir := issuedPool.Get().(*issuedRecords)
	defer ir.release()
	recs := ir.ptrs[:len(events)]
	for i, ev := range events {
		rec := &ir.recs[i]
		*rec = audit.Record{
			Event: ev, Method: method, ClientID: g.ClientID, SessionID: g.ID, Resource: g.Resource,
			Scope: resp.Scope, Status: http.StatusOK,
		}
		if ev != audit.EventASCodeRedeemed {
			rec.Reason = reason
		}
		recs[i] = s.withIdentity(rec, id)
	}
	if err := s.auditAll(ctx, recs...); err != nil {
		return errAuditUnavailable
	}
	return nil
}

// issuedRecords are the records of one issuance (at most two events),
// reused from grant to grant: a Record is some 600 bytes, and the auditor
// keeps none once it returned (see Auditor).
type issuedRecords struct {
	recs [2]audit.Record
	ptrs [2]*audit.Record
}

var issuedPool = sync.Pool{New: func() any {
	ir := new(issuedRecords)
	ir.ptrs = [2]*audit.Record{&ir.recs[0], &ir.recs[1]}
	return ir
}}

// release clears the records (no user's data stays reachable from the
// pool) and returns them to the pool.
func (ir *issuedRecords) release() {
	ir.recs = [2]audit.Record{}
	issuedPool.Put(ir)
}

// SigningKeyRotated records that the access-token signing key changed (see
// keys.Options.OnRotate). Key IDs are public (they are in the JWKS). The
// record has no user or address: the rotation was made by this process or
// observed in the store (`mcpgate keys rotate`, another replica).
func (s *Server) SigningKeyRotated(ctx context.Context, previousKID, activeKID string) {
	_ = s.audit(ctx, &audit.Record{
		Event:  audit.EventASSigningKeyRotated,
		Reason: fmt.Sprintf("active signing key is now %s (was %s, still published for the overlap)", activeKID, previousKID),
	})
}

// SigningKeyRevoked drops every token verified with the keys cached so far
// and the key set itself (see keys.Options.OnRevoke), so tokens signed with
// the revoked key stop verifying at once, and records the revocation.
func (s *Server) SigningKeyRevoked(ctx context.Context, kid string) {
	s.verifier.Forget()
	_ = s.audit(ctx, &audit.Record{
		Event:  audit.EventASSigningKeyRevoked,
		Reason: fmt.Sprintf("signing key %s was removed from the store; tokens it signed no longer verify", bounded(kid, 128)),
	})
}
