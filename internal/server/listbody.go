package server

import (
	"bytes"
	"io"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/internal/mcp"
)

// listBody holds a JSON list response, read whole into a pooled buffer for
// filtering, and serves the filtered answer (which may alias that buffer,
// the filter's memory or a list cache entry). Close, which the proxy calls
// once the answer is sent, returns both for reuse.
type listBody struct {
	bytes.Reader
	in  []byte // the backend's body
	buf *[]byte
	f   *mcp.ListFilter
}

var listBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

// maxPooledListBody keeps an occasional huge list from pinning its memory.
const maxPooledListBody = 4 << 20

// open readies b to hold an answer filtered by f.
func (b *listBody) open(f *mcp.ListFilter) {
	b.buf, b.f = listBuffers.Get().(*[]byte), f
}

// readFrom reads src whole into the pooled buffer, but no more than
// maxListBody+1 bytes (the caller refuses more); n is its announced length,
// or -1.
func (b *listBody) readFrom(src io.Reader, n int64) error {
	buf := (*b.buf)[:0]
	if n > 0 && n <= maxListBody && int(n) >= cap(buf) {
		buf = make([]byte, 0, int(n)+1) // +1: room to see EOF without growing
	}
	for len(buf) <= maxListBody {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)] // grow
		}
		m, err := src.Read(buf[len(buf):min(cap(buf), maxListBody+1)])
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			break
		}
		if err != nil {
			b.in = buf
			return err
		}
	}
	b.in = buf
	return nil
}

func (b *listBody) Close() error {
	if b.buf != nil {
		if cap(b.in) <= maxPooledListBody {
			*b.buf = b.in[:0]
			listBuffers.Put(b.buf)
		}
		b.buf, b.in = nil, nil
		b.f.Release()
		b.Reset(nil)
	}
	return nil
}

// listCacheCollectors export the list cache's size and counters.
func listCacheCollectors(c *mcp.ListCache) []prometheus.Collector {
	gauge := func(name, help string, v func(mcp.ListCacheStats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return v(c.Stats()) })
	}
	counter := func(name, help string, v func(mcp.ListCacheStats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v(c.Stats())) })
	}
	return []prometheus.Collector{
		gauge("mcpgate_list_cache_entries", "Filtered list results held for reuse by callers with the same roles.",
			func(s mcp.ListCacheStats) float64 { return float64(s.Entries) }),
		gauge("mcpgate_list_cache_bytes", "Memory held by the list cache (bounded).",
			func(s mcp.ListCacheStats) float64 { return float64(s.Bytes) }),
		counter("mcpgate_list_cache_hits_total", "List responses answered from the list cache.",
			func(s mcp.ListCacheStats) uint64 { return s.Hits }),
		counter("mcpgate_list_cache_misses_total", "List responses filtered afresh.",
			func(s mcp.ListCacheStats) uint64 { return s.Misses }),
		counter("mcpgate_list_cache_evictions_total", "Entries dropped from the list cache to stay within its bounds.",
			func(s mcp.ListCacheStats) uint64 { return s.Evictions }),
	}
}
