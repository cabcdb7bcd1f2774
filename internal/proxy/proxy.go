// Package proxy forwards authorized MCP requests to backend MCP servers over
// streamable HTTP: one pooled keep-alive transport per backend, responses
// (including SSE streams) passed through without buffering, and the client's
// own credentials never forwarded.
package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/credential"
	"github.com/mcpgate/mcpgate/internal/stdio"
)

// Options are the backend's dependencies; nil fields get safe defaults.
type Options struct {
	Logger *slog.Logger
	// Credential yields the backend's credential per request; required for
	// the types obtained per call (credential.Config.Dynamic).
	Credential credential.Provider
}

// Backend is one MCP server behind the gateway.
type Backend struct {
	Name    string
	Path    string
	target  *url.URL
	cfg     BackendConfig
	stdio   bool // the backend is a stdio bridge: tell it the user
	rp      *httputil.ReverseProxy
	cred    credential.Provider // dynamic credential types only
	log     *slog.Logger
	forward map[string]bool // canonical names of the client headers passed on
}

// ResponseFilter may rewrite a backend response (e.g. filter a tools/list
// result). It runs before headers are sent to the client.
type ResponseFilter func(*http.Response) error

type ctxKey int

const (
	filterKey ctxKey = iota
	principalKey
)

// WithResponseFilter attaches f to the request context, for the proxy to run
// on the backend's response.
func WithResponseFilter(ctx context.Context, f ResponseFilter) context.Context {
	return context.WithValue(ctx, filterKey, f)
}

// WithPrincipal attaches the authenticated caller, for identity headers and
// credential selection.
func WithPrincipal(ctx context.Context, p *authn.Principal) context.Context {
	return context.WithValue(ctx, principalKey, p)
}

// NewBackend builds a backend from validated configuration.
func NewBackend(cfg BackendConfig, opts Options) (*Backend, error) {
	target, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", cfg.Name, err)
	}
	if cfg.Credential.Dynamic() && opts.Credential == nil {
		return nil, fmt.Errorf("backend %s: credential %s has no provider", cfg.Name, cfg.Credential.Type)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	b := &Backend{Name: cfg.Name, Path: cfg.Path, target: target, cfg: cfg, stdio: cfg.IsStdio(), log: log,
		forward: forwardSet(cfg.ForwardHeaders)}
	if cfg.Credential.Dynamic() {
		b.cred = opts.Credential // a static one is set in rewrite without a lookup
	}
	dialer := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:                 nil, // a gateway must not be redirected by HTTP_PROXY env of the host
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          cfg.MaxIdleConns,
		MaxIdleConnsPerHost:   cfg.MaxIdleConns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
	}
	b.rp = &httputil.ReverseProxy{
		Rewrite:        b.rewrite,
		Transport:      transport,
		FlushInterval:  -1, // flush every write: SSE events reach the client as they arrive
		ModifyResponse: modifyResponse,
		BufferPool:     copyBuffers, // without it every request allocates a 32 KiB copy buffer
		ErrorHandler:   b.errorHandler,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return b, nil
}

// defaultForwardHeaders are the client request headers every backend
// receives: what the streamable HTTP transport needs (media types, session,
// protocol version, the request metadata headers of MCP 2026-07-28 and
// resumption), W3C Trace Context and Baggage, and User-Agent. Every other
// client header is dropped unless backends[].forward_headers names it, so a
// backend that trusts X-Forwarded-User, Remote-User or the like never sees a
// client's forgery. Mcp-Param-* headers (named by a tool's input schema)
// are forwarded too, as the specification asks of intermediaries.
var defaultForwardHeaders = []string{
	"Content-Type", "Accept", "Mcp-Session-Id", "Mcp-Protocol-Version", "Mcp-Method", "Mcp-Name",
	"Last-Event-Id", "Traceparent", "Tracestate", "Baggage", "User-Agent",
}

// identityEncoding is shared by every request: the transport only reads it.
var identityEncoding = []string{"identity"}

// paramHeaderPrefix starts the Mcp-Param-{Name} headers (canonical form).
const paramHeaderPrefix = "Mcp-Param-"

func forwardSet(extra []string) map[string]bool {
	set := make(map[string]bool, len(defaultForwardHeaders)+len(extra))
	for _, h := range defaultForwardHeaders {
		set[textproto.CanonicalMIMEHeaderKey(h)] = true
	}
	for _, h := range extra {
		set[textproto.CanonicalMIMEHeaderKey(h)] = true
	}
	return set
}

func (b *Backend) rewrite(pr *httputil.ProxyRequest) {
	out := pr.Out
	// Out.Header is ReverseProxy's copy of the client's headers: keep only
	// the allowed ones. Keys are canonical; one that is not (a name Go would
	// not canonicalize) is not in the set and goes too.
	for k := range out.Header {
		if !b.forward[k] && !strings.HasPrefix(k, paramHeaderPrefix) {
			delete(out.Header, k)
		}
	}
	// List responses must be readable to be filtered: ask for no content
	// coding (RFC 9110 §12.5.3); the filter refuses any that comes anyway.
	out.Header["Accept-Encoding"] = identityEncoding
	if b.stdio {
		out.Header.Del(stdio.UserHeader) // only the gateway names the user
	}
	pr.SetURL(b.target)
	out.URL.Path = b.target.Path // the backend endpoint is exactly the configured URL
	out.URL.RawPath = b.target.RawPath
	out.Host = b.target.Host
	// The gateway's own X-Forwarded-For (the socket peer), -Host and -Proto;
	// the client's were dropped above.
	pr.SetXForwarded()

	ih := b.cfg.IdentityHeaders
	for _, h := range []string{ih.User, ih.Email, ih.Groups, ih.Subject} {
		if h != "" {
			out.Header.Del(h) // in case one shares a name with a forwarded header
		}
	}
	p, _ := pr.In.Context().Value(principalKey).(*authn.Principal)
	if p != nil {
		setIf(out.Header, ih.User, p.DisplayName())
		setIf(out.Header, ih.Email, p.Email)
		setIf(out.Header, ih.Subject, p.Subject)
		setIf(out.Header, ih.Groups, strings.Join(p.Groups, ","))
		if b.stdio {
			out.Header.Set(stdio.UserHeader, stdioUser(p))
		}
	}
	if b.cfg.Credential.Type == credential.TypeStatic {
		out.Header.Set(b.cfg.Credential.Header, b.cfg.Credential.Value)
	} else if h, ok := pr.In.Context().Value(credentialKey{}).(credential.Header); ok {
		out.Header.Set(h.Name, h.Value)
	}
}

// stdioUser is the opaque key the stdio bridge counts a user's sessions by:
// a hash of issuer and subject, which are free text and may not be valid
// in a header.
func stdioUser(p *authn.Principal) string {
	h := sha256.Sum256([]byte(p.Key()))
	return hex.EncodeToString(h[:])
}

// credentialKey carries the credential ServeHTTP obtained to rewrite.
type credentialKey struct{}

// bufferPool recycles the 32 KiB buffers ReverseProxy copies bodies with.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte  { return *b.p.Get().(*[]byte) }
func (b *bufferPool) Put(x []byte) { b.p.Put(&x) }

var copyBuffers = &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

func setIf(h http.Header, name, value string) {
	if name != "" && value != "" {
		h.Set(name, value)
	}
}

// errSwitchingProtocols: the gateway never asks a backend to upgrade, so a
// 101 is a backend error (RFC 9110 §15.2.2). Failing here, before
// ReverseProxy's upgrade handling, answers 502 and never hijacks the
// client's connection into a tunnel that no policy or audit would see.
var errSwitchingProtocols = errors.New("backend answered 101 Switching Protocols; upgrades are not proxied")

func modifyResponse(resp *http.Response) error {
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return errSwitchingProtocols
	}
	resp.Header.Del("Set-Cookie") // backend cookies would be scoped to the gateway's origin
	if f, ok := resp.Request.Context().Value(filterKey).(ResponseFilter); ok && f != nil {
		return f(resp)
	}
	return nil
}

// ServeHTTP forwards r to the backend. The caller has authenticated and
// authorized r and set r.Body to the (already read) request body.
func (b *Backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if b.cred != nil {
		// Resolved before the hop so that a missing credential fails the
		// request instead of reaching the backend unauthenticated.
		p, _ := r.Context().Value(principalKey).(*authn.Principal)
		tok, _ := authn.BearerToken(r) // the subject token in jwt and introspection mode
		h, err := b.cred.Get(r.Context(), credential.Subject{Principal: p, Token: tok})
		if err != nil {
			b.credentialError(w, r, err)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), credentialKey{}, h))
	}
	b.rp.ServeHTTP(w, r)
}

// errorHandler answers a failed backend hop with 502 and a JSON-RPC error
// body (clients parse JSON-RPC, not HTML); details stay in the log.
func (b *Backend) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		return // the client went away; nothing to answer
	}
	status := http.StatusBadGateway
	msg := "backend unavailable"
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		status = http.StatusGatewayTimeout
		msg = "backend timed out"
	}
	b.log.Warn("backend request failed", "backend", b.Name, "method", r.Method, "err", err)
	var id []byte
	if st := StatusFrom(r.Context()); st != nil {
		st.BackendError = true
		id = st.RPCID
	}
	WriteJSONRPCError(w, status, id, -32603, msg)
}

// credentialError answers a request whose backend credential could not be
// obtained: a JSON-RPC error naming the backend and the kind of failure,
// the detail in the log only.
func (b *Backend) credentialError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	status, msg := credential.Describe(b.Name, err)
	b.log.Warn("backend credential unavailable", "backend", b.Name, "err", err)
	var id []byte
	if st := StatusFrom(r.Context()); st != nil {
		st.BackendError = true
		id = st.RPCID
	}
	WriteJSONRPCError(w, status, id, -32603, msg)
}

// WriteJSONRPCError writes a JSON-RPC 2.0 error response with HTTP status.
func WriteJSONRPCError(w http.ResponseWriter, status int, id []byte, code int, message string) {
	if len(id) == 0 {
		id = []byte("null")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":%d,"message":%q}}`, id, code, message)
}

// Status carries what the proxy hop needs from the caller and what the
// caller learns from it.
type Status struct {
	// RPCID is the id of the request when it is a single JSON-RPC call, so
	// that a 502 or 504 answers that call (JSON-RPC 2.0 §5) instead of
	// carrying a null id.
	RPCID []byte
	// BackendError is set when the backend failed or its answer was refused.
	BackendError bool
}

type statusKey struct{}

// WithStatus attaches s to ctx; the proxy records backend failures in it.
func WithStatus(ctx context.Context, s *Status) context.Context {
	return context.WithValue(ctx, statusKey{}, s)
}

// StatusFrom returns the Status attached by WithStatus, or nil.
func StatusFrom(ctx context.Context) *Status {
	s, _ := ctx.Value(statusKey{}).(*Status)
	return s
}
