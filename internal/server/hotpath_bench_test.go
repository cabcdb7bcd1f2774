package server_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/server"
	"github.com/mcpgate/mcpgate/internal/telemetry"
)

// BenchmarkGatewayToolsCall measures the gateway's allocations for one
// allowed tools/call through the whole handler (edge checks, in-flight
// bounds, body read, decode, policy, proxy hop to a stateless backend).
// Tracing is off, as it is without OTEL_* variables.
func BenchmarkGatewayToolsCall(b *testing.B) { benchmarkToolsCall(b) }

// BenchmarkGatewayToolsCallTraced is the same with tracing on, every
// request sampled, spans handed to an exporter that drops them: the cost
// of the spans themselves.
func BenchmarkGatewayToolsCallTraced(b *testing.B) {
	tr := telemetry.New(tracetest.NewNoopExporter())
	telemetry.Install(tr)
	defer tr.Shutdown(context.Background())
	benchmarkToolsCall(b)
}

func benchmarkToolsCall(b *testing.B) {
	backend := httptest.NewServer(demo.Handler(demo.Options{Stateless: true}))
	defer backend.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Parse([]byte(`
listen: `+ln.Addr().String()+`
auth: { mode: none }
policy: { roles: { all: { tools: ["*"] } }, users: { "sub:anonymous": [all] } }
backends: [ { name: demo, url: `+backend.URL+`/mcp } ]
audit: { sink: none }
rate_limit: { enabled: false }
`), func(string) (string, bool) { return "", false }, config.Overrides{})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := server.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	// A real listener, so read deadlines and connection handling are the
	// server's (a ResponseRecorder has none).
	front := httptest.NewUnstartedServer(srv.Handler())
	front.Listener.Close()
	front.Listener = ln
	front.Start()
	defer front.Close()
	const body = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`
	client := front.Client()
	call := func() int {
		req, _ := http.NewRequest("POST", front.URL+"/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := call(); code != http.StatusOK {
		b.Fatalf("tools/call: %d", code)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		call()
	}
}
