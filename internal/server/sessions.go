package server

import (
	"sync"
	"time"
)

// sessionBinder binds MCP session ids to the user that created them, so a
// leaked Mcp-Session-Id cannot be used by another user (MCP security best
// practices: bind sessions to the user, never authenticate by session).
// Sessions the gateway has not seen (e.g. created before a restart) are bound
// on first use.
type sessionBinder struct {
	mu    sync.Mutex
	m     map[string]binding
	max   int
	ttl   time.Duration
	clock func() time.Time
}

type binding struct {
	user     string
	lastSeen time.Time
}

func newSessionBinder(max int, ttl time.Duration) *sessionBinder {
	return &sessionBinder{m: make(map[string]binding), max: max, ttl: ttl, clock: time.Now}
}

// check reports whether user may use session id, binding it if new.
func (s *sessionBinder) check(id, user string) bool {
	if id == "" {
		return true
	}
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[id]
	if ok && now.Sub(b.lastSeen) < s.ttl {
		if b.user != user {
			return false
		}
	} else if len(s.m) >= s.max {
		s.sweep(now)
	}
	s.m[id] = binding{user: user, lastSeen: now}
	return true
}

// forget drops a session (after DELETE).
func (s *sessionBinder) forget(id string) {
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

// sweep drops idle bindings; if none are idle it drops arbitrary ones, so
// memory stays bounded. Called with mu held.
func (s *sessionBinder) sweep(now time.Time) {
	for k, b := range s.m {
		if now.Sub(b.lastSeen) >= s.ttl {
			delete(s.m, k)
		}
	}
	for k := range s.m {
		if len(s.m) < s.max {
			break
		}
		delete(s.m, k)
	}
}
