package aggregate

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
}

func newTestBackend(t *testing.T, name string, page int, tools ...string) *testBackend {
	b := &testBackend{name: name, tools: tools, page: page}
	b.up()
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.seen.Store(r.Header.Clone())
		b.mu.Lock()
		h := b.h
		b.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *testBackend) up() {
	s := sdk.NewServer(&sdk.Implementation{Name: b.name}, &sdk.ServerOptions{PageSize: b.page, Instructions: "use " + b.name})
	if slices.Contains(b.tools, "ask") {
		sdk.AddTool(s, &sdk.Tool{Name: "ask"}, b.ask)
	}
	for _, tool := range b.tools {
		if tool == "ask" {
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

func (b *testBackend) proxy(t *testing.T, cred proxy.CredentialConfig) *proxy.Backend {
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
)

func testPolicy(t *testing.T) *policy.Holder {
	cfg := policy.Config{
		Roles: map[string]policy.Role{
			"ops": {Backends: map[string]policy.Grants{"vsphere": {Tools: []string{"*"}}, "k8s": {Tools: []string{"*"}}}},
			"dev": {Backends: map[string]policy.Grants{"k8s": {Tools: []string{"get_*"}}}},
		},
		Groups: map[string][]string{"ops": {"ops"}, "dev": {"dev"}},
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
}

func newFixture(t *testing.T, cfg Config, extra ...string) *fixture {
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
		e.Serve(w, r, f.identity.Load())
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
	cfg := proxy.BackendConfig{Name: "db", URL: be.srv.URL + "/mcp", Credential: proxy.CredentialConfig{Type: "token_exchange"}}
	cfg.SetDefaults(1)
	pb, err := proxy.NewBackend(cfg, proxy.Options{Logger: slog.New(slog.DiscardHandler), Credential: prov})
	if err != nil {
		t.Fatal(err)
	}
	ac := Config{Path: "/mcp", Backends: []string{"db"}}
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
