package sqlite

import (
	"container/list"
	"sync"

	"github.com/mcpgate/mcpgate/internal/store"
)

// refreshCache holds current refresh tokens with their grant, by token
// hash, as this process last read or wrote them: a refresh then finds its
// token and grant without a read (issue 15: the read was 23 of the 186 µs
// of CPU a refresh cost at c=8). A token enters when GetRefreshTokenGrant
// reads it, and its successor replaces it when RotateRefreshToken commits;
// the next refresh of that session finds it here.
//
// The database still decides. The rotation's UPDATE matches only a token
// that is current, unexpired and of a grant that is not revoked, so a
// token or grant changed behind the cache (`mcpgate grants revoke` run
// beside the server, which writes from its own process) is refused at the
// rotation, before any token is minted. What this process changes it
// removes: RevokeGrant, RevokeRefreshTokensForGrant and UpdateGrantUpstream
// drop the grant's tokens. Expiry is checked at every lookup, as the read
// does. A read that raced with such a change is not cached (gen).
//
// Values are shared and read only: lookups return copies of the structs,
// whose slices (scopes, identity, sealed secrets) nobody writes.
//
// A grant has one current token, so the cache holds at most one entry per
// grant: a newer one replaces it, and dropping a grant is one lookup.
type refreshCache struct {
	mu       sync.Mutex
	maxBytes int
	bytes    int                      // the cached entries' cost (entryCost)
	entries  map[string]*refreshEntry // by token hash
	byGrant  map[string]*refreshEntry // by grant ID
	order    list.List                // of *refreshEntry, oldest first: the first to go when full
	gen      uint64                   // bumped by every drop of a grant's tokens
}

type refreshEntry struct {
	t       store.RefreshToken // current: not rotated
	g       *store.Grant       // not revoked
	expires int64              // t's expiry, µs (0: none)
	gExp    int64              // g's expiry, µs (0: none)
	cost    int
	elem    *list.Element // in order
}

// entryOverhead approximates an entry's fixed cost: the two structs, its
// map slots and hash key, its list element. With its variable-length fields
// (entryCost) an entry of a built-in user costs about 850 bytes, which is
// what the heap grows by per entry (measured). The bound is
// store.Config.RefreshCacheMiB; a refresh whose token was pushed out is
// read from the database.
const entryOverhead = 400

func entryCost(t *store.RefreshToken, g *store.Grant) int {
	n := entryOverhead + len(t.Hash) + len(t.GrantID) + len(t.ClientID) + len(t.ReplacedBy) +
		len(g.ID) + len(g.ClientID) + len(g.UserKey) + len(g.Resource) + len(g.Identity) + len(g.UpstreamTokens)
	for _, sc := range g.Scopes {
		n += 16 + len(sc)
	}
	return n
}

func newRefreshCache(maxBytes int) *refreshCache {
	return &refreshCache{maxBytes: maxBytes, entries: make(map[string]*refreshEntry), byGrant: make(map[string]*refreshEntry)}
}

// generation is taken before a read whose result may be put.
func (c *refreshCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// get returns copies of hash's token and grant if cached and live at now
// (µs); a cached token that expired is dropped.
func (c *refreshCache) get(hash string, now int64) (*store.RefreshToken, *store.Grant, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[hash]
	if !ok {
		return nil, nil, false
	}
	if (e.expires != 0 && e.expires <= now) || (e.gExp != 0 && e.gExp <= now) {
		c.removeLocked(e)
		return nil, nil, false
	}
	t, g := e.t, *e.g
	return &t, &g, true
}

// put caches what a read at generation gen returned, unless a drop came
// between (the read may predate it) or the token is not current.
func (c *refreshCache) put(t *store.RefreshToken, g *store.Grant, gen uint64) {
	if !t.RotatedAt.IsZero() || g.Revoked {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	gc := *g // the caller has g
	c.addLocked(*t, &gc)
}

// rotated moves oldHash's grant to its successor next, which the rotation
// just committed; nothing is cached for next if oldHash was not.
func (c *refreshCache) rotated(oldHash string, next *store.RefreshToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[oldHash]
	if !ok {
		return
	}
	c.removeLocked(e)
	// As a read would return it: times at the stored precision.
	t := store.RefreshToken{Hash: next.Hash, GrantID: next.GrantID, ClientID: next.ClientID,
		CreatedAt: fromMicros(micros(next.CreatedAt)), ExpiresAt: fromMicros(micros(next.ExpiresAt))}
	c.addLocked(t, e.g)
}

// drop forgets hash (a rotation that did not commit, or a conflict).
func (c *refreshCache) drop(hash string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[hash]; ok {
		c.removeLocked(e)
	}
}

// dropGrant forgets grant id's tokens, and every read under way.
func (c *refreshCache) dropGrant(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if e, ok := c.byGrant[id]; ok {
		c.removeLocked(e)
	}
}

func (c *refreshCache) addLocked(t store.RefreshToken, g *store.Grant) {
	e := &refreshEntry{t: t, g: g, expires: micros(t.ExpiresAt), gExp: micros(g.ExpiresAt), cost: entryCost(&t, g)}
	if e.cost > c.maxBytes {
		return
	}
	if old, ok := c.entries[t.Hash]; ok {
		c.removeLocked(old)
	}
	if old, ok := c.byGrant[t.GrantID]; ok {
		c.removeLocked(old)
	}
	for c.bytes+e.cost > c.maxBytes {
		c.removeLocked(c.order.Front().Value.(*refreshEntry))
	}
	e.elem = c.order.PushBack(e)
	c.bytes += e.cost
	c.entries[t.Hash] = e
	c.byGrant[t.GrantID] = e
}

// removeLocked forgets e, which is cached.
func (c *refreshCache) removeLocked(e *refreshEntry) {
	c.order.Remove(e.elem)
	delete(c.entries, e.t.Hash)
	delete(c.byGrant, e.t.GrantID)
	c.bytes -= e.cost
}

// len is the number of cached tokens (for tests).
func (c *refreshCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
