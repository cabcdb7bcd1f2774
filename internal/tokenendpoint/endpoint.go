// Package tokenendpoint is mcpgate's internal token-retrieval endpoint
// (seed 001): on a second listener that only speaks mutual TLS, a backend
// identified by the SPIFFE ID of its client certificate exchanges a user's
// mcpgate access token for the upstream IdP access token stored with that
// user's grant (tsid). The request and answer are RFC 8693 token exchange;
// errors are RFC 6749 §5.2 JSON. Each retrieval and each refusal is
// audited, never with a token.
package tokenendpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/authserver"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
)

// Path is the token endpoint's path on the internal listener. It is served
// there only, never on the public listener.
const Path = "/internal/token"

// RFC 8693 identifiers.
const (
	GrantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange" // §2.1
	TokenTypeAccessToken   = "urn:ietf:params:oauth:token-type:access_token"   // §3
)

// Bounds of what a client sends.
const (
	maxBodyBytes = 32 << 10 // a form with one access token (≤ 16 KiB)
	// maxInFlightPerClient bounds one workload's requests at once (each may
	// wait for an upstream refresh).
	maxInFlightPerClient = 64
	// requestTimeout bounds one retrieval, upstream refresh included.
	requestTimeout = 20 * time.Second
)

// AuthServer is what the endpoint needs of the authorization server
// (*authserver.Server): the verifier of its own access tokens, the one
// the gateway uses, and the grants' stored upstream tokens.
type AuthServer interface {
	Verify(ctx context.Context, token string) (*identity.Principal, error)
	UpstreamGrantToken(ctx context.Context, tsid string) (*authserver.GrantUpstream, error)
}

// Auditor writes audit records; *audit.Logger implements it.
type Auditor interface {
	Log(ctx context.Context, rec *audit.Record) error
}

// Deps are the endpoint's dependencies.
type Deps struct {
	AuthServer AuthServer
	Auditor    Auditor
	Logger     *slog.Logger
	// Registry receives mcpgate_internal_token_requests_total. Optional.
	Registry prometheus.Registerer
	// Backends maps each backend's name to its canonical resource URI (the
	// audience of the access tokens issued for it).
	Backends map[string]string
	// Permits reports whether the policy in force could allow the user
	// anything on the backend (policy.Engine.DecideSession): a user whom it
	// no longer lets use a backend does not have the token handed to that
	// backend either. Optional: nil checks nothing.
	Permits func(p *identity.Principal, backend string) bool
	// Now is the time source (tests). Optional.
	Now func() time.Time
}

// Endpoint is the internal token endpoint and its listener's server.
type Endpoint struct {
	cfg      Config
	as       AuthServer
	auditor  Auditor
	log      *slog.Logger
	now      func() time.Time
	allowed  map[string]map[string]bool // SPIFFE ID → backend names
	backends map[string]string
	permits  func(*identity.Principal, string) bool
	inFlight *ratelimit.InFlight
	outcomes *prometheus.CounterVec
	files    *tlsFiles
	srv      *http.Server
}

// New checks the configuration and loads the certificate files; it fails,
// and the gateway does not start, when any of them is missing or invalid.
func New(cfg Config, deps Deps) (*Endpoint, error) {
	if deps.AuthServer == nil || deps.Auditor == nil {
		return nil, errors.New("tokenendpoint: AuthServer and Auditor are required")
	}
	e := &Endpoint{
		cfg: cfg, as: deps.AuthServer, auditor: deps.Auditor, log: deps.Logger, now: deps.Now,
		allowed: map[string]map[string]bool{}, backends: deps.Backends, permits: deps.Permits,
		inFlight: ratelimit.NewInFlight(maxInFlightPerClient, 10_000),
	}
	if e.log == nil {
		e.log = slog.Default()
	}
	if e.now == nil {
		e.now = time.Now
	}
	for _, c := range cfg.Clients {
		set := map[string]bool{}
		for _, b := range c.Backends {
			if _, ok := deps.Backends[b]; !ok {
				return nil, fmt.Errorf("tokenendpoint: client %s: unknown backend %q", c.SPIFFEID, b)
			}
			set[b] = true
		}
		e.allowed[c.SPIFFEID] = set
	}
	e.outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mcpgate_internal_token_requests_total",
		Help: "Requests to the internal token endpoint and TLS handshakes it refused, by outcome.",
	}, []string{"outcome"})
	for _, o := range allOutcomes {
		e.outcomes.WithLabelValues(o) // every series from the start, at 0
	}
	if deps.Registry != nil {
		if err := deps.Registry.Register(e.outcomes); err != nil {
			return nil, err
		}
	}
	var err error
	if e.files, err = newTLSFiles(cfg.TLS, e.log, e.now); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(Path, e)
	e.srv = &http.Server{
		Handler:           mux,
		TLSConfig:         e.files.serverConfig(),
		ReadHeaderTimeout: 10 * time.Second, // bounds the TLS handshake too
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      requestTimeout + 10*time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          log.New(handshakeLog{e}, "", 0),
	}
	return e, nil
}

// Addr is the configured listen address.
func (e *Endpoint) Addr() string { return e.cfg.Listen }

// Serve serves mutual TLS on ln (a plain TCP listener) until Shutdown.
func (e *Endpoint) Serve(ln net.Listener) error {
	e.log.Info("internal token endpoint listening (mTLS)", "addr", ln.Addr().String(), "path", Path, "trust_domain", e.cfg.TrustDomain)
	err := e.srv.ServeTLS(ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops the listener and waits for requests in flight.
func (e *Endpoint) Shutdown(ctx context.Context) error {
	err := e.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = e.srv.Close()
	}
	return err
}

// Outcomes, the values of the outcome label (a fixed set).
const (
	outcomeSuccess           = "success"
	outcomeNoCertificate     = "no_client_certificate"    // TLS handshake
	outcomeUntrustedCert     = "untrusted_certificate"    // TLS handshake: not from the client CA, expired, wrong usage
	outcomeHandshakeFailed   = "handshake_failed"         // TLS handshake, any other reason
	outcomeInvalidClient     = "invalid_client"           // no valid SPIFFE ID, other trust domain, not a listed client
	outcomeInvalidRequest    = "invalid_request"          // not an RFC 8693 request we serve
	outcomeForbiddenAudience = "forbidden_audience"       // a backend the client may not retrieve tokens for
	outcomeInvalidSubject    = "invalid_subject_token"    // bad, expired or revoked token, or issued for another backend
	outcomePolicyDenied      = "policy_denied"            // the policy lets the user use nothing on the backend
	outcomeNoUpstreamToken   = "no_upstream_token"        // the grant holds no upstream token
	outcomeReauth            = "upstream_reauth_required" // the IdP refused the refresh
	outcomeUnavailable       = "unavailable"              // store, IdP, key set or audit log unavailable
	outcomeBusy              = "too_many_requests"        // the client's in-flight bound
)

var allOutcomes = []string{
	outcomeSuccess, outcomeNoCertificate, outcomeUntrustedCert, outcomeHandshakeFailed, outcomeInvalidClient,
	outcomeInvalidRequest, outcomeForbiddenAudience, outcomeInvalidSubject, outcomePolicyDenied, outcomeNoUpstreamToken, outcomeReauth,
	outcomeUnavailable, outcomeBusy,
}

// refusal is an error answer: the RFC 6749 §5.2 body the client sees, the
// outcome label, and the reason the audit record gives (more detail than
// the client gets, never a token).
type refusal struct {
	status      int
	code        string
	description string
	outcome     string
	reason      string
}

func refuse(status int, code, outcome, description, reason string) *refusal {
	return &refusal{status: status, code: code, description: description, outcome: outcome, reason: reason}
}

// exchange is one request as far as it was understood, for its record.
type exchange struct {
	workload  string
	backend   string
	principal *identity.Principal
}

// ServeHTTP answers an RFC 8693 token exchange request (§2.1) with the
// stored upstream access token of the subject token's grant (§2.2.1).
func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := e.now()
	var x exchange
	up, rf := e.serve(r, &x)
	rec := &audit.Record{
		Source: audit.SourceInternal, ClientIP: peerIP(r), UserAgent: r.UserAgent(), Method: "token-exchange",
		Workload: x.workload, Backend: x.backend,
	}
	if p := x.principal; p != nil {
		rec.Issuer, rec.Subject, rec.User, rec.Username, rec.Email = p.Issuer, p.Subject, p.DisplayName(), p.Username, p.Email
		rec.ClientID, rec.TokenID, rec.SessionID = p.ClientID, p.TokenID, p.SessionID
		if len(p.Audience) > 0 {
			rec.Resource = p.Audience[0]
		}
	}
	if rf == nil {
		rec.Event, rec.Result, rec.Status = audit.EventInternalTokenRetrieved, audit.ResultSuccess, http.StatusOK
		rec.DurationMS = audit.Millis(e.now().Sub(start))
		// Recorded before it is handed out, or not handed out.
		if err := e.auditor.Log(r.Context(), rec); err != nil {
			rf = refuse(http.StatusServiceUnavailable, "temporarily_unavailable", outcomeUnavailable, "the audit log is unavailable; try again later", "")
		} else {
			e.outcomes.WithLabelValues(outcomeSuccess).Inc()
			writeJSON(w, http.StatusOK, tokenResponse(up, e.now()))
			return
		}
	} else {
		rec.Event, rec.Result, rec.Status, rec.Reason = audit.EventInternalTokenRefused, audit.ResultError, rf.status, rf.reason
		if rec.Reason == "" {
			rec.Reason = rf.description
		}
		rec.DurationMS = audit.Millis(e.now().Sub(start))
		_ = e.auditor.Log(r.Context(), rec) // best effort: a refusal must happen either way
	}
	e.outcomes.WithLabelValues(rf.outcome).Inc()
	switch rf.status {
	case http.StatusUnauthorized:
		w.Header().Set("Connection", "close") // the next request brings a new handshake
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "1")
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", http.MethodPost)
	}
	writeJSON(w, rf.status, map[string]string{"error": rf.code, "error_description": rf.description})
}

func (e *Endpoint) serve(r *http.Request, x *exchange) (*authserver.GrantUpstream, *refusal) {
	// The workload first: nothing of an unauthenticated request is read.
	id, rf := e.workload(r)
	x.workload = id
	if rf != nil {
		return nil, rf
	}
	slot, ok := e.inFlight.Acquire(id)
	if !ok {
		return nil, refuse(http.StatusTooManyRequests, "temporarily_unavailable", outcomeBusy, "too many requests in flight", "")
	}
	defer slot.Release()

	form, rf := readForm(r)
	if rf != nil {
		return nil, rf
	}
	params := map[string]string{}
	for _, k := range []string{"grant_type", "subject_token", "subject_token_type", "audience", "resource", "requested_token_type", "scope", "actor_token", "actor_token_type"} {
		switch vs := form[k]; len(vs) {
		case 0:
		case 1:
			params[k] = vs[0]
		default:
			// RFC 8693 §2.1 allows several audience and resource values; one
			// backend per request keeps "whose token" unambiguous.
			return nil, badRequest(fmt.Sprintf("parameter %s must appear once", k))
		}
	}
	switch {
	case params["grant_type"] == "":
		return nil, badRequest("grant_type is required")
	case params["grant_type"] != GrantTypeTokenExchange:
		return nil, refuse(http.StatusBadRequest, "unsupported_grant_type", outcomeInvalidRequest, "only "+GrantTypeTokenExchange+" is served here", "")
	case params["subject_token"] == "":
		return nil, badRequest("subject_token is required")
	case params["subject_token_type"] != TokenTypeAccessToken:
		return nil, badRequest("subject_token_type must be " + TokenTypeAccessToken)
	case params["requested_token_type"] != "" && params["requested_token_type"] != TokenTypeAccessToken:
		return nil, badRequest("requested_token_type must be " + TokenTypeAccessToken + " or absent")
	case params["actor_token"] != "" || params["actor_token_type"] != "":
		return nil, badRequest("actor tokens (delegation) are not supported")
	case params["scope"] != "":
		return nil, refuse(http.StatusBadRequest, "invalid_scope", outcomeInvalidRequest, "the stored upstream token is returned as issued; scope cannot be narrowed", "")
	case params["audience"] == "":
		return nil, badRequest("audience is required: the name of the backend the token is for")
	}
	backend := params["audience"]
	resource, known := e.backends[backend]
	if !known || !e.allowed[id][backend] {
		x.backend = boundedName(backend)
		// Same answer for an unknown backend and a forbidden one.
		return nil, refuse(http.StatusBadRequest, "invalid_target", outcomeForbiddenAudience,
			"this client may not retrieve tokens for that audience", "the client is not allowed tokens for this backend")
	}
	x.backend = backend
	if res := params["resource"]; res != "" {
		c, err := authserver.CanonicalResource(res)
		if err != nil || c != resource {
			return nil, refuse(http.StatusBadRequest, "invalid_target", outcomeForbiddenAudience,
				"resource is not the audience's resource URI", "resource does not match the backend")
		}
	}

	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	const badSubject = "the subject token is invalid, expired or revoked"
	p, err := e.as.Verify(ctx, params["subject_token"])
	switch {
	case errors.Is(err, authn.ErrUnavailable):
		e.log.WarnContext(ctx, "internal endpoint: token verification unavailable", "err", err)
		return nil, unavailable("token verification unavailable")
	case err != nil:
		// RFC 8693 §2.2.2: an invalid subject token is invalid_request.
		return nil, refuse(http.StatusBadRequest, "invalid_request", outcomeInvalidSubject, badSubject, "subject token refused: "+boundedName(err.Error()))
	}
	x.principal = p
	// A backend reaches only its own users' tokens: the token must have been
	// issued for this backend's resource, not another's, nor a generic one.
	if len(p.Audience) != 1 || p.Audience[0] != resource {
		return nil, refuse(http.StatusBadRequest, "invalid_request", outcomeInvalidSubject,
			"the subject token was not issued for this audience", "subject token issued for another resource")
	}
	if e.permits != nil && !e.permits(p, backend) {
		return nil, refuse(http.StatusBadRequest, "invalid_request", outcomePolicyDenied,
			"the policy does not allow this user on this audience", "the policy grants the user nothing on this backend")
	}
	up, err := e.as.UpstreamGrantToken(ctx, p.SessionID)
	switch {
	case errors.Is(err, authserver.ErrSessionInvalid):
		return nil, refuse(http.StatusBadRequest, "invalid_request", outcomeInvalidSubject, badSubject, "grant revoked or expired")
	case errors.Is(err, authserver.ErrNoUpstreamToken):
		return nil, refuse(http.StatusBadRequest, "invalid_request", outcomeNoUpstreamToken,
			"no upstream token is stored for this subject token's session", "")
	case errors.Is(err, authserver.ErrUpstreamReauth):
		return nil, refuse(http.StatusBadRequest, "invalid_grant", outcomeReauth,
			"the user's session at the identity provider has ended; the user must sign in again", "the identity provider refused the refresh")
	case err != nil:
		e.log.WarnContext(ctx, "internal endpoint: upstream token unavailable", "tsid", p.SessionID, "err", err)
		return nil, unavailable("upstream token unavailable (store or identity provider)")
	case up.Resource != resource:
		// The grant's own resource, read from the store, agrees with its token.
		return nil, refuse(http.StatusBadRequest, "invalid_request", outcomeInvalidSubject,
			"the subject token was not issued for this audience", "grant issued for another resource")
	}
	return up, nil
}

// workload authenticates the caller by its verified client certificate:
// one SPIFFE ID, in the trust domain, listed in clients.
func (e *Endpoint) workload(r *http.Request) (string, *refusal) {
	const desc = "client authentication failed"
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.PeerCertificates) == 0 {
		// RequireAndVerifyClientCert makes this unreachable; fail closed anyway.
		return "", refuse(http.StatusUnauthorized, "invalid_client", outcomeInvalidClient, desc, "no verified client certificate")
	}
	if chain := r.TLS.VerifiedChains[0]; !e.files.trustedRoot(chain[len(chain)-1]) {
		return "", refuse(http.StatusUnauthorized, "invalid_client", outcomeInvalidClient, desc, "client CA removed from client_ca_file since the TLS handshake")
	}
	leaf := r.TLS.PeerCertificates[0]
	// A kept-alive connection outlives its handshake: a short-lived SVID
	// that expired since is not honoured on it either.
	if now := e.now(); now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return "", refuse(http.StatusUnauthorized, "invalid_client", outcomeInvalidClient, desc, "client certificate expired since the TLS handshake")
	}
	id, err := certSPIFFEID(leaf)
	if err != nil {
		return "", refuse(http.StatusUnauthorized, "invalid_client", outcomeInvalidClient, desc, "client certificate: "+err.Error())
	}
	s := id.String()
	if id.TrustDomain != e.cfg.TrustDomain {
		return boundedName(s), refuse(http.StatusUnauthorized, "invalid_client", outcomeInvalidClient, desc, "SPIFFE ID outside the trust domain")
	}
	if _, ok := e.allowed[s]; !ok {
		return s, refuse(http.StatusUnauthorized, "invalid_client", outcomeInvalidClient, desc, "SPIFFE ID not among the configured clients")
	}
	return s, nil
}

// readForm reads the application/x-www-form-urlencoded body (RFC 6749
// §3.2), bounded. Parameters in the query string are refused: a token
// there ends up in logs.
func readForm(r *http.Request) (url.Values, *refusal) {
	if r.Method != http.MethodPost {
		return nil, refuse(http.StatusMethodNotAllowed, "invalid_request", outcomeInvalidRequest, "use POST", "")
	}
	if r.URL.RawQuery != "" {
		return nil, badRequest("parameters go in the body, not the query string")
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, badRequest("the body must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(nil, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, refuse(http.StatusRequestEntityTooLarge, "invalid_request", outcomeInvalidRequest, "request body too large", "")
		}
		return nil, badRequest("the body is not a valid form")
	}
	return r.PostForm, nil
}

func badRequest(desc string) *refusal {
	return refuse(http.StatusBadRequest, "invalid_request", outcomeInvalidRequest, desc, "")
}

func unavailable(reason string) *refusal {
	return refuse(http.StatusServiceUnavailable, "temporarily_unavailable", outcomeUnavailable, "try again later", reason)
}

// boundedName keeps a client-chosen name short in a record.
func boundedName(s string) string {
	if len(s) > 256 {
		return s[:256]
	}
	return s
}

// tokenResponse is the RFC 8693 §2.2.1 answer.
func tokenResponse(up *authserver.GrantUpstream, now time.Time) map[string]any {
	m := map[string]any{
		"access_token":      up.AccessToken,
		"issued_token_type": TokenTypeAccessToken,
		"token_type":        "Bearer",
	}
	if !up.Expiry.IsZero() {
		m["expires_in"] = max(int64(up.Expiry.Sub(now)/time.Second), 0)
	}
	return m
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store") // RFC 6749 §5.1
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func peerIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// handshakeLog receives net/http's error log. TLS handshake failures — the
// refusals of a missing or untrusted client certificate, which never reach
// the handler — are counted, and the certificate refusals audited; other
// messages go to the log.
type handshakeLog struct{ e *Endpoint }

func (h handshakeLog) Write(b []byte) (int, error) {
	msg := strings.TrimSpace(string(b))
	rest, ok := strings.CutPrefix(msg, "http: TLS handshake error from ")
	if !ok {
		h.e.log.Warn("internal endpoint: " + msg)
		return len(b), nil
	}
	addr, cause, _ := strings.Cut(rest, ": ")
	ip, _, err := net.SplitHostPort(addr)
	if err != nil {
		ip = ""
	}
	var outcome, reason string
	switch {
	case strings.Contains(cause, "didn't provide a certificate"):
		outcome, reason = outcomeNoCertificate, "TLS handshake: no client certificate"
	case strings.Contains(cause, "failed to verify certificate"):
		outcome, reason = outcomeUntrustedCert, "TLS handshake: client certificate not verified by the client CA (unknown issuer, expired or not for client authentication)"
	default:
		// Port probes and clients that hang up: counted, not audited.
		h.e.outcomes.WithLabelValues(outcomeHandshakeFailed).Inc()
		h.e.log.Debug("internal endpoint: TLS handshake failed", "client_ip", ip, "err", cause)
		return len(b), nil
	}
	h.e.outcomes.WithLabelValues(outcome).Inc()
	h.e.log.Warn("internal endpoint: client certificate refused", "client_ip", ip, "err", cause)
	_ = h.e.auditor.Log(context.Background(), &audit.Record{
		Source: audit.SourceInternal, ClientIP: ip, Method: "token-exchange", Event: audit.EventInternalTokenRefused,
		Result: audit.ResultError, Reason: reason,
	})
	return len(b), nil
}
