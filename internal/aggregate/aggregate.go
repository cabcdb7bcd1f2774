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
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/credential"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/policy"
	"github.com/mcpgate/mcpgate/internal/proxy"
)

// JSON-RPC error codes of this endpoint's own answers.
const (
	codeBackendUnavailable = -32603 // internal error (JSON-RPC 2.0 §5.1): the backend, not the request, failed
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

// caller is who a request comes from: the principal and the bearer token
// it presented (the subject token of a token exchange in jwt and
// introspection mode; never forwarded).
type caller struct {
	p     *identity.Principal
	token string
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
// has authenticated and whose messages it has authorized.
func (e *Endpoint) Serve(w http.ResponseWriter, r *http.Request, p *identity.Principal) {
	tok, _ := authn.BearerToken(r)
	r.Header["Authorization"] = innerToken
	e.handler.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, &caller{p, tok})))
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
func (e *Endpoint) unavailable(i int, err error) error {
	msg := fmt.Sprintf("backend %s unavailable", e.cfg.Backends[i])
	switch {
	case errors.Is(err, errCredential):
		_, msg = credential.Describe(e.cfg.Backends[i], err)
	case errors.Is(err, context.DeadlineExceeded):
		msg = fmt.Sprintf("backend %s timed out", e.cfg.Backends[i])
	}
	return &jsonrpc.Error{Code: codeBackendUnavailable, Message: msg}
}
