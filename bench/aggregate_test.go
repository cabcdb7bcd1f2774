package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/demo"
)

var (
	aggCalls    = flag.Int("aggregate.calls", 500, "tools/call per path and worker in TestAggregateScenario")
	aggWorkers  = flag.Int("aggregate.c", 4, "concurrent workers (one session per path each)")
	aggSessions = flag.Int("aggregate.idle", 100, "idle sessions opened to measure memory per session")
)

// TestAggregateScenario is the aggregated endpoint's scenario (issue 13):
// three go-sdk demo backends behind one mcpgate (in process, auth none,
// file audit, the same policy for both paths) and, in the same run and
// interleaved call by call, tools/call directly to a backend, through a
// single-backend path and through an aggregate of the three. It reports
// the p50 each path adds to the direct call and their ratio, the backend
// sessions opened per client session and backend, and the heap per idle
// aggregated client session. It asserts only that every call succeeded and
// that each client session opened exactly one session per backend; timing
// is reported, never asserted (the machine may be busy).
//
//	go test ./bench -run TestAggregateScenario -v -aggregate.calls 3000
func TestAggregateScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("a load scenario")
	}
	var sessionIDs [3]sync.Map // the session ids each backend saw in use
	backends := make([]*httptest.Server, 3)
	for i := range backends {
		h := demo.Handler(demo.Options{OnRequest: func(r *http.Request) {
			if id := r.Header.Get("Mcp-Session-Id"); id != "" {
				sessionIDs[i].Store(id, true)
			}
		}})
		backends[i] = httptest.NewServer(h)
		defer backends[i].Close()
	}
	addr, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`listen: %s
auth: { mode: none }
policy:
  roles: { all: { tools: ["*"] } }
  users: { "sub:anonymous": [all] }
rate_limit:
  per_ip: { rps: 1000000, burst: 1000000 }
  per_user: { rps: 1000000, burst: 1000000 }
security: { max_in_flight_per_user: 100000, max_in_flight_per_ip: 100000 }
backends:
  - { name: b1, url: %s/mcp, path: /mcp }
  - { name: b2, url: %s/mcp }
  - { name: b3, url: %s/mcp }
endpoints:
  - { path: /agg/mcp, backends: [b1, b2, b3] }
audit: { sink: file, path: %s }
`, addr, backends[0].URL, backends[1].URL, backends[2].URL, filepath.Join(t.TempDir(), "audit.log"))
	g, err := startGateway([]byte(yaml), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer g.stop()
	if _, err := waitHealthy(g.base+"/healthz", time.Now(), g.done); err != nil {
		t.Fatal(err)
	}

	type path struct {
		name, url, tool string
		lat             []time.Duration
	}
	paths := []*path{
		{name: "direct", url: backends[1].URL + "/mcp", tool: "echo"},
		{name: "single-backend", url: g.base + "/mcp", tool: "echo"},
		{name: "aggregate of 3", url: g.base + "/agg/mcp", tool: "b2__echo"},
	}
	connect := func(url string) *mcp.ClientSession {
		cs, err := mcp.NewClient(&mcp.Implementation{Name: "bench"}, nil).Connect(context.Background(),
			&mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range *aggWorkers {
		sessions := make([]*mcp.ClientSession, len(paths))
		for i, p := range paths {
			sessions[i] = connect(p.url)
		}
		wg.Go(func() {
			lat := make([][]time.Duration, len(paths))
			args := map[string]any{"text": "hello"}
			for n := range *aggCalls + 100 {
				for k := range paths {
					i := (k + n) % len(paths) // rotate which path goes first
					t0 := time.Now()
					_, err := sessions[i].CallTool(context.Background(), &mcp.CallToolParams{Name: paths[i].tool, Arguments: args})
					d := time.Since(t0)
					if err != nil {
						failed.Add(1)
					}
					if n >= 100 { // warm-up
						lat[i] = append(lat[i], d)
					}
				}
			}
			mu.Lock()
			for i := range paths {
				paths[i].lat = append(paths[i].lat, lat[i]...)
			}
			mu.Unlock()
			for _, cs := range sessions {
				cs.Close()
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d calls failed", failed.Load())
	}
	p50 := func(l []time.Duration) time.Duration { slices.Sort(l); return l[len(l)/2] }
	direct := p50(paths[0].lat)
	var b strings.Builder
	fmt.Fprintf(&b, "tools/call, %d workers × %d calls per path, interleaved:\n", *aggWorkers, *aggCalls)
	added := map[string]time.Duration{}
	for _, p := range paths {
		m := p50(p.lat)
		added[p.name] = m - direct
		fmt.Fprintf(&b, "  %-15s p50 %8s  p99 %8s  added p50 %8s\n", p.name, m.Round(time.Microsecond), p.lat[len(p.lat)*99/100].Round(time.Microsecond), added[p.name].Round(time.Microsecond))
	}
	if s := added["single-backend"]; s > 0 {
		fmt.Fprintf(&b, "  added p50, aggregate / single-backend: %.2fx\n", float64(added["aggregate of 3"])/float64(s))
	}
	// Backend sessions per aggregated client session and backend: b3 is
	// reached only through the aggregate.
	count := func(m *sync.Map) int {
		n := 0
		m.Range(func(any, any) bool { n++; return true })
		return n
	}
	w := *aggWorkers
	fmt.Fprintf(&b, "backend sessions per aggregated client session: b1 %.2f, b2 %.2f, b3 %.2f (b1 also serves the single path, b2 the direct one)\n",
		float64(count(&sessionIDs[0])-w)/float64(w), float64(count(&sessionIDs[1])-w)/float64(w), float64(count(&sessionIDs[2]))/float64(w))
	if got := count(&sessionIDs[2]); got != w {
		t.Errorf("b3 saw %d sessions for %d aggregated client sessions, want one each", got, w)
	}

	// Heap per idle session. direct: client + backend session; raw: a
	// backend session alone (initialize by hand, nothing kept client-side);
	// aggregate: client + gateway + 3 backend sessions. The gateway's share
	// is aggregate − (direct − raw) − 3 × raw.
	heap := func() uint64 {
		var ms runtime.MemStats
		for range 3 {
			runtime.GC()
		}
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	n := *aggSessions
	measure := func(open func() func()) float64 {
		before := heap()
		var closers []func()
		for range n {
			closers = append(closers, open())
		}
		time.Sleep(200 * time.Millisecond)
		after := heap()
		for _, c := range closers {
			c()
		}
		return float64(int64(after)-int64(before)) / float64(n)
	}
	raw := measure(func() func() { rawInitialize(t, backends[2].URL+"/mcp"); return func() {} })
	directS := measure(func() func() { cs := connect(backends[2].URL + "/mcp"); return func() { cs.Close() } })
	aggS := measure(func() func() { cs := connect(g.base + "/agg/mcp"); return func() { cs.Close() } })
	fmt.Fprintf(&b, "heap per idle session (in process, %d sessions): backend session %.1f KiB, direct (client + backend) %.1f KiB, aggregated (client + gateway + 3 backends) %.1f KiB → gateway's share per aggregated client session ≈ %.1f KiB\n",
		n, raw/1024, directS/1024, aggS/1024, (aggS-(directS-raw)-3*raw)/1024)
	t.Log("\n" + b.String())
}

// rawInitialize opens a backend session with hand-written requests, keeping
// nothing on the client side.
func rawInitialize(t *testing.T, url string) {
	t.Helper()
	post := func(body, sid string) string {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
		if sid != "" {
			req.Header.Set("Mcp-Session-Id", sid)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Header.Get("Mcp-Session-Id")
	}
	sid := post(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`, "")
	post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`, sid)
}
