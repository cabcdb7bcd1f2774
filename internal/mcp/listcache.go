package mcp

import (
	"bytes"
	"slices"
	"sync"
	"sync/atomic"
)

// ListCache holds filtered list results for reuse, so that the callers who
// see the same items (in the gateway: the same roles under the same
// policy) filter a backend's unchanged list once between them. It is
// bounded in entries and in bytes; the least recently used entry goes
// first. Safe for concurrent use.
//
// An entry is found by its key (policy generation, caller scope, list
// method) and then by the backend's result bytes, compared exactly with
// the input the entry was computed from: no hash whose collision could
// serve one list for another, and no pass over the bytes before the
// comparison (the result's end need not be found first, because a JSON
// object that equals the start of the remaining bytes is the whole value).
// The key must name the decision function exactly (see UseCache): it is
// what keeps one caller's list from another who may see less.
type ListCache struct {
	maxEntries int
	maxBytes   int64

	mu    sync.RWMutex
	gen   uint64 // the newest policy generation seen; older entries are gone
	slots map[listKey][]*listEntry
	all   []*listEntry // every entry, for eviction
	bytes int64

	tick                    atomic.Uint64 // use clock for LRU
	hits, misses, evictions atomic.Uint64
}

// listKey is who an entry was filtered for.
type listKey struct {
	gen    uint64 // policy generation
	scope  string // caller and backend, as the policy keys them
	method string // list method, or streamMethod
}

type listEntry struct {
	key    listKey
	input  []byte // the backend's result value
	output []byte // the filtered result; nil when nothing was removed
	depth  int    // nesting the input uses (the depth limit still applies)
	size   int64
	used   atomic.Uint64
	at     int // index in ListCache.all
}

// Cache bounds.
const (
	// DefaultListCacheEntries and DefaultListCacheBytes bound a gateway's
	// list cache: room for a 100-tool list for hundreds of role sets.
	DefaultListCacheEntries = 1024
	DefaultListCacheBytes   = 32 << 20
	// maxPerKey bounds the different results kept for one key (the pages
	// of a paginated list, a list that changed): each is compared on a
	// lookup.
	maxPerKey = 16
	// entryOverhead approximates an entry's memory besides its bytes.
	entryOverhead = 160
)

// NewListCache returns a cache of at most maxEntries entries and maxBytes
// bytes (inputs, outputs and overhead). A result larger than an eighth of
// maxBytes is not kept, so one huge list cannot flush the others.
func NewListCache(maxEntries int, maxBytes int64) *ListCache {
	return &ListCache{maxEntries: max(1, maxEntries), maxBytes: max(1, maxBytes), slots: map[listKey][]*listEntry{}}
}

// ListCacheStats describes a ListCache.
type ListCacheStats struct {
	Entries   int
	Bytes     int64
	Hits      uint64
	Misses    uint64
	Evictions uint64
}

// Stats returns the cache's size and counters.
func (c *ListCache) Stats() ListCacheStats {
	c.mu.RLock()
	n, b := len(c.all), c.bytes
	c.mu.RUnlock()
	return ListCacheStats{Entries: n, Bytes: b, Hits: c.hits.Load(), Misses: c.misses.Load(), Evictions: c.evictions.Load()}
}

// match returns the entry under key whose input is a prefix of b, or nil.
func (c *ListCache) match(key *listKey, b []byte) *listEntry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if key.gen == c.gen {
		for _, e := range c.slots[*key] {
			if bytes.HasPrefix(b, e.input) {
				e.used.Store(c.tick.Add(1))
				c.hits.Add(1)
				return e
			}
		}
	}
	c.misses.Add(1)
	return nil
}

// store keeps output (nil: unchanged) as the filtered form of input under
// key. Both are copied.
func (c *ListCache) store(key *listKey, input, output []byte, depth int) {
	size := int64(len(input)+len(output)+len(key.scope)+len(key.method)) + entryOverhead
	if size > c.maxBytes/8 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case key.gen < c.gen:
		return // computed under a policy that has since been replaced
	case key.gen > c.gen:
		// A reload: nothing kept can be served again.
		clear(c.slots)
		clear(c.all)
		c.all, c.bytes, c.gen = c.all[:0], 0, key.gen
	}
	slot := c.slots[*key]
	for _, e := range slot {
		if bytes.Equal(e.input, input) {
			return // stored meanwhile by a concurrent request
		}
	}
	if len(slot) >= maxPerKey {
		c.evict(leastUsed(slot))
	}
	buf := make([]byte, len(input)+len(output))
	copy(buf, input)
	e := &listEntry{key: *key, input: buf[:len(input):len(input)], depth: depth, size: size, at: len(c.all)}
	if output != nil {
		copy(buf[len(input):], output)
		e.output = buf[len(input):]
	}
	e.used.Store(c.tick.Add(1))
	c.slots[e.key] = append(c.slots[e.key], e)
	c.all = append(c.all, e)
	c.bytes += size
	for len(c.all) > c.maxEntries || c.bytes > c.maxBytes {
		c.evict(leastUsed(c.all))
	}
}

func leastUsed(es []*listEntry) *listEntry {
	var lru *listEntry
	for _, e := range es {
		if lru == nil || e.used.Load() < lru.used.Load() {
			lru = e
		}
	}
	return lru
}

// evict removes e; c.mu is held.
func (c *ListCache) evict(e *listEntry) {
	last := c.all[len(c.all)-1]
	c.all[e.at], last.at = last, e.at
	c.all[len(c.all)-1] = nil
	c.all = c.all[:len(c.all)-1]
	slot := c.slots[e.key]
	if i := slices.Index(slot, e); i >= 0 {
		slot = slices.Delete(slot, i, i+1)
	}
	if len(slot) == 0 {
		delete(c.slots, e.key)
	} else {
		c.slots[e.key] = slot
	}
	c.bytes -= e.size
	c.evictions.Add(1)
}
