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

	"github.com/mcpgate/mcpgate/internal/credential"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/stdio"
	"github.com/mcpgate/mcpgate/internal/telemetry"
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
	Name      string
	Path      string
	target    *url.URL
	cfg       BackendConfig
	stdio     bool                   // the backend is a stdio bridge: tell it the user
	rp        *httputil.ReverseProxy // GET and DELETE; POSTs go through post
	rt        http.RoundTripper      // transport, traced when tracing is on
	transport *http.Transport
	cred      credential.Provider // dynamic credential types only
	log       *slog.Logger
	forward   map[string]bool // canonical names of the client headers passed on
}

// ResponseFilter may rewrite a backend response (e.g. filter a tools/list
// result). It runs before headers are sent to the client; an error refuses
// the answer (502).
type ResponseFilter func(*http.Response) error

// Hop is what one request's passage to the backend needs from the caller.
type Hop struct {
	// Principal is the authenticated caller: identity headers, the stdio
	// user and the credential are derived from it.
	Principal *identity.Principal
	// Token is the bearer token the client presented: the subject token of
	// a token exchange in jwt and introspection mode. It is never forwarded.
	Token string
	// Body is the POST's body, read by the caller (nil otherwise): the hop
	// then sends it with the request's headers in one write.
	Body []byte
	// Credential is presented to the backend. Nil means: obtain it with
	// Backend.Credential for Principal and Token.
	Credential *credential.Header
	// Filter, when set, may rewrite the backend's answer.
	Filter ResponseFilter
	// RPCID is the id of the request when it is a single JSON-RPC call, so
	// that a 502 or 504 answers that call (JSON-RPC 2.0 §5) instead of
	// carrying a null id.
	RPCID []byte
	// ActsForUser is set when the request calls a tool, gets a prompt or
	// reads a resource. A backend whose linked account (credential type
	// linked_token) is not linked yet answers only those with the link URL;
	// the rest is forwarded without a credential.
	ActsForUser bool
}

// Outcome is what the caller learns from a hop.
type Outcome struct {
	// Status is the HTTP status the client was answered with (0 when the
	// client went away before an answer).
	Status int
	// Bytes counts the response body bytes written to the client.
	Bytes int64
	// Latency is the time from the start of the hop to the backend's
	// response headers (or to its failure).
	Latency time.Duration
	// BackendError is set when the backend failed, its answer was refused,
	// or its credential could not be obtained.
	BackendError bool
	// Err is why: a transport error, a refused answer, a credential
	// failure or the client's cancellation (which is not a BackendError).
	Err error
}

// hopState carries a hop through httputil.ReverseProxy, whose Rewrite and
// ModifyResponse see only the request: the one context value this package
// reads, always set by Forward.
type hopState struct {
	hop   Hop
	cred  credential.Header
	start time.Time
	out   Outcome
	w     countingWriter
}

type hopKey struct{}

func stateOf(r *http.Request) *hopState {
	st, _ := r.Context().Value(hopKey{}).(*hopState)
	return st
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
	b.transport = transport
	// With tracing on, the hop runs in a client span whose trace context
	// the backend receives (traceparent).
	b.rt = telemetry.Transport(transport, cfg.Name)
	b.rp = &httputil.ReverseProxy{
		Rewrite:        b.rewrite,
		Transport:      b.rt,
		FlushInterval:  -1, // flush every write: SSE events reach the client as they arrive
		ModifyResponse: func(resp *http.Response) error { return b.modifyResponse(resp, stateOf(resp.Request)) },
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

	st := stateOf(pr.In)
	if st == nil { // not reached through Forward: present nothing
		b.present(out.Header, nil, credential.Header{})
		return
	}
	b.present(out.Header, st.hop.Principal, st.cred)
}

// present sets the identity headers of p (when configured), the stdio user
// and the credential on h, the headers of a request to the backend.
func (b *Backend) present(h http.Header, p *identity.Principal, cred credential.Header) {
	ih := b.cfg.IdentityHeaders
	for _, name := range []string{ih.User, ih.Email, ih.Groups, ih.Subject} {
		if name != "" {
			h.Del(name) // in case one shares a name with a forwarded header
		}
	}
	if p != nil {
		setIf(h, ih.User, p.DisplayName())
		setIf(h, ih.Email, p.Email)
		setIf(h, ih.Subject, p.Subject)
		setIf(h, ih.Groups, strings.Join(p.Groups, ","))
		if b.stdio {
			h.Set(stdio.UserHeader, stdioUser(p))
		}
	}
	if cred.Name != "" {
		h.Set(cred.Name, cred.Value)
	}
}

// URL is the backend's MCP endpoint (for a stdio backend, its bridge).
func (b *Backend) URL() string { return b.target.String() }

// Transport returns a RoundTripper for an MCP client of this backend (an
// aggregated endpoint's backend session) acting for the caller that
// current returns at each request (principal and bearer token): it
// presents the same identity headers and credential as Forward, over the
// backend's pooled connections.
func (b *Backend) Transport(current func() (*identity.Principal, string)) http.RoundTripper {
	return roundTripper{b: b, current: current}
}

type roundTripper struct {
	b       *Backend
	current func() (*identity.Principal, string)
}

func (t roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	p, tok := t.current()
	cred, ok := presetCredential(req.Context(), t.b)
	var err error
	if !ok {
		cred, err = t.b.Credential(req.Context(), p, tok)
	}
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	out := req.Clone(req.Context()) // a RoundTripper must not change req
	if t.b.stdio {
		out.Header.Del(stdio.UserHeader)
	}
	t.b.present(out.Header, p, cred)
	// The span of the call this request belongs to, if any, is the
	// backend's parent (its session's stream and notifications have none).
	telemetry.Inject(out.Context(), out.Header)
	resp, err := t.b.transport.RoundTrip(out)
	if err == nil {
		resp.Header.Del("Set-Cookie")
	}
	return resp, err
}

// stdioUser is the opaque key the stdio bridge counts a user's sessions by:
// a hash of issuer and subject, which are free text and may not be valid
// in a header.
func stdioUser(p *identity.Principal) string {
	h := sha256.Sum256([]byte(p.Key()))
	return hex.EncodeToString(h[:])
}

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

// Credential returns what b presents for the caller p, who presented
// token: the static header, one obtained per call (the upstream token, a
// token exchange, a service account), or nothing. It is the one place a
// backend credential is obtained; a failure means the request must not
// reach the backend.
//
// An account not linked yet (linked_token) is no credential here: what
// does not act for the user goes without it, as in Forward.
// ActingCredential is for the requests that do.
func (b *Backend) Credential(ctx context.Context, p *identity.Principal, token string) (credential.Header, error) {
	h, err := b.credential(ctx, credential.Subject{Principal: p, Token: token})
	if errors.Is(err, credential.ErrNotLinked) {
		return credential.Header{}, nil
	}
	return h, err
}

// ActingCredential is Credential for a request that acts for the user
// (tools/call, prompts/get, resources/read): a linked_token backend without
// a linked account answers *credential.LinkRequiredError, whose URL starts
// the link.
func (b *Backend) ActingCredential(ctx context.Context, p *identity.Principal, token string) (credential.Header, error) {
	return b.credential(ctx, credential.Subject{Principal: p, Token: token, ActsForUser: true})
}

// NeedsLink reports whether b's credential is an account the user links
// (linked_token).
func (b *Backend) NeedsLink() bool { return b.cfg.Credential.Type == credential.TypeLinkedToken }

type presetKey struct{}

type preset struct {
	b *Backend
	h credential.Header
}

// WithCredential returns ctx carrying h as b's credential for the requests
// a Transport of b sends with it: one that the caller obtained already
// (ActingCredential) is not asked for again.
func WithCredential(ctx context.Context, b *Backend, h credential.Header) context.Context {
	return context.WithValue(ctx, presetKey{}, preset{b: b, h: h})
}

func presetCredential(ctx context.Context, b *Backend) (credential.Header, bool) {
	p, ok := ctx.Value(presetKey{}).(preset)
	return p.h, ok && p.b == b
}

func (b *Backend) credential(ctx context.Context, s credential.Subject) (credential.Header, error) {
	if b.cfg.Credential.Type == credential.TypeStatic {
		return credential.Header{Name: b.cfg.Credential.Header, Value: b.cfg.Credential.Value}, nil
	}
	if b.cred == nil {
		return credential.Header{}, nil
	}
	return b.cred.Get(ctx, s)
}

// Forward sends r to the backend and streams its answer to w. The caller
// has authenticated and authorized r and set r.Body to the (already read)
// request body.
func (b *Backend) Forward(w http.ResponseWriter, r *http.Request, hop Hop) Outcome {
	st := &hopState{hop: hop, start: time.Now()}
	st.w.ResponseWriter = w
	if hop.Credential != nil {
		st.cred = *hop.Credential
	} else {
		// Obtained before the hop so that a missing credential fails the
		// request instead of reaching the backend unauthenticated.
		cred, err := b.credential(r.Context(), credential.Subject{Principal: hop.Principal, Token: hop.Token, ActsForUser: hop.ActsForUser})
		switch {
		case errors.Is(err, credential.ErrNotLinked):
			// Not linked yet: what only describes the backend (initialize,
			// lists, notifications) goes without a credential; a call that
			// acts for the user got the link URL (credentialError).
		case err != nil:
			b.credentialError(&st.w, r, st, err)
			return st.outcome()
		default:
			st.cred = cred
		}
	}
	if r.Method == http.MethodPost && hop.Body != nil {
		b.post(&st.w, r, st)
		return st.outcome()
	}
	b.rp.ServeHTTP(&st.w, r.WithContext(context.WithValue(r.Context(), hopKey{}, st)))
	return st.outcome()
}

func (st *hopState) outcome() Outcome {
	st.out.Status, st.out.Bytes = st.w.status, st.w.n
	return st.out
}

// ServeHTTP forwards r with no principal and the static credential, if
// any (for tests and internal callers).
func (b *Backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.Forward(w, r, Hop{})
}

// countingWriter records the status and body bytes of the answer; Flush
// and Unwrap keep streaming working (http.ResponseController).
type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (c *countingWriter) WriteHeader(code int) {
	if c.status == 0 && code >= 200 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) Flush() { http.NewResponseController(c.ResponseWriter).Flush() }

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// errorHandler answers a failed backend hop with 502 and a JSON-RPC error
// body (clients parse JSON-RPC, not HTML); details stay in the log.
func (b *Backend) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	b.answerError(w, r, stateOf(r), err)
}

// answerError is errorHandler for the hop st (nil when r did not come
// through Forward).
func (b *Backend) answerError(w http.ResponseWriter, r *http.Request, st *hopState, err error) {
	if st != nil {
		st.fail(err)
	}
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
	b.log.WarnContext(r.Context(), "backend request failed", "backend", b.Name, "method", r.Method, "err", err)
	mcp.WriteError(w, status, st.rpcID(), mcp.CodeInternalError, msg)
}

// fail records err as the hop's outcome.
func (st *hopState) fail(err error) {
	st.out.Err = err
	if st.out.Latency == 0 {
		st.out.Latency = time.Since(st.start)
	}
	st.out.BackendError = !errors.Is(err, context.Canceled)
}

func (st *hopState) rpcID() []byte {
	if st == nil {
		return nil
	}
	return st.hop.RPCID
}

// credentialError answers a request whose backend credential could not be
// obtained: a JSON-RPC error naming the backend and the kind of failure,
// the detail in the log only.
func (b *Backend) credentialError(w http.ResponseWriter, r *http.Request, st *hopState, err error) {
	var link *credential.LinkRequiredError
	if errors.As(err, &link) {
		// The user's answer to give, not a backend failure.
		st.out.Err = err
		writeLinkRequired(w, st.rpcID(), b.Name, link)
		return
	}
	st.fail(err)
	if errors.Is(err, context.Canceled) {
		return
	}
	status, msg := credential.Describe(b.Name, err)
	b.log.Warn("backend credential unavailable", "backend", b.Name, "err", err)
	mcp.WriteError(w, status, st.rpcID(), mcp.CodeInternalError, msg)
}

// CodeURLElicitationRequired is the JSON-RPC error of MCP 2025-11-25
// (client/elicitation, "URL Elicitation Required Error"): the request needs
// the user to complete the URL-mode elicitations in error.data first.
const CodeURLElicitationRequired = -32042

// writeLinkRequired answers a call that needs a linked account with a URL
// elicitation required error. It is an answer to the call, not a gateway
// failure: HTTP 200, so that clients read the JSON-RPC error.
func writeLinkRequired(w http.ResponseWriter, id []byte, backend string, e *credential.LinkRequiredError) {
	msg, data := LinkRequired(backend, e)
	mcp.WriteErrorData(w, http.StatusOK, id, CodeURLElicitationRequired, msg, data)
}

// LinkElicitations is the data of a URL elicitation required error.
type LinkElicitations struct {
	Elicitations []LinkElicitation `json:"elicitations"`
}

// LinkElicitation is one URL-mode elicitation (MCP 2025-11-25).
type LinkElicitation struct {
	Mode          string `json:"mode"`
	ElicitationID string `json:"elicitationId"`
	URL           string `json:"url"`
	Message       string `json:"message"`
}

// LinkRequired is the message and data of the URL elicitation required
// error (CodeURLElicitationRequired) that asks the user to link the
// account e names for backend; aggregated endpoints answer it too.
func LinkRequired(backend string, e *credential.LinkRequiredError) (string, LinkElicitations) {
	msg := fmt.Sprintf("backend %s needs your %s account: open the link to connect it, then call the tool again", backend, e.DisplayName)
	return msg, LinkElicitations{Elicitations: []LinkElicitation{{Mode: "url", ElicitationID: e.ElicitationID, URL: e.URL, Message: msg}}}
}
