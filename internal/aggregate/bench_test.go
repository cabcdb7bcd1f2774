package aggregate

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/proxy"
	"github.com/mcpgate/mcpgate/internal/telemetry"
)

// BenchmarkCall is one tools/call through the endpoint to an HTTP backend,
// with tracing off and with every request traced (the request's span
// started as the gateway would, the backend span, the traceparent sent):
// what each adds is the difference of the two in the same run.
func BenchmarkCall(b *testing.B) {
	for _, traced := range []bool{false, true} {
		name := "off"
		if traced {
			name = "traced"
		}
		b.Run(name, func(b *testing.B) {
			f := newFixture(b, Config{})
			if traced {
				tr := telemetry.New(tracetest.NewNoopExporter())
				telemetry.Install(tr)
				defer func() { telemetry.Install(nil); tr.Shutdown(context.Background()) }()
				fn := func(r *http.Request) context.Context {
					ctx, span := telemetry.Start(r.Context(), "POST /mcp")
					span.End()
					return ctx
				}
				f.ctx.Store(&fn)
			}
			c := sdk.NewClient(&sdk.Implementation{Name: "bench"}, nil)
			cs, err := c.Connect(context.Background(), &sdk.StreamableClientTransport{Endpoint: f.url, MaxRetries: -1}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer cs.Close()
			params := &sdk.CallToolParams{Name: "vsphere__get_vm", Arguments: map[string]any{"text": "hi"}}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := cs.CallTool(context.Background(), params); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkToolsList is one tools/list of an aggregated endpoint
// over two go-sdk backends with 100 tools each, all of which alice sees:
// the backends' lists (asked for, or kept by the backend sessions),
// filtered by the policy, renamed and merged, the result encoded. Client
// and backends run in the process too: compare runs of this benchmark, not
// its absolute figures. The client is go-sdk's (client=sdk), whose
// ClientSession decodes and checks every tool as the gateway's used to, or
// plain HTTP (client=http), which reads the answer's bytes: the gateway's
// own cost is what client=http measures.
func BenchmarkToolsList(b *testing.B) {
	tools := make([]string, 100)
	for i := range tools {
		tools[i] = fmt.Sprintf("get_thing_%03d", i)
	}
	vsphere, k8s := newTestBackend(b, "vsphere", 0, tools...), newTestBackend(b, "k8s", 0, tools...)
	cfg := Config{Backends: []string{"vsphere", "k8s"}, Path: "/mcp"}
	cfg.SetDefaults()
	e, err := New(cfg, []*proxy.Backend{vsphere.proxy(b, proxy.CredentialConfig{Type: "none"}), k8s.proxy(b, proxy.CredentialConfig{Type: "none"})},
		Options{Policy: testPolicy(b), Logger: slog.New(slog.DiscardHandler), SessionTimeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { e.Serve(w, r, alice) }))
	defer srv.Close()
	ctx := context.Background()
	b.Run("client=sdk", func(b *testing.B) {
		cs, err := sdk.NewClient(&sdk.Implementation{Name: "bench"}, nil).Connect(ctx,
			&sdk.StreamableClientTransport{Endpoint: srv.URL + "/mcp", MaxRetries: -1}, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer cs.Close()
		b.ReportAllocs()
		for b.Loop() {
			r, err := cs.ListTools(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			if len(r.Tools) != 200 {
				b.Fatalf("%d tools", len(r.Tools))
			}
		}
	})
	b.Run("client=http", func(b *testing.B) {
		c := srv.Client()
		post := func(sid, body string) (*http.Response, []byte) {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/mcp", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			if sid != "" {
				req.Header.Set("Mcp-Session-Id", sid)
				req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
			}
			resp, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			out, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode/100 != 2 {
				b.Fatalf("%s: %d %v %s", body, resp.StatusCode, err, out)
			}
			return resp, out
		}
		resp, _ := post("", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`)
		sid := resp.Header.Get("Mcp-Session-Id")
		post(sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
		const list = `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
		if _, out := post(sid, list); bytes.Count(out, []byte(`__get_thing_`)) != 200 {
			b.Fatalf("tools/list: %.300s", out)
		}
		b.ReportAllocs()
		for b.Loop() {
			post(sid, list)
		}
	})
}
