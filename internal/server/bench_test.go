package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

// BenchmarkToolsCall measures one tools/call round trip through a bare
// reverse proxy and through the gateway (auth none, allow-all policy, audit
// to a file with the default fsync interval: a FORWARD record before the
// backend and the outcome record after), against a backend that answers at
// once. The gateway's cost over the bare proxy is the difference; compare
// it with docs/benchmarks.md's target (added p50 ≤ 1.25× the bare proxy's).
func BenchmarkToolsCall(b *testing.B) {
	const result = `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hi"}]}}`
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, result)
	}))
	defer backend.Close()
	u, _ := url.Parse(backend.URL)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 64} // a pool as large as the concurrency, as bench/ does
	bare := httptest.NewServer(rp)
	defer bare.Close()

	for _, fsync := range []string{"interval", "always"} {
		gw, stop := benchGateway(b, backend.URL, "*", "fsync: "+fsync)
		if fsync == "interval" {
			b.Run("bare-proxy", func(b *testing.B) { benchmarkCall(b, bare.URL+"/mcp") })
		}
		b.Run("mcpgate-fsync="+fsync, func(b *testing.B) { benchmarkCall(b, gw+"/mcp") })
		stop()
	}
}

func benchmarkCall(b *testing.B, target string) {
	benchmarkPost(b, target, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello","n":3}}}`, nil)
}

// BenchmarkToolsList measures one tools/list of 100 tools through a bare
// reverse proxy and through the gateway, which filters it (four tools
// hidden), for a backend answering with JSON and one answering with SSE.
// Every request after the first is a list cache hit, as for all callers
// with the same roles.
func BenchmarkToolsList(b *testing.B) {
	var tools strings.Builder
	for i := range 100 {
		if i > 0 {
			tools.WriteByte(',')
		}
		name := fmt.Sprintf("tool_%03d", i)
		if i%25 == 0 {
			name = fmt.Sprintf("delete_%03d", i)
		}
		fmt.Fprintf(&tools, `{"name":%q,"description":"Padding tool %s","inputSchema":{"type":"object","additionalProperties":false}}`, name, name)
	}
	result := `{"jsonrpc":"2.0","id":1,"result":{"tools":[` + tools.String() + `]}}`
	for _, mode := range []string{"json", "sse"} {
		backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			if mode == "sse" {
				w.Header().Set("Content-Type", "text/event-stream")
				io.WriteString(w, "event: message\nid: 1_0\ndata: "+result+"\n\n")
				return
			}
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, result)
		}))
		u, _ := url.Parse(backend.URL)
		rp := httputil.NewSingleHostReverseProxy(u)
		rp.Transport = &http.Transport{MaxIdleConnsPerHost: 64}
		rp.FlushInterval = -1 // as bench/ and the gateway: flush every write
		bare := httptest.NewServer(rp)
		gw, stop := benchGateway(b, backend.URL, "tool_*", "")
		b.Run(mode+"/bare-proxy", func(b *testing.B) { benchmarkList(b, bare.URL+"/mcp", 100) })
		b.Run(mode+"/mcpgate", func(b *testing.B) { benchmarkList(b, gw+"/mcp", 96) })
		stop()
		bare.Close()
		backend.Close()
	}
}

func benchmarkList(b *testing.B, target string, want int) {
	benchmarkPost(b, target, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, func(answer []byte) {
		if n := bytes.Count(answer, []byte(`"name":`)); n != want {
			b.Fatalf("%d tools listed, want %d", n, want)
		}
	})
}

// benchmarkPost posts body to target from 4 clients per CPU; every answer
// must be a 200, and pass check (if set).
func benchmarkPost(b *testing.B, target, body string, check func(answer []byte)) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.SetParallelism(4)
	cpu := testutil.ProcessCPU()
	defer func() { reportCPU(b, testutil.ProcessCPU()-cpu) }()
	b.RunParallel(func(pb *testing.PB) {
		var buf bytes.Buffer
		for pb.Next() {
			resp := benchPost(b, client, target, body)
			buf.Reset()
			buf.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
			if check != nil {
				check(buf.Bytes())
			}
		}
	})
}

// benchGateway serves a gateway with no authentication in front of
// backendURL, every caller allowed the tools matching pattern, rate limits
// out of the way and audit to a file (audit: extra keys of the audit
// section). It returns the gateway's URL and its stop.
func benchGateway(b *testing.B, backendURL, pattern, audit string) (url string, stop func()) {
	b.Helper()
	if audit != "" {
		audit = ", " + audit
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
auth: { mode: none }
policy: { roles: { all: { tools: [%q] } }, users: { "sub:anonymous": [all] } }
backends: [ { name: demo, url: %s/mcp } ]
rate_limit: { per_ip: { rps: 1000000000, burst: 1000000000 }, per_user: { rps: 1000000000, burst: 1000000000 } }
audit: { sink: file, path: %s%s }
`, pattern, backendURL, filepath.Join(b.TempDir(), "audit.jsonl"), audit)), func(string) (string, bool) { return "", false }, config.Overrides{})
	if err != nil {
		b.Fatal(err)
	}
	s, err := newServer(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	gw := httptest.NewServer(s.Handler())
	return gw.URL, func() {
		gw.Close()
		s.Close()
	}
}

// benchPost posts body to target with the headers of an MCP client.
func benchPost(b *testing.B, client *http.Client, target, body string) *http.Response {
	req, _ := http.NewRequest("POST", target, strings.NewReader(body))
	req.Host = "127.0.0.1:8080"
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	return resp
}

// reportCPU reports the process's CPU time per request (client, target
// and backend together: compare targets, whose client and backend are the
// same).
func reportCPU(b *testing.B, cpu time.Duration) {
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
}
