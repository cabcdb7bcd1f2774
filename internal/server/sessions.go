package server

import (
	"container/list"
	"sync"
	"time"
)

// Session table bounds. A binding exists only for a session a backend
// issued (one initialize round trip each, rate limited per user), so these
// are far above what real clients hold.
const (
	maxSessions        = 100_000
	maxSessionsPerUser = 1_000
	sessionIdleTTL     = 24 * time.Hour
)

// sessionBinder binds MCP session ids to the user whose initialize the
// backend answered with that id, so a leaked Mcp-Session-Id cannot be used
// by another user (MCP security best practices: bind sessions to the user,
// never authenticate by session). Ids the gateway did not see issued —
// guessed, another user's, or from before a restart — are unknown: the
// gateway answers 404, as the backend would for an expired session, and the
// client starts a new one (MCP streamable HTTP, "Session Management").
//
// The table is bounded: at most max bindings and perUser per user, evicted
// least recently used first in O(1). A user at its share evicts its own
// oldest binding, never another user's, so a flood of sessions from one
// user cannot log others out.
type sessionBinder struct {
	mu      sync.Mutex
	m       map[sessionKey]*sessionEntry
	users   map[string]*list.List // per user: *sessionEntry, most recently used first
	lru     list.List             // every *sessionEntry, most recently used first
	max     int
	perUser int
	ttl     time.Duration
	clock   func() time.Time
}

// sessionKey scopes ids to a backend: each backend issues its own.
type sessionKey struct{ backend, id string }

type sessionEntry struct {
	key      sessionKey
	user     string
	lastUsed time.Time
	all      *list.Element // in sessionBinder.lru
	mine     *list.Element // in sessionBinder.users[user]
}

// sessionState is the outcome of sessionBinder.use.
type sessionState int

const (
	sessionOK       sessionState = iota
	sessionUnknown               // never issued, expired, evicted or forgotten
	sessionMismatch              // bound to another user
)

func newSessionBinder(max, perUser int, ttl time.Duration) *sessionBinder {
	return &sessionBinder{
		m: make(map[sessionKey]*sessionEntry), users: make(map[string]*list.List),
		max: max, perUser: min(perUser, max), ttl: ttl, clock: time.Now,
	}
}

// use reports whether user may use session id at backend, and marks it used.
func (s *sessionBinder) use(backend, id, user string) sessionState {
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[sessionKey{backend, id}]
	switch {
	case e == nil:
		return sessionUnknown
	case now.Sub(e.lastUsed) >= s.ttl:
		s.remove(e)
		return sessionUnknown
	case e.user != user:
		return sessionMismatch
	}
	e.lastUsed = now
	s.lru.MoveToFront(e.all)
	s.users[user].MoveToFront(e.mine)
	return sessionOK
}

// bind records that backend issued session id to user. It returns false
// when the id is bound to another user (the binding is kept: a backend
// reusing a live id must not hand over another user's session).
func (s *sessionBinder) bind(backend, id, user string) bool {
	now := s.clock()
	k := sessionKey{backend, id}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[k]; e != nil {
		if now.Sub(e.lastUsed) < s.ttl && e.user != user {
			return false
		}
		s.remove(e)
	}
	// Idle bindings go first, from the cold end.
	for b := s.lru.Back(); b != nil && now.Sub(b.Value.(*sessionEntry).lastUsed) >= s.ttl; b = s.lru.Back() {
		s.remove(b.Value.(*sessionEntry))
	}
	mine := s.users[user]
	if mine == nil {
		mine = list.New()
		s.users[user] = mine
	}
	if mine.Len() >= s.perUser {
		s.remove(mine.Back().Value.(*sessionEntry))
	}
	if s.lru.Len() >= s.max {
		// Only reachable when max/perUser users are at their share.
		s.remove(s.lru.Back().Value.(*sessionEntry))
	}
	if s.users[user] == nil { // remove dropped the (now empty) list
		s.users[user] = mine
	}
	e := &sessionEntry{key: k, user: user, lastUsed: now}
	e.all = s.lru.PushFront(e)
	e.mine = mine.PushFront(e)
	s.m[k] = e
	return true
}

// forget drops user's binding of id at backend (after the backend confirmed
// a DELETE).
func (s *sessionBinder) forget(backend, id, user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[sessionKey{backend, id}]; e != nil && e.user == user {
		s.remove(e)
	}
}

// remove unlinks e; called with mu held.
func (s *sessionBinder) remove(e *sessionEntry) {
	delete(s.m, e.key)
	s.lru.Remove(e.all)
	if mine := s.users[e.user]; mine != nil {
		mine.Remove(e.mine)
		if mine.Len() == 0 {
			delete(s.users, e.user)
		}
	}
}

// len returns the number of bindings.
func (s *sessionBinder) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
