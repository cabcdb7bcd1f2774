package aggregate

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
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
// both backends asked, their lists decoded, filtered by the policy,
// renamed and merged, the result encoded. Client and backends run in the
// process too: compare runs of this benchmark, not its absolute figures.
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
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "bench"}, nil).Connect(context.Background(),
		&sdk.StreamableClientTransport{Endpoint: srv.URL + "/mcp", MaxRetries: -1}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer cs.Close()
	ctx := context.Background()
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
}
