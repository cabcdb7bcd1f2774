package postgres

import (
	"context"
	"encoding/hex"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/postgres/pgtest"
)

// TestOrderedKeys: the hash of a time-ordered token is stored as its 40
// bytes (bytea takes any length), ordered by issue time; other keys keep
// their 32-byte SHA-256.
func TestOrderedKeys(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, pgtest.SchemaDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var secret [32]byte
	at := time.Now().UnixMicro()
	hashes := []string{
		store.TokenHash(store.OrderedToken(at+1, &secret)),
		store.HashKey("legacy"),
		store.TokenHash(store.OrderedToken(at, &secret)),
	}
	for i, h := range hashes {
		c := &store.AuthCode{Hash: h, ClientID: "c", GrantID: "g" + string(rune('0'+i)), ExpiresAt: time.Now().Add(time.Minute)}
		if err := s.CreateAuthCode(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := s.pool.Query(ctx, `SELECT k, hash FROM auth_codes WHERE length(k) = 40 ORDER BY k`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var k []byte
		var h string
		if err := rows.Scan(&k, &h); err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(k) != h {
			t.Errorf("key of %s = %x, want its bytes", h, k)
		}
		got = append(got, h)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if len(got) != 2 || got[0] != hashes[2] || got[1] != hashes[0] {
		t.Errorf("40-byte keys in order %v, want %v", got, []string{hashes[2], hashes[0]})
	}
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM auth_codes WHERE length(k) = 32`).Scan(&n); err != nil || n != 1 {
		t.Errorf("32-byte keys: %d %v, want 1", n, err)
	}
}
