package authn

import (
	"crypto/sha256"
	"sync"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
)

// tokenKey is the cache key of a token: its SHA-256, so raw tokens are never
// kept in memory beyond the request and long tokens cost a fixed 32 bytes.
type tokenKey [sha256.Size]byte

// keyOf hashes the token without copying it: []byte(token) would allocate
// on every request, and Sum256 only reads its argument.
func keyOf(token string) tokenKey {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

// cacheEntry is a verification result. p == nil records a negative result.
type cacheEntry struct {
	p       *Principal
	expires int64 // unix nanoseconds
}

// tokenCache is a bounded map of verification results. When full it drops
// expired entries and, if that is not enough, an arbitrary tenth: simple
// and O(1) amortised, which is all a cache of re-verifiable results needs.
type tokenCache struct {
	mu  sync.RWMutex
	m   map[tokenKey]cacheEntry
	max int
}

// cacheHit is the span attribute saying whether a token was verified from
// the cache (telemetry: the gateway's mcpgate.authn span).
func cacheHit(ok bool) attribute.KeyValue { return attribute.Bool("mcpgate.authn.cache_hit", ok) }

// newTokenCache returns nil (no caching) when size < 0.
func newTokenCache(size int) *tokenCache {
	if size < 0 {
		return nil
	}
	return &tokenCache{m: make(map[tokenKey]cacheEntry), max: size}
}

// get returns a live entry. A nil cache never hits.
func (c *tokenCache) get(k tokenKey, now time.Time) (cacheEntry, bool) {
	if c == nil {
		return cacheEntry{}, false
	}
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	if !ok || now.UnixNano() >= e.expires {
		return cacheEntry{}, false
	}
	return e, true
}

// put stores a result until expires; results already expired are not stored.
func (c *tokenCache) put(k tokenKey, p *Principal, expires, now time.Time) {
	if c == nil || !expires.After(now) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, exists := c.m[k]; !exists && len(c.m) >= c.max {
		c.evictLocked(now.UnixNano())
	}
	c.m[k] = cacheEntry{p: p, expires: expires.UnixNano()}
}

func (c *tokenCache) evictLocked(now int64) {
	for k, e := range c.m {
		if now >= e.expires {
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

func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
