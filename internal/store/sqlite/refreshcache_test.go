package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/store"
)

// refreshOf reads hash's token and grant from the database itself, past
// the cache.
func refreshOf(t *testing.T, s *Store, hash string) (*store.RefreshToken, *store.Grant) {
	t.Helper()
	s.rc.drop(hash)
	rt, g, err := s.GetRefreshTokenGrant(context.Background(), hash)
	if err != nil {
		t.Fatalf("GetRefreshTokenGrant from the database: %v", err)
	}
	s.rc.drop(hash)
	return rt, g
}

// A token read once is served from the cache, and so is its successor
// after a rotation, with exactly what the database holds.
func TestRefreshCacheServesTheNextRefresh(t *testing.T) {
	ctx := context.Background()
	s := openGroupTest(t)
	rts, _ := seedGrants(t, s, 2, newTokenKeys(true))
	keys := newTokenKeys(true)
	if _, _, err := s.GetRefreshTokenGrant(ctx, rts[0]); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := s.rc.get(rts[0], nowMicros()); !ok {
		t.Fatal("a token read is not cached")
	}
	now := time.Now()
	next := &store.RefreshToken{Hash: keys.hash("next"), GrantID: "", ClientID: "bench-client", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	_, g0, _ := s.rc.get(rts[0], nowMicros())
	next.GrantID = g0.ID
	if err := s.RotateRefreshToken(ctx, rts[0], next, now); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := s.rc.get(rts[0], nowMicros()); ok {
		t.Error("the rotated token is still cached")
	}
	ct, cg, ok := s.rc.get(next.Hash, nowMicros())
	if !ok {
		t.Fatal("the successor is not cached")
	}
	dt, dg := refreshOf(t, s, next.Hash)
	if d := cmp.Diff(dt, ct); d != "" {
		t.Errorf("cached successor differs from the database (-db +cache):\n%s", d)
	}
	if d := cmp.Diff(dg, cg); d != "" {
		t.Errorf("cached grant differs from the database (-db +cache):\n%s", d)
	}
	if s.rc.len() != 0 {
		t.Errorf("%d entries left after the drops", s.rc.len())
	}
}

// What another process changed (`mcpgate grants revoke` beside the server)
// does not reach the cache, and the rotation refuses it: no token of a
// revoked grant, or of a deleted token, is rotated from a cached read.
func TestRefreshCacheRotationRefusesWhatChangedBehindIt(t *testing.T) {
	for name, change := range map[string]string{
		"grant revoked":  `UPDATE grants SET revoked = 1`,
		"tokens deleted": `DELETE FROM refresh_tokens`,
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := openGroupTest(t)
			rts, grants := seedGrants(t, s, 1, newTokenKeys(true))
			if _, _, err := s.GetRefreshTokenGrant(ctx, rts[0]); err != nil {
				t.Fatal(err)
			}
			other, err := sql.Open("sqlite", s.walPath[:len(s.walPath)-len("-wal")]+"?_pragma=busy_timeout(10000)")
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			if _, err := other.ExecContext(ctx, change); err != nil {
				t.Fatal(err)
			}
			rt, g, err := s.GetRefreshTokenGrant(ctx, rts[0])
			if err != nil || g.Revoked || !rt.RotatedAt.IsZero() {
				t.Fatalf("the cached read: %v, %+v, %+v (want the token as cached)", err, rt, g)
			}
			now := time.Now()
			next := &store.RefreshToken{Hash: store.HashKey("next"), GrantID: grants[0], ClientID: rt.ClientID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
			if err := s.RotateRefreshToken(ctx, rts[0], next, now); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("RotateRefreshToken = %v, want ErrNotFound", err)
			}
			if s.rc.len() != 0 {
				t.Errorf("%d entries cached after the refused rotation", s.rc.len())
			}
			if _, err := s.GetRefreshToken(ctx, next.Hash); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("successor stored: %v", err)
			}
		})
	}
}

// This process's own changes to a grant drop its cached tokens, and only
// its own.
func TestRefreshCacheDropsOnGrantWrites(t *testing.T) {
	for name, write := range map[string]func(s *Store, grant string) error{
		"RevokeGrant": func(s *Store, grant string) error { return s.RevokeGrant(context.Background(), grant) },
		"RevokeRefreshTokensForGrant": func(s *Store, grant string) error {
			return s.RevokeRefreshTokensForGrant(context.Background(), grant)
		},
		"UpdateGrantUpstream": func(s *Store, grant string) error {
			return s.UpdateGrantUpstream(context.Background(), grant, []byte(`{"sub":"other"}`), []byte("sealed"), time.Now().Add(time.Hour), 0)
		},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := openGroupTest(t)
			rts, grants := seedGrants(t, s, 2, newTokenKeys(true))
			for _, h := range rts {
				if _, _, err := s.GetRefreshTokenGrant(ctx, h); err != nil {
					t.Fatal(err)
				}
			}
			if err := write(s, grants[0]); err != nil {
				t.Fatal(err)
			}
			if _, _, ok := s.rc.get(rts[0], nowMicros()); ok {
				t.Error("the changed grant's token is still cached")
			}
			if _, _, ok := s.rc.get(rts[1], nowMicros()); !ok {
				t.Error("another grant's token was dropped")
			}
			// What is read now is what the database holds.
			rt, g, err := s.GetRefreshTokenGrant(ctx, rts[0])
			if name == "RevokeRefreshTokensForGrant" {
				if !errors.Is(err, store.ErrNotFound) {
					t.Errorf("deleted token read: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			dt, dg := refreshOf(t, s, rts[0])
			if d := cmp.Diff(dg, g); d != "" || !cmp.Equal(dt, rt) {
				t.Errorf("read after the write differs from the database (-db +read):\n%s", d)
			}
		})
	}
}

// A cached token past its expiry (or its grant's) is not served.
func TestRefreshCacheExpiry(t *testing.T) {
	c := newRefreshCache(1 << 20)
	now := time.Now()
	g := &store.Grant{ID: "g", ExpiresAt: now.Add(time.Hour)}
	c.put(&store.RefreshToken{Hash: "a", GrantID: "g", ExpiresAt: now.Add(time.Minute)}, g, c.generation())
	c.put(&store.RefreshToken{Hash: "b", GrantID: "h"}, &store.Grant{ID: "h", ExpiresAt: now.Add(time.Minute)}, c.generation())
	later := now.Add(2 * time.Minute).UnixMicro()
	for _, h := range []string{"a", "b"} {
		if _, _, ok := c.get(h, now.UnixMicro()); !ok {
			t.Errorf("%s: not served before its expiry", h)
		}
		if _, _, ok := c.get(h, later); ok {
			t.Errorf("%s: served after its expiry", h)
		}
	}
	if c.len() != 0 {
		t.Errorf("%d expired entries kept", c.len())
	}
}

// The cache holds at most its bound, the newest entries; rotated tokens,
// revoked grants and reads that raced with a drop are not cached; and what
// a caller does to the copies it got does not reach the cache.
func TestRefreshCachePuts(t *testing.T) {
	g := &store.Grant{ID: "g", Scopes: []string{"mcp"}}
	cost := entryCost(&store.RefreshToken{Hash: "1-in", GrantID: "g1"}, g) // every hash here has 4 bytes, every grant ID 2
	c := newRefreshCache(4 * cost)
	for _, h := range []string{"1", "2", "3", "4", "5", "6"} {
		c.put(&store.RefreshToken{Hash: h + "-in", GrantID: "g" + h}, g, c.generation())
	}
	if c.len() != 4 || c.bytes != 4*cost {
		t.Errorf("%d entries of %d bytes, want the bound: 4 of %d", c.len(), c.bytes, 4*cost)
	}
	for _, h := range []string{"3", "4", "5", "6"} {
		if _, _, ok := c.get(h+"-in", 1); !ok {
			t.Errorf("%s: not among the newest", h)
		}
	}
	// A rotation replaces its token: what it removed frees its bytes, so
	// rotating every cached session keeps them all, however often.
	for round := range 100 {
		for _, h := range []string{"3", "4", "5", "6"} {
			prev := fmt.Sprintf("%s-%02d", h, round-1)
			if round == 0 {
				prev = h + "-in"
			}
			c.rotated(prev, &store.RefreshToken{Hash: fmt.Sprintf("%s-%02d", h, round), GrantID: "g" + h})
		}
	}
	if c.len() != 4 || c.bytes != 4*cost || c.order.Len() != 4 || len(c.byGrant) != 4 {
		t.Errorf("after rotations: %d entries, %d bytes, %d in order, %d grants", c.len(), c.bytes, c.order.Len(), len(c.byGrant))
	}
	for _, h := range []string{"3-99", "4-99", "5-99", "6-99"} {
		if _, _, ok := c.get(h, 1); !ok {
			t.Errorf("%s: the last successor is not cached", h)
		}
	}
	// A grant has one current token: a newer one read replaces the older,
	// and dropping the grant drops it, leaving the others.
	// (The newest grant's, so that no eviction could explain it.)
	c.put(&store.RefreshToken{Hash: "6-xx", GrantID: "g6"}, g, c.generation())
	if _, _, ok := c.get("6-99", 1); ok || c.len() != 4 {
		t.Errorf("two tokens of one grant cached (%d entries)", c.len())
	}
	c.dropGrant("g6")
	if _, _, ok := c.get("6-xx", 1); ok || c.len() != 3 || c.bytes != 3*cost {
		t.Errorf("after dropping g6: %d entries, %d bytes", c.len(), c.bytes)
	}
	c.put(&store.RefreshToken{Hash: "huge", GrantID: "g"}, &store.Grant{ID: "g", Identity: make([]byte, 5*cost)}, c.generation())
	if _, _, ok := c.get("huge", 1); ok || c.len() != 3 {
		t.Errorf("an entry larger than the cache was cached (%d entries)", c.len())
	}

	c = newRefreshCache(4 * cost)
	c.put(&store.RefreshToken{Hash: "rotated", RotatedAt: time.Now()}, g, c.generation())
	c.put(&store.RefreshToken{Hash: "revoked"}, &store.Grant{Revoked: true}, c.generation())
	gen := c.generation()
	c.dropGrant("other")
	c.put(&store.RefreshToken{Hash: "raced"}, g, gen)
	if c.len() != 0 {
		t.Errorf("%d entries cached, want none", c.len())
	}

	c.put(&store.RefreshToken{Hash: "x", GrantID: "g"}, g, c.generation())
	g.ClientID = "changed by the reader" // the grant the read returned
	rt, got, _ := c.get("x", 1)
	rt.ClientID, got.ID, got.Revoked = "changed", "changed", true
	rt, got, _ = c.get("x", 1)
	if rt.ClientID != "" || got.ID != "g" || got.ClientID != "" || got.Revoked {
		t.Errorf("a caller's change reached the cache: %+v %+v", rt, got)
	}
}

// The cache's bound is the option's, else store.DefaultRefreshCacheMiB.
func TestRefreshCacheBound(t *testing.T) {
	for _, tc := range []struct{ opt, want int }{{0, store.DefaultRefreshCacheMiB << 20}, {3 << 20, 3 << 20}} {
		s, err := OpenOptions(context.Background(), MemoryDSN, Options{RefreshCacheBytes: tc.opt})
		if err != nil {
			t.Fatal(err)
		}
		if s.rc.maxBytes != tc.want {
			t.Errorf("RefreshCacheBytes %d: bound %d, want %d", tc.opt, s.rc.maxBytes, tc.want)
		}
		s.Close()
	}
}
