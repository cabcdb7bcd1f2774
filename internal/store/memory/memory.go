// Package memory is an in-process store.Store for tests and development.
// Its state is lost on exit: never use it where clients or tokens must
// survive a restart or be shared between replicas.
package memory

import (
	"cmp"
	"context"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

type code struct {
	c    store.AuthCode
	used bool
}

type consentKey struct{ user, client string }

// Store keeps everything in maps behind one mutex.
type Store struct {
	store.Hub // changes reach this process only

	mu       sync.Mutex
	clients  map[string]*store.Client
	requests map[string]*store.AuthRequest
	codes    map[string]*code
	grants   map[string]*store.Grant
	refresh  map[string]*store.RefreshToken
	consents map[consentKey]*store.Consent
	keys     map[string]*store.SigningKey
}

var _ store.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{
		clients:  map[string]*store.Client{},
		requests: map[string]*store.AuthRequest{},
		codes:    map[string]*code{},
		grants:   map[string]*store.Grant{},
		refresh:  map[string]*store.RefreshToken{},
		consents: map[consentKey]*store.Consent{},
		keys:     map[string]*store.SigningKey{},
	}
}

func live(expiresAt time.Time) bool { return !store.Expired(expiresAt, time.Now()) }

// insert stores v under k unless k is taken (store.ErrConflict).
func insert[K comparable, V any](m map[K]V, k K, v V) error {
	if _, ok := m[k]; ok {
		return store.ErrConflict
	}
	m[k] = v
	return nil
}

// remove deletes k, or reports store.ErrNotFound.
func remove[K comparable, V any](m map[K]V, k K) error {
	if _, ok := m[k]; !ok {
		return store.ErrNotFound
	}
	delete(m, k)
	return nil
}

// sortByCreated orders a listing as the SQL backends do (ORDER BY
// created_at, id); key returns an entry's creation time and ID.
func sortByCreated[T any](out []T, key func(T) (time.Time, string)) {
	slices.SortFunc(out, func(a, b T) int {
		ta, ia := key(a)
		tb, ib := key(b)
		return cmp.Or(ta.Compare(tb), strings.Compare(ia, ib))
	})
}

// clone returns a copy of *v that shares no memory with it, its times
// normalized as the SQL backends store them (store.NormTime): what a round
// trip through a database gives back. Records hold only strings, numbers,
// bools, times and slices of strings or bytes (TestCloneCoversRecordFields
// holds every record type to that), so a copy with its slices cloned is a
// deep one, and a field added later is copied without anyone remembering.
func clone[T any](v *T) *T {
	n := *v
	rv := reflect.ValueOf(&n).Elem()
	for i := range rv.NumField() {
		switch f := rv.Field(i).Addr().Interface().(type) {
		case *time.Time:
			*f = store.NormTime(*f)
		case *[]string:
			*f = slices.Clone(*f)
		case *[]byte:
			*f = slices.Clone(*f)
		}
	}
	return &n
}

// CreateClient implements store.Store.
func (s *Store) CreateClient(_ context.Context, c *store.Client) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return insert(s.clients, c.ID, clone(c))
}

// GetClient implements store.Store.
func (s *Store) GetClient(_ context.Context, id string) (*store.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	if !ok || !live(c.ExpiresAt) {
		return nil, store.ErrNotFound
	}
	return clone(c), nil
}

// DeleteClient implements store.Store.
func (s *Store) DeleteClient(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return remove(s.clients, id)
}

// CountClientsByIP implements store.Store.
func (s *Store) CountClientsByIP(_ context.Context, ip string, since time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	since = store.NormTime(since)
	n := 0
	for _, c := range s.clients {
		if c.RegisteredIP == ip && !c.CreatedAt.Before(since) {
			n++
		}
	}
	return n, nil
}

// NthClientTimeByIP implements store.Store.
func (s *Store) NthClientTimeByIP(_ context.Context, ip string, since time.Time, n int) (time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	since = store.NormTime(since)
	var times []time.Time
	for _, c := range s.clients {
		if c.RegisteredIP == ip && !c.CreatedAt.Before(since) {
			times = append(times, c.CreatedAt)
		}
	}
	if n < 0 || n >= len(times) {
		return time.Time{}, store.ErrNotFound
	}
	slices.SortFunc(times, time.Time.Compare)
	return times[n], nil
}

// CreateAuthRequest implements store.Store.
func (s *Store) CreateAuthRequest(_ context.Context, r *store.AuthRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return insert(s.requests, r.ID, clone(r))
}

// GetAuthRequest implements store.Store.
func (s *Store) GetAuthRequest(_ context.Context, id string) (*store.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.requests[id]
	if !ok || !live(r.ExpiresAt) {
		return nil, store.ErrNotFound
	}
	return clone(r), nil
}

// UpdateAuthRequest implements store.Store.
func (s *Store) UpdateAuthRequest(_ context.Context, r *store.AuthRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.requests[r.ID]
	if !ok || !live(old.ExpiresAt) {
		return store.ErrNotFound
	}
	s.requests[r.ID] = clone(r)
	return nil
}

// DeleteAuthRequest implements store.Store.
func (s *Store) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return remove(s.requests, id)
}

// TakeAuthRequestByUpstreamState implements store.Store.
func (s *Store) TakeAuthRequestByUpstreamState(_ context.Context, stateHash string) (*store.AuthRequest, error) {
	if stateHash == "" {
		return nil, store.ErrNotFound
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.requests {
		if r.UpstreamStateHash == stateHash && live(r.ExpiresAt) {
			r.UpstreamStateHash = ""
			return clone(r), nil
		}
	}
	return nil, store.ErrNotFound
}

// CreateAuthCode implements store.Store.
func (s *Store) CreateAuthCode(_ context.Context, c *store.AuthCode) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return insert(s.codes, c.Hash, &code{c: *clone(c)})
}

// RedeemAuthCode implements store.Store.
func (s *Store) RedeemAuthCode(_ context.Context, hash string, issue store.IssueFunc) (*store.AuthCode, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.codes[hash]
	if !ok || !live(c.c.ExpiresAt) {
		return nil, store.ErrNotFound
	}
	if c.used {
		return clone(&c.c), store.ErrAlreadyUsed
	}
	g, t, err := issue(clone(&c.c))
	if err != nil {
		c.used = true
		return clone(&c.c), err
	}
	if err := store.CheckIssued(g, t); err != nil {
		return nil, err
	}
	if _, ok := s.grants[g.ID]; ok {
		return nil, store.ErrConflict
	}
	if t != nil {
		if _, ok := s.refresh[t.Hash]; ok {
			return nil, store.ErrConflict
		}
	}
	c.used = true
	s.grants[g.ID] = clone(g)
	if t != nil {
		s.refresh[t.Hash] = clone(t)
	}
	return clone(&c.c), nil
}

// GetGrant implements store.Store.
func (s *Store) GetGrant(_ context.Context, id string) (*store.Grant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.grants[id]
	if !ok || !live(g.ExpiresAt) {
		return nil, store.ErrNotFound
	}
	return clone(g), nil
}

// RevokeGrant implements store.Store.
func (s *Store) RevokeGrant(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.grants[id]
	if !ok {
		return store.ErrNotFound
	}
	g.Revoked = true
	return nil
}

// UpdateGrantUpstream implements store.Store.
func (s *Store) UpdateGrantUpstream(_ context.Context, id string, identity, sealed []byte, expiry time.Time, expectedVersion int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.grants[id]
	if !ok || !live(g.ExpiresAt) || g.Revoked {
		return store.ErrNotFound
	}
	if g.Version != expectedVersion {
		return store.ErrConflict
	}
	if identity != nil {
		g.Identity = slices.Clone(identity)
	}
	g.UpstreamTokens = slices.Clone(sealed)
	g.UpstreamExpiry = store.NormTime(expiry)
	g.Version++
	return nil
}

// ListGrants implements store.Store.
func (s *Store) ListGrants(_ context.Context, f store.GrantFilter) ([]*store.Grant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*store.Grant
	for _, g := range s.grants {
		if live(g.ExpiresAt) && (f.UserKey == "" || g.UserKey == f.UserKey) && (f.ClientID == "" || g.ClientID == f.ClientID) {
			out = append(out, clone(g))
		}
	}
	sortByCreated(out, func(g *store.Grant) (time.Time, string) { return g.CreatedAt, g.ID })
	return out, nil
}

// GetRefreshToken implements store.Store.
func (s *Store) GetRefreshToken(_ context.Context, hash string) (*store.RefreshToken, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.refresh[hash]
	if !ok || !live(t.ExpiresAt) {
		return nil, store.ErrNotFound
	}
	return clone(t), nil
}

// GetRefreshTokenGrant implements store.Store.
func (s *Store) GetRefreshTokenGrant(_ context.Context, hash string) (*store.RefreshToken, *store.Grant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.refresh[hash]
	if !ok || !live(t.ExpiresAt) {
		return nil, nil, store.ErrNotFound
	}
	g, ok := s.grants[t.GrantID]
	if !ok || !live(g.ExpiresAt) {
		return nil, nil, store.ErrNotFound
	}
	return clone(t), clone(g), nil
}

// RotateRefreshToken implements store.Store.
func (s *Store) RotateRefreshToken(_ context.Context, oldHash string, next *store.RefreshToken, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.refresh[oldHash]
	if !ok || !live(old.ExpiresAt) {
		return store.ErrNotFound
	}
	if g, ok := s.grants[old.GrantID]; !ok || g.Revoked {
		return store.ErrNotFound
	}
	if !old.RotatedAt.IsZero() {
		return store.ErrConflict
	}
	if _, ok := s.refresh[next.Hash]; ok {
		return store.ErrConflict
	}
	if _, ok := s.grants[next.GrantID]; !ok {
		return store.ErrNotFound
	}
	old.RotatedAt = store.NormTime(now)
	old.ReplacedBy = next.Hash
	s.refresh[next.Hash] = clone(next)
	return nil
}

// RevokeRefreshTokensForGrant implements store.Store.
func (s *Store) RevokeRefreshTokensForGrant(_ context.Context, grantID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, t := range s.refresh {
		if t.GrantID == grantID {
			delete(s.refresh, h)
		}
	}
	return nil
}

// GetConsent implements store.Store.
func (s *Store) GetConsent(_ context.Context, userKey, clientID string) (*store.Consent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.consents[consentKey{userKey, clientID}]
	if !ok {
		return nil, store.ErrNotFound
	}
	return clone(c), nil
}

// SaveConsent implements store.Store.
func (s *Store) SaveConsent(_ context.Context, c *store.Consent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.consents[consentKey{c.UserKey, c.ClientID}] = clone(c)
	return nil
}

// DeleteConsent implements store.Store.
func (s *Store) DeleteConsent(_ context.Context, userKey, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return remove(s.consents, consentKey{userKey, clientID})
}

// ListSigningKeys implements store.Store.
func (s *Store) ListSigningKeys(_ context.Context) ([]*store.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*store.SigningKey, 0, len(s.keys))
	for _, k := range s.keys {
		out = append(out, clone(k))
	}
	sortByCreated(out, func(k *store.SigningKey) (time.Time, string) { return k.CreatedAt, k.ID })
	return out, nil
}

// CreateSigningKey implements store.Store.
func (s *Store) CreateSigningKey(_ context.Context, k *store.SigningKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return insert(s.keys, k.ID, clone(k))
}

// UpdateSigningKey implements store.Store.
func (s *Store) UpdateSigningKey(_ context.Context, k *store.SigningKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.keys[k.ID]
	if !ok {
		return store.ErrNotFound
	}
	old.Status = k.Status
	old.RetireAt = store.NormTime(k.RetireAt)
	if len(k.Private) > 0 {
		old.Private = slices.Clone(k.Private)
	}
	return nil
}

// DeleteSigningKey implements store.Store.
func (s *Store) DeleteSigningKey(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return remove(s.keys, id)
}

// DeleteExpired implements store.Store.
func (s *Store) DeleteExpired(_ context.Context, now time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for id, c := range s.clients {
		if store.Expired(c.ExpiresAt, now) {
			delete(s.clients, id)
			n++
		}
	}
	for id, r := range s.requests {
		if store.Expired(r.ExpiresAt, now) {
			delete(s.requests, id)
			n++
		}
	}
	for h, c := range s.codes {
		if store.Expired(c.c.ExpiresAt, now) {
			delete(s.codes, h)
			n++
		}
	}
	for id, g := range s.grants {
		if store.Expired(g.ExpiresAt, now) {
			delete(s.grants, id)
			n++
		}
	}
	for h, t := range s.refresh {
		if _, ok := s.grants[t.GrantID]; store.Expired(t.ExpiresAt, now) || !ok {
			delete(s.refresh, h)
			n++
		}
	}
	return n, nil
}

// Close implements store.Store.
func (s *Store) Close() error { return nil }
