package aggregate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/policy"
)

// session is one client session of the endpoint: the SDK server it talks
// to and, opened lazily, one backend session per backend.
type session struct {
	e      *Endpoint
	server *sdk.Server

	// send is the SDK's sender of requests to the client, beneath the
	// checks of ServerSession's typed methods: see elicit.
	send sdk.MethodHandler

	mu         sync.Mutex
	c          *caller // the latest request's (same user, maybe a newer token)
	ss         *sdk.ServerSession
	clientCaps *sdk.ClientCapabilities
	conns      []*conn
	closed     bool
	// progress maps a progress token of a call in flight to its context, so
	// that the backend's progress reaches the client on that call's stream.
	progress map[any]context.Context
	// resources maps resource URIs and URI-template prefixes this session
	// has listed to their backend, for routing by URI.
	resources map[string]int
	templates []uriTemplate
	// merged are the session's merged list pages.
	merged mergedCache
}

type uriTemplate struct {
	prefix  string // the template up to its first '{'
	backend int
}

// conn is the session's link to one backend.
type conn struct {
	open sync.Mutex // held while opening: at most one backend session
	cs   atomic.Pointer[sdk.ClientSession]
	// calls are the contexts of the client's requests in flight at this
	// backend, newest last: a request the backend sends meanwhile (sampling,
	// elicitation) goes back on the newest one's stream.
	mu    sync.Mutex
	calls []context.Context
	// read counts the notifications read off the backend's responses and
	// handled those forwarded: see settle.
	read, handled atomic.Int64
	// pages are the backend session's lists, kept until it says they changed.
	pages pageCache
}

// settle waits, after a call to this backend, until the notifications read
// before its response are forwarded: the SDK hands a backend's
// notifications to a handler goroutine apart from the responses it reads,
// so the last progress or log message before a response could otherwise
// reach the client after it (and miss the call's stream). A call with no
// notification pending does not wait; the wait is bounded (a notification
// the SDK drops is never handled, and is then forgotten).
func (c *conn) settle() {
	want := c.read.Load()
	for range 100 {
		if c.handled.Load() >= want {
			return
		}
		time.Sleep(time.Millisecond)
	}
	c.handled.Store(want)
}

// noteCounter counts, in a backend's response body, the notifications the
// SDK will read from it. It matches the method member as the SDKs write it
// (compact or with one space); text that merely looks like one makes settle
// wait a little, no more.
type noteCounter struct {
	io.ReadCloser
	c    *conn
	tail []byte // the end of the previous read, for a match across reads
}

var notePatterns = [][]byte{[]byte(`"method":"notifications/`), []byte(`"method": "notifications/`)}

func (r *noteCounter) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if n > 0 {
		buf := append(r.tail, p[:n]...)
		for _, pat := range notePatterns {
			r.c.read.Add(int64(bytes.Count(buf, pat)))
		}
		keep := min(len(buf), len(notePatterns[1])-1)
		r.tail = append(r.tail[:0], buf[len(buf)-keep:]...)
	}
	return n, err
}

type countingTransport struct {
	rt http.RoundTripper
	c  *conn
}

func (t countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(req)
	if err == nil && resp.Body != nil {
		resp.Body = &noteCounter{ReadCloser: resp.Body, c: t.c}
	}
	return resp, err
}

// maxTracked bounds the per-session maps fed by backends and clients.
const maxTracked = 10_000

// newServer is the SDK's per-session server factory: called once per
// initialize, with the request that carries it.
func (e *Endpoint) newServer(r *http.Request) *sdk.Server {
	c, _ := r.Context().Value(callerKey{}).(*caller)
	if c == nil {
		c = &caller{}
	}
	s := &session{e: e, c: c, conns: make([]*conn, len(e.backends)), progress: map[any]context.Context{}, resources: map[string]int{}}
	for i := range s.conns {
		s.conns[i] = &conn{pages: pageCache{budget: &e.kept}}
	}
	s.merged.budget = &e.kept
	s.server = sdk.NewServer(&sdk.Implementation{Name: "mcpgate-" + e.cfg.Name, Version: e.version}, &sdk.ServerOptions{
		// Everything a member may offer; initialize answers the merge of
		// what they do offer.
		Capabilities: &sdk.ServerCapabilities{
			Logging:     &sdk.LoggingCapabilities{},
			Tools:       &sdk.ToolCapabilities{ListChanged: true},
			Prompts:     &sdk.PromptCapabilities{ListChanged: true},
			Resources:   &sdk.ResourceCapabilities{ListChanged: true, Subscribe: true},
			Completions: &sdk.CompletionCapabilities{},
		},
		SubscribeHandler:   s.subscribe,
		UnsubscribeHandler: s.unsubscribe,
		CompletionHandler:  s.complete,
		Logger:             e.log,
	})
	s.server.AddReceivingMiddleware(s.middleware)
	s.server.AddSendingMiddleware(func(next sdk.MethodHandler) sdk.MethodHandler {
		s.send = next // called once, here: the SDK's own sender
		return next
	})
	return s.server
}

func (s *session) principal() *identity.Principal {
	p, _ := s.caller()
	return p
}

// caller returns the principal and bearer token of the session's latest
// request, for the backend credential.
func (s *session) caller() (*identity.Principal, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c.p, s.c.token
}

// errSessionClosed: the client's session ended; no backend is at fault.
var errSessionClosed = errors.New("session closed")

// errCredential marks a backend credential that could not be obtained.
var errCredential = errors.New("backend credential unavailable")

// credentialFailure reports why backend i's credential cannot be obtained
// for the session's caller, or nil. The transport obtains it per request,
// but the SDK does not keep that error's kind; asking again (on a failure
// path only) names it.
func (s *session) credentialFailure(ctx context.Context, i int) error {
	p, tok := s.caller()
	if _, err := s.e.backends[i].Credential(ctx, p, tok); err != nil {
		return fmt.Errorf("%w: %w", errCredential, err)
	}
	return nil
}

func (s *session) serverSession() *sdk.ServerSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ss
}

// middleware handles what the endpoint aggregates and passes the rest
// (ping, logging level, subscriptions, completion) to the SDK server.
func (s *session) middleware(next sdk.MethodHandler) sdk.MethodHandler {
	return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
		rq := callerOf(req)
		if rq != nil {
			s.mu.Lock()
			renewed := s.c.token != rq.token
			s.c = rq
			s.mu.Unlock()
			if renewed {
				// A backend may list by the credential the caller's token
				// gives it, which may now give less: its lists are asked
				// for again.
				for _, c := range s.conns {
					c.pages.invalidate(kindTools, kindPrompts, kindResources, kindTemplates)
				}
			}
		}
		if req.GetParams() == nil && method != "initialize" && !strings.HasSuffix(method, "/list") {
			return next(ctx, method, req) // the SDK answers missing params
		}
		switch method {
		case "initialize":
			return s.initialize(ctx, rq, req, next)
		case "tools/list":
			return s.listTools(ctx, rq, req.GetParams().(*sdk.ListToolsParams))
		case "tools/call":
			return s.callTool(ctx, rq, req.GetParams().(*sdk.CallToolParamsRaw))
		case "prompts/list":
			return s.listPrompts(ctx, rq, req.GetParams().(*sdk.ListPromptsParams))
		case "prompts/get":
			return s.getPrompt(ctx, rq, req.GetParams().(*sdk.GetPromptParams))
		case "resources/list":
			return s.listResources(ctx, rq, req.GetParams().(*sdk.ListResourcesParams))
		case "resources/templates/list":
			return s.listTemplates(ctx, rq, req.GetParams().(*sdk.ListResourceTemplatesParams))
		case "resources/read":
			return s.readResource(ctx, rq, req.GetParams().(*sdk.ReadResourceParams))
		case "logging/setLevel":
			s.setLevel(ctx, req.GetParams().(*sdk.SetLoggingLevelParams))
		}
		return next(ctx, method, req)
	}
}

// initialize opens the backend sessions (each bounded by the endpoint's
// timeout) and answers the merge of their capabilities and instructions.
// A backend that does not answer is left out and opened again when a
// later request needs it.
func (s *session) initialize(ctx context.Context, rq *caller, req sdk.Request, next sdk.MethodHandler) (sdk.Result, error) {
	ss, _ := req.GetSession().(*sdk.ServerSession)
	s.mu.Lock()
	first := s.ss == nil && ss != nil
	if first {
		s.ss = ss
	}
	if ip, ok := req.GetParams().(*sdk.InitializeParams); ok && ip != nil && ip.Capabilities != nil {
		s.clientCaps = ip.Capabilities
	}
	s.mu.Unlock()
	if first {
		s.e.mu.Lock()
		s.e.sessions[ss.ID()] = s
		s.e.mu.Unlock()
		go func() { ss.Wait(); s.close() }()
	}
	res, err := next(ctx, "initialize", req)
	if err != nil {
		return res, err
	}
	ir, ok := res.(*sdk.InitializeResult)
	if !ok {
		return res, nil
	}
	caps := &sdk.ServerCapabilities{Logging: &sdk.LoggingCapabilities{}}
	var instructions []string
	s.each(ctx, rq, "initialize", 0, func(ctx context.Context, i int, cs *sdk.ClientSession) error {
		return nil
	}, func(i int, cs *sdk.ClientSession) {
		bi := cs.InitializeResult()
		if bi == nil || bi.Capabilities == nil {
			return
		}
		c := bi.Capabilities
		if c.Tools != nil {
			caps.Tools = &sdk.ToolCapabilities{ListChanged: true}
		}
		if c.Prompts != nil {
			caps.Prompts = &sdk.PromptCapabilities{ListChanged: true}
		}
		if c.Resources != nil {
			if caps.Resources == nil {
				caps.Resources = &sdk.ResourceCapabilities{ListChanged: true}
			}
			caps.Resources.Subscribe = caps.Resources.Subscribe || c.Resources.Subscribe
		}
		if c.Completions != nil {
			caps.Completions = &sdk.CompletionCapabilities{}
		}
		if bi.Instructions != "" {
			instructions = append(instructions, "## "+s.e.cfg.Backends[i]+"\n\n"+bi.Instructions)
		}
	})
	if caps.Tools == nil && caps.Prompts == nil && caps.Resources == nil {
		// No backend answered: offer what may come when they rejoin.
		caps = ir.Capabilities
	}
	out := *ir
	out.Capabilities = caps
	out.Instructions = strings.Join(instructions, "\n\n")
	return &out, nil
}

// each runs f on every backend the caller may use, concurrently, each
// bounded by the endpoint's timeout and in a span of its own (method names
// the client's request, rq); a backend that fails is dropped (and reopened
// on its next use), and a failure or timeout is recorded for the request's
// audit record. done, if set, runs for the backends that succeeded, one at
// a time in backend order. Backends in skip (bit i: backend i) are left
// alone.
func (s *session) each(ctx context.Context, rq *caller, method string, skip uint64, f func(context.Context, int, *sdk.ClientSession) error, done func(int, *sdk.ClientSession)) {
	n := len(s.conns)
	ok := make([]*sdk.ClientSession, n)
	var wg sync.WaitGroup
	p := s.principal()
	engine := s.e.policy.Load()
	for i := range n {
		if skip&(1<<i) != 0 || !s.mayUse(engine, p, i) {
			continue // nothing there for this caller: no session is opened
		}
		wg.Go(func() {
			sctx, span := s.e.startSpan(ctx, rq, i, method)
			defer span.End()
			tctx, cancel := context.WithTimeout(sctx, s.e.cfg.Timeout)
			defer cancel()
			cs, err := s.conn(tctx, i)
			if err == nil {
				err = f(tctx, i, cs)
			}
			if err != nil {
				s.e.log.Warn("backend left out", "backend", s.e.cfg.Backends[i], "err", err)
				if !isRPCError(err) {
					s.drop(i, cs)
					if tctx.Err() != nil {
						err = tctx.Err()
					}
					s.e.failed(rq, span, i, err, false)
				}
				return
			}
			ok[i] = cs
		})
	}
	wg.Wait()
	if done != nil {
		for i, cs := range ok {
			if cs != nil {
				done(i, cs)
			}
		}
	}
}

// mayUse reports whether p may use backend i at all under engine: if not,
// no session is opened there and nothing of it is listed.
func (s *session) mayUse(engine *policy.Engine, p *identity.Principal, i int) bool {
	return !engine.GrantsNothing(p) && engine.DecideSession(p, s.e.cfg.Backends[i]).Allow
}

// isRPCError reports whether err is a JSON-RPC error the backend answered
// (its session is fine) rather than a failure of the transport, which the
// SDK reports with codes of its own: -32005 "rejected by transport" (e.g.
// an HTTP error status), -32004 and -32003 for a closing connection.
func isRPCError(err error) bool {
	var re *jsonrpc.Error
	if !errors.As(err, &re) {
		return false
	}
	switch {
	case re.Code == -32005,
		re.Code == -32004 && re.Message == "server is closing",
		re.Code == -32003 && re.Message == "client is closing":
		return false
	}
	return true
}

// conn returns the session's backend session i, opening it if needed.
func (s *session) conn(ctx context.Context, i int) (*sdk.ClientSession, error) {
	c := s.conns[i]
	if cs := c.cs.Load(); cs != nil {
		return cs, nil
	}
	c.open.Lock()
	defer c.open.Unlock()
	if cs := c.cs.Load(); cs != nil {
		return cs, nil
	}
	s.mu.Lock()
	closed, caps := s.closed, s.clientCaps
	s.mu.Unlock()
	if closed {
		return nil, errSessionClosed
	}
	b := s.e.backends[i]
	client := sdk.NewClient(&sdk.Implementation{Name: "mcpgate", Version: s.e.version}, s.clientOptions(i, caps))
	client.AddReceivingMiddleware(s.backendMiddleware(i))
	t := &sdk.StreamableClientTransport{
		Endpoint:   b.URL(),
		HTTPClient: &http.Client{Transport: countingTransport{b.Transport(s.caller), s.conns[i]}},
		MaxRetries: -1, // a failed stream drops the session; the next use opens a new one
	}
	cs, err := client.Connect(ctx, t, nil)
	if err != nil {
		if cerr := s.credentialFailure(ctx, i); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	s.e.opened[i].Add(1)
	c.cs.Store(cs)
	s.mu.Lock()
	closed = s.closed
	s.mu.Unlock()
	if closed { // the client's session ended while this one opened
		c.cs.Store(nil)
		cs.Close()
		return nil, errSessionClosed
	}
	go func() {
		cs.Wait()
		c.cs.CompareAndSwap(cs, nil) // the backend went away: reopen on next use
	}()
	return cs, nil
}

// drop forgets backend session cs (after a transport failure), so the next
// use opens a new one: that is how a recovered backend rejoins.
func (s *session) drop(i int, cs *sdk.ClientSession) {
	if cs != nil && s.conns[i].cs.CompareAndSwap(cs, nil) {
		cs.Close()
	}
}

// close ends the backend sessions with the client's.
func (s *session) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	ss := s.ss
	s.mu.Unlock()
	if ss != nil {
		s.e.mu.Lock()
		if s.e.sessions[ss.ID()] == s {
			delete(s.e.sessions, ss.ID())
		}
		s.e.mu.Unlock()
	}
	for _, c := range s.conns {
		c.open.Lock()
		if cs := c.cs.Swap(nil); cs != nil {
			cs.Close()
		}
		c.open.Unlock()
		c.pages.clear()
	}
	s.merged.clear()
}

// clientOptions forward what backend i sends to the client: notifications,
// and the requests the client's capabilities allow.
func (s *session) clientOptions(i int, caps *sdk.ClientCapabilities) *sdk.ClientOptions {
	o := &sdk.ClientOptions{
		Logger:       s.e.log,
		Capabilities: &sdk.ClientCapabilities{},
		// The kept pages go before the client hears of the change, so that
		// the list it asks for next is the backend's new one.
		ToolListChangedHandler: func(context.Context, *sdk.ToolListChangedRequest) {
			s.conns[i].pages.invalidate(kindTools)
			s.listChanged("tools")
		},
		PromptListChangedHandler: func(context.Context, *sdk.PromptListChangedRequest) {
			s.conns[i].pages.invalidate(kindPrompts)
			s.listChanged("prompts")
		},
		ResourceListChangedHandler: func(context.Context, *sdk.ResourceListChangedRequest) {
			s.conns[i].pages.invalidate(kindResources, kindTemplates)
			s.listChanged("resources")
		},
		ResourceUpdatedHandler: func(ctx context.Context, r *sdk.ResourceUpdatedNotificationRequest) {
			s.server.ResourceUpdated(context.WithoutCancel(ctx), r.Params)
		},
		LoggingMessageHandler: func(ctx context.Context, r *sdk.LoggingMessageRequest) {
			if ss := s.serverSession(); ss != nil && r.Params != nil {
				lp := *r.Params
				if lp.Logger == "" {
					lp.Logger = s.e.cfg.Backends[i]
				}
				ss.Log(s.related(i, ctx), &lp)
			}
		},
		ProgressNotificationHandler: func(ctx context.Context, r *sdk.ProgressNotificationClientRequest) {
			s.progressed(ctx, r.Params)
		},
	}
	if caps != nil {
		o.Capabilities.Experimental = caps.Experimental
		if caps.RootsV2 != nil || caps.Roots.ListChanged {
			o.Capabilities.RootsV2 = &sdk.RootCapabilities{}
		}
		if caps.Sampling != nil {
			o.CreateMessageHandler = func(ctx context.Context, r *sdk.CreateMessageRequest) (*sdk.CreateMessageResult, error) {
				ss := s.serverSession()
				if ss == nil {
					return nil, errors.New("no client session")
				}
				return ss.CreateMessage(s.related(i, ctx), r.Params)
			}
		}
		if caps.Elicitation != nil {
			// Advertised as the client does; backendMiddleware forwards
			// elicitation/create itself.
			o.Capabilities.Elicitation = caps.Elicitation
			if caps.Elicitation.URL != nil {
				o.ElicitationCompleteHandler = func(ctx context.Context, r *sdk.ElicitationCompleteNotificationRequest) {
					if ss := s.serverSession(); ss != nil && r.Params != nil {
						if err := ss.NotifyElicitationComplete(s.related(i, ctx), r.Params); err != nil {
							s.e.log.Debug("elicitation/complete not forwarded", "backend", s.e.cfg.Backends[i], "err", err)
						}
					}
				}
			}
		}
	}
	return o
}

// backendMiddleware answers roots/list from the client's roots and
// forwards elicitation/create to the client.
func (s *session) backendMiddleware(i int) sdk.Middleware {
	return func(next sdk.MethodHandler) sdk.MethodHandler {
		return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
			if strings.HasPrefix(method, "notifications/") {
				defer s.conns[i].handled.Add(1)
			}
			switch method {
			case "roots/list":
				ss := s.serverSession()
				if ss == nil {
					return nil, errors.New("no client session")
				}
				p, _ := req.GetParams().(*sdk.ListRootsParams)
				return ss.ListRoots(s.related(i, ctx), p)
			case "elicitation/create":
				p, _ := req.GetParams().(*sdk.ElicitParams)
				return s.elicit(s.related(i, ctx), p)
			}
			return next(ctx, method, req)
		}
	}
}

// elicit forwards a backend's elicitation/create to the client as the
// backend phrased it, and the client's answer back as the client gave it.
// The SDK's typed path (Client's ElicitationHandler, ServerSession.Elicit)
// would check the requested schema against its own reading of it, which
// refuses SEP-1330's titled multi-select enum (go-sdk v1.8.0,
// validateElicitArrayProperty), and would fill the answer with the
// schema's defaults: the backend that asks judges its schema and the
// answer, as it does without the gateway. The gateway checks what the
// client said it supports (MCP 2025-11-25, client/elicitation
// "Capabilities"), as ServerSession.Elicit does.
func (s *session) elicit(ctx context.Context, p *sdk.ElicitParams) (sdk.Result, error) {
	ss := s.serverSession()
	if ss == nil || s.send == nil {
		return nil, errors.New("no client session")
	}
	if p == nil {
		return nil, &jsonrpc.Error{Code: codeInvalidParams, Message: "elicitation/create without params"}
	}
	var caps *sdk.ElicitationCapabilities
	if ip := ss.InitializeParams(); ip != nil && ip.Capabilities != nil {
		caps = ip.Capabilities.Elicitation
	}
	q := *p
	if q.Mode == "" { // before 2025-11-25: no mode, and form was the only one
		q.Mode = "form"
		if q.URL != "" || q.ElicitationID != "" {
			q.Mode = "url"
		}
	}
	var refused string
	switch {
	case caps == nil:
		refused = "client does not support elicitation"
	case q.Mode == "form" && caps.Form == nil && caps.URL != nil: // {} alone means form
		refused = `client does not support "form" elicitation`
	case q.Mode == "url" && caps.URL == nil:
		refused = `client does not support "url" elicitation`
	case q.Mode != "form" && q.Mode != "url":
		refused = fmt.Sprintf("unsupported elicitation mode %q", q.Mode)
	}
	if refused != "" {
		return nil, &jsonrpc.Error{Code: codeInvalidParams, Message: refused}
	}
	return s.send(ctx, "elicitation/create", &sdk.ServerRequest[*sdk.ElicitParams]{Session: ss, Params: &q})
}

// related is the context for a message from backend i to the client: the
// newest client request in flight at that backend (so that the SDK sends it
// on that request's stream), cancelled when ctx is.
func (s *session) related(i int, ctx context.Context) context.Context {
	c := s.conns[i]
	c.mu.Lock()
	var call context.Context
	if n := len(c.calls); n > 0 {
		call = c.calls[n-1]
	}
	c.mu.Unlock()
	if call == nil {
		return ctx
	}
	out, cancel := context.WithCancel(context.WithoutCancel(call))
	context.AfterFunc(ctx, cancel)
	return out
}

// track records a client request in flight at backend i; the returned
// function ends it.
func (s *session) track(i int, ctx context.Context, token any) func() {
	c := s.conns[i]
	c.mu.Lock()
	c.calls = append(c.calls, ctx)
	c.mu.Unlock()
	if token != nil {
		s.mu.Lock()
		if len(s.progress) < maxTracked {
			s.progress[token] = ctx
		}
		s.mu.Unlock()
	}
	return func() {
		c.mu.Lock()
		for k, x := range c.calls {
			if x == ctx {
				c.calls = append(c.calls[:k], c.calls[k+1:]...)
				break
			}
		}
		c.mu.Unlock()
		if token != nil {
			s.mu.Lock()
			delete(s.progress, token)
			s.mu.Unlock()
		}
	}
}

// progressed forwards a backend's progress notification for a call in
// flight. Progress tokens are the client's own, passed through.
func (s *session) progressed(ctx context.Context, p *sdk.ProgressNotificationParams) {
	if p == nil {
		return
	}
	s.mu.Lock()
	call := s.progress[progressKey(p.ProgressToken)]
	ss := s.ss
	s.mu.Unlock()
	if call == nil || ss == nil {
		return // not a call of this client in flight
	}
	ss.NotifyProgress(call, p)
}

// progressKey normalizes a token for the map: JSON numbers decode as
// float64 on one side and may be int on the other.
func progressKey(t any) any {
	switch v := t.(type) {
	case int:
		return float64(v)
	case int64:
		return float64(v)
	case json.Number:
		f, _ := v.Float64()
		return f
	}
	return t
}

// listChanged tells the client that a list changed. The SDK sends
// list_changed when a server's own list changes, so a placeholder is added
// and removed (debounced into one notification); the endpoint answers the
// lists itself, so the placeholder is never listed.
func (s *session) listChanged(kind string) {
	switch kind {
	case "tools":
		s.server.AddTool(&sdk.Tool{Name: placeholder, InputSchema: json.RawMessage(`{"type":"object"}`)}, placeholderTool)
		s.server.RemoveTools(placeholder)
	case "prompts":
		s.server.AddPrompt(&sdk.Prompt{Name: placeholder}, placeholderPrompt)
		s.server.RemovePrompts(placeholder)
	case "resources":
		s.server.AddResource(&sdk.Resource{Name: placeholder, URI: "mcpgate:placeholder"}, placeholderResource)
		s.server.RemoveResources("mcpgate:placeholder")
	}
}

const placeholder = "mcpgate.list_changed"

func placeholderTool(context.Context, *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
	return nil, errors.New("not a tool")
}

func placeholderPrompt(context.Context, *sdk.GetPromptRequest) (*sdk.GetPromptResult, error) {
	return nil, errors.New("not a prompt")
}

func placeholderResource(context.Context, *sdk.ReadResourceRequest) (*sdk.ReadResourceResult, error) {
	return nil, errors.New("not a resource")
}
