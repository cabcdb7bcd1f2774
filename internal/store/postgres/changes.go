package postgres

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mcpgate/mcpgate/internal/store"
)

// PollInterval is the fallback: while the LISTEN connection is down, every
// subscriber receives store.ChangeAll this often, so caches re-read the
// store as if polling it and changes still reach them within about this
// bound (PostgreSQL notifications sent meanwhile are lost to this process).
var PollInterval = time.Second

// changes is the Changes facility over LISTEN/NOTIFY (PostgreSQL "NOTIFY":
// delivered to every listening session of the database once the notifying
// transaction commits, in commit order). One connection per process
// listens, started by the first Subscribe, and fans out through a Hub.
type changes struct {
	channel string // per schema: replicas of another deployment in the same database stay apart
	origin  string // this process, to skip its own notifications (Notify already delivered them)
	hub     store.Hub

	once sync.Once
	stop context.CancelFunc
	done chan struct{}
}

// channelFor names the notification channel of a schema. Channel names are
// identifiers (at most 63 bytes); a hash keeps any schema name within it.
func channelFor(schema string) string {
	h := sha256.Sum256([]byte(schema))
	return "mcpgate_changes_" + hex.EncodeToString(h[:8])
}

func (s *Store) initChanges(ctx context.Context) error {
	var schema string
	if err := s.pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return fmt.Errorf("postgres: read current schema: %w", err)
	}
	var b [8]byte
	rand.Read(b[:])
	s.ch = &changes{channel: channelFor(schema), origin: hex.EncodeToString(b[:]), done: make(chan struct{})}
	return nil
}

// Notify implements store.Changes: subscribers in this process hear of c
// at once, the other processes when the NOTIFY arrives.
func (s *Store) Notify(ctx context.Context, c store.Change) error {
	if len(c.ID) > store.MaxChangeID {
		c = store.Change{Kind: store.ChangeAll}
	}
	s.ch.hub.Publish(c)
	// The payload is "origin kind id": kinds have no space, origin is hex,
	// and the ID is the rest (bounded far below NOTIFY's 8000 bytes).
	payload := s.ch.origin + " " + c.Kind + " " + c.ID
	if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, s.ch.channel, payload); err != nil {
		return fmt.Errorf("postgres: notify: %w", err)
	}
	return nil
}

// Subscribe implements store.Changes. The first call starts the listener.
func (s *Store) Subscribe(ctx context.Context) <-chan store.Change {
	c := s.ch.hub.Subscribe(ctx)
	s.ch.once.Do(func() {
		lctx, stop := context.WithCancel(context.Background())
		s.ch.stop = stop
		go s.listen(lctx)
	})
	return c
}

// stopListening ends the listener, if it started, before the pool closes.
func (s *Store) stopListening() {
	s.ch.once.Do(func() { close(s.ch.done) }) // never started: nothing to wait for
	if s.ch.stop != nil {
		s.ch.stop()
		<-s.ch.done
	}
}

// listen holds a LISTEN connection and forwards notifications to the hub.
// Each (re)connection starts with ChangeAll (whatever was sent before the
// LISTEN took effect, or while it was down, was missed); while it cannot
// connect, ChangeAll goes out every PollInterval.
func (s *Store) listen(ctx context.Context) {
	defer close(s.ch.done)
	for ctx.Err() == nil {
		conn, err := s.listenConn(ctx)
		if err == nil {
			s.ch.hub.Publish(store.Change{Kind: store.ChangeAll})
			err = s.receive(ctx, conn)
			conn.Close(context.Background())
		}
		if ctx.Err() != nil {
			return
		}
		s.ch.hub.Publish(store.Change{Kind: store.ChangeAll})
		select {
		case <-ctx.Done():
			return
		case <-time.After(PollInterval):
		}
	}
}

// listenConn takes a connection out of the pool for good (a LISTEN belongs
// to its session) and listens on the channel.
func (s *Store) listenConn(ctx context.Context) (*pgx.Conn, error) {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	conn := pc.Hijack()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.ch.channel}.Sanitize()); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

func (s *Store) receive(ctx context.Context, conn *pgx.Conn) error {
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		c, ok := s.ch.decode(n.Payload)
		if ok {
			s.ch.hub.Publish(c)
		}
	}
}

// decode parses a payload; ones from this process were delivered by Notify.
// An unparsable payload (another version's) becomes ChangeAll: fail safe.
func (c *changes) decode(payload string) (store.Change, bool) {
	origin, rest, ok1 := strings.Cut(payload, " ")
	kind, id, ok2 := strings.Cut(rest, " ")
	switch {
	case !ok1 || !ok2:
		return store.Change{Kind: store.ChangeAll}, true
	case origin == c.origin:
		return store.Change{}, false
	}
	switch kind {
	case store.ChangeGrant, store.ChangeKeys, store.ChangePolicy, store.ChangeAll:
		return store.Change{Kind: kind, ID: id}, true
	}
	return store.Change{Kind: store.ChangeAll}, true
}
