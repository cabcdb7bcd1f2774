package authserver

import (
	"sync"
	"time"
)

// ttlCache remembers values read from the store for a short time (at most
// ttl, or until an entry's own deadline), so hot paths do not hit the store
// on every request. It holds at most max entries: when full it starts over,
// which only costs store reads. Local changes evict at once; changes made
// by other replicas take effect within the TTL.
type ttlCache[V any] struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu sync.Mutex
	m  map[string]ttlEntry[V]
}

type ttlEntry[V any] struct {
	v     V
	until time.Time
}

func newTTLCache[V any](ttl time.Duration, max int, now func() time.Time) *ttlCache[V] {
	return &ttlCache[V]{ttl: ttl, max: max, now: now, m: map[string]ttlEntry[V]{}}
}

func (c *ttlCache[V]) get(k string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || !c.now().Before(e.until) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// put stores v until ttl from now, or until the non-zero deadline if that
// is earlier (e.g. the object's own expiry).
func (c *ttlCache[V]) put(k string, v V, deadline time.Time) {
	if c.ttl <= 0 {
		return
	}
	until := c.now().Add(c.ttl)
	if !deadline.IsZero() && deadline.Before(until) {
		until = deadline
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[k] = ttlEntry[V]{v: v, until: until}
}

func (c *ttlCache[V]) evict(k string) {
	c.mu.Lock()
	delete(c.m, k)
	c.mu.Unlock()
}

// clear drops every entry.
func (c *ttlCache[V]) clear() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}
