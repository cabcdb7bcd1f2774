package server

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/sqlite"
)

// The two ways every replica can check a session's owner (issue 14.1),
// measured per request: opening the sealed id the gateway issued, or
// looking a binding up in the store (a primary-key read on SQLite, the
// cheapest store there is; PostgreSQL adds a network round trip). The
// sealed id won: see docs/architecture.md, "Several replicas".

func BenchmarkSessionOpen(b *testing.B) {
	c := testSessionCodec(b, "demo")
	id, _ := c.seal("https://idp.example.com#248289761001", "0b5b3c34-7ba1-4a0c-9d0e-6f2b6a1c5e11")
	b.ReportAllocs()
	for b.Loop() {
		if _, st := c.open("https://idp.example.com#248289761001", id); st != sessionOK {
			b.Fatal(st)
		}
	}
}

func BenchmarkSessionStoreLookup(b *testing.B) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	// A binding row: the session id as key, the owner beside it (a grant has
	// that shape: an ID, a user key, a few columns).
	now := time.Now()
	g := &store.Grant{ID: "0b5b3c34-7ba1-4a0c-9d0e-6f2b6a1c5e11", ClientID: "c", UserKey: "https://idp.example.com#248289761001",
		Resource: "https://mcp.example.com/mcp", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := st.CreateAuthCode(ctx, &store.AuthCode{Hash: "h", ClientID: "c", ExpiresAt: now.Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	if _, err := st.RedeemAuthCode(ctx, "h", func(*store.AuthCode) (*store.Grant, *store.RefreshToken, error) { return g, nil, nil }); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		got, err := st.GetGrant(ctx, g.ID)
		if err != nil || got.UserKey != g.UserKey {
			b.Fatal(err)
		}
	}
}
