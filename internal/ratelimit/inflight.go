package ratelimit

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// InFlight bounds the requests each key (a client IP, a user) has in flight
// at once. A rate limit alone does not: one slow body or one open stream
// holds a goroutine and a connection however few requests it took.
//
// Memory is bounded too: at most maxKeys counters are kept. A counter stays
// in the table when it drops to zero (so a steady client costs one map
// lookup and no allocation per request) and zero counters are swept when a
// shard fills. A shard full of busy keys refuses new keys: there is no idle
// entry to evict, and refusing is the fail-closed answer.
type InFlight struct {
	max      int32
	perShard int
	seed     maphash.Seed
	shards   [shards]inflightShard
}

type inflightShard struct {
	mu sync.Mutex
	m  map[string]*Slot
}

// Slot is one key's counter; Release gives back what Acquire took.
type Slot struct{ n atomic.Int32 }

// Release ends one request of the slot's key. A nil Slot is a no-op.
func (s *Slot) Release() {
	if s != nil {
		s.n.Add(-1)
	}
}

// NewInFlight allows max requests in flight per key, for at most maxKeys
// keys at once (rounded up to a multiple of the shard count).
func NewInFlight(max, maxKeys int) *InFlight {
	l := &InFlight{max: int32(max), perShard: (maxKeys + shards - 1) / shards, seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].m = map[string]*Slot{}
	}
	return l
}

// Acquire takes a slot for key. It returns false when key already has the
// maximum in flight or the table has no room for a new key; otherwise the
// caller must Release the slot when the request ends. A nil InFlight allows
// everything (and returns a nil Slot).
func (l *InFlight) Acquire(key string) (*Slot, bool) {
	if l == nil {
		return nil, true
	}
	s, key := l.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.m[key]
	if c == nil {
		if len(s.m) >= l.perShard {
			s.sweep()
			if len(s.m) >= l.perShard {
				return nil, false
			}
		}
		c = &Slot{}
		s.m[key] = c
	}
	// Increments happen under the shard lock, so the check and the add are
	// one step; Release decrements without it, which can only make room.
	if c.n.Load() >= l.max {
		return nil, false
	}
	c.n.Add(1)
	return c, true
}

// shard returns key's shard and the key its table uses (boundKey).
func (l *InFlight) shard(key string) (*inflightShard, string) {
	key = boundKey(key)
	return &l.shards[maphash.String(l.seed, key)%shards], key
}

// sweep drops the counters of keys with nothing in flight. Called with mu
// held; a counter at zero has no holder (increments need mu), so dropping
// it loses nothing.
func (s *inflightShard) sweep() {
	for k, c := range s.m {
		if c.n.Load() <= 0 {
			delete(s.m, k)
		}
	}
}

// InFlight returns the number of requests key has in flight (for tests and
// diagnostics).
func (l *InFlight) InFlight(key string) int {
	if l == nil {
		return 0
	}
	s, key := l.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.m[key]; c != nil {
		return int(c.n.Load())
	}
	return 0
}

// Keys returns the number of counters held.
func (l *InFlight) Keys() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
