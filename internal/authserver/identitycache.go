package authserver

import (
	"encoding/json"
	"sync"

	"github.com/mcpgate/mcpgate/internal/idp"
)

// identityCache decodes stored identities (the JSON a code and its grant
// carry) once per distinct encoding: every refresh of a grant, and every
// exchange of a user who signed in before, decodes the same bytes, and
// encoding/json's reflection cost about 3 µs and 8 allocations each time.
// The key is the encoding itself, so a hit is exactly what decoding would
// give. The values are shared: callers only read them.
type identityCache struct {
	mu    sync.RWMutex
	m     map[string]*idp.Identity
	bytes int // sum of the keys' lengths
}

// maxIdentityCacheBytes bounds the cache by the size of its keys (the
// values are about as large); past it the cache starts over.
const maxIdentityCacheBytes = 1 << 20

// decode returns the identity raw encodes. An encoding that does not
// decode is never cached.
func (c *identityCache) decode(raw []byte) (*idp.Identity, error) {
	c.mu.RLock()
	id := c.m[string(raw)] // no copy of raw for the lookup
	c.mu.RUnlock()
	if id != nil {
		return id, nil
	}
	id = new(idp.Identity)
	if err := json.Unmarshal(raw, id); err != nil {
		return nil, err
	}
	if len(raw) > maxIdentityCacheBytes/64 {
		return id, nil // one huge identity does not flush the others
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || c.bytes+len(raw) > maxIdentityCacheBytes {
		c.m, c.bytes = make(map[string]*idp.Identity), 0
	}
	if _, ok := c.m[string(raw)]; !ok {
		c.m[string(raw)] = id
		c.bytes += len(raw)
	}
	return id, nil
}
