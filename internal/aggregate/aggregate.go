// Package aggregate serves several MCP backends on one endpoint and one MCP
// session. It is built on the go-sdk: the client's session is an
// mcp.Server session, and each backend is reached through an
// mcp.ClientSession opened lazily per client session (at most one per
// backend), so protocol negotiation, progress, cancellation and the
// rewriting of JSON-RPC ids between the two sides come from the SDK.
//
// The gateway in front has already authenticated, strictly decoded and
// authorized every message (with the backend and original name that Route
// gives); this package routes by name or URI, merges and filters lists with
// the same policy, and forwards notifications and server-to-client
// requests.
package aggregate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/credential"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/policy"
	"github.com/mcpgate/mcpgate/internal/proxy"
	"github.com/mcpgate/mcpgate/internal/telemetry"
)

// JSON-RPC error codes of this endpoint's own answers.
const (
	// CodeBackendUnavailable answers a call whose backend failed, timed
	// out or had no credential: internal error (JSON-RPC 2.0 §5.1), since
	// the backend, not the request, failed.
	CodeBackendUnavailable = -32603
	codeInvalidParams      = -32602
)

// Options are the endpoint's dependencies.
type Options struct {
	Policy *policy.Holder
	Logger *slog.Logger
	// SessionTimeout closes a client session idle that long, and its
	// backend sessions with it.
	SessionTimeout time.Duration
	// Version is reported as the server version in initialize.
	Version string
}

// Endpoint is one aggregated endpoint.
type Endpoint struct {
	cfg      Config
	names    *names
	backends []*proxy.Backend
	policy   *policy.Holder
	log      *slog.Logger
	version  string
	handler  http.Handler
	// opened counts backend sessions opened, per backend.
	opened []atomic.Int64
	// kept counts the list items its sessions keep (maxKeptItems).
	kept atomic.Int64
	// spanNames are the backend spans' names, "backend NAME" as on a
	// backend's own path.
	spanNames []string

	mu       sync.Mutex
	sessions map[string]*session // by the client's Mcp-Session-Id
}

// New builds the endpoint; backends are in cfg.Backends order.
func New(cfg Config, backends []*proxy.Backend, opts Options) (*Endpoint, error) {
	if len(backends) != len(cfg.Backends) {
		return nil, fmt.Errorf("aggregate %s: %d backends given, %d configured", cfg.Name, len(backends), len(cfg.Backends))
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	e := &Endpoint{cfg: cfg, names: newNames(&cfg), backends: backends, policy: opts.Policy, version: opts.Version,
		log: log.With("endpoint", cfg.Name), opened: make([]atomic.Int64, len(backends)), sessions: map[string]*session{}}
	for _, b := range cfg.Backends {
		e.spanNames = append(e.spanNames, "backend "+b)
	}
	h := sdk.NewStreamableHTTPHandler(e.newServer, &sdk.StreamableHTTPOptions{
		SessionTimeout: opts.SessionTimeout,
		// The gateway checks Host and Origin, and bounds the body, itself.
		DisableLocalhostProtection: true,
		Logger:                     e.log,
	})
	// The principal crosses the SDK as its TokenInfo: the SDK hands it to
	// every request's handler and refuses a session to another user.
	e.handler = auth.RequireBearerToken(verifyPrincipal, &auth.RequireBearerTokenOptions{AllowMissingExpiration: true})(h)
	return e, nil
}

// Name identifies the endpoint in policy requests, audit records and metrics.
func (e *Endpoint) Name() string { return e.cfg.Name }

// Opened returns the number of backend sessions opened so far for each
// backend (for tests and benchmarks).
func (e *Endpoint) Opened() []int64 {
	out := make([]int64, len(e.opened))
	for i := range e.opened {
		out[i] = e.opened[i].Load()
	}
	return out
}

// caller is one HTTP request of the endpoint: who it comes from (the
// principal and the bearer token it presented: the subject token of a
// token exchange in jwt and introspection mode; never forwarded), the
// gateway's span of it, and what became of its backend calls.
type caller struct {
	p     *identity.Principal
	token string
	// span is the request's span at the gateway: the parent of the spans
	// of its backend calls (the SDK runs handlers under contexts of its
	// own, which do not carry it).
	span trace.SpanContext

	mu       sync.Mutex
	failures []Failure
}

// Outcome is what became of one request's backend calls, for its audit
// records.
type Outcome struct {
	// Failures are the backend calls that failed or timed out, in the
	// order they ended. A backend's JSON-RPC error answer is not one (it
	// is passed on, as on the backend's own path), nor is the client's
	// cancellation.
	Failures []Failure
}

// Failure is one backend call that failed.
type Failure struct {
	Backend string
	// Message is what the client was told ("backend k8s timed out"), or
	// for a backend left out of a merged answer, why.
	Message string
	// Call is set for a call routed to the backend (tools/call,
	// prompts/get, resources/read, subscriptions, completion), which was
	// answered with the JSON-RPC error Message; unset for a backend left
	// out of a merged list or initialize, whose answer the client got
	// without it.
	Call bool
}

// Reason returns the failures of backend's calls (call set) or of the
// backends left out of merged answers (call unset), joined, or "".
func (o Outcome) Reason(backend string, call bool) string {
	var out []string
	for _, f := range o.Failures {
		if f.Call == call && (!call || f.Backend == backend) && !slices.Contains(out, f.Message) {
			out = append(out, f.Message)
		}
	}
	return strings.Join(out, "; ")
}

// clientKind makes a span a client span, without allocating per call.
var clientKind = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}

// startSpan starts the span "backend NAME" of a call of rq's to backend i:
// a child of the request's span at the gateway, whose trace context the
// backend receives (proxy.Backend.Transport). Nothing when tracing is off.
func (e *Endpoint) startSpan(ctx context.Context, rq *caller, i int, method string) (context.Context, trace.Span) {
	if rq != nil && rq.span.IsValid() {
		ctx = trace.ContextWithSpanContext(ctx, rq.span)
	}
	ctx, span := telemetry.Start(ctx, e.spanNames[i], clientKind...)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("mcpgate.backend", e.cfg.Backends[i]), attribute.String("mcpgate.endpoint", e.cfg.Name),
			attribute.String("mcp.method.name", method))
	}
	return ctx, span
}

// failed records that rq's call to backend i failed with err, on its span
// and for its audit record, and returns the JSON-RPC error the client gets.
// call: see Failure.Call. The client's own cancellation is not a failure.
func (e *Endpoint) failed(rq *caller, span trace.Span, i int, err error, call bool) error {
	rerr := e.unavailable(i, err)
	if errors.Is(err, context.Canceled) || errors.Is(err, errSessionClosed) {
		return rerr
	}
	span.SetStatus(codes.Error, rerr.Message) // fixed texts: no error detail, which may quote a token
	if rq != nil {
		rq.mu.Lock()
		rq.failures = append(rq.failures, Failure{Backend: e.cfg.Backends[i], Message: rerr.Message, Call: call})
		rq.mu.Unlock()
	}
	return rerr
}

func (c *caller) outcome() Outcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Outcome{Failures: slices.Clone(c.failures)}
}

type callerKey struct{}

// innerToken replaces the client's Authorization header before the SDK
// sees the request: the client's token goes no further than the gateway.
var innerToken = []string{"Bearer mcpgate-aggregate"}

func verifyPrincipal(ctx context.Context, _ string, _ *http.Request) (*auth.TokenInfo, error) {
	c, _ := ctx.Value(callerKey{}).(*caller)
	if c == nil || c.p == nil {
		return nil, fmt.Errorf("%w: no principal", auth.ErrInvalidToken)
	}
	return &auth.TokenInfo{UserID: c.p.Key(), Extra: map[string]any{"caller": c}}, nil
}

func callerOf(req sdk.Request) *caller {
	if ex := req.GetExtra(); ex != nil && ex.TokenInfo != nil {
		c, _ := ex.TokenInfo.Extra["caller"].(*caller)
		return c
	}
	return nil
}

// Serve handles one HTTP request of the endpoint for p, whom the gateway
// has authenticated and whose messages it has authorized, and returns what
// became of its backend calls. The SDK answers a POST once its requests are
// handled, so their failures are known by then; a call still running when
// the client goes away is not in the outcome.
func (e *Endpoint) Serve(w http.ResponseWriter, r *http.Request, p *identity.Principal) Outcome {
	tok, _ := authn.BearerToken(r)
	r.Header["Authorization"] = innerToken
	c := &caller{p: p, token: tok, span: trace.SpanContextFromContext(r.Context())}
	e.handler.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
	return c.outcome()
}

// Route names the backend a message goes to and the name it has there, for
// the policy decision and the audit record. A message that names nothing
// (initialize, lists, ping) or a name no backend has goes to the
// endpoint itself, under its name.
func (e *Endpoint) Route(sessionID string, c *mcp.Call) (backend, name string) {
	switch c.Method {
	case "tools/call", "prompts/get":
		if t, ok := e.names.resolve(c.Name); ok {
			return e.cfg.Backends[t.backend], t.name
		}
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		if i, ok := e.resourceBackend(sessionID, c.Name); ok {
			return e.cfg.Backends[i], c.Name
		}
	case "completion/complete":
		if c.RefKind == mcp.RefPrompt {
			if t, ok := e.names.resolve(c.Name); ok {
				return e.cfg.Backends[t.backend], t.name
			}
		} else if i, ok := e.resourceBackend(sessionID, c.Name); ok {
			return e.cfg.Backends[i], c.Name
		}
	}
	return e.cfg.Name, c.Name
}

func (e *Endpoint) resourceBackend(sessionID, uri string) (int, bool) {
	if s := e.session(sessionID); s != nil {
		return s.resourceBackend(uri)
	}
	return e.defaultResourceBackend()
}

func (e *Endpoint) session(id string) *session {
	if id == "" {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sessions[id]
}

// Close ends every client session and its backend sessions.
func (e *Endpoint) Close() error {
	e.mu.Lock()
	all := make([]*session, 0, len(e.sessions))
	for _, s := range e.sessions {
		all = append(all, s)
	}
	e.mu.Unlock()
	for _, s := range all {
		if ss := s.serverSession(); ss != nil {
			ss.Close()
		}
		s.close()
	}
	return nil
}

// unavailable is the error a call gets when its backend cannot answer.
func (e *Endpoint) unavailable(i int, err error) *jsonrpc.Error {
	msg := fmt.Sprintf("backend %s unavailable", e.cfg.Backends[i])
	switch {
	case errors.Is(err, errCredential):
		_, msg = credential.Describe(e.cfg.Backends[i], err)
	case errors.Is(err, context.DeadlineExceeded):
		msg = fmt.Sprintf("backend %s timed out", e.cfg.Backends[i])
	}
	return &jsonrpc.Error{Code: CodeBackendUnavailable, Message: msg}
}
