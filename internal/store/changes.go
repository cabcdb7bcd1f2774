package store

import (
	"context"
	"sync"
)

// Change kinds: what a replica may hold in memory that another changed.
const (
	// ChangeGrant: the grant ID was revoked (token revocation, refresh
	// family revocation, `mcpgate grants revoke`). Verifiers drop what they
	// cached about it.
	ChangeGrant = "grant"
	// ChangeKeys: the signing keys changed (rotation, revocation).
	// Holders reload them from the store.
	ChangeKeys = "keys"
	// ChangePolicy: reload the policy (`mcpgate policy reload`). Each
	// replica re-reads its own policy files.
	ChangePolicy = "policy"
	// ChangeAll: anything may have changed unseen (the listener
	// reconnected, or fell back to polling, or a subscriber lagged). Drop
	// every cache and reload what is kept.
	ChangeAll = "all"
)

// MaxChangeID bounds Change.ID; a longer ID is sent as ChangeAll (its kind
// with no ID would name nothing).
const MaxChangeID = 256

// Change tells the processes sharing a store that some state they may
// cache changed.
type Change struct {
	Kind string // one of the Change* kinds
	ID   string // the grant ID for ChangeGrant; empty otherwise
}

// Changes carries cache invalidations between the processes (replicas,
// `mcpgate` commands) that share one store, so that a revocation or a key
// rotation made by one is seen by all within about a second rather than
// within each cache's TTL. Delivery is at most once and best effort: a
// subscriber that may have missed changes receives ChangeAll instead, and
// the caches keep their TTLs as the last bound.
//
// PostgreSQL delivers through LISTEN/NOTIFY to every process; SQLite and
// memory deliver within the process only (they serve one replica; a
// command in another process still needs SIGHUP or the caches' TTLs).
type Changes interface {
	// Notify delivers c to every subscriber, in this process at once. An
	// error means other processes may not hear of it (they still will
	// within their caches' TTLs).
	Notify(ctx context.Context, c Change) error
	// Subscribe returns the changes notified from now on, until ctx ends
	// (the channel is then closed).
	Subscribe(ctx context.Context) <-chan Change
}

// subscriberBuffer is how many changes a slow subscriber may fall behind
// before older ones are replaced by ChangeAll.
const subscriberBuffer = 64

// Hub fans changes out to the subscribers of one process. Its zero value is
// ready; memory and SQLite stores embed it as their Changes.
type Hub struct {
	mu   sync.Mutex
	subs map[chan Change]struct{}
}

// Publish delivers c to every subscriber without blocking: when one's
// buffer is full, its oldest change is dropped and ChangeAll queued, which
// subsumes whatever it missed.
func (h *Hub) Publish(c Change) {
	if len(c.ID) > MaxChangeID {
		c = Change{Kind: ChangeAll}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- c:
			continue
		default:
		}
		select { // full: make room (only publishers send, under mu)
		case <-ch:
		default:
		}
		ch <- Change{Kind: ChangeAll}
	}
}

// Notify implements Changes within the process.
func (h *Hub) Notify(_ context.Context, c Change) error {
	h.Publish(c)
	return nil
}

// Subscribe implements Changes.
func (h *Hub) Subscribe(ctx context.Context) <-chan Change {
	ch := make(chan Change, subscriberBuffer)
	h.mu.Lock()
	if h.subs == nil {
		h.subs = map[chan Change]struct{}{}
	}
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	go func() {
		<-ctx.Done()
		h.mu.Lock()
		delete(h.subs, ch)
		close(ch)
		h.mu.Unlock()
	}()
	return ch
}
