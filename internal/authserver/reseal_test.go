package authserver

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/keys"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/memory"
)

// TestResealGrants: grants sealed under a previous encryption key are sealed
// again under the current one and then open without the previous key;
// grants already under the current key are left as they are; a grant that
// opens under no key is reported.
func TestResealGrants(t *testing.T) {
	ctx := context.Background()
	key := func() []byte { k := make([]byte, keys.KeySize); rand.Read(k); return k }
	oldKey, newKey, otherKey := key(), key(), key()
	sealer := func(k []byte, prev ...[]byte) *keys.Sealer {
		s, err := keys.NewSealer(k, prev...)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	st := memory.New()
	grant := func(id string, s *keys.Sealer) {
		sealed, err := s.Seal([]byte(`{"upstream":"secret-`+id+`"}`), aad("grant", id))
		if err != nil {
			t.Fatal(err)
		}
		code := "code-" + id
		if err := st.CreateAuthCode(ctx, &store.AuthCode{Hash: store.HashKey(code), ClientID: "c", GrantID: id, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		_, err = st.RedeemAuthCode(ctx, store.HashKey(code), func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
			return &store.Grant{ID: id, ClientID: "c", UserKey: "u", UpstreamTokens: sealed, ExpiresAt: time.Now().Add(time.Hour)}, nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	grant("g-old-1", sealer(oldKey))
	grant("g-old-2", sealer(oldKey))
	grant("g-new", sealer(newKey))

	rep, err := ResealGrants(ctx, st, sealer(newKey, oldKey))
	if err != nil {
		t.Fatal(err)
	}
	if rep != (ResealReport{Grants: 3, Resealed: 2}) {
		t.Errorf("report = %+v, want 3 grants, 2 resealed", rep)
	}
	gs, _ := st.ListGrants(ctx, store.GrantFilter{})
	only := sealer(newKey)
	for _, g := range gs {
		pt, err := only.Open(g.UpstreamTokens, aad("grant", g.ID))
		if err != nil || string(pt) != `{"upstream":"secret-`+g.ID+`"}` {
			t.Errorf("grant %s under the new key alone: %q, %v", g.ID, pt, err)
		}
	}
	// Nothing left under the previous key: a second run reseals nothing.
	if rep, err := ResealGrants(ctx, st, sealer(newKey, oldKey)); err != nil || rep.Resealed != 0 {
		t.Errorf("second run: %+v, %v", rep, err)
	}
	grant("g-lost", sealer(otherKey))
	if _, err := ResealGrants(ctx, st, sealer(newKey, oldKey)); err == nil {
		t.Error("a grant sealed under no configured key was not reported")
	}
}
