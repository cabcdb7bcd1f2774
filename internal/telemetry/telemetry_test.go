package telemetry

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestEnabled(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		on, err bool
	}{
		{"nothing set", nil, false, false},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true, false},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, true, false},
		{"exporter otlp, default endpoint", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true, false},
		{"exporter none wins", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, false, false},
		{"sdk disabled", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, false, false},
		{"http/protobuf", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, true, false},
		{"grpc", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, true, false},
		{"traces protocol wins", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, false, true},
		{"http/json refused", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, false, true},
		{"unknown exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			on, err := Enabled(func(k string) string { return tc.env[k] })
			if on != tc.on || (err != nil) != tc.err {
				t.Fatalf("Enabled = %v, %v; want %v, error %v", on, err, tc.on, tc.err)
			}
		})
	}
}

func TestSetupOffWithoutEnv(t *testing.T) {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"} {
		t.Setenv(k, "")
	}
	tr, err := Setup(context.Background(), "v", nil)
	if tr != nil || err != nil {
		t.Fatalf("Setup = %v, %v; want tracing off", tr, err)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestStartOffAllocatesNothing holds the hot path to zero cost when
// tracing is off.
func TestStartOffAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	n := testing.AllocsPerRun(100, func() {
		c, span := Start(ctx, "x")
		if span.IsRecording() || c != ctx {
			t.Fatal("a span with tracing off")
		}
		Set(c, attribute.Bool("hit", true))
		span.End()
		_ = TraceID(c)
	})
	if n != 0 {
		t.Fatalf("%v allocations per span with tracing off", n)
	}
}

func TestLogHandlerAddsTraceIDs(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tr := New(exp)
	Install(tr)
	defer tr.Shutdown(context.Background())
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewTextHandler(&buf, nil))).With("k", "v")
	ctx, span := Start(context.Background(), "op")
	log.InfoContext(ctx, "with span")
	log.Info("without span")
	span.End()
	sc := trace.SpanContextFromContext(ctx)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("log: %q", buf.String())
	}
	if !strings.Contains(lines[0], "trace_id="+sc.TraceID().String()) || !strings.Contains(lines[0], "span_id="+sc.SpanID().String()) {
		t.Errorf("line with a span lacks its ids: %s", lines[0])
	}
	if strings.Contains(lines[1], "trace_id") {
		t.Errorf("line without a span has a trace id: %s", lines[1])
	}
	if TraceID(ctx) != sc.TraceID().String() {
		t.Errorf("TraceID = %q", TraceID(ctx))
	}
}
