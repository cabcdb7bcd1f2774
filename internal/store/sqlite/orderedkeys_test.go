package sqlite

import (
	"bytes"
	"context"
	"encoding/hex"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// TestOrderedKeys: the hash of a time-ordered token is stored as its 40
// bytes, so the key index orders tokens by issue time; every other key
// keeps its 32-byte SHA-256, and both kinds are found again.
func TestOrderedKeys(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "mcpgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := store.NormTime(time.Now())
	var secret [32]byte
	// Issued out of order, and a legacy token between them.
	hashes := []string{
		store.TokenHash(store.OrderedToken(now.UnixMicro()+2, &secret)),
		store.HashKey("legacy"),
		store.TokenHash(store.OrderedToken(now.UnixMicro(), &secret)),
		store.TokenHash(store.OrderedToken(now.UnixMicro()+1, &secret)),
	}
	for i, h := range hashes {
		c := &store.AuthCode{Hash: h, ClientID: "c", GrantID: "g" + string(rune('0'+i)), ExpiresAt: now.Add(time.Minute)}
		if err := s.CreateAuthCode(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := s.r.QueryContext(ctx, `SELECT k, hash FROM auth_codes ORDER BY k`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var k []byte
		var h string
		if err := rows.Scan(&k, &h); err != nil {
			t.Fatal(err)
		}
		if want := key(h); !bytes.Equal(k, want) || (len(h) == 80) != (len(k) == 40) {
			t.Errorf("key of %s = %x", h, k)
		}
		if len(h) == 80 && hex.EncodeToString(k) != h {
			t.Errorf("ordered key of %s = %x, want its bytes", h, k)
		}
		got = append(got, h)
	}
	// Ordered keys sort by issue time (a SHA-256 key falls anywhere).
	var ordered []string
	for _, h := range got {
		if len(h) == 80 {
			ordered = append(ordered, h)
		}
	}
	if want := []string{hashes[2], hashes[3], hashes[0]}; len(ordered) != 3 || ordered[0] != want[0] || ordered[1] != want[1] || ordered[2] != want[2] {
		t.Errorf("index order %v, want %v", ordered, want)
	}
	for _, h := range hashes {
		if _, err := s.RedeemAuthCode(ctx, h, func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
			return &store.Grant{ID: c.GrantID, ClientID: "c", CreatedAt: now}, nil, nil
		}); err != nil {
			t.Errorf("redeem %s: %v", h, err)
		}
	}
}

// Grants with time-ordered IDs are stored under their 24 bytes, so the key
// index orders them by issue time; a grant with another ID keeps its
// SHA-256 key.
func TestOrderedGrantKeys(t *testing.T) {
	ctx := context.Background()
	s := openGroupTest(t)
	now := store.NormTime(time.Now())
	var r [16]byte
	ids := []string{store.OrderedID(now.UnixMicro()+2, &r), "GH7K2MZQ4WXYLA5T3RBN6PVCDE", store.OrderedID(now.UnixMicro(), &r),
		store.OrderedID(now.UnixMicro()+1, &r)}
	for _, id := range ids {
		if err := s.CreateAuthCode(ctx, &store.AuthCode{Hash: "code-" + id, GrantID: id, ExpiresAt: now.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RedeemAuthCode(ctx, "code-"+id, func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
			return &store.Grant{ID: c.GrantID, CreatedAt: now}, &store.RefreshToken{Hash: "rt-" + id, GrantID: c.GrantID, CreatedAt: now}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := s.r.QueryContext(ctx, `SELECT k, id FROM grants ORDER BY k`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ordered []string
	for rows.Next() {
		var k []byte
		var id string
		if err := rows.Scan(&k, &id); err != nil {
			t.Fatal(err)
		}
		switch {
		case len(id) == store.OrderedIDLen && hex.EncodeToString(k) == id:
			ordered = append(ordered, id)
		case len(id) == store.OrderedIDLen:
			t.Errorf("ordered grant %s stored under %x, want its bytes", id, k)
		case !bytes.Equal(k, key(id)):
			t.Errorf("grant %s stored under %x, want its SHA-256", id, k)
		}
	}
	if want := []string{ids[2], ids[3], ids[0]}; !slices.Equal(ordered, want) {
		t.Errorf("index order %v, want %v", ordered, want)
	}
}

// A refresh token row holds no copy of its hash (the key is the hash's
// bytes or digest), and the hash of a time-ordered successor in
// replaced_by is stored as its 40 bytes; both read back as given.
func TestRefreshRowsAreNarrow(t *testing.T) {
	ctx := context.Background()
	s := openGroupTest(t)
	keys := newTokenKeys(true)
	now := store.NormTime(time.Now())
	gid := keys.grantID("g")
	rt0, rt1, rt2 := keys.hash("rt0"), keys.hash("rt1"), store.HashKey("legacy-successor")
	if err := s.CreateAuthCode(ctx, &store.AuthCode{Hash: "code", GrantID: gid, ExpiresAt: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RedeemAuthCode(ctx, "code", func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
		return &store.Grant{ID: gid, CreatedAt: now}, &store.RefreshToken{Hash: rt0, GrantID: gid, CreatedAt: now}, nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, r := range [][2]string{{rt0, rt1}, {rt1, rt2}} {
		if err := s.RotateRefreshToken(ctx, r[0], &store.RefreshToken{Hash: r[1], GrantID: gid, CreatedAt: now}, now); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		hash, next, nextType string
		nextLen              int
	}{{rt0, rt1, "blob", 40}, {rt1, rt2, "text", 64}, {rt2, "", "text", 0}} {
		var hashLen, refLen int
		var refType string
		if err := s.r.QueryRowContext(ctx, `SELECT length(hash), typeof(replaced_by), length(replaced_by) FROM refresh_tokens WHERE k = ?`,
			key(tc.hash)).Scan(&hashLen, &refType, &refLen); err != nil {
			t.Fatal(err)
		}
		if hashLen != 0 || refType != tc.nextType || refLen != tc.nextLen {
			t.Errorf("row of %s: hash %d bytes, replaced_by %s of %d; want 0, %s of %d", tc.hash, hashLen, refType, refLen, tc.nextType, tc.nextLen)
		}
		got, err := s.GetRefreshToken(ctx, tc.hash)
		if err != nil || got.Hash != tc.hash || got.ReplacedBy != tc.next || got.GrantID != gid {
			t.Errorf("GetRefreshToken(%s) = %+v, %v; want replaced by %q", tc.hash, got, err, tc.next)
		}
	}
}
