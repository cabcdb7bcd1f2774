package stdio

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/testutil"
)

// syncBuffer collects log output from several goroutines.
type syncBuffer = testutil.SyncBuffer

type testEnv struct {
	b    *Bridge
	srv  *httptest.Server
	logs *syncBuffer
}

func testConfig(t *testing.T) Config {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Config{Command: []string{exe}, Env: map[string]string{"GO_WANT_STDIO_SERVER": "1"}}
}

func newTestEnv(t *testing.T, mutate func(*Config)) *testEnv {
	t.Helper()
	cfg := testConfig(t)
	if mutate != nil {
		mutate(&cfg)
	}
	logs := &syncBuffer{}
	b, err := New(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { b.Close() }) // runs first: ends the streams srv.Close waits for
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bridge log:\n%s", logs)
		}
	})
	return &testEnv{b: b, srv: srv, logs: logs}
}

// authTransport adds the bridge's bearer token, as the gateway's proxy does.
type authTransport struct{ token string }

func (a authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+a.token)
	return http.DefaultTransport.RoundTrip(r)
}

func (e *testEnv) httpClient() *http.Client {
	return &http.Client{Transport: authTransport{e.b.Token()}}
}

type clientOpts struct {
	noSSE    bool
	progress func(*mcp.ProgressNotificationClientRequest)
	roots    []*mcp.Root
}

func (e *testEnv) connect(t *testing.T, o clientOpts) *mcp.ClientSession {
	t.Helper()
	copts := &mcp.ClientOptions{}
	if o.progress != nil {
		copts.ProgressNotificationHandler = func(_ context.Context, r *mcp.ProgressNotificationClientRequest) { o.progress(r) }
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, copts)
	c.AddRoots(o.roots...)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint: e.srv.URL, HTTPClient: e.httpClient(), MaxRetries: -1, DisableStandaloneSSE: o.noSSE,
	}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// callTool calls a tool and decodes its structured result into out.
func callTool(ctx context.Context, cs *mcp.ClientSession, name string, args any, out any) error {
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		return err
	}
	if res.IsError {
		return errors.New("tool error")
	}
	data, err := json.Marshal(res.StructuredContent)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, out)
}

func childPID(t *testing.T, cs *mcp.ClientSession) int {
	t.Helper()
	var out pidOut
	if err := callTool(context.Background(), cs, "pid", map[string]any{}, &out); err != nil {
		t.Fatalf("pid: %v", err)
	}
	if out.PID <= 0 || out.PID == os.Getpid() {
		t.Fatalf("bad child pid %d", out.PID)
	}
	return out.PID
}

// startedPID is the child pid the bridge logged when session id started.
func startedPID(t *testing.T, e *testEnv, id string) int {
	t.Helper()
	m := regexp.MustCompile(`msg="stdio: session started" session=` + regexp.QuoteMeta(id[:8]) + ` pid=(\d+)`).FindStringSubmatch(e.logs.String())
	if m == nil {
		t.Fatalf("no start logged for session %s:\n%s", id, e.logs)
	}
	pid, _ := strconv.Atoi(m[1])
	return pid
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestListAndCallTools(t *testing.T) {
	e := newTestEnv(t, nil)
	cs := e.connect(t, clientOpts{})
	if got := cs.InitializeResult().ServerInfo.Name; got != "stdio-test" {
		t.Errorf("server name = %q", got)
	}
	tools, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range tools.Tools {
		names = append(names, tl.Name)
	}
	slices.Sort(names)
	want := []string{"big", "crash", "echo", "env", "meta", "pid", "progress", "roots", "sleep"}
	if d := cmp.Diff(want, names); d != "" {
		t.Errorf("tools (-want +got):\n%s", d)
	}
	var out textArgs
	if err := callTool(context.Background(), cs, "echo", textArgs{"héllo\nworld\r"}, &out); err != nil {
		t.Fatal(err)
	}
	if out.Text != "héllo\nworld\r" {
		t.Errorf("echo = %q", out.Text)
	}
}

// Progress notifications follow their token to the POST stream, so they
// arrive even for a client without a standalone GET stream.
func TestProgressNotifications(t *testing.T) {
	for _, noSSE := range []bool{true, false} {
		t.Run(map[bool]string{true: "post-stream-only", false: "with-get-stream"}[noSSE], func(t *testing.T) {
			e := newTestEnv(t, nil)
			var mu sync.Mutex
			var got []float64
			cs := e.connect(t, clientOpts{noSSE: noSSE, progress: func(r *mcp.ProgressNotificationClientRequest) {
				mu.Lock()
				defer mu.Unlock()
				if r.Params.ProgressToken == "tok-1" {
					got = append(got, r.Params.Progress)
				}
			}})
			params := &mcp.CallToolParams{Name: "progress", Arguments: nArgs{N: 5}}
			params.SetProgressToken("tok-1")
			if _, err := cs.CallTool(context.Background(), params); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "5 progress notifications", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(got) >= 5
			})
			mu.Lock()
			defer mu.Unlock()
			if d := cmp.Diff([]float64{1, 2, 3, 4, 5}, got); d != "" {
				t.Errorf("progress (-want +got):\n%s", d)
			}
		})
	}
}

// A server-to-client request (roots/list) reaches the client and its answer
// reaches the child, with and without a standalone GET stream.
func TestServerToClientRequest(t *testing.T) {
	for _, noSSE := range []bool{true, false} {
		t.Run(map[bool]string{true: "post-stream-only", false: "with-get-stream"}[noSSE], func(t *testing.T) {
			e := newTestEnv(t, nil)
			cs := e.connect(t, clientOpts{noSSE: noSSE, roots: []*mcp.Root{{URI: "file:///a"}, {URI: "file:///b"}}})
			var out rootsOut
			if err := callTool(context.Background(), cs, "roots", map[string]any{}, &out); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff([]string{"file:///a", "file:///b"}, out.URIs); d != "" {
				t.Errorf("roots (-want +got):\n%s", d)
			}
		})
	}
}

func TestSessionsGetTheirOwnChild(t *testing.T) {
	e := newTestEnv(t, nil)
	var wg sync.WaitGroup
	pids := make([]int, 2)
	sessions := make([]*mcp.ClientSession, 2)
	for i := range 2 {
		sessions[i] = e.connect(t, clientOpts{})
	}
	for i := range 2 {
		wg.Go(func() {
			var out pidOut
			if err := callTool(context.Background(), sessions[i], "pid", map[string]any{}, &out); err != nil {
				t.Error(err)
			}
			pids[i] = out.PID
		})
	}
	wg.Wait()
	if pids[0] == pids[1] || pids[0] <= 0 || pids[1] <= 0 {
		t.Fatalf("pids = %v, want two different children", pids)
	}
	if !alive(pids[0]) || !alive(pids[1]) {
		t.Errorf("children not running: %v", pids)
	}
	if n := e.b.Sessions(); n != 2 {
		t.Errorf("Sessions() = %d, want 2", n)
	}
}

func TestDeleteStopsChild(t *testing.T) {
	e := newTestEnv(t, nil)
	cs := e.connect(t, clientOpts{})
	pid := childPID(t, cs)
	id := cs.ID()
	if err := cs.Close(); err != nil { // sends DELETE
		t.Fatal(err)
	}
	waitFor(t, "child to be gone", func() bool { return !alive(pid) })
	if n := e.b.Sessions(); n != 0 {
		t.Errorf("Sessions() = %d, want 0", n)
	}
	if resp := e.raw(t, http.MethodPost, id, toolsList); resp.StatusCode != http.StatusNotFound {
		t.Errorf("after DELETE: status %d, want 404", resp.StatusCode)
	}
}

func TestChildCrashEndsSession(t *testing.T) {
	e := newTestEnv(t, nil)
	// Without a GET stream, whose end the client would report first.
	cs := e.connect(t, clientOpts{noSSE: true})
	pid := childPID(t, cs)
	id := cs.ID()
	err := callTool(context.Background(), cs, "crash", map[string]any{}, &struct{}{})
	if err == nil || !strings.Contains(err.Error(), "the MCP server session ended") {
		t.Fatalf("crash call: %v, want the session-ended error", err)
	}
	waitFor(t, "crashed child to be reaped", func() bool { return !alive(pid) })
	waitFor(t, "session to end", func() bool { return e.b.Sessions() == 0 })
	if resp := e.raw(t, http.MethodPost, id, toolsList); resp.StatusCode != http.StatusNotFound {
		t.Errorf("after crash: status %d, want 404", resp.StatusCode)
	}
	waitFor(t, "exit status in the log", func() bool { return strings.Contains(e.logs.String(), "exit status 3") })
	// The client starts over with a new session and a new child.
	cs2 := e.connect(t, clientOpts{})
	if pid2 := childPID(t, cs2); pid2 == pid {
		t.Errorf("re-initialized session reused pid %d", pid)
	}
}

func TestMaxSessions(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.MaxSessions = 1 })
	cs := e.connect(t, clientOpts{})
	// Another user: the one holding the slot holds no more than its share.
	resp := e.do(t, rawReq{method: http.MethodPost, body: initialize, header: map[string]string{UserHeader: "other"}})
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
	var body struct {
		ID    any `json:"id"`
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("503 body is not JSON-RPC: %v", err)
	}
	if body.ID != float64(1) || body.Error.Code != codeServerError || body.Error.Message != "too many sessions" {
		t.Errorf("503 body = %+v", body)
	}
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "slot to free", func() bool { return e.b.Sessions() == 0 })
	e.connect(t, clientOpts{})
}

func TestIdleTimeoutStopsChild(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond })
	cs := e.connect(t, clientOpts{noSSE: true})
	// From the log, not a tool call: on a loaded machine the session may
	// idle out before a call after connect would arrive.
	id := cs.ID()
	pid := startedPID(t, e, id)
	waitFor(t, "idle child to stop", func() bool { return !alive(pid) })
	if resp := e.raw(t, http.MethodPost, id, toolsList); resp.StatusCode != http.StatusNotFound {
		t.Errorf("after idle timeout: status %d, want 404", resp.StatusCode)
	}
	if !strings.Contains(e.logs.String(), `reason="idle timeout"`) {
		t.Errorf("idle timeout not logged:\n%s", e.logs)
	}
}

// No per-call timeout: a call longer than the idle timeout completes, and an
// open standalone GET stream keeps the session alive.
func TestIdleTimeoutSparesActiveSessions(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.IdleTimeout = 500 * time.Millisecond })
	slow := e.connect(t, clientOpts{noSSE: true})
	if err := callTool(context.Background(), slow, "sleep", nArgs{N: 1200}, &nArgs{}); err != nil {
		t.Fatalf("slow call: %v", err)
	}
	listening := e.connect(t, clientOpts{}) // holds a GET stream open
	pid := childPID(t, listening)
	// A session without a stream, last used after the one above, idles out
	// later: once it (and the slow one) has ended, the idle timeout has
	// passed for the listening session too. A signal, not a sleep past the
	// timeout.
	e.connect(t, clientOpts{noSSE: true})
	waitFor(t, "the stream-less sessions to idle out", func() bool { return e.b.Sessions() <= 1 })
	if !alive(pid) {
		t.Fatal("child of a session with an open GET stream was stopped")
	}
	if got := childPID(t, listening); got != pid {
		t.Errorf("pid changed: %d → %d", pid, got)
	}
}

func TestCloseStopsEveryChild(t *testing.T) {
	e := newTestEnv(t, nil)
	var pids []int
	for range 3 {
		pids = append(pids, childPID(t, e.connect(t, clientOpts{})))
	}
	if err := e.b.Close(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("child %d still running after Close", pid)
		}
	}
	if resp := e.raw(t, http.MethodPost, "", initialize); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("initialize after Close: status %d, want 503", resp.StatusCode)
	}
}

func TestCloseKillsChildIgnoringSIGTERM(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.Env["STDIO_IGNORE_TERM"] = "1" })
	e.b.killDelay = 300 * time.Millisecond
	pid := childPID(t, e.connect(t, clientOpts{}))
	start := time.Now()
	if err := e.b.Close(); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Fatalf("child %d survived Close", pid)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("Close took %v; want the kill delay, then SIGKILL", d)
	}
}

func TestChildEnvironmentIsMinimal(t *testing.T) {
	t.Setenv("MCPGATE_TEST_SECRET", "s3cret")
	e := newTestEnv(t, func(c *Config) { c.Env["EXTRA"] = "yes" })
	var out envOut
	if err := callTool(context.Background(), e.connect(t, clientOpts{}), "env", map[string]any{}, &out); err != nil {
		t.Fatal(err)
	}
	want := []string{"EXTRA=yes", "GO_WANT_STDIO_SERVER=1"}
	for _, k := range []string{"HOME", "PATH"} {
		if v, ok := os.LookupEnv(k); ok {
			want = append(want, k+"="+v)
		}
	}
	slices.Sort(want)
	if d := cmp.Diff(want, out.Env); d != "" {
		t.Errorf("child env (-want +got):\n%s", d)
	}
}

func TestStderrIsLoggedPerSession(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.Env["STDIO_LONG_STDERR"] = "1" })
	cs := e.connect(t, clientOpts{})
	childPID(t, cs)
	waitFor(t, "stderr lines in the log", func() bool { return strings.Contains(e.logs.String(), "after long line") })
	logs := e.logs.String()
	tag := "session=" + cs.ID()[:8]
	var sawStart, sawLong bool
	for _, l := range strings.Split(logs, "\n") {
		if !strings.Contains(l, "child stderr") {
			continue
		}
		if !strings.Contains(l, tag) {
			t.Errorf("stderr line without %s: %s", tag, l)
		}
		if strings.Contains(l, `line="test server starting"`) {
			sawStart = true
		}
		if strings.Contains(l, "xxxx") {
			sawLong = true
			if !strings.Contains(l, "truncated=true") || strings.Contains(l, strings.Repeat("x", maxStderrLine+1)) {
				t.Errorf("long line not truncated to %d bytes", maxStderrLine)
			}
		}
	}
	if !sawStart || !sawLong {
		t.Errorf("stderr lines missing (start %v, long %v):\n%s", sawStart, sawLong, logs)
	}
	if strings.Contains(logs, cs.ID()) {
		t.Error("full session id in the log")
	}
}

func TestNonJSONStdoutIsSkipped(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.Env["STDIO_JUNK_STDOUT"] = "1" })
	childPID(t, e.connect(t, clientOpts{}))
	if !strings.Contains(e.logs.String(), "skipping stdout line") {
		t.Errorf("junk line not reported:\n%s", e.logs)
	}
}

func TestOversizedChildMessageEndsSession(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.MaxMessageBytes = 4096 })
	cs := e.connect(t, clientOpts{})
	id := cs.ID()
	if err := callTool(context.Background(), cs, "big", nArgs{N: 100}, &textArgs{}); err != nil {
		t.Fatalf("small result: %v", err)
	}
	if err := callTool(context.Background(), cs, "big", nArgs{N: 8000}, &textArgs{}); err == nil {
		t.Fatal("oversized result delivered")
	}
	waitFor(t, "session to end", func() bool { return e.b.Sessions() == 0 })
	if resp := e.raw(t, http.MethodPost, id, toolsList); resp.StatusCode != http.StatusNotFound {
		t.Errorf("status %d, want 404", resp.StatusCode)
	}
	if !strings.Contains(e.logs.String(), "larger than max_message_bytes") {
		t.Errorf("reason not logged:\n%s", e.logs)
	}
}

// A cancelled call does not end the session; the cancellation reaches the
// child and later calls work.
func TestCancelledCallKeepsSession(t *testing.T) {
	e := newTestEnv(t, nil)
	cs := e.connect(t, clientOpts{})
	pid := childPID(t, cs)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := callTool(ctx, cs, "sleep", nArgs{N: 60000}, &nArgs{}); err == nil {
		t.Fatal("cancelled call succeeded")
	}
	if got := childPID(t, cs); got != pid {
		t.Errorf("pid changed after cancel: %d → %d", pid, got)
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// Sessions that come and go leave no pipes or goroutines behind.
func TestNoDescriptorLeak(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // finalizers would hide leaked files
	e := newTestEnv(t, nil)
	cycle := func() {
		cs := e.connect(t, clientOpts{})
		pid := childPID(t, cs)
		cs.Close()
		waitFor(t, "child to be gone", func() bool { return !alive(pid) && e.b.Sessions() == 0 })
	}
	idle := http.DefaultTransport.(*http.Transport)
	cycle()
	idle.CloseIdleConnections()
	time.Sleep(100 * time.Millisecond)
	base, baseG := openFDs(t), runtime.NumGoroutine()
	for range 10 {
		cycle()
	}
	idle.CloseIdleConnections()
	waitFor(t, "descriptors to return to the baseline", func() bool { return openFDs(t) <= base+4 })
	waitFor(t, "goroutines to return to the baseline", func() bool { return runtime.NumGoroutine() <= baseG+4 })
}

func BenchmarkCallTool(b *testing.B) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cfg := Config{Command: []string{exe}, Env: map[string]string{"GO_WANT_STDIO_SERVER": "1"}}
	br, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(br)
	defer srv.Close()
	defer br.Close()
	c := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
	cs, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{
		Endpoint: srv.URL, HTTPClient: &http.Client{Transport: authTransport{br.Token()}}, DisableStandaloneSSE: true,
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer cs.Close()
	for b.Loop() {
		if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "echo", Arguments: textArgs{"hi"}}); err != nil {
			b.Fatal(err)
		}
	}
}
