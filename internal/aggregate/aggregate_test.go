package aggregate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/credential"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/policy"
	"github.com/mcpgate/mcpgate/internal/proxy"
)

type echoIn struct {
	Text string `json:"text"`
}

// testBackend is a go-sdk MCP server whose tools answer with their
// backend's name. down makes it answer 503; up serves a fresh server (its
// sessions lost, as after a restart).
type testBackend struct {
	name  string
	tools []string
	page  int
	srv   *httptest.Server
	mu    sync.Mutex
	h     http.Handler
	last  atomic.Pointer[sdk.Server]
	seen  atomic.Value // the last request's headers
	tps   []string     // every traceparent received (under mu)
	n     atomic.Int64 // requests served
	// listed counts the tools/list requests served.
	listed atomic.Int64
	// static: the server declares no tools listChanged (it sends no
	// tools/list_changed).
	static bool
}

func newTestBackend(t testing.TB, name string, page int, tools ...string) *testBackend {
	b := &testBackend{name: name, tools: tools, page: page}
	b.up()
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.seen.Store(r.Header.Clone())
		b.n.Add(1)
		b.mu.Lock()
		if tp := r.Header.Get("Traceparent"); tp != "" {
			b.tps = append(b.tps, tp)
		}
		h := b.h
		b.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *testBackend) up() {
	opts := &sdk.ServerOptions{PageSize: b.page, Instructions: "use " + b.name}
	if b.static {
		opts.Capabilities = &sdk.ServerCapabilities{Tools: &sdk.ToolCapabilities{}}
	}
	s := sdk.NewServer(&sdk.Implementation{Name: b.name}, opts)
	s.AddReceivingMiddleware(func(next sdk.MethodHandler) sdk.MethodHandler {
		return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
			if method == "tools/list" {
				b.listed.Add(1)
			}
			return next(ctx, method, req)
		}
	})
	if slices.Contains(b.tools, "ask") {
		sdk.AddTool(s, &sdk.Tool{Name: "ask"}, b.ask)
	}
	if slices.Contains(b.tools, "elicit") {
		var send sdk.MethodHandler
		s.AddSendingMiddleware(func(next sdk.MethodHandler) sdk.MethodHandler { send = next; return next })
		sdk.AddTool(s, &sdk.Tool{Name: "elicit"}, func(ctx context.Context, req *sdk.CallToolRequest, in elicitIn) (*sdk.CallToolResult, any, error) {
			return b.elicit(ctx, send, req, in), nil, nil
		})
	}
	for _, tool := range b.tools {
		if tool == "ask" || tool == "elicit" {
			continue
		}
		if tool == "slow" {
			sdk.AddTool(s, &sdk.Tool{Name: tool}, func(ctx context.Context, req *sdk.CallToolRequest, in echoIn) (*sdk.CallToolResult, any, error) {
				select {
				case <-ctx.Done():
				case <-time.After(5 * time.Second):
				}
				return &sdk.CallToolResult{}, nil, nil
			})
			continue
		}
		sdk.AddTool(s, &sdk.Tool{Name: tool}, func(ctx context.Context, req *sdk.CallToolRequest, in echoIn) (*sdk.CallToolResult, any, error) {
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: b.name + "/" + tool + ":" + in.Text}}}, nil, nil
		})
	}
	b.last.Store(s)
	b.mu.Lock()
	b.h = sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil)
	b.mu.Unlock()
}

// ask makes a server-to-client request in the middle of a call.
func (b *testBackend) ask(ctx context.Context, req *sdk.CallToolRequest, in echoIn) (*sdk.CallToolResult, any, error) {
	r, err := req.Session.CreateMessage(ctx, &sdk.CreateMessageParams{MaxTokens: 10,
		Messages: []*sdk.SamplingMessage{{Role: "user", Content: &sdk.TextContent{Text: in.Text}}}})
	if err != nil {
		return nil, nil, err
	}
	return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: b.name + " sampled " + r.Content.(*sdk.TextContent).Text}}}, nil, nil
}

type elicitIn struct {
	Params   string `json:"params"`   // elicitation/create's params (JSON), sent as they are
	Complete string `json:"complete"` // then notifications/elicitation/complete for this id
}

// elicit sends elicitation/create with in.Params as they are, through the
// SDK's sender rather than ServerSession.Elicit (whose checks a backend in
// another language does not make), and answers the client's result as
// JSON. With in.Complete it then sends notifications/elicitation/complete
// and, last, a progress notification (for the client to know that nothing
// else comes).
func (b *testBackend) elicit(ctx context.Context, send sdk.MethodHandler, req *sdk.CallToolRequest, in elicitIn) *sdk.CallToolResult {
	var p sdk.ElicitParams
	var raw struct {
		RequestedSchema json.RawMessage `json:"requestedSchema"`
	}
	if err := json.Unmarshal([]byte(in.Params), &p); err != nil {
		return &sdk.CallToolResult{IsError: true, Content: []sdk.Content{&sdk.TextContent{Text: err.Error()}}}
	}
	if json.Unmarshal([]byte(in.Params), &raw) == nil && raw.RequestedSchema != nil {
		p.RequestedSchema = raw.RequestedSchema
	}
	text := func(s string) *sdk.CallToolResult {
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: s}}}
	}
	res, err := send(ctx, "elicitation/create", &sdk.ServerRequest[*sdk.ElicitParams]{Session: req.Session, Params: &p})
	if err != nil {
		return text("error: " + err.Error())
	}
	if in.Complete != "" {
		req.Session.NotifyElicitationComplete(ctx, &sdk.ElicitationCompleteParams{ElicitationID: in.Complete})
		req.Session.NotifyProgress(ctx, &sdk.ProgressNotificationParams{ProgressToken: req.Params.GetProgressToken(), Progress: 1})
	}
	out, _ := json.Marshal(res)
	return text(string(out))
}

func (b *testBackend) down() {
	b.mu.Lock()
	b.h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
	b.mu.Unlock()
}

func (b *testBackend) sessions() int {
	n := 0
	for range b.last.Load().Sessions() {
		n++
	}
	return n
}

func (b *testBackend) proxy(t testing.TB, cred proxy.CredentialConfig) *proxy.Backend {
	cfg := proxy.BackendConfig{Name: b.name, URL: b.srv.URL + "/mcp", Credential: cred,
		IdentityHeaders: proxy.IdentityHeaders{User: "X-User"}}
	cfg.SetDefaults(1)
	pb, err := proxy.NewBackend(cfg, proxy.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return pb
}

var (
	alice = &identity.Principal{Issuer: "https://idp", Subject: "alice", Username: "alice", Groups: []string{"ops"}}
	bob   = &identity.Principal{Issuer: "https://idp", Subject: "bob", Username: "bob", Groups: []string{"dev"}}
	vera  = &identity.Principal{Issuer: "https://idp", Subject: "vera", Username: "vera", Groups: []string{"vs"}}
)

func testPolicy(t testing.TB) *policy.Holder {
	cfg := policy.Config{
		Roles: map[string]policy.Role{
			"ops": {Backends: map[string]policy.Grants{"vsphere": {Tools: []string{"*"}}, "k8s": {Tools: []string{"*"}}}},
			"dev": {Backends: map[string]policy.Grants{"k8s": {Tools: []string{"get_*"}}}},
			"vs":  {Tools: []string{"vsphere/*"}},
		},
		Groups: map[string][]string{"ops": {"ops"}, "dev": {"dev"}, "vs": {"vs"}},
	}
	cfg.SetDefaults()
	e, err := policy.Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return policy.NewHolder(e)
}

type fixture struct {
	e        *Endpoint
	vsphere  *testBackend
	k8s      *testBackend
	url      string
	identity atomic.Pointer[identity.Principal]
	// ctx, when set, gives each request its context (a span, say).
	ctx atomic.Pointer[func(*http.Request) context.Context]

	mu       sync.Mutex
	failures []Failure // of every request, in order
	posts    atomic.Int64
}

// takeFailures returns the failures recorded since the last call. A client
// may read its answer before Serve returns: it waits for the POSTs in flight.
func (f *fixture) takeFailures() []Failure {
	for i := 0; i < 200 && f.posts.Load() > 0; i++ {
		time.Sleep(5 * time.Millisecond)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.failures
	f.failures = nil
	return out
}

func newFixture(t testing.TB, cfg Config, extra ...string) *fixture {
	f := &fixture{
		vsphere: newTestBackend(t, "vsphere", 0, append([]string{"get_vm", "power_off"}, extra...)...),
		k8s:     newTestBackend(t, "k8s", 1, append([]string{"get_pods", "delete_pod", "get_nodes"}, extra...)...),
	}
	cfg.Backends = []string{"vsphere", "k8s"}
	cfg.Path = "/mcp"
	cfg.SetDefaults()
	e, err := New(cfg, []*proxy.Backend{
		f.vsphere.proxy(t, proxy.CredentialConfig{Type: "static", Header: "Authorization", Value: "Bearer vsphere-secret"}),
		f.k8s.proxy(t, proxy.CredentialConfig{Type: "none"}),
	}, Options{Policy: testPolicy(t), Logger: slog.New(slog.DiscardHandler), SessionTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	f.e = e
	t.Cleanup(func() { e.Close() })
	f.identity.Store(alice)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fn := f.ctx.Load(); fn != nil {
			r = r.WithContext((*fn)(r))
		}
		if r.Method == http.MethodPost {
			f.posts.Add(1)
			defer f.posts.Add(-1)
		}
		out := e.Serve(w, r, f.identity.Load())
		f.mu.Lock()
		f.failures = append(f.failures, out.Failures...)
		f.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL + "/mcp"
	return f
}

func (f *fixture) connect(t *testing.T, opts *sdk.ClientOptions) *sdk.ClientSession {
	t.Helper()
	c := sdk.NewClient(&sdk.Implementation{Name: "test"}, opts)
	cs, err := c.Connect(context.Background(), &sdk.StreamableClientTransport{Endpoint: f.url, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func toolNames(t *testing.T, cs *sdk.ClientSession) []string {
	t.Helper()
	var names []string
	for tool, err := range cs.Tools(context.Background(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	return names
}

func callText(t *testing.T, cs *sdk.ClientSession, name string) (string, error) {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: name, Arguments: map[string]any{"text": "hi"}})
	if err != nil {
		return "", err
	}
	if len(res.Content) != 1 {
		t.Fatalf("%s: content %v", name, res.Content)
	}
	return res.Content[0].(*sdk.TextContent).Text, nil
}

// TestToolsAcrossBackends: prefixed and renamed names, lists filtered per
// user with the backend and original name, calls routed to the right
// backend, one backend session per client session and backend, and the
// merged initialize.
func TestToolsAcrossBackends(t *testing.T) {
	f := newFixture(t, Config{Rename: map[string]string{"vsphere/power_off": "vm_power_off"}})
	cs := f.connect(t, nil)

	if got, want := toolNames(t, cs), []string{"k8s__delete_pod", "k8s__get_nodes", "k8s__get_pods", "vm_power_off", "vsphere__get_vm"}; !slices.Equal(got, want) {
		t.Errorf("alice's tools %v, want %v", got, want)
	}
	ir := cs.InitializeResult()
	if ir.Capabilities.Tools == nil || !strings.Contains(ir.Instructions, "## vsphere\n\nuse vsphere") || !strings.Contains(ir.Instructions, "## k8s\n\nuse k8s") {
		t.Errorf("initialize not merged: %+v %q", ir.Capabilities, ir.Instructions)
	}
	for name, want := range map[string]string{
		"vsphere__get_vm": "vsphere/get_vm:hi",
		"vm_power_off":    "vsphere/power_off:hi",
		"k8s__get_pods":   "k8s/get_pods:hi",
	} {
		got, err := callText(t, cs, name)
		if err != nil || got != want {
			t.Errorf("call %s = %q, %v; want %q", name, got, err, want)
		}
	}
	// The renamed tool is reachable only under its new name.
	if _, err := callText(t, cs, "vsphere__power_off"); err == nil || !strings.Contains(err.Error(), "unknown tool") {
		t.Errorf("old name of a renamed tool: %v", err)
	}
	if got := f.e.Opened(); !slices.Equal(got, []int64{1, 1}) {
		t.Errorf("backend sessions opened %v, want [1 1]", got)
	}
	h := f.vsphere.seen.Load().(http.Header)
	if h.Get("Authorization") != "Bearer vsphere-secret" || h.Get("X-User") != "alice" {
		t.Errorf("vsphere got Authorization %q, X-User %q", h.Get("Authorization"), h.Get("X-User"))
	}

	// Closing the client's session closes its backend sessions.
	cs.Close()
	waitFor(t, "client session closed", func() bool { f.e.mu.Lock(); defer f.e.mu.Unlock(); return len(f.e.sessions) == 0 })
	waitFor(t, "vsphere sessions closed", func() bool { return f.vsphere.sessions() == 0 })
	waitFor(t, "k8s sessions closed", func() bool { return f.k8s.sessions() == 0 })

	// bob sees only what the policy grants him on k8s, and no session is
	// opened to vsphere for him.
	f.identity.Store(bob)
	cb := f.connect(t, nil)
	if got, want := toolNames(t, cb), []string{"k8s__get_nodes", "k8s__get_pods"}; !slices.Equal(got, want) {
		t.Errorf("bob's tools %v, want %v", got, want)
	}
	if got := f.e.Opened(); !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("backend sessions opened %v, want [1 2]", got)
	}

}

// TestBackendPattern: a user whose role grants "vsphere/*" sees vsphere's
// tools through the aggregate and none of k8s's, though k8s has tools of
// the same names, and no k8s session is opened for her.
func TestBackendPattern(t *testing.T) {
	f := newFixture(t, Config{}, "get_vm")
	f.identity.Store(vera)
	cs := f.connect(t, nil)
	if got, want := toolNames(t, cs), []string{"vsphere__get_vm", "vsphere__power_off"}; !slices.Equal(got, want) {
		t.Errorf("vera's tools %v, want %v", got, want)
	}
	if got, err := callText(t, cs, "vsphere__get_vm"); err != nil || got != "vsphere/get_vm:hi" {
		t.Errorf("vsphere__get_vm = %q, %v", got, err)
	}
	if got := f.e.Opened(); !slices.Equal(got, []int64{1, 0}) {
		t.Errorf("backend sessions opened %v, want [1 0]", got)
	}
	// alice (ops: both backends) sees k8s's get_vm too.
	f.identity.Store(alice)
	if got := toolNames(t, f.connect(t, nil)); !slices.Contains(got, "k8s__get_vm") {
		t.Errorf("alice's tools %v lack k8s__get_vm", got)
	}
}

// TestCursor: a merged list walks every backend's pages, and a cursor of
// another shape or a forged one is refused.
func TestCursor(t *testing.T) {
	f := newFixture(t, Config{})
	cs := f.connect(t, nil)
	ctx := context.Background()
	var pages [][]string
	cursor := ""
	for range 10 {
		r, err := cs.ListTools(ctx, &sdk.ListToolsParams{Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tool := range r.Tools {
			names = append(names, tool.Name)
		}
		pages = append(pages, names)
		if cursor = r.NextCursor; cursor == "" {
			break
		}
	}
	// k8s pages one tool at a time; vsphere's single page comes with k8s's first.
	if len(pages) != 3 || len(pages[0]) != 3 || len(pages[1]) != 1 || len(pages[2]) != 1 {
		t.Errorf("pages %v, want vsphere's 2 + k8s's 1, then 1, then 1", pages)
	}
	for _, bad := range []string{"not-base64!", "eyJuIjozLCJwIjpbIiIsIiIsIiJdLCJkIjowfQ", strings.Repeat("A", maxCursor+1)} {
		if _, err := cs.ListTools(ctx, &sdk.ListToolsParams{Cursor: bad}); err == nil || !strings.Contains(err.Error(), "invalid cursor") {
			t.Errorf("cursor %.20q: %v, want invalid cursor", bad, err)
		}
	}
}

// TestBackendDown: a backend that goes down loses its tools from lists and
// answers calls with an error naming it; the other keeps working; after a
// restart it rejoins on the same client session.
func TestBackendDown(t *testing.T) {
	f := newFixture(t, Config{Timeout: 2 * time.Second})
	cs := f.connect(t, nil)
	if _, err := callText(t, cs, "k8s__get_pods"); err != nil {
		t.Fatal(err)
	}
	f.k8s.down()
	_, err := callText(t, cs, "k8s__get_pods")
	if err == nil || !strings.Contains(err.Error(), "backend k8s unavailable") {
		t.Errorf("call to the down backend: %v", err)
	}
	if got := toolNames(t, cs); !slices.Equal(got, []string{"vsphere__get_vm", "vsphere__power_off"}) {
		t.Errorf("tools while k8s is down: %v", got)
	}
	if got, err := callText(t, cs, "vsphere__get_vm"); err != nil || got != "vsphere/get_vm:hi" {
		t.Errorf("other backend: %q %v", got, err)
	}
	f.k8s.up()
	if got, err := callText(t, cs, "k8s__get_pods"); err != nil || got != "k8s/get_pods:hi" {
		t.Errorf("after restart: %q %v", got, err)
	}
	if got := len(toolNames(t, cs)); got != 5 {
		t.Errorf("%d tools after restart, want 5", got)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("timed out waiting: %s", what)
}

// TestServerToClient: a backend's sampling request in the middle of a call
// reaches the client and its answer goes back (on both backends at once,
// whose JSON-RPC ids overlap); a backend's tools/list_changed reaches the
// client, and its new tool is listed.
func TestServerToClient(t *testing.T) {
	f := newFixture(t, Config{}, "ask")
	changed := make(chan struct{}, 4)
	cs := f.connect(t, &sdk.ClientOptions{
		CreateMessageHandler: func(ctx context.Context, r *sdk.CreateMessageRequest) (*sdk.CreateMessageResult, error) {
			return &sdk.CreateMessageResult{Model: "m", Role: "assistant",
				Content: &sdk.TextContent{Text: strings.ToUpper(r.Params.Messages[0].Content.(*sdk.TextContent).Text)}}, nil
		},
		ToolListChangedHandler: func(context.Context, *sdk.ToolListChangedRequest) { changed <- struct{}{} },
	})
	var wg sync.WaitGroup
	for _, b := range []string{"vsphere", "k8s"} {
		wg.Go(func() {
			res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: b + "__ask", Arguments: map[string]any{"text": "from " + b}})
			if err != nil {
				t.Errorf("%s__ask: %v", b, err)
				return
			}
			if got, want := res.Content[0].(*sdk.TextContent).Text, b+" sampled FROM "+strings.ToUpper(b); got != want {
				t.Errorf("%s__ask = %q, want %q", b, got, want)
			}
		})
	}
	wg.Wait()

	sdk.AddTool(f.k8s.last.Load(), &sdk.Tool{Name: "get_new"}, func(context.Context, *sdk.CallToolRequest, echoIn) (*sdk.CallToolResult, any, error) {
		return &sdk.CallToolResult{}, nil, nil
	})
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("no tools/list_changed from the aggregate")
	}
	if got := toolNames(t, cs); !slices.Contains(got, "k8s__get_new") || slices.Contains(got, placeholder) {
		t.Errorf("tools after list_changed: %v", got)
	}
}

type providerFunc func(context.Context, credential.Subject) (credential.Header, error)

func (f providerFunc) Get(ctx context.Context, s credential.Subject) (credential.Header, error) {
	return f(ctx, s)
}

type bearer struct{ tok string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.tok)
	return http.DefaultTransport.RoundTrip(r)
}

// TestExchangedCredential: a backend's credential obtained per call (here
// a token exchange) is asked for with the caller and the client's own
// token, and the backend gets only the exchanged one; when it cannot be
// obtained, the call gets a JSON-RPC error naming the backend.
func TestExchangedCredential(t *testing.T) {
	be := newTestBackend(t, "db", 0, "query")
	var fail atomic.Bool
	var subject atomic.Value
	prov := providerFunc(func(_ context.Context, s credential.Subject) (credential.Header, error) {
		subject.Store(s)
		if fail.Load() {
			return credential.Header{}, credential.ErrRefused
		}
		return credential.Header{Name: "Authorization", Value: "Bearer exchanged"}, nil
	})
	cs := credentialEndpoint(t, be, "token_exchange", prov)
	if got, err := callText(t, cs, "db__query"); err != nil || got != "db/query:hi" {
		t.Fatalf("db__query = %q, %v", got, err)
	}
	if h := be.seen.Load().(http.Header); h.Get("Authorization") != "Bearer exchanged" {
		t.Errorf("backend got Authorization %q", h.Get("Authorization"))
	}
	if s := subject.Load().(credential.Subject); s.Principal != alice || s.Token != "client-token" {
		t.Errorf("credential asked for %+v", s)
	}
	fail.Store(true)
	be.down() // the backend session must be reopened: the credential is needed again
	be.up()
	if _, err := callText(t, cs, "db__query"); err == nil || !strings.Contains(err.Error(), "backend db: could not get a credential") {
		t.Errorf("call without a credential: %v", err)
	}
}

// credentialEndpoint is an aggregated endpoint whose one backend, be, gets
// its credential (of type typ) from prov; it returns alice's client session
// (bearer token client-token).
func credentialEndpoint(t *testing.T, be *testBackend, typ string, prov credential.Provider) *sdk.ClientSession {
	t.Helper()
	cfg := proxy.BackendConfig{Name: be.name, URL: be.srv.URL + "/mcp", Credential: proxy.CredentialConfig{Type: typ}}
	cfg.SetDefaults(1)
	pb, err := proxy.NewBackend(cfg, proxy.Options{Logger: slog.New(slog.DiscardHandler), Credential: prov})
	if err != nil {
		t.Fatal(err)
	}
	ac := Config{Path: "/mcp", Backends: []string{be.name}}
	ac.SetDefaults()
	pol := policy.Config{Roles: map[string]policy.Role{"ops": {Tools: []string{"*"}}}, Groups: map[string][]string{"ops": {"ops"}}}
	pol.SetDefaults()
	engine, err := policy.Compile(pol)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(ac, []*proxy.Backend{pb}, Options{Policy: policy.NewHolder(engine), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { e.Serve(w, r, alice) }))
	t.Cleanup(srv.Close)
	c := sdk.NewClient(&sdk.Implementation{Name: "test"}, nil)
	cs, err := c.Connect(context.Background(), &sdk.StreamableClientTransport{Endpoint: srv.URL + "/mcp", MaxRetries: -1,
		HTTPClient: &http.Client{Transport: bearer{"client-token"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// TestLinkedCredential: a linked_token backend behind an aggregate. Before
// the user links the account, initialize and lists reach it without a
// credential, and a call gets the URL elicitation required error (-32042)
// with the link URL, as on a single-backend path, without reaching the
// backend; once linked, the same backend session gets the linked token;
// a provider failure is a JSON-RPC error naming the backend.
func TestLinkedCredential(t *testing.T) {
	be := newTestBackend(t, "gh", 0, "whoami")
	var linked, failing atomic.Bool
	var calls atomic.Int32
	prov := providerFunc(func(_ context.Context, s credential.Subject) (credential.Header, error) {
		switch {
		case failing.Load():
			return credential.Header{}, credential.ErrUnavailable
		case linked.Load():
			return credential.Header{Name: "Authorization", Value: "Bearer gh-token"}, nil
		case !s.ActsForUser:
			return credential.Header{}, credential.ErrNotLinked
		}
		calls.Add(1)
		return credential.Header{}, &credential.LinkRequiredError{Provider: "gh", DisplayName: "GitHub", URL: "https://gw/link/gh?id=x", ElicitationID: "el-1"}
	})
	cs := credentialEndpoint(t, be, "linked_token", prov)
	if got := toolNames(t, cs); !slices.Equal(got, []string{"gh__whoami"}) {
		t.Fatalf("tools = %v", got)
	}
	if h := be.seen.Load().(http.Header); h.Get("Authorization") != "" {
		t.Errorf("backend got Authorization %q before the link", h.Get("Authorization"))
	}
	seen := be.n.Load()
	_, err := callText(t, cs, "gh__whoami")
	var we *jsonrpc.Error
	if !errors.As(err, &we) || we.Code != proxy.CodeURLElicitationRequired || calls.Load() != 1 {
		t.Fatalf("call before the link: %v (%d link starts), want error %d", err, calls.Load(), proxy.CodeURLElicitationRequired)
	}
	var data proxy.LinkElicitations
	if err := json.Unmarshal(we.Data, &data); err != nil || len(data.Elicitations) != 1 {
		t.Fatalf("error data %s: %v", we.Data, err)
	}
	if el := data.Elicitations[0]; el.Mode != "url" || el.URL != "https://gw/link/gh?id=x" || el.ElicitationID != "el-1" ||
		!strings.Contains(el.Message, "backend gh needs your GitHub account") || we.Message != el.Message {
		t.Errorf("elicitation %+v, message %q", el, we.Message)
	}
	if be.n.Load() != seen {
		t.Error("the call reached the backend without the linked token")
	}
	linked.Store(true)
	if got, err := callText(t, cs, "gh__whoami"); err != nil || got != "gh/whoami:hi" {
		t.Fatalf("call after the link: %q, %v", got, err)
	}
	if h := be.seen.Load().(http.Header); h.Get("Authorization") != "Bearer gh-token" {
		t.Errorf("backend got Authorization %q, want the linked token", h.Get("Authorization"))
	}
	if n := be.sessions(); n != 1 {
		t.Errorf("%d backend sessions, want 1", n)
	}
	failing.Store(true)
	seen = be.n.Load()
	if _, err := callText(t, cs, "gh__whoami"); err == nil || !strings.Contains(err.Error(), "backend gh") || errors.As(err, &we) && we.Code == proxy.CodeURLElicitationRequired {
		t.Errorf("provider down: %v, want an error naming the backend", err)
	}
	if be.n.Load() != seen {
		t.Error("the call reached the backend without a credential")
	}
}

// sep1330 is the requested schema of SEP-1330's enum forms (as the
// conformance suite's elicitation-sep1330-enums scenario asks them), and a
// field with a default (SEP-1034).
const sep1330 = `{"type":"object","properties":{
	"untitledSingle":{"type":"string","enum":["option1","option2","option3"]},
	"titledSingle":{"type":"string","oneOf":[{"const":"value1","title":"First Option"},{"const":"value2","title":"Second Option"}]},
	"legacyEnum":{"type":"string","enum":["opt1","opt2"],"enumNames":["Option One","Option Two"]},
	"untitledMulti":{"type":"array","minItems":1,"maxItems":3,"items":{"type":"string","enum":["option1","option2","option3"]}},
	"titledMulti":{"type":"array","minItems":1,"maxItems":3,"items":{"type":"string","anyOf":[{"const":"value1","title":"First Option"},{"const":"value2","title":"Second Option"}]}},
	"note":{"type":"string","default":"none"}},
	"required":["untitledSingle"]}`

// jsonEqual reports whether a and b are the same JSON value.
func jsonEqual(t *testing.T, a, b any) bool {
	t.Helper()
	norm := func(v any) any {
		raw, ok := v.(json.RawMessage)
		if !ok {
			var err error
			if raw, err = json.Marshal(v); err != nil {
				t.Fatal(err)
			}
		}
		var out any
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		return out
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

// TestElicitation: a backend's elicitation/create reaches the client as the
// backend sent it (SEP-1330's titled and untitled, single- and multi-select
// enums, which go-sdk's own checks refuse) and the client's answer reaches
// the backend as the client gave it (no schema default filled in); a mode
// the client did not declare is refused by the gateway and never reaches
// it; notifications/elicitation/complete is forwarded to a client that
// declared URL elicitation, and to no other.
func TestElicitation(t *testing.T) {
	form := &sdk.ElicitationCapabilities{Form: &sdk.FormElicitationCapabilities{}}
	both := &sdk.ElicitationCapabilities{Form: &sdk.FormElicitationCapabilities{}, URL: &sdk.URLElicitationCapabilities{}}
	answer := map[string]any{"untitledSingle": "option1", "titledSingle": "value2", "legacyEnum": "opt1",
		"untitledMulti": []any{"option1", "option3"}, "titledMulti": []any{"value1", "value2"}}
	formParams := `{"mode":"form","message":"Pick","requestedSchema":` + sep1330 + `}`
	urlParams := `{"mode":"url","message":"Link your account","url":"https://example.test/link?x=1","elicitationId":"el-1"}`
	for _, tc := range []struct {
		name     string
		caps     *sdk.ElicitationCapabilities
		params   string
		want     string // the params the client gets; "" = none reach it
		complete string
		result   string // the backend's tool result
		events   []string
	}{
		{name: "form enums", caps: form, params: formParams, want: formParams,
			result: `{"action":"accept","content":{"legacyEnum":"opt1","titledMulti":["value1","value2"],"titledSingle":"value2","untitledMulti":["option1","option3"],"untitledSingle":"option1"}}`},
		{name: "no mode is form", caps: both, params: `{"message":"Pick","requestedSchema":` + sep1330 + `}`, want: formParams,
			result: `{"action":"accept","content":{"legacyEnum":"opt1","titledMulti":["value1","value2"],"titledSingle":"value2","untitledMulti":["option1","option3"],"untitledSingle":"option1"}}`},
		{name: "url with completion", caps: both, params: urlParams, want: urlParams, complete: "el-1",
			result: `{"action":"accept"}`, events: []string{"complete el-1", "progress"}},
		{name: "completion not for a form-only client", caps: form, params: formParams, want: formParams, complete: "el-1",
			result: `{"action":"accept","content":{"legacyEnum":"opt1","titledMulti":["value1","value2"],"titledSingle":"value2","untitledMulti":["option1","option3"],"untitledSingle":"option1"}}`,
			events: []string{"progress"}},
		{name: "url to a form-only client", caps: form, params: urlParams,
			result: `error: client does not support "url" elicitation`},
		{name: "url-only client gets no form", caps: &sdk.ElicitationCapabilities{URL: &sdk.URLElicitationCapabilities{}}, params: formParams,
			result: `error: client does not support "form" elicitation`},
		{name: "unknown mode", caps: both, params: `{"mode":"telepathy","message":"?"}`,
			result: `error: unsupported elicitation mode "telepathy"`},
		{name: "client without elicitation", params: formParams,
			result: `error: client does not support elicitation`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{}, "elicit")
			var mu sync.Mutex
			var got []*sdk.ElicitParams
			var events []string
			event := func(e string) {
				mu.Lock()
				events = append(events, e)
				mu.Unlock()
			}
			c := sdk.NewClient(&sdk.Implementation{Name: "test"}, &sdk.ClientOptions{
				Capabilities: &sdk.ClientCapabilities{Elicitation: tc.caps},
				ElicitationCompleteHandler: func(_ context.Context, r *sdk.ElicitationCompleteNotificationRequest) {
					event("complete " + r.Params.ElicitationID)
				},
				ProgressNotificationHandler: func(context.Context, *sdk.ProgressNotificationClientRequest) { event("progress") },
			})
			// The client's answer is made here, before the SDK client's own
			// schema checks (which refuse SEP-1330's titled multi-select).
			c.AddReceivingMiddleware(func(next sdk.MethodHandler) sdk.MethodHandler {
				return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
					if method != "elicitation/create" {
						return next(ctx, method, req)
					}
					p := req.GetParams().(*sdk.ElicitParams)
					mu.Lock()
					got = append(got, p)
					mu.Unlock()
					if p.Mode == "url" {
						return &sdk.ElicitResult{Action: "accept"}, nil
					}
					return &sdk.ElicitResult{Action: "accept", Content: answer}, nil
				}
			})
			cs, err := c.Connect(context.Background(), &sdk.StreamableClientTransport{Endpoint: f.url, MaxRetries: -1}, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cs.Close() })
			res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "vsphere__elicit", Meta: sdk.Meta{"progressToken": "p1"},
				Arguments: map[string]any{"params": tc.params, "complete": tc.complete}})
			if err != nil {
				t.Fatal(err)
			}
			text := res.Content[0].(*sdk.TextContent).Text
			if strings.HasPrefix(tc.result, "error: ") {
				if !strings.HasPrefix(text, "error: ") || !strings.Contains(text, strings.TrimPrefix(tc.result, "error: ")) {
					t.Errorf("backend got %s, want %s", text, tc.result)
				}
			} else if !jsonEqual(t, json.RawMessage(text), json.RawMessage(tc.result)) {
				t.Errorf("backend got %s\nwant %s", text, tc.result)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case tc.want == "" && len(got) != 0:
				t.Errorf("the client got %d elicitations, want none", len(got))
			case tc.want != "" && len(got) != 1:
				t.Fatalf("the client got %d elicitations, want 1", len(got))
			case tc.want != "" && !jsonEqual(t, got[0], json.RawMessage(tc.want)):
				b, _ := json.Marshal(got[0])
				t.Errorf("the client got %s\nwant %s", b, tc.want)
			}
			if tc.events != nil {
				mu.Unlock()
				waitFor(t, "progress", func() bool { mu.Lock(); defer mu.Unlock(); return slices.Contains(events, "progress") })
				mu.Lock()
				if fmt.Sprint(events) != fmt.Sprint(tc.events) {
					t.Errorf("client notifications %v, want %v", events, tc.events)
				}
			}
		})
	}
}
