package authn

import (
	"fmt"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/identity"
)

func TestTokenCacheBoundedAndExpiring(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	c := newTokenCache(10)
	p := &identity.Principal{Subject: "s"}
	for i := range 25 {
		c.put(keyOf(fmt.Sprint(i)), p, now.Add(time.Minute), now)
		if n := c.len(); n > 10 {
			t.Fatalf("after %d puts the cache holds %d entries, max 10", i+1, n)
		}
	}
	// The newest entry survives its own insertion.
	if _, ok := c.get(keyOf("24"), now); !ok {
		t.Fatal("newest entry missing")
	}
	// Entries are not served at or after their expiry.
	if _, ok := c.get(keyOf("24"), now.Add(time.Minute)); ok {
		t.Fatal("expired entry served")
	}
	// An already-expired result is not stored.
	c.put(keyOf("old"), p, now.Add(-time.Second), now)
	if _, ok := c.get(keyOf("old"), now.Add(-2*time.Second)); ok {
		t.Fatal("expired result stored")
	}
}

// TestTokenCacheEvictsExpiredFirst: a live entry in use is kept while
// expired ones are available to replace.
func TestTokenCacheEvictsExpiredFirst(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	c := newTokenCache(4)
	p := &identity.Principal{}
	c.put(keyOf("live"), p, now.Add(time.Hour), now)
	for i := range 3 {
		c.put(keyOf(fmt.Sprint("short", i)), p, now.Add(time.Second), now)
	}
	later := now.Add(2 * time.Second)
	c.get(keyOf("live"), later)
	c.put(keyOf("new"), p, later.Add(time.Hour), later)
	for _, k := range []string{"live", "new"} {
		if _, ok := c.get(keyOf(k), later); !ok {
			t.Errorf("%s evicted while expired entries were available", k)
		}
	}
}

func TestNilCacheNeverHits(t *testing.T) {
	c := newTokenCache(-1)
	now := time.Now()
	c.put(keyOf("x"), &identity.Principal{}, now.Add(time.Hour), now)
	if _, ok := c.get(keyOf("x"), now); ok {
		t.Fatal("disabled cache hit")
	}
}

// TestTokenCacheKeepsUsedEntries: a full cache evicts entries not used since
// the clock hand last passed, never one that is being used.
func TestTokenCacheKeepsUsedEntries(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	c := newTokenCache(8)
	p := &identity.Principal{}
	c.put(keyOf("hot"), p, now.Add(time.Hour), now)
	for i := range 1000 {
		if _, ok := c.get(keyOf("hot"), now); !ok {
			t.Fatalf("hot entry evicted after %d one-off puts", i)
		}
		c.put(keyOf(fmt.Sprint("once", i)), p, now.Add(time.Hour), now)
		if n := c.len(); n > 8 {
			t.Fatalf("cache holds %d entries, max 8", n)
		}
	}
	c.clear()
	if _, ok := c.get(keyOf("hot"), now); ok || c.len() != 0 {
		t.Fatal("entry served after clear")
	}
	c.put(keyOf("again"), p, now.Add(time.Hour), now)
	if _, ok := c.get(keyOf("again"), now); !ok {
		t.Fatal("cache unusable after clear")
	}
}
