package authn

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"

	"github.com/mcpgate/mcpgate/internal/identity"
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
	p       *identity.Principal
	expires int64 // unix nanoseconds
}

// tokenCache is a bounded cache of verification results, by token hash,
// with CLOCK (second-chance) eviction: a hit only sets a slot's reference
// bit under the read lock, and a full cache replaces the first slot the
// hand finds expired or not used since its last pass, so tokens in use stay
// while one-off ones go, at O(1) amortised cost and a fixed number of
// entries. Entries are never served at or after their expiry.
type tokenCache struct {
	mu    sync.RWMutex
	idx   map[tokenKey]int // slot of each key
	slots []cacheSlot      // grows to max, then is reused
	hand  int
	max   int
}

// cacheHit is the span attribute saying whether a token was verified from
// the cache (telemetry: the gateway's mcpgate.authn span).
func cacheHit(ok bool) attribute.KeyValue { return attribute.Bool("mcpgate.authn.cache_hit", ok) }

type cacheSlot struct {
	key tokenKey
	e   cacheEntry
	ref atomic.Bool // used since the hand last passed
}

// newTokenCache returns nil (no caching) when size < 0; 0 holds one entry.
func newTokenCache(size int) *tokenCache {
	if size < 0 {
		return nil
	}
	return &tokenCache{idx: make(map[tokenKey]int), max: max(size, 1)}
}

// get returns a live entry. A nil cache never hits.
func (c *tokenCache) get(k tokenKey, now time.Time) (cacheEntry, bool) {
	if c == nil {
		return cacheEntry{}, false
	}
	c.mu.RLock()
	i, ok := c.idx[k]
	var e cacheEntry
	if ok {
		s := &c.slots[i]
		e = s.e
		if now.UnixNano() < e.expires {
			s.ref.Store(true)
		}
	}
	c.mu.RUnlock()
	if !ok || now.UnixNano() >= e.expires {
		return cacheEntry{}, false
	}
	return e, true
}

// put stores a result until expires; results already expired are not stored.
func (c *tokenCache) put(k tokenKey, p *identity.Principal, expires, now time.Time) {
	if c == nil || !expires.After(now) {
		return
	}
	e := cacheEntry{p: p, expires: expires.UnixNano()}
	c.mu.Lock()
	defer c.mu.Unlock()
	if i, ok := c.idx[k]; ok {
		c.slots[i].e = e
		c.slots[i].ref.Store(true)
		return
	}
	var i int
	if len(c.slots) < c.max {
		c.slots = append(c.slots, cacheSlot{})
		i = len(c.slots) - 1
	} else {
		i = c.victimLocked(now.UnixNano())
		delete(c.idx, c.slots[i].key)
	}
	s := &c.slots[i]
	s.key, s.e = k, e
	s.ref.Store(false) // a second chance is earned by a hit, not by arriving
	c.idx[k] = i
}

// victimLocked advances the hand to the first slot that is expired or was
// not used since the hand last passed it, clearing reference bits on the
// way: within two turns of the clock at most.
func (c *tokenCache) victimLocked(now int64) int {
	for {
		i := c.hand
		c.hand = (c.hand + 1) % len(c.slots)
		s := &c.slots[i]
		if now >= s.e.expires || !s.ref.Swap(false) {
			return i
		}
	}
}

// clear forgets every entry (a signing key was revoked).
func (c *tokenCache) clear() {
	if c == nil {
		return
	}
	c.mu.Lock()
	clear(c.idx)
	c.slots, c.hand = c.slots[:0], 0
	c.mu.Unlock()
}

func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.idx)
}
