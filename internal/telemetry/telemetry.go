// Package telemetry is mcpgate's OpenTelemetry tracing: an OTLP exporter
// (HTTP or gRPC) configured by the standard OTEL_* environment variables,
// W3C Trace Context propagation, and helpers that cost nothing when tracing
// is off.
//
// Tracing is off unless an OTLP endpoint is configured
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or
// OTEL_TRACES_EXPORTER=otlp for the default endpoint). Off, there is no
// exporter and no tracer: Start returns the context it was given and a
// span that records nothing, without allocating, and no handler or
// transport is wrapped.
//
// What goes into spans is chosen here and at the call sites, never taken
// wholesale from a request: no token, no credential, no tool argument, no
// query string.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// instrumentationName names mcpgate's tracer (the instrumentation scope).
const instrumentationName = "github.com/mcpgate/mcpgate"

// Tracing is an installed tracer provider with its OTLP exporter. A nil
// *Tracing is tracing off; its methods do nothing.
type Tracing struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

// active is the installed Tracing (nil: off). A global, so that the spans
// of the token endpoint and the store need no new dependency threaded
// through every constructor; one atomic load per span when off.
var active atomic.Pointer[Tracing]

// noSpan records nothing; Start returns it when tracing is off.
var noSpan = trace.SpanFromContext(context.Background())

// propagator is W3C Trace Context (traceparent, tracestate). Baggage is
// not interpreted: the proxy forwards the client's header as it came.
var propagator = propagation.TraceContext{}

// Env is where the configuration is read (os.Getenv, or a test's map).
type Env func(string) string

// Protocols of the OTLP exporter (OTEL_EXPORTER_OTLP_PROTOCOL).
const (
	ProtocolHTTP = "http/protobuf" // the default, port 4318
	ProtocolGRPC = "grpc"          // port 4317
)

// Enabled reports whether env configures trace export, and checks the
// variables mcpgate interprets itself: an exporter or protocol it does not
// support is an error, not silently no tracing.
func Enabled(env Env) (bool, error) {
	proto, err := protocol(env)
	return proto != "", err
}

// protocol is the OTLP protocol env configures, or "" when it configures
// no trace export.
func protocol(env Env) (string, error) {
	if strings.EqualFold(strings.TrimSpace(env("OTEL_SDK_DISABLED")), "true") {
		return "", nil
	}
	explicit := false
	switch e := strings.TrimSpace(env("OTEL_TRACES_EXPORTER")); e {
	case "none":
		return "", nil
	case "otlp":
		explicit = true
	case "":
	default:
		return "", fmt.Errorf("OTEL_TRACES_EXPORTER=%q is not supported (otlp or none)", e)
	}
	if !explicit && env("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return "", nil
	}
	proto := env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = env("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch proto {
	case "", ProtocolHTTP:
		return ProtocolHTTP, nil
	case ProtocolGRPC:
		return ProtocolGRPC, nil
	default:
		return "", fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q is not supported (http/protobuf or grpc)", proto)
	}
}

// Setup builds the tracer provider the environment configures, or returns
// nil (tracing off) when it configures none. The exporter reads the other
// OTEL_EXPORTER_OTLP_* variables itself (headers, timeout, compression,
// certificates), the SDK reads OTEL_TRACES_SAMPLER(_ARG) (default:
// parentbased_always_on), OTEL_BSP_* and OTEL_SERVICE_NAME /
// OTEL_RESOURCE_ATTRIBUTES (service.name defaults to "mcpgate"). Export
// errors go to log. Call Install to use it, and Shutdown to flush.
func Setup(ctx context.Context, version string, log *slog.Logger) (*Tracing, error) {
	proto, err := protocol(os.Getenv)
	if err != nil || proto == "" {
		return nil, err
	}
	var exp sdktrace.SpanExporter
	if proto == ProtocolGRPC {
		exp, err = otlptracegrpc.New(ctx)
	} else {
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "mcpgate"), attribute.String("service.version", version)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	if log != nil {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			log.Warn("tracing: export failed", "err", err)
		}))
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Tracing{tp: tp, tracer: tp.Tracer(instrumentationName), prop: propagator}, nil
}

// Install makes t the tracing every Start and Handler uses (nil: off).
func Install(t *Tracing) { active.Store(t) }

// On reports whether tracing is installed.
func On() bool { return active.Load() != nil }

// Shutdown flushes the spans not yet exported and stops the exporter; it
// uninstalls t if it is installed.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	active.CompareAndSwap(t, nil)
	return t.tp.Shutdown(ctx)
}

// Flush exports the spans ended so far, without stopping the exporter.
func (t *Tracing) Flush(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.tp.ForceFlush(ctx)
}

// Start starts a span named name as a child of the span in ctx. With
// tracing off it returns ctx itself and a span that records nothing, and
// allocates nothing: callers set attributes only when span.IsRecording().
func Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	t := active.Load()
	if t == nil {
		return ctx, noSpan
	}
	return t.tracer.Start(ctx, name, opts...)
}

// Set adds kv to the span in ctx when it records (a cache hit in authn,
// say, annotating the caller's span). Free when tracing is off.
func Set(ctx context.Context, kv attribute.KeyValue) {
	if s := trace.SpanFromContext(ctx); s.IsRecording() {
		s.SetAttributes(kv)
	}
}

// TraceID returns the trace id of the span in ctx, or "" when there is
// none (tracing off): for audit records and logs.
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}

// New is tracing that sends every span to exp as it ends (no batching):
// for tests, which read what exp received.
func New(exp sdktrace.SpanExporter) *Tracing {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	return &Tracing{tp: tp, tracer: tp.Tracer(instrumentationName), prop: propagator}
}
