package credential

import (
	"crypto/sha256"
	"sync"
	"time"
)

// cacheKey identifies a cached credential: the SHA-256 of the session or
// the token it was obtained for, so no token is kept as a key and every key
// costs 32 bytes.
type cacheKey [sha256.Size]byte

type cacheEntry struct {
	h       Header
	refresh int64 // unix nanoseconds: from then on, obtain a new one
}

// cache is a bounded map of credentials. When full it drops expired
// entries and, if that is not enough, an arbitrary tenth: O(1) amortised,
// and a dropped entry costs one more request to the token service.
type cache struct {
	mu  sync.RWMutex
	m   map[cacheKey]cacheEntry
	max int
}

func newCache(size int) *cache { return &cache{m: make(map[cacheKey]cacheEntry), max: max(size, 1)} }

func (c *cache) get(k cacheKey, now time.Time) (Header, bool) {
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	if !ok || now.UnixNano() >= e.refresh {
		return Header{}, false
	}
	return e.h, true
}

// put keeps h until refresh; a credential already due is not stored.
func (c *cache) put(k cacheKey, h Header, refresh, now time.Time) {
	if !refresh.After(now) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, exists := c.m[k]; !exists && len(c.m) >= c.max {
		n := now.UnixNano()
		for k, e := range c.m {
			if n >= e.refresh {
				delete(c.m, k)
			}
		}
		drop := len(c.m) - c.max + max(1, c.max/10)
		for k := range c.m { // map order is unspecified: an arbitrary victim set
			if drop <= 0 {
				break
			}
			delete(c.m, k)
			drop--
		}
	}
	c.m[k] = cacheEntry{h: h, refresh: refresh.UnixNano()}
}

func (c *cache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
