package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcpgate/mcpgate/internal/aggregate"
	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/metrics"
	"github.com/mcpgate/mcpgate/internal/policy"
	"github.com/mcpgate/mcpgate/internal/proxy"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/telemetry"
)

// Authenticator turns a request's credential into a Principal.
type Authenticator interface {
	Authenticate(r *http.Request) (*identity.Principal, error)
}

// Auditor records audit records (*audit.Logger). An error from LogBatch
// means the records were not all written and, with on_error: fail, the
// request must fail; Down reports that the last write failed that way (the
// logger's state, shared by every path: the gateway then refuses every
// request until a write succeeds again).
type Auditor interface {
	LogBatch(ctx context.Context, recs []*audit.Record) error
	Down() bool
}

// JSON-RPC error codes the gateway answers with itself.
const (
	codePermissionDenied = -32003 // server-defined range (JSON-RPC 2.0 §5.1)
	codeUnauthorized     = -32001
	codeRateLimited      = -32029
	codeAuditFailed      = -32030
)

// gateway is the request pipeline in front of one backend:
// audit → edge → rate limit (IP) → authn → rate limit (user) → MCP decode →
// policy → proxy (with list filtering). The order matters: audit is outermost
// so that 401, 403 and 429 are recorded too.
type gateway struct {
	// name is the backend's, or the aggregated endpoint's, in audit
	// records, metrics and session bindings.
	name string
	// Exactly one of backend (one backend, proxied as is) and agg (an
	// aggregated endpoint) is set.
	backend     *proxy.Backend
	agg         *aggregate.Endpoint
	resource    string          // this backend's canonical resource URI
	resources   map[string]bool // every backend's resource URI
	metadataURL string
	scopes      []string // advertised in the 401 challenge
	authn       Authenticator
	policy      *policy.Holder
	audit       Auditor
	ipLimiter   ratelimit.Taker
	userLimiter ratelimit.Taker
	toolLimits  *ratelimit.ToolLimits
	// inFlightIP and inFlightUser bound the requests a client address and a
	// user have open at once: slow bodies and streams hold goroutines
	// however low their request rate.
	inFlightIP   *ratelimit.InFlight
	inFlightUser *ratelimit.InFlight
	bodyLimits   bodyLimits
	writeTimeout time.Duration // per write of a response (security.write_timeout)
	edge         *edge
	maxBody      int64
	// sessionGate refuses initialize to callers the policy grants nothing
	// on this backend (stdio: every session is a process).
	sessionGate bool
	sessions    *sessionCodec
	log         *slog.Logger
	metrics     *metrics.Gateway
	lists       *mcp.ListCache // filtered list results, shared by callers with the same view
}

// exchange is everything known about one request, for the audit records.
type exchange struct {
	start     time.Time
	requestID string
	principal *identity.Principal
	msg       *mcp.Message
	calls     []mcp.Call
	decisions []policy.Decision
	event     string
	reason    string
	rpcError  int
	rpcID     []byte   // of a single call: the proxy's 502 and 504 answer it
	targets   []target // per call, at an aggregated endpoint: where it goes
	outcome   proxy.Outcome
	aggregate aggregate.Outcome // at an aggregated endpoint: its backend calls' failures
	refused   bool              // a list answer could not be filtered and was replaced
	body      bodyReader        // inline: reading the body allocates no reader
	payload   []byte            // the POST body read, forwarded as it is
	forwarded bool              // the FORWARD record(s) are written (or held in forward): the request went to the backend
	// forward is the FORWARD record of a single list request, written with
	// its outcome record in one append (see recordForward); set when
	// deferred is.
	forward  audit.Record
	deferred bool
	batch    [2]*audit.Record // the records of one append, kept here so that LogBatch's argument does not allocate
	session  sessionHeader
	clientIP string    // for the audit records, worked out once (edge.clientIP)
	idValue  [1]string // the X-Request-Id header's value
}

func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := &exchange{start: time.Now(), requestID: newRequestID()}
	sw := &statusWriter{ResponseWriter: w, writeTimeout: g.writeTimeout}
	if r.ContentLength != 0 {
		sw.body = &x.body
	}
	defer g.finish(sw, r, x)
	w = sw
	x.idValue[0] = x.requestID
	w.Header()["X-Request-Id"] = x.idValue[:]
	g.edge.securityHeaders(w.Header())
	// Spans (telemetry; nothing when tracing is off): edge, authn and policy
	// are children of the request's server span, and so is the backend hop.
	_, edgeSpan := telemetry.Start(r.Context(), "mcpgate.edge")
	defer edgeSpan.End() // ended below when the checks pass; End is idempotent

	if !g.edge.allowedHost(r) {
		x.event, x.reason = "FORBIDDEN_HOST", "host not allowed"
		http.Error(w, "forbidden: host not allowed", http.StatusForbidden)
		return
	}
	if !g.edge.allowedOrigin(r) {
		x.event, x.reason = "FORBIDDEN_ORIGIN", "origin not allowed"
		http.Error(w, "forbidden: origin not allowed", http.StatusForbidden)
		return
	}
	if g.edge.cors(w, r) {
		return // preflight answered
	}
	if g.audit.Down() {
		// The log failed, on any path (audit.Logger.Down): refused so that
		// no action goes unrecorded; this refusal's own record probes it.
		x.event, x.reason, x.rpcError = "AUDIT_UNAVAILABLE", "audit log unavailable", codeAuditFailed
		mcp.WriteError(w, http.StatusServiceUnavailable, nil, codeAuditFailed, "audit log unavailable; try again later")
		return
	}
	if reason := refusedShape(r); reason != "" {
		x.event, x.reason, x.rpcError = "BAD_REQUEST", reason, mcp.CodeInvalidRequest
		mcp.WriteError(w, http.StatusBadRequest, nil, mcp.CodeInvalidRequest, reason)
		return
	}
	ipSlot, ok := g.admit(w, r, x, g.ipLimiter, g.inFlightIP, g.edge.ipKey(r))
	if !ok {
		return
	}
	defer ipSlot.Release()
	edgeSpan.End()

	p, err := g.authenticate(r)
	if err != nil {
		g.unauthorized(w, r, x, err)
		return
	}
	x.principal = p
	if !g.audienceFits(p) {
		g.unauthorized(w, r, x, fmt.Errorf("%w: token is bound to another backend of this gateway", authn.ErrInvalidToken))
		return
	}
	userKey := p.Key()
	// POSTs are limited per user after decoding (authorizePost), so that a
	// client's replies to server requests are never refused. The in-flight
	// bound comes before the body is read: that is what a slow client holds.
	userRate := g.userLimiter
	if r.Method == http.MethodPost {
		userRate = nil
	}
	userSlot, ok := g.admit(w, r, x, userRate, g.inFlightUser, userKey)
	if !ok {
		return
	}
	defer userSlot.Release()
	if !g.checkSession(w, r, x, userKey) {
		return
	}
	sw.session = &x.session

	hop := proxy.Hop{Principal: p}
	hop.Token, _ = authn.BearerToken(r) // the subject token of a token exchange (jwt, introspection)
	switch r.Method {
	case http.MethodPost:
		if !g.authorizePost(w, r, x, p, userKey) {
			return
		}
		x.rpcID = singleCallID(x.msg)
		hop.RPCID, hop.Body = x.rpcID, x.payload
		hop.ActsForUser = actsForUser(x.msg)
		if g.agg == nil { // an aggregate filters the lists it merges
			hop.Filter = g.listFilter(x, p)
		}
	case http.MethodGet:
		// GET opens the server-to-client stream (or resumes one), which may
		// replay responses to earlier list requests: filter every list
		// result on it.
		if g.agg == nil {
			hop.Filter = g.streamFilter(x, p)
		}
		clearReadDeadline(w)
	case http.MethodDelete:
		// DELETE ends a session; it names no tool and needs only
		// authentication (and the session's owner, checked above). The
		// backend ends it: the id then gets the backend's 404 on every
		// replica.
		clearReadDeadline(w)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !g.recordForward(w, r, x) {
		return
	}
	if g.agg != nil {
		x.aggregate = g.agg.Serve(w, r, p)
		return
	}
	x.outcome = g.backend.Forward(w, r, hop)
}

// authenticate runs the authenticator in the span "mcpgate.authn", which
// the token caches annotate (mcpgate.authn.cache_hit).
func (g *gateway) authenticate(r *http.Request) (*identity.Principal, error) {
	ctx, span := telemetry.Start(r.Context(), "mcpgate.authn")
	if !span.IsRecording() {
		span.End()
		return g.authn.Authenticate(r)
	}
	defer span.End()
	p, err := g.authn.Authenticate(r.WithContext(ctx))
	if err != nil {
		span.SetStatus(codes.Error, "authentication failed") // the error may quote the token's claims: not recorded
	}
	return p, err
}

// checkSession admits a request's Mcp-Session-Id: absent, or one this
// gateway (any replica) issued to this user for this backend, which it
// replaces with the backend's own id before forwarding. Otherwise it
// answers 404, as the backend would for an unknown session (the client then
// starts a new one), without revealing whether the id belongs to someone
// else; several ids get 400. It arms x.session so that the answer's
// Mcp-Session-Id goes out sealed.
func (g *gateway) checkSession(w http.ResponseWriter, r *http.Request, x *exchange, userKey string) bool {
	x.session = sessionHeader{codec: g.sessions, userKey: userKey, log: g.log}
	ids := r.Header.Values("Mcp-Session-Id")
	switch {
	case len(ids) == 0 || len(ids) == 1 && ids[0] == "":
		return true // an empty value names no session
	case len(ids) > 1:
		x.event, x.reason = "BAD_REQUEST", "several Mcp-Session-Id headers"
		mcp.WriteError(w, http.StatusBadRequest, nil, mcp.CodeInvalidRequest, "exactly one Mcp-Session-Id header is allowed")
		return false
	}
	backendID, state := g.sessions.open(userKey, ids[0])
	switch state {
	case sessionOK:
		x.session.clientID, x.session.backendID = ids[0], backendID
		r.Header["Mcp-Session-Id"] = []string{backendID}
		return true
	case sessionMismatch:
		x.event, x.reason = "SESSION_MISMATCH", "session bound to another user"
	default:
		x.event, x.reason = "SESSION_UNKNOWN", "session not issued by this gateway, expired or tampered"
	}
	mcp.WriteError(w, http.StatusNotFound, nil, -32001, "session not found")
	return false
}

// recordForward writes the decision record (event FORWARD) of every message
// before the request reaches the backend, so that nothing the backend
// receives is missing from the log when audit writing fails while it runs;
// the outcome record follows in finish. The write is one append per
// message, durable per audit.fsync (with fsync: always the request waits for
// it). If it fails under on_error: fail, the request is refused with 503
// and not forwarded.
//
// A single list request (tools/list, prompts/list, resources/list,
// resources/templates/list) only reads what the backend offers: its
// FORWARD record, with the time it was forwarded, is written with its
// outcome record in one append after the answer, which saves a write per
// list. It is refused like any request while the audit log is known to be
// failing (on_error: fail); if the log fails while the list is answered,
// the two records are lost and counted in the next RECORDS_LOST marker.
func (g *gateway) recordForward(w http.ResponseWriter, r *http.Request, x *exchange) bool {
	base := g.baseRecord(r, x)
	base.Event, base.Result = audit.EventForward, "" // the outcome comes in finish
	ok := true
	switch {
	case isSingleList(x.calls):
		if ok = !g.audit.Down(); ok {
			x.forward, x.deferred = callRecord(base, x, 0), true
			x.forward.Time = time.Now()
		}
	case len(x.calls) == 0:
		base.Method = r.Method
		ok = g.write(r.Context(), &base)
	default:
		for i := 0; ok && i < len(x.calls); i++ {
			rec := callRecord(base, x, i)
			ok = g.write(r.Context(), &rec)
		}
	}
	if !ok {
		x.event, x.reason, x.rpcError = "AUDIT_UNAVAILABLE", "audit log unavailable", codeAuditFailed
		mcp.WriteError(w, http.StatusServiceUnavailable, x.rpcID, codeAuditFailed, "audit log unavailable; try again later")
		return false
	}
	x.forwarded = true
	return true
}

// isSingleList reports whether calls is one list request: read-only, so
// its FORWARD record may wait for its outcome (recordForward).
func isSingleList(calls []mcp.Call) bool {
	return len(calls) == 1 && !calls[0].IsResponse && !calls[0].IsNotification && mcp.IsListMethod(calls[0].Method)
}

// authorizePost reads and decodes the JSON-RPC body and decides every
// message in it. It answers the request itself and returns false when the
// request must not reach the backend.
func (g *gateway) authorizePost(w http.ResponseWriter, r *http.Request, x *exchange, p *identity.Principal, userKey string) bool {
	if !isJSON(r.Header) {
		// Never decoded, never forwarded: a form or text/plain body is what
		// a cross-site form or a confused client sends, not MCP.
		x.event, x.reason, x.rpcError = "BAD_REQUEST", "unsupported content type", mcp.CodeInvalidRequest
		mcp.WriteError(w, http.StatusUnsupportedMediaType, nil, mcp.CodeInvalidRequest, "Content-Type must be application/json")
		return false
	}
	if r.ContentLength > g.maxBody {
		x.event, x.reason, x.rpcError = "BAD_REQUEST", "body too large", mcp.CodeInvalidRequest
		mcp.WriteError(w, http.StatusRequestEntityTooLarge, nil, mcp.CodeInvalidRequest, "request body too large")
		return false
	}
	x.body.reset(w, r, g.bodyLimits, g.maxBody)
	body, err := io.ReadAll(&x.body)
	x.body.done()
	if err != nil {
		switch {
		case errors.Is(err, errBodyTooLarge):
			x.event, x.reason, x.rpcError = "BAD_REQUEST", "body too large", mcp.CodeInvalidRequest
			mcp.WriteError(w, http.StatusRequestEntityTooLarge, nil, mcp.CodeInvalidRequest, "request body too large")
		case errors.Is(err, errBodyTooSlow):
			// RFC 9110 §15.5.9; the connection is closed after it.
			x.event, x.reason, x.rpcError = "BAD_REQUEST", "body too slow", mcp.CodeInvalidRequest
			mcp.WriteError(w, http.StatusRequestTimeout, nil, mcp.CodeInvalidRequest, "request body not received in time")
		default:
			x.event, x.reason, x.rpcError = "BAD_REQUEST", "body read failed", mcp.CodeParseError
			mcp.WriteError(w, http.StatusBadRequest, nil, mcp.CodeParseError, "could not read request body")
		}
		return false
	}
	x.payload = body
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))

	msg, err := mcp.Decode(body)
	if err != nil {
		x.event, x.reason = "BAD_REQUEST", err.Error()
		g.badMessage(w, x, err)
		return false
	}
	x.msg, x.calls = msg, msg.Calls
	if err := mcp.CheckHeaders(r.Header, msg); err != nil {
		x.event, x.reason = "BAD_REQUEST", err.Error()
		g.badMessage(w, x, err)
		return false
	}
	// A body of only responses and notifications answers the server (e.g.
	// a sampling or elicitation reply) and calls nothing: refusing it would
	// leave the user's own tool call hanging, so it is not rate limited.
	if !repliesOnly(msg) {
		if ok, retry := g.userLimiter.Take(r.Context(), userKey); !ok {
			g.rateLimited(w, x, retry)
			return false
		}
	}

	_, policySpan := telemetry.Start(r.Context(), "mcpgate.policy")
	engine := g.policy.Load()
	x.decisions = make([]policy.Decision, len(msg.Calls))
	if g.agg != nil {
		x.targets = make([]target, len(msg.Calls))
	}
	var missing []string
	denied := -1
	for i := range msg.Calls {
		req := policy.RequestFor(g.name, &msg.Calls[i])
		if g.agg != nil {
			// The policy sees the backend a message goes to and the name it
			// has there, as it would on that backend's own path.
			req.Backend, req.Name = g.agg.Route(r.Header.Get("Mcp-Session-Id"), &msg.Calls[i])
			x.targets[i] = target{req.Backend, req.Name}
		}
		d := engine.Decide(p, req)
		if d.Allow && g.sessionGate && msg.Calls[i].Method == "initialize" {
			d = engine.DecideSession(p, g.name)
		}
		x.decisions[i] = d
		if !d.Allow {
			if denied < 0 {
				denied = i
			}
			for _, s := range d.MissingScopes {
				if !slices.Contains(missing, s) {
					missing = append(missing, s)
				}
			}
		}
	}
	if policySpan.IsRecording() {
		annotatePolicy(policySpan, msg, x.decisions, denied)
	}
	policySpan.End()
	if denied < 0 {
		// Per-tool limits count only calls the policy let through: a denied
		// call must not use up the user's budget for the tool.
		for i := range msg.Calls {
			if c := &msg.Calls[i]; c.Method == "tools/call" {
				backend, name := g.name, c.Name
				if i < len(x.targets) { // an aggregated endpoint: the tool's own backend and name
					backend, name = x.targets[i].backend, x.targets[i].name
				}
				if ok, retry := g.toolLimits.Take(r.Context(), userKey, backend, name); !ok {
					g.rateLimited(w, x, retry)
					x.reason = "tool rate limit exceeded"
					return false
				}
			}
		}
		return true
	}
	x.event = audit.EventPermissionDenied
	if len(missing) > 0 {
		// Step-up (MCP authorization, "insufficient scope"): ask for what the
		// token has plus what this request needs.
		want := append(slices.Clone(p.Scopes), missing...)
		w.Header().Set("WWW-Authenticate", challenge(g.metadataURL, want, "insufficient_scope", "additional scope required"))
		x.rpcError = codePermissionDenied
		mcp.WriteError(w, http.StatusForbidden, msg.Calls[denied].ID, codePermissionDenied, x.decisions[denied].Reason)
		return false
	}
	x.rpcError = codePermissionDenied
	g.writeDenied(w, msg, x.decisions)
	return false
}

// target is the backend a call goes to at an aggregated endpoint and the
// name it has there.
type target struct{ backend, name string }

// annotatePolicy records the decision on the policy span: the effect and
// rule of the denied message (or of the only one), the method and name.
// Never the arguments.
func annotatePolicy(span trace.Span, msg *mcp.Message, ds []policy.Decision, denied int) {
	i := denied
	if i < 0 {
		i = 0
	}
	effect := "allow"
	if denied >= 0 {
		effect = "deny"
	}
	attrs := []attribute.KeyValue{attribute.String("mcpgate.policy.decision", effect), attribute.Int("mcpgate.policy.messages", len(ds))}
	if i < len(ds) {
		c := &msg.Calls[i]
		attrs = append(attrs, attribute.String("mcpgate.policy.rule", ds[i].Rule), attribute.String("mcpgate.policy.effect", ds[i].Effect),
			attribute.String("mcp.method.name", c.Method))
		if c.Name != "" && !strings.HasPrefix(c.Method, "resources/") {
			attrs = append(attrs, attribute.String("mcpgate.tool", c.Name))
		}
	}
	span.SetAttributes(attrs...)
}

// audienceFits rejects a token bound to another backend of this gateway: a
// token whose aud names one of our resource URIs is valid only at the
// resources it names (RFC 8707). Tokens with a generic audience (e.g. the
// gateway's client id) are accepted at every backend, as configured.
func (g *gateway) audienceFits(p *identity.Principal) bool {
	ours := false
	for _, a := range p.Audience {
		a = strings.TrimSuffix(a, "/")
		if strings.EqualFold(a, g.resource) {
			return true
		}
		ours = ours || g.resources[strings.ToLower(a)]
	}
	return !ours
}

// repliesOnly reports whether m holds only responses and notifications.
func repliesOnly(m *mcp.Message) bool {
	for _, c := range m.Calls {
		if !c.IsResponse && !c.IsNotification {
			return false
		}
	}
	return true
}

// singleCallID returns the id of m when m is one request (not a batch,
// notification or response), for the proxy's 502 and 504 answers; else nil,
// and those answers carry a null id (JSON-RPC 2.0 §5).
func singleCallID(m *mcp.Message) []byte {
	if m.Batch || len(m.Calls) != 1 || m.Calls[0].IsNotification || m.Calls[0].IsResponse {
		return nil
	}
	return m.Calls[0].ID
}

// actsForUser reports whether a message has a request that acts for the
// user at the backend (a linked account is then required, see
// proxy.Hop.ActsForUser): tools/call, prompts/get, resources/read.
func actsForUser(m *mcp.Message) bool {
	for _, c := range m.Calls {
		if c.IsNotification || c.IsResponse {
			continue
		}
		switch c.Method {
		case "tools/call", "prompts/get", "resources/read":
			return true
		}
	}
	return false
}

// badMessage answers a body that failed decoding or the header check.
func (g *gateway) badMessage(w http.ResponseWriter, x *exchange, err error) {
	e := &mcp.Error{Code: mcp.CodeInvalidRequest, Message: "invalid request"}
	errors.As(err, &e)
	x.rpcError = e.Code
	mcp.WriteError(w, http.StatusBadRequest, e.ID, e.Code, e.Message)
}

// writeDenied answers a request containing a denied call with HTTP 403 and a
// JSON-RPC error per request in it: a batch is all-or-nothing, so one
// forbidden call cannot ride along with allowed ones.
func (g *gateway) writeDenied(w http.ResponseWriter, msg *mcp.Message, ds []policy.Decision) {
	var errs [][]byte
	for i, c := range msg.Calls {
		if c.IsNotification || c.IsResponse {
			continue
		}
		text := ds[i].Reason
		if ds[i].Allow {
			text = "batch rejected: it contains a call that is not permitted"
		}
		errs = append(errs, mcp.ErrorResponse(c.ID, codePermissionDenied, text, nil))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusForbidden)
	switch {
	case !msg.Batch && len(errs) == 1:
		w.Write(errs[0])
	case len(errs) == 0:
		// Only notifications: JSON-RPC gives them no response body.
	default:
		w.Write([]byte("["))
		w.Write(bytes.Join(errs, []byte(",")))
		w.Write([]byte("]"))
	}
}

func (g *gateway) unauthorized(w http.ResponseWriter, r *http.Request, x *exchange, err error) {
	x.event, x.rpcError = audit.EventAuthFailed, codeUnauthorized
	status, code, desc := authn.Describe(err)
	x.reason = "no token"
	if code != "" || status != http.StatusUnauthorized {
		x.reason = desc
		// The detail goes to the log only; clients get the fixed description.
		g.log.InfoContext(r.Context(), "token rejected", "request_id", x.requestID, "client_ip", g.edge.clientIP(r), "err", err)
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
		mcp.WriteError(w, status, nil, codeUnauthorized, desc)
		return
	}
	w.Header().Set("WWW-Authenticate", challenge(g.metadataURL, g.scopes, code, desc))
	msg := "authentication required"
	if desc != "" {
		msg = desc
	}
	mcp.WriteError(w, status, nil, codeUnauthorized, msg)
}

func (g *gateway) rateLimited(w http.ResponseWriter, x *exchange, retry time.Duration) {
	x.event, x.reason, x.rpcError = audit.EventRateLimited, "rate limit exceeded", codeRateLimited
	secs := int(retry/time.Second) + 1
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	mcp.WriteError(w, http.StatusTooManyRequests, nil, codeRateLimited, "rate limit exceeded")
}

// admit takes a token of key's rate limit (none when limiter is nil) and a
// slot of its in-flight bound, or answers 429. The caller releases the slot.
func (g *gateway) admit(w http.ResponseWriter, r *http.Request, x *exchange, limiter ratelimit.Taker, inFlight *ratelimit.InFlight, key string) (*ratelimit.Slot, bool) {
	if limiter != nil {
		if ok, retry := limiter.Take(r.Context(), key); !ok {
			g.rateLimited(w, x, retry)
			return nil, false
		}
	}
	slot, ok := inFlight.Acquire(key)
	if !ok {
		g.tooManyInFlight(w, x)
	}
	return slot, ok
}

// tooManyInFlight answers a client or user over its in-flight bound. The
// requests it holds will end (or time out), so retrying soon is sensible.
func (g *gateway) tooManyInFlight(w http.ResponseWriter, x *exchange) {
	x.event, x.reason, x.rpcError = audit.EventRateLimited, "too many requests in flight", codeRateLimited
	w.Header().Set("Retry-After", "1")
	mcp.WriteError(w, http.StatusTooManyRequests, nil, codeRateLimited, "too many requests in flight")
}

// listFilter filters list responses through the same decision function
// that authorizes calls, so a listed tool is callable and a hidden one is
// not; nil when x lists nothing. Callers who see the same items
// (policy.ListView.Key) share filtered results through g.lists.
func (g *gateway) listFilter(x *exchange, p *identity.Principal) proxy.ResponseFilter {
	view := g.policy.Load().ListView(p, g.name)
	f := mcp.NewListFilter(x.msg, view.Visible)
	if f == nil {
		return nil
	}
	f.UseCache(g.lists, view.Generation(), view.Key())
	return g.newListResponse(f, &x.refused).filter
}

// streamFilter filters list results on a GET stream.
func (g *gateway) streamFilter(x *exchange, p *identity.Principal) proxy.ResponseFilter {
	view := g.policy.Load().ListView(p, g.name)
	f := mcp.NewStreamListFilter(view.Visible)
	f.UseCache(g.lists, view.Generation(), view.Key())
	return g.newListResponse(f, &x.refused).filter
}

// listResponse is what filtering one request's list answers needs, in one
// allocation: the filter, where a refusal is recorded, and the body a JSON
// answer is read into.
type listResponse struct {
	g       *gateway
	f       *mcp.ListFilter
	refused *bool
	body    listBody
}

func (g *gateway) newListResponse(f *mcp.ListFilter, refused *bool) *listResponse {
	return &listResponse{g: g, f: f, refused: refused}
}

func (lr *listResponse) filter(resp *http.Response) error { return lr.g.filterResponse(resp, lr) }

// maxListBody bounds a JSON list response read whole for filtering.
const maxListBody = 64 << 20

// noStore is the Cache-Control of a filtered answer; shared, as header
// values are only read once set.
var noStore = []string{"no-store"}

// filterResponse rewrites JSON bodies whole and SSE bodies event by event.
// It fails closed: an answer it cannot read and filter (a media type other
// than JSON or SSE, a content coding, several Content-Type fields, a body
// that is not JSON) is replaced by f.Refusal, never forwarded as it came.
//
// A JSON body is read once into a pooled buffer and indexed in the same
// pass that validates it (mcp.ListFilter.Rewrite); when another caller with
// the same view has had the same list filtered, the filtered result is
// taken from the list cache after an exact comparison of the bytes, as for
// SSE.
func (g *gateway) filterResponse(resp *http.Response, lr *listResponse) error {
	f, refused := lr.f, lr.refused
	h := resp.Header
	// The answer is filtered for one user: no cache may serve it to another
	// (RFC 9111 §5.2.2.5), nor revalidate it against the backend's validators.
	h["Cache-Control"] = noStore
	for _, k := range backendCacheHeaders {
		delete(h, k)
	}
	if ce := h.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		// The proxy asks for identity (Accept-Encoding), so this is a
		// backend ignoring it; decoding would only widen what we parse.
		g.refuse(resp, f, refused, "content-encoding "+ce)
		return nil
	}
	cts := h.Values("Content-Type")
	ct := ""
	if len(cts) == 1 {
		ct = cts[0]
	}
	switch {
	case len(cts) > 1:
		g.refuse(resp, f, refused, "several content types")
	case isMediaType(ct, "text/event-stream"):
		resp.Body = newSSEReader(resp.Body, f, refused)
		// Filtering changes the length: a backend's Content-Length would cut
		// the stream short or leave the client waiting for bytes.
		resp.ContentLength = -1
		h.Del("Content-Length")
	case isMediaType(ct, "application/json"):
		lb := &lr.body
		lb.open(f)
		err := lb.readFrom(resp.Body, resp.ContentLength)
		resp.Body.Close()
		if err != nil {
			lb.Close()
			return err
		}
		if len(lb.in) == 0 {
			lb.Close()
			setBody(resp, nil) // nothing to list, nothing to leak
			return nil
		}
		if len(lb.in) > maxListBody {
			lb.Close()
			g.refuse(resp, f, refused, "list response too large")
			return nil
		}
		out := f.Rewrite(lb.in)
		if out == nil {
			lb.Close()
			g.refuse(resp, f, refused, "malformed JSON")
			return nil
		}
		if f.Refused() {
			g.markRefused(refused, resp, "list not filterable")
		}
		lb.Reset(out)
		resp.Body = lb
		resp.ContentLength = int64(len(out))
		h["Content-Length"] = []string{strconv.Itoa(len(out))}
	default:
		// Another type, or none: only an empty body may pass (a 202, or a
		// 404 for an unknown session), since nothing in it can be listed.
		if resp.ContentLength == 0 {
			return nil
		}
		var one [1]byte
		if n, _ := io.ReadFull(resp.Body, one[:]); n == 0 && resp.ContentLength < 0 {
			resp.Body.Close()
			setBody(resp, nil)
			return nil
		}
		g.refuse(resp, f, refused, "content type "+strconv.Quote(ct))
	}
	return nil
}

// backendCacheHeaders are validators and freshness hints of the backend's
// answer, which no longer describe a filtered one.
var backendCacheHeaders = []string{"Etag", "Last-Modified", "Expires", "Age"}

// isMediaType reports whether the Content-Type value v has the media type
// want (lower case), ignoring parameters; type and subtype are
// case-insensitive (RFC 9110 §8.3.1). It does not allocate.
func isMediaType(v, want string) bool {
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	return strings.EqualFold(strings.TrimSpace(v), want)
}

// refuse replaces a backend answer that cannot be filtered by the JSON-RPC
// errors of f.Refusal. A 2xx becomes 502 (the backend's answer was
// unusable); an error status is kept, so that a client still sees, say, a
// 404 for an expired session.
func (g *gateway) refuse(resp *http.Response, f *mcp.ListFilter, refused *bool, reason string) {
	resp.Body.Close()
	if resp.StatusCode < 400 {
		resp.StatusCode = http.StatusBadGateway
	}
	resp.Header.Del("Content-Encoding")
	resp.Header.Set("Content-Type", "application/json")
	resp.Trailer = nil
	setBody(resp, f.Refusal())
	g.markRefused(refused, resp, reason)
}

// markRefused records a refused list response for the audit record and the log.
func (g *gateway) markRefused(refused *bool, resp *http.Response, reason string) {
	*refused = true
	g.log.WarnContext(resp.Request.Context(), "backend list response refused", "status", resp.StatusCode, "reason", reason)
}

func setBody(resp *http.Response, b []byte) {
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
}

// sseReader runs a backend SSE body through an mcp.SSEFilter. Each Read
// returns whole events as soon as they are complete, and the proxy flushes
// after every write, so events are never held back.
//
// An event whose data is not JSON cannot be filtered. On a POST stream it is
// replaced by the errors of ListFilter.Refusal, and the stream ends there
// (the client's requests are answered); on a GET stream, which answers no
// request of its own, the event is dropped.
type sseReader struct {
	src     io.ReadCloser
	f       *mcp.SSEFilter
	lf      *mcp.ListFilter
	refused *bool // set when an event could not be filtered
	out     bytes.Buffer
	buf     *[]byte // pooled read buffer
	outBuf  *[]byte // pooled backing of out
	err     error
	stopped bool // a broken event ended a POST stream
}

func newSSEReader(src io.ReadCloser, lf *mcp.ListFilter, refused *bool) *sseReader {
	r := &sseReader{src: src, lf: lf, refused: refused, buf: sseBuffers.Get().(*[]byte), outBuf: sseOutBuffers.Get().(*[]byte)}
	r.out = *bytes.NewBuffer((*r.outBuf)[:0])
	r.f = mcp.NewSSEFilter(&r.out, nil, r.rewrite)
	return r
}

var sseBuffers = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// sseOutBuffers back sseReader.out, which holds a whole (filtered) event:
// without them every list answer grows one from zero.
var sseOutBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

func (r *sseReader) rewrite(data []byte) []byte {
	if r.stopped {
		return nil
	}
	if len(bytes.TrimSpace(data)) == 0 {
		// An event without data, such as the priming event a server sends
		// first so that the client can resume (MCP 2025-11-25): nothing in
		// it can be listed.
		return data
	}
	out := r.lf.Rewrite(data)
	if out != nil {
		if r.lf.Refused() {
			*r.refused = true
		}
		return out
	}
	*r.refused = true
	if r.lf.IsStream() {
		return nil
	}
	r.stopped = true
	return r.lf.Refusal()
}

func (r *sseReader) Read(p []byte) (int, error) {
	if r.buf == nil {
		return 0, io.ErrClosedPipe
	}
	for r.out.Len() == 0 && r.err == nil {
		if r.stopped {
			r.err = io.EOF
			break
		}
		n, err := r.src.Read(*r.buf)
		if n > 0 {
			if _, werr := r.f.Write((*r.buf)[:n]); werr != nil {
				r.err = werr
			}
		}
		if err != nil && r.err == nil {
			r.f.Close()
			r.err = err
		}
	}
	if r.out.Len() > 0 {
		return r.out.Read(p)
	}
	return 0, r.err
}

func (r *sseReader) Close() error {
	if r.buf != nil {
		sseBuffers.Put(r.buf)
		r.buf = nil
		r.out.Reset() // so that Bytes has the whole capacity, not what is left past the read offset
		if out := r.out.Bytes(); cap(out) <= maxPooledListBody {
			*r.outBuf = out
			sseOutBuffers.Put(r.outBuf)
		}
		r.out = bytes.Buffer{}
		r.f.Release()
		r.lf.Release()
	}
	return r.src.Close()
}

// finish writes the audit record(s) for the request: one per JSON-RPC
// message, or one for a request that never got that far. For a forwarded
// request these are the outcome records; the arguments are in its FORWARD
// records (same request_id) and not repeated. A single list request's
// FORWARD record, held since recordForward, goes first in the same append.
func (g *gateway) finish(sw *statusWriter, r *http.Request, x *exchange) {
	// The server flushes the rest of the response after this (a stream's
	// last write may be long ago): give that its own write_timeout.
	defer sw.renewWriteDeadline()
	elapsed := time.Since(x.start)
	g.metrics.Duration(g.name, elapsed.Seconds())
	status := sw.code()
	if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
		annotateRequest(span, g.name, x)
	}
	base := g.baseRecord(r, x)
	base.Status, base.RPCError, base.DurationMS = status, x.rpcError, audit.Millis(elapsed)
	if status >= 400 || x.outcome.BackendError || x.refused {
		base.Result = audit.ResultError
	}
	if x.event != "" && x.event != audit.EventPermissionDenied {
		base.Decision = audit.DecisionDeny
	}
	if len(x.calls) == 0 {
		base.Method = r.Method
		g.write(r.Context(), &base)
		g.metrics.Observe(g.name, "", string(base.Decision), status)
		return
	}
	for i := range x.calls {
		rec := callRecord(base, x, i)
		if x.forwarded {
			rec.Args = nil
		}
		if i < len(x.targets) {
			g.aggregateOutcome(&rec, x)
		}
		if x.deferred {
			x.batch = [2]*audit.Record{&x.forward, &rec}
			g.writeBatch(r.Context(), x.batch[:])
		} else {
			g.write(r.Context(), &rec)
		}
		g.metrics.Observe(g.name, rec.Method, string(rec.Decision), status)
	}
}

// aggregateOutcome marks the outcome record of a message at an aggregated
// endpoint as an error when its backend call failed or timed out, as the
// proxy's BackendError does on a backend's own path; the client got a
// JSON-RPC error over HTTP 200, so the status alone does not say it. A
// message decided at the endpoint itself (a merged list, initialize) is
// marked when a backend was left out of its answer.
func (g *gateway) aggregateOutcome(rec *audit.Record, x *exchange) {
	call := rec.Backend != g.name
	reason := x.aggregate.Reason(rec.Backend, call)
	if reason == "" {
		return
	}
	rec.Result = audit.ResultError
	if rec.Reason == "" {
		rec.Reason = reason
	}
	if call && rec.RPCError == 0 {
		rec.RPCError = aggregate.CodeBackendUnavailable
	}
}

// annotateRequest records on the request's server span what the audit
// record says of it, without identity or arguments (the audit record, which
// carries the trace id, has those).
func annotateRequest(span trace.Span, backend string, x *exchange) {
	attrs := []attribute.KeyValue{attribute.String("mcpgate.request_id", x.requestID), attribute.String("mcpgate.backend", backend)}
	if x.event != "" {
		attrs = append(attrs, attribute.String("mcpgate.event", x.event))
	}
	if len(x.calls) == 1 {
		attrs = append(attrs, attribute.String("mcp.method.name", x.calls[0].Method))
	}
	span.SetAttributes(attrs...)
}

// baseRecord is the part of x's records common to its messages, without
// the outcome.
func (g *gateway) baseRecord(r *http.Request, x *exchange) audit.Record {
	if x.clientIP == "" {
		x.clientIP = g.edge.clientIP(r)
	}
	base := audit.Record{
		RequestID:    x.requestID,
		Source:       audit.SourceMCP,
		ClientIP:     x.clientIP,
		UserAgent:    r.UserAgent(),
		Backend:      g.name,
		Event:        x.event,
		Reason:       x.reason,
		Result:       audit.ResultSuccess,
		MCPSessionID: r.Header.Get("Mcp-Session-Id"),
		TraceID:      telemetry.TraceID(r.Context()),
	}
	if p := x.principal; p != nil {
		base.Issuer, base.Subject, base.User, base.Username, base.Email = p.Issuer, p.Subject, p.DisplayName(), p.Username, p.Email
		base.Groups, base.ClientID, base.TokenID, base.SessionID = p.Groups, p.ClientID, p.TokenID, p.SessionID
	}
	return base
}

// callRecord is base completed with message i of x and its decision.
func callRecord(base audit.Record, x *exchange, i int) audit.Record {
	c := x.calls[i]
	rec := base
	rec.Method = c.Method
	name := c.Name
	if i < len(x.targets) {
		// As on a backend's own path: its name and the original one.
		rec.Backend, name = x.targets[i].backend, x.targets[i].name
	}
	if strings.HasPrefix(c.Method, "resources/") {
		rec.Resource = name
	} else {
		rec.Tool = name
	}
	rec.Args = c.Arguments
	if i < len(x.decisions) {
		d := x.decisions[i]
		rec.Decision = audit.Decision(d.Effect)
		rec.Rule = d.Rule
		if !d.Allow {
			rec.Reason = d.Reason
			rec.Result = audit.ResultError
		}
	}
	return rec
}

// write logs rec and reports whether the request may go on: false when the
// record was not written under on_error: fail, and then requests are
// refused until a write succeeds again (Auditor.Down).
func (g *gateway) write(ctx context.Context, rec *audit.Record) bool {
	one := [1]*audit.Record{rec}
	return g.writeBatch(ctx, one[:])
}

// writeBatch is write for records appended together (one request's).
func (g *gateway) writeBatch(ctx context.Context, recs []*audit.Record) bool {
	if err := g.audit.LogBatch(context.WithoutCancel(ctx), recs); err != nil {
		g.metrics.AuditFailure()
		g.log.ErrorContext(ctx, "audit write failed; refusing requests until it recovers", "request_id", recs[0].RequestID, "err", err)
		return false
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// statusWriter records the status and keeps Flush working through
// http.ResponseController (Unwrap).
type statusWriter struct {
	http.ResponseWriter
	status int
	header http.Header
	// session, when set, rewrites the answer's Mcp-Session-Id before
	// the headers are sent.
	session      *sessionHeader
	body         *bodyReader // the request's body, when it has one
	writeTimeout time.Duration
}

// renewWriteDeadline gives the next write writeTimeout to complete. It
// replaces the server's WriteTimeout, which counts from the request's start
// and would cut every SSE stream: a stream lives as long as its client
// keeps reading, and a client that stops is cut off.
func (s *statusWriter) renewWriteDeadline() {
	if s.writeTimeout > 0 {
		http.NewResponseController(s.ResponseWriter).SetWriteDeadline(time.Now().Add(s.writeTimeout))
	}
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
		s.header = s.ResponseWriter.Header()
		if s.body != nil && !s.body.eof {
			// Answered without reading the body (a refusal): see
			// closeIfBodyUnread.
			s.header.Set("Connection", "close")
		}
	}
	if h := s.session; h != nil && code >= 200 { // the final answer, not a 1xx
		s.session = nil
		h.rewrite(code, s.ResponseWriter.Header())
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	s.renewWriteDeadline()
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Flush() {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	s.renewWriteDeadline()
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusWriter) code() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}
