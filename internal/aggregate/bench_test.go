package aggregate

import (
	"context"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

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
