package telemetry

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Handler starts a server span for every request to next, continuing the
// client's W3C trace context (traceparent, tracestate) when it sends one.
// The span is named by the route that served the request ("POST /token",
// "POST /mcp"), never by the raw path, and carries only the method, the
// route and the status: no query string (an authorization callback's code),
// no header. Requests to the untraced paths (probes, metrics scrapes) get
// no span. With tracing off (at the time Handler is called) it returns next
// itself.
func Handler(next http.Handler, untraced ...string) http.Handler {
	t := active.Load()
	if t == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slices.Contains(untraced, r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		ctx := t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := t.tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method)))
		defer span.End()
		rec := &statusRecorder{ResponseWriter: w}
		r = r.WithContext(ctx)
		next.ServeHTTP(rec, r)
		// The mux sets Pattern on the request it routes, which is r.
		if route := r.Pattern; route != "" {
			if i := strings.IndexByte(route, ' '); i >= 0 {
				route = route[i+1:] // "POST /token": the method is already there
			}
			span.SetName(r.Method + " " + route)
			span.SetAttributes(attribute.String("http.route", route))
		}
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
	})
}

// statusRecorder notes the response status. Flush and Unwrap keep SSE
// streaming and http.ResponseController (deadlines) working through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Transport wraps rt, a backend's transport, in a client span named
// "backend NAME" and injects the current span's trace context into the
// request (traceparent replaces the one the client sent: the backend's
// parent is the gateway's span). The span lasts until the response body is
// read or closed, so a stream's span covers the stream. With tracing off it
// returns rt itself: the client's traceparent passes as it came.
func Transport(rt http.RoundTripper, backend string) http.RoundTripper {
	t := active.Load()
	if t == nil {
		return rt
	}
	name := "backend " + backend
	return otelhttp.NewTransport(rt,
		otelhttp.WithTracerProvider(t.tp),
		otelhttp.WithPropagators(t.prop),
		otelhttp.WithMeterProvider(noop.NewMeterProvider()), // metrics are Prometheus'
		otelhttp.WithSpanNameFormatter(func(string, *http.Request) string { return name }),
		otelhttp.WithSpanOptions(trace.WithAttributes(attribute.String("mcpgate.backend", backend))),
	)
}

// Inject writes the W3C trace context of the span in ctx into h
// (traceparent, and tracestate when set), for a request the gateway makes
// itself rather than through Transport: an aggregated endpoint's backend
// sessions. It replaces whatever h had. With tracing off, or no span in
// ctx, it writes nothing.
func Inject(ctx context.Context, h http.Header) {
	t := active.Load()
	if t == nil {
		return
	}
	t.prop.Inject(ctx, propagation.HeaderCarrier(h))
}
