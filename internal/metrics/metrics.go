// Package metrics holds mcpgate's Prometheus collectors.
package metrics

import (
	"strconv"

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

// Observe counts one MCP message.
func (g *Gateway) Observe(backend, mcpMethod, decision string, status int) {
	if g == nil {
		return
	}
	g.requests.WithLabelValues(backend, mcpMethod, decision, strconv.Itoa(status)).Inc()
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
