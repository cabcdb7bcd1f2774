// Package metrics holds mcpgate's Prometheus collectors.
package metrics

import (
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Gateway counts MCP requests by outcome. A nil *Gateway is a no-op, so tests
// and callers that don't export metrics need no special case.
type Gateway struct {
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	auditFailures prometheus.Counter
}

// NewGateway creates the collectors and registers them with reg.
func NewGateway(reg prometheus.Registerer) *Gateway {
	g := &Gateway{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgate_requests_total",
			Help: "MCP messages handled, by backend, MCP method, decision and HTTP status.",
		}, []string{"backend", "mcp_method", "decision", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mcpgate_request_duration_seconds",
			Help:    "Time from request arrival to the end of the response, by backend.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"backend"}),
		auditFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mcpgate_gateway_audit_failures_total",
			Help: "Audit records the gateway could not write (requests are refused while the audit log fails).",
		}),
	}
	reg.MustRegister(g.requests, g.duration, g.auditFailures)
	return g
}

// Observe counts one MCP message. The method label comes from a fixed
// vocabulary (MethodLabel), so a client cannot mint series.
func (g *Gateway) Observe(backend, mcpMethod, decision string, status int) {
	if g == nil {
		return
	}
	g.requests.WithLabelValues(backend, MethodLabel(mcpMethod), decision, statusLabel(status)).Inc()
}

// OtherMethod is the label of every method outside KnownMethods.
const OtherMethod = "other"

// KnownMethods are the MCP methods (protocol versions up to 2026-07-28) a
// client sends; they are the only values of the mcp_method label besides
// OtherMethod and "" (client responses and requests without a message).
var KnownMethods = []string{
	"initialize", "ping", "server/discover", "logging/setLevel", "completion/complete",
	"tools/list", "tools/call",
	"prompts/list", "prompts/get",
	"resources/list", "resources/templates/list", "resources/read", "resources/subscribe", "resources/unsubscribe",
	"subscriptions/listen",
	"tasks/get", "tasks/result", "tasks/list", "tasks/cancel",
	"notifications/initialized", "notifications/cancelled", "notifications/progress",
	"notifications/roots/list_changed", "notifications/tasks/status",
}

var knownMethods = func() map[string]string {
	m := make(map[string]string, len(KnownMethods)+1)
	for _, k := range KnownMethods {
		m[k] = k
	}
	m[""] = ""
	return m
}()

// MethodLabel maps a client-chosen method name to the label vocabulary:
// itself if known, else OtherMethod. Method names are client input, and a
// label value per name would grow the registry without bound.
func MethodLabel(method string) string {
	if l, ok := knownMethods[method]; ok {
		return l
	}
	return OtherMethod
}

// statusLabel bounds the status label to valid HTTP codes (a backend's
// status passes through).
func statusLabel(status int) string {
	if status < 100 || status > 599 {
		return OtherMethod
	}
	return strconv.Itoa(status)
}

// Duration records one HTTP request's duration in seconds.
func (g *Gateway) Duration(backend string, seconds float64) {
	if g == nil {
		return
	}
	g.duration.WithLabelValues(backend).Observe(seconds)
}

// AuditFailure counts a failed audit write.
func (g *Gateway) AuditFailure() {
	if g == nil {
		return
	}
	g.auditFailures.Inc()
}

// AuthServer times the built-in authorization server's endpoints. A nil
// *AuthServer is a no-op.
type AuthServer struct {
	duration *prometheus.HistogramVec

	mu        sync.Mutex
	endpoints map[string]*statusObservers // by endpoint label, shared by its routes
}

// statusObservers caches the series of one endpoint by HTTP status
// (100–599), so a request costs neither a label-set hash nor a status string.
type statusObservers struct {
	vec      *prometheus.HistogramVec
	endpoint string
	byStatus [500]atomic.Pointer[prometheus.Observer]
}

func (o *statusObservers) get(status int) prometheus.Observer {
	if status < 100 || status > 599 {
		return o.vec.WithLabelValues(o.endpoint, statusLabel(status))
	}
	p := &o.byStatus[status-100]
	if obs := p.Load(); obs != nil {
		return *obs
	}
	obs := o.vec.WithLabelValues(o.endpoint, statusLabel(status))
	p.Store(&obs)
	return obs
}

// AuthServerEndpoints are the values of the endpoint label: the server's
// code names the endpoint of a route, never the request path, so the label
// set is fixed.
var AuthServerEndpoints = []string{
	"metadata", "authorize", "callback", "login", "consent", "token", "register", "revoke", "introspect", "jwks",
}

// NewAuthServer creates the collector and registers it with reg.
func NewAuthServer(reg prometheus.Registerer) *AuthServer {
	a := &AuthServer{duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "mcpgate_authserver_request_duration_seconds",
		Help:    "Time to answer a request to the authorization server, by endpoint and HTTP status.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"endpoint", "status"})}
	reg.MustRegister(a.duration)
	return a
}

// Instrument times h under endpoint, which must be one of
// AuthServerEndpoints (anything else is labelled "other").
func (a *AuthServer) Instrument(endpoint string, h http.Handler) http.Handler {
	if a == nil {
		return h
	}
	if !slices.Contains(AuthServerEndpoints, endpoint) {
		endpoint = OtherMethod
	}
	a.mu.Lock()
	obs := a.endpoints[endpoint]
	if obs == nil {
		obs = &statusObservers{vec: a.duration, endpoint: endpoint}
		if a.endpoints == nil {
			a.endpoints = map[string]*statusObservers{}
		}
		a.endpoints[endpoint] = obs
	}
	a.mu.Unlock()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		obs.get(sw.status).Observe(time.Since(start).Seconds())
	})
}

// statusWriter records the status a handler writes.
type statusWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader && code >= 200 {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
