package credential

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts how backend credentials were obtained. A nil *Metrics
// counts nothing.
type Metrics struct {
	total *prometheus.CounterVec
}

// Outcomes (the result label).
const (
	resultCacheHit  = "cache_hit"
	resultExchanged = "exchanged"
	resultError     = "error"
)

// NewMetrics creates the collectors; register them with Collectors.
func NewMetrics() *Metrics {
	m := &Metrics{total: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mcpgate_backend_credentials_total",
		Help: "Backend credentials of types token_exchange and client_credentials, by backend, type and result " +
			"(cache_hit: served from the cache or by a request already in flight; exchanged: a request to the security token service " +
			"that succeeded; error).",
	}, []string{"backend", "type", "result"})}
	return m
}

// Collectors returns the collectors to register.
func (m *Metrics) Collectors() []prometheus.Collector { return []prometheus.Collector{m.total} }

// counters are one provider's pre-resolved series: no label lookup per call.
type counters struct{ hit, exchanged, failed prometheus.Counter }

func (m *Metrics) forBackend(backend, typ string) counters {
	if m == nil {
		return counters{}
	}
	return counters{
		hit:       m.total.WithLabelValues(backend, typ, resultCacheHit),
		exchanged: m.total.WithLabelValues(backend, typ, resultExchanged),
		failed:    m.total.WithLabelValues(backend, typ, resultError),
	}
}

func inc(c prometheus.Counter) {
	if c != nil {
		c.Inc()
	}
}
