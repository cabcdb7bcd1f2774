package authserver

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/idp"
	"github.com/mcpgate/mcpgate/internal/store"
)

func TestRevokeGrantsByUserAndClient(t *testing.T) {
	e := newEnv(t, envOpt{cfg: func(c *Config) {
		c.Upstream.Users = append(c.Upstream.Users, idp.User{Username: "bob", PasswordHash: testUserHash, Groups: []string{"readers"}})
	}})
	c1 := e.register("http://127.0.0.1:3000/cb", true)
	c2 := e.register("http://127.0.0.1:4000/cb", true)
	at := map[string]string{}
	for _, s := range []struct {
		user string
		c    regClient
	}{{"alice", c1}, {"alice", c2}, {"bob", c1}} {
		q := e.loginAs(e.browser(), authorizeParams(s.c), s.user, testPassword)
		st, tok := e.exchange(s.c, q.Get("code"), nil)
		if st != http.StatusOK {
			t.Fatal(tok)
		}
		at[s.user+"@"+s.c.Redirect] = tok["access_token"].(string)
	}
	ctx := t.Context()
	alice := GrantSelector(&e.srv.cfg, "alice", "")
	if want := e.iss + "#static#alice"; alice.UserKey != want {
		t.Errorf("user key = %q, want %q", alice.UserKey, want)
	}
	gs, err := ListGrants(ctx, e.st, alice)
	if err != nil || len(gs) != 2 || gs[0].Subject != "alice" || !slices.Equal(gs[0].Groups, []string{"admins"}) {
		t.Fatalf("ListGrants alice: %+v %v", gs, err)
	}
	if _, err := RevokeGrants(ctx, e.st, store.GrantFilter{}); err == nil {
		t.Error("revoked every grant without a selector")
	}
	changes := e.st.Subscribe(ctx)
	ids, err := RevokeGrants(ctx, e.st, GrantSelector(&e.srv.cfg, "alice", c1.ID))
	if err != nil || len(ids) != 1 {
		t.Fatalf("revoke alice@c1: %v %v", ids, err)
	}
	// Gateways sharing the store are told (store.Changes) ...
	select {
	case c := <-changes:
		if c != (store.Change{Kind: store.ChangeGrant, ID: ids[0]}) {
			t.Errorf("change %+v, want the revoked grant %s", c, ids[0])
		}
	default:
		t.Error("the revocation notified nothing")
	}
	// ... and one that missed it refuses the token once its grant cache
	// entry (revocation_cache_ttl) is gone; the others keep working.
	e.clock.Add(e.srv.cfg.RevocationCacheTTL + time.Second)
	for k, want := range map[string]bool{"alice@" + c1.Redirect: false, "alice@" + c2.Redirect: true, "bob@" + c1.Redirect: true} {
		if err := e.authn("/mcp", at[k]); (err == nil) != want {
			t.Errorf("%s after revoke: err = %v, want accepted = %v", k, err, want)
		}
	}
	if ids, err := RevokeGrants(ctx, e.st, GrantSelector(&e.srv.cfg, "", c1.ID)); err != nil || len(ids) != 1 {
		t.Errorf("revoke by client (bob's left): %v %v", ids, err)
	}
}
