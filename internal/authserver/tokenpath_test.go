package authserver

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/memory"
)

// readCountingStore counts the reads the token endpoint makes per grant.
type readCountingStore struct {
	store.Store
	grantReads, clientReads atomic.Int64
}

func (c *readCountingStore) GetGrant(ctx context.Context, id string) (*store.Grant, error) {
	c.grantReads.Add(1)
	return c.Store.GetGrant(ctx, id)
}

func (c *readCountingStore) GetClient(ctx context.Context, id string) (*store.Client, error) {
	c.clientReads.Add(1)
	return c.Store.GetClient(ctx, id)
}

// A refresh reads its grant once (reidentify works from the grant the
// token endpoint loaded under the per-grant lock), and a client is read
// from the store once per revocation_cache_ttl, not once per request.
func TestTokenEndpointStoreReads(t *testing.T) {
	cs := &readCountingStore{Store: memory.New()}
	e := newEnv(t, envOpt{st: cs})
	c := e.register("http://127.0.0.1:3000/cb", true)
	rt := e.tokens(c)["refresh_token"].(string)
	cs.grantReads.Store(0)
	cs.clientReads.Store(0)
	const n = 5
	for range n {
		st, m := e.refresh(c, rt)
		if st != http.StatusOK {
			t.Fatalf("refresh: %d %v", st, m)
		}
		rt = m["refresh_token"].(string)
	}
	if got := cs.grantReads.Load(); got != n {
		t.Errorf("GetGrant calls for %d refreshes = %d, want %d", n, got, n)
	}
	if got := cs.clientReads.Load(); got != 0 {
		t.Errorf("GetClient calls within revocation_cache_ttl = %d, want 0 (cached)", got)
	}
	e.clock.Add(e.srv.cfg.RevocationCacheTTL + time.Second)
	if st, m := e.refresh(c, rt); st != http.StatusOK {
		t.Fatalf("refresh after the TTL: %d %v", st, m)
	}
	if got := cs.clientReads.Load(); got != 1 {
		t.Errorf("GetClient calls after the TTL = %d, want 1 (re-read)", got)
	}
}

// The client cache never outlives a client: an expired client is refused
// even while cached, and an unknown one is never cached.
func TestClientCacheHonoursExpiry(t *testing.T) {
	e := newEnv(t, envOpt{cfg: func(c *Config) { c.RevocationCacheTTL = time.Minute }})
	now := e.clock.Now()
	cl := &store.Client{ID: "short-lived", Name: "x", RedirectURIs: []string{"http://127.0.0.1:3000/cb"},
		GrantTypes: []string{grantCode, grantRT}, ResponseTypes: []string{"code"}, TokenEndpointAuthMethod: authNone,
		Kind: store.ClientKindDynamic, CreatedAt: now, ExpiresAt: now.Add(10 * time.Second)}
	if err := e.st.CreateClient(context.Background(), cl); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.srv.getClient(context.Background(), cl.ID); err != nil {
		t.Fatalf("fresh client: %v", err)
	}
	if _, ok := e.srv.clients.get(cl.ID); !ok {
		t.Fatal("a client read from the store was not cached")
	}
	// Changes this replica may have missed (store.ChangeAll) drop it.
	e.srv.ForgetAll()
	if _, ok := e.srv.clients.get(cl.ID); ok {
		t.Error("ForgetAll kept the cached client")
	}
	if _, _, err := e.srv.getClient(context.Background(), cl.ID); err != nil {
		t.Fatalf("client re-read: %v", err)
	}
	e.clock.Add(11 * time.Second)
	if _, ok := e.srv.clients.get(cl.ID); ok {
		t.Error("the cache still holds a client past its expiry")
	}
	if _, _, err := e.srv.getClient(context.Background(), "never-registered"); err == nil {
		t.Error("unknown client accepted")
	}
	if _, ok := e.srv.clients.get("never-registered"); ok {
		t.Error("an unknown client was cached")
	}
}
