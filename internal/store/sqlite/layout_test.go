package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/migrate"
)

// BenchmarkWALFramesPerGrant counts the WAL frames (pages) that 2000 code
// exchanges and then 2000 rotations of their refresh tokens write, per
// grant, alone and in group-commit batches of 4, 8 and 16: an exact count,
// independent of the machine's load (run with -benchtime 1x). Keys are
// ordered (the product's time-ordered tokens) unless MCPGATE_BENCH_KEYS
// says otherwise (see BenchmarkRefreshAtScale).
func BenchmarkWALFramesPerGrant(b *testing.B) {
	kinds := benchKeyKinds(b)
	for _, keys := range kinds {
		for _, batch := range []int{1, 4, 8, 16} {
			name := fmt.Sprint("batch=", batch)
			if len(kinds) > 1 {
				name = "keys=" + keys.name() + "/" + name
			}
			b.Run(name, func(b *testing.B) {
				var ex, rot float64
				for range b.N {
					ex, rot = walFramesPerOp(b, 2000, batch, keys)
				}
				b.ReportMetric(ex, "frames/exchange")
				b.ReportMetric(rot, "frames/rotation")
			})
		}
	}
}

// A database written at migration 0001 (hex keys, refresh tokens keyed to
// their grant by its hex key) is converted by 0002: every object reads back
// as it was written, and the token path works on the converted rows (a used
// code replays, an unused one redeems, the current refresh token rotates,
// a grant's tokens are revoked, expired rows are swept with their grant's
// tokens).
func TestMigrationFrom0001(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "mcpgate.db")
	db, err := sql.Open("sqlite", path+"?_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	init, err := migrations.ReadFile("migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	v1 := fstest.MapFS{"migrations/0001_init.sql": {Data: init}}
	if err := migrate.Apply(ctx, dialect, v1, func(ctx context.Context) (migrate.Committer, error) {
		tx, err := db.BeginTx(ctx, nil)
		return migrateTx{tx}, err
	}); err != nil {
		t.Fatal(err)
	}
	now := store.NormTime(time.Now())
	hour, past := micros(now.Add(time.Hour)), micros(now.Add(-time.Hour))
	hk := store.HashKey
	// The rows as the 0001 code wrote them.
	for _, w := range []struct {
		q    string
		args []any
	}{
		{`INSERT INTO clients (k, id, secret_hash, name, redirect_uris, grant_types, response_types, token_endpoint_auth_method,
			scope, application_type, kind, registered_ip, metadata, created_at, expires_at)
			VALUES (?, 'client-1', 'sh', 'Client', '["http://127.0.0.1/cb"]', '["authorization_code"]', '["code"]', 'none',
			'mcp', 'native', 'dynamic', '10.0.0.1', NULL, ?, 0)`, []any{hk("client-1"), micros(now)}},
		{`INSERT INTO auth_requests (k, upstream_state_k, id, client_id, redirect_uri, state, resource, scopes, code_challenge,
			code_challenge_method, upstream_state_hash, upstream_nonce, upstream_verifier, user_key, identity, upstream_tokens,
			consent_csrf, expires_at) VALUES (?, ?, 'req-1', 'client-1', 'http://127.0.0.1/cb', 's', 'r', '["mcp"]', 'cc',
			'S256', 'state-hash', 'nonce', NULL, '', NULL, NULL, 'csrf', ?)`, []any{hk("req-1"), hk("state-hash"), hour}},
		{`INSERT INTO auth_codes (k, hash, client_id, redirect_uri, resource, user_key, scopes, code_challenge, grant_id,
			identity, upstream_tokens, used, expires_at) VALUES (?, ?, 'client-1', 'http://127.0.0.1/cb', 'r', 'u', '["mcp"]',
			'cc', ?, NULL, NULL, ?, ?)`, nil},
		{`INSERT INTO grants (k, id, client_id, user_key, resource, scopes, identity, upstream_tokens, upstream_expiry,
			version, created_at, expires_at, revoked) VALUES (?, ?, 'client-1', 'u', 'r', '["mcp"]', X'7b7d', X'01', 0, 1, ?, ?, 0)`, nil},
		{`INSERT INTO refresh_tokens (k, grant_k, hash, grant_id, client_id, created_at, expires_at, rotated_at, replaced_by)
			VALUES (?, ?, ?, ?, 'client-1', ?, ?, ?, ?)`, nil},
		{`INSERT INTO consents (user_k, client_k, user_key, client_id, scopes, created_at) VALUES (?, ?, 'u', 'client-1', '["mcp"]', ?)`,
			[]any{hk("u"), hk("client-1"), micros(now)}},
		{`INSERT INTO signing_keys (k, id, algorithm, private, public, status, created_at, retire_at)
			VALUES (?, 'kid-1', 'ES256', X'01', X'02', 'active', ?, 0)`, []any{hk("kid-1"), micros(now)}},
	} {
		switch {
		case strings.HasPrefix(w.q, "INSERT INTO auth_codes"):
			for _, c := range []struct {
				name, grant string
				used        int
			}{{"code-used", "grant-1", 1}, {"code-new", "grant-2", 0}} {
				if _, err := db.ExecContext(ctx, w.q, hk(hk(c.name)), hk(c.name), c.grant, c.used, hour); err != nil {
					t.Fatal(err)
				}
			}
		case strings.HasPrefix(w.q, "INSERT INTO grants"):
			for _, g := range []struct {
				id      string
				expires int64
			}{{"grant-1", hour}, {"grant-old", past}} {
				if _, err := db.ExecContext(ctx, w.q, hk(g.id), g.id, micros(now), g.expires); err != nil {
					t.Fatal(err)
				}
			}
		case strings.HasPrefix(w.q, "INSERT INTO refresh_tokens"):
			for _, r := range []struct {
				name, grant, replacedBy string
				rotated                 int64
			}{{"rt-1", "grant-1", hk("rt-2"), micros(now)}, {"rt-2", "grant-1", "", 0}, {"rt-old", "grant-old", "", 0}} {
				if _, err := db.ExecContext(ctx, w.q, hk(hk(r.name)), hk(r.grant), hk(r.name), r.grant, micros(now), hour,
					r.rotated, r.replacedBy); err != nil {
					t.Fatal(err)
				}
			}
		default:
			if _, err := db.ExecContext(ctx, w.q, w.args...); err != nil {
				t.Fatal(err)
			}
		}
	}
	db.Close()

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open (migrating): %v", err)
	}
	defer s.Close()
	if c, err := s.GetClient(ctx, "client-1"); err != nil || c.Name != "Client" || c.RedirectURIs[0] != "http://127.0.0.1/cb" {
		t.Errorf("GetClient = %+v, %v", c, err)
	}
	if n, err := s.CountClientsByIP(ctx, "10.0.0.1", now.Add(-time.Minute)); err != nil || n != 1 {
		t.Errorf("CountClientsByIP = %d, %v; want 1", n, err)
	}
	if r, err := s.TakeAuthRequestByUpstreamState(ctx, "state-hash"); err != nil || r.ID != "req-1" {
		t.Errorf("TakeAuthRequestByUpstreamState = %+v, %v", r, err)
	}
	if c, err := s.GetConsent(ctx, "u", "client-1"); err != nil || c.Scopes[0] != "mcp" {
		t.Errorf("GetConsent = %+v, %v", c, err)
	}
	if keys, err := s.ListSigningKeys(ctx); err != nil || len(keys) != 1 || keys[0].ID != "kid-1" {
		t.Errorf("ListSigningKeys = %v, %v", keys, err)
	}
	if err := s.DeleteSigningKey(ctx, "kid-1"); err != nil {
		t.Errorf("DeleteSigningKey: %v", err)
	}

	// The used code replays to its grant; the unused one redeems.
	if c, err := s.RedeemAuthCode(ctx, hk("code-used"), nil); !errors.Is(err, store.ErrAlreadyUsed) || c.GrantID != "grant-1" {
		t.Errorf("redeem the used code: %+v, %v; want ErrAlreadyUsed with grant-1", c, err)
	}
	_, err = s.RedeemAuthCode(ctx, hk("code-new"), func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
		g := &store.Grant{ID: c.GrantID, ClientID: c.ClientID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		return g, &store.RefreshToken{Hash: hk("rt-new"), GrantID: g.ID, ClientID: c.ClientID, CreatedAt: now,
			ExpiresAt: now.Add(time.Hour)}, nil
	})
	if err != nil {
		t.Fatalf("redeem the unused code: %v", err)
	}

	// Refresh: the current token reads with its grant and rotates; the
	// rotated one says by which.
	rt, g, err := s.GetRefreshTokenGrant(ctx, hk("rt-2"))
	if err != nil || rt.GrantID != "grant-1" || g.ID != "grant-1" || g.Version != 1 || string(g.Identity) != "{}" {
		t.Fatalf("GetRefreshTokenGrant(rt-2) = %+v, %+v, %v", rt, g, err)
	}
	if old, err := s.GetRefreshToken(ctx, hk("rt-1")); err != nil || old.ReplacedBy != hk("rt-2") || old.RotatedAt.IsZero() {
		t.Errorf("GetRefreshToken(rt-1) = %+v, %v; want rotated to rt-2", old, err)
	}
	next := &store.RefreshToken{Hash: hk("rt-3"), GrantID: "grant-1", ClientID: "client-1", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.RotateRefreshToken(ctx, hk("rt-2"), next, now); err != nil {
		t.Fatalf("RotateRefreshToken(rt-2): %v", err)
	}
	if err := s.RotateRefreshToken(ctx, hk("rt-1"), next, now); !errors.Is(err, store.ErrConflict) {
		t.Errorf("RotateRefreshToken(rt-1) = %v, want ErrConflict", err)
	}

	// Revocation reaches the converted tokens and the new one, not the
	// other grant's.
	if err := s.RevokeRefreshTokensForGrant(ctx, "grant-1"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"rt-1", "rt-2", "rt-3"} {
		if _, err := s.GetRefreshToken(ctx, hk(name)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetRefreshToken(%s) after revocation: %v, want ErrNotFound", name, err)
		}
	}
	if _, err := s.GetRefreshToken(ctx, hk("rt-new")); err != nil {
		t.Errorf("GetRefreshToken(rt-new): %v", err)
	}
	if err := s.RevokeGrant(ctx, "grant-1"); err != nil {
		t.Fatal(err)
	}
	// The expired grant goes with its token.
	if n, err := s.DeleteExpired(ctx, now); err != nil || n != 2 {
		t.Errorf("DeleteExpired = %d, %v; want 2 (grant-old and rt-old)", n, err)
	}
	var fk int
	if err := s.w.QueryRowContext(ctx, `SELECT COUNT(*) FROM pragma_foreign_key_check`).Scan(&fk); err != nil || fk != 0 {
		t.Errorf("foreign key check: %d violations, %v", fk, err)
	}
	var ref string
	if err := s.w.QueryRowContext(ctx, `SELECT "table" FROM pragma_foreign_key_list('refresh_tokens')`).Scan(&ref); err != nil || ref != "grants" {
		t.Errorf("refresh_tokens references %q (%v), want grants", ref, err)
	}
}

// A rotation finds the successor's grant through the old token's grant row
// (rowid), and through the grant's key when the successor names another
// grant; a grant that does not exist stores nothing.
func TestRotateFindsTheSuccessorsGrant(t *testing.T) {
	ctx := context.Background()
	s := openGroupTest(t)
	a, b := newCode(t, s, "a"), newCode(t, s, "b")
	for _, c := range []*store.AuthCode{a, b} {
		if _, err := s.RedeemAuthCode(ctx, c.Hash, func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) { return grantFor(c) }); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	for _, tc := range []struct {
		old, next, grant string
		err              error
	}{
		{"rt-" + a.GrantID, "a2", a.GrantID, nil},
		{"a2", "a3", b.GrantID, nil},
		{"a3", "a4", "no-such-grant", store.ErrNotFound},
	} {
		next := &store.RefreshToken{Hash: store.HashKey(tc.next), GrantID: tc.grant, ClientID: "client", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := s.RotateRefreshToken(ctx, store.HashKey(tc.old), next, now); !errors.Is(err, tc.err) {
			t.Fatalf("rotate %s → %s (grant %s): %v, want %v", tc.old, tc.next, tc.grant, err, tc.err)
		}
		got, err := s.GetRefreshToken(ctx, next.Hash)
		switch {
		case tc.err != nil && !errors.Is(err, store.ErrNotFound):
			t.Errorf("%s stored (%+v, %v) though its grant does not exist", tc.next, got, err)
		case tc.err == nil && (err != nil || got.GrantID != tc.grant):
			t.Errorf("%s: %+v, %v; want grant %s", tc.next, got, err, tc.grant)
		}
	}
	// The failed rotation rolled back: a3 is still current.
	if rt, err := s.GetRefreshToken(ctx, store.HashKey("a3")); err != nil || !rt.RotatedAt.IsZero() {
		t.Errorf("a3 after the failed rotation: %+v, %v; want current", rt, err)
	}
}

// A database at migration 0002 (grants and refresh tokens with their
// expiry indexes) is upgraded by 0003: the indexes are gone, the live
// tokens keep working (the current one reads with its grant and rotates,
// the rotated one conflicts) and the sweep, now a walk, removes the
// expired grant with its token.
func TestMigrationFrom0002(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "mcpgate.db")
	db, err := sql.Open("sqlite", path+"?_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	v2 := fstest.MapFS{}
	for _, name := range []string{"migrations/0001_init.sql", "migrations/0002_binary_keys.sql"} {
		b, err := migrations.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		v2[name] = &fstest.MapFile{Data: b}
	}
	if err := migrate.Apply(ctx, dialect, v2, func(ctx context.Context) (migrate.Committer, error) {
		tx, err := db.BeginTx(ctx, nil)
		return migrateTx{tx}, err
	}); err != nil {
		t.Fatal(err)
	}
	now := store.NormTime(time.Now())
	keys := newTokenKeys(true)
	rt1, rt2, rtOld := keys.hash("rt-1"), keys.hash("rt-2"), keys.hash("rt-old")
	// The rows as the 0002 code wrote them.
	for _, g := range []struct {
		id      string
		expires int64
	}{{"grant-1", micros(now.Add(time.Hour))}, {"grant-old", micros(now.Add(-time.Hour))}} {
		if _, err := db.ExecContext(ctx, `INSERT INTO grants (k, id, client_id, user_key, resource, scopes, identity,
			upstream_tokens, upstream_expiry, version, created_at, expires_at, revoked)
			VALUES (?, ?, 'client-1', 'u', 'r', '["mcp"]', X'7b7d', X'01', 0, 1, ?, ?, 0)`,
			key(g.id), g.id, micros(now), g.expires); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []struct {
		hash, grant, replacedBy string
		rotated, expires        int64
	}{
		{rt1, "grant-1", rt2, micros(now), micros(now.Add(time.Hour))},
		{rt2, "grant-1", "", 0, micros(now.Add(time.Hour))},
		{rtOld, "grant-old", "", 0, micros(now.Add(time.Hour))},
	} {
		if _, err := db.ExecContext(ctx, `INSERT INTO refresh_tokens (k, hash, grant_n, client_id, created_at, expires_at,
			rotated_at, replaced_by) SELECT ?, ?, n, 'client-1', ?, ?, ?, ? FROM grants WHERE k = ?`,
			key(r.hash), r.hash, micros(now), r.expires, r.rotated, r.replacedBy, key(r.grant)); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open (migrating): %v", err)
	}
	defer s.Close()
	var left int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_schema WHERE type = 'index'
		AND name IN ('grants_by_expiry', 'refresh_tokens_by_expiry')`).Scan(&left); err != nil || left != 0 {
		t.Errorf("expiry indexes of grants and refresh tokens: %d left (%v), want 0", left, err)
	}
	rt, g, err := s.GetRefreshTokenGrant(ctx, rt2)
	if err != nil || rt.GrantID != "grant-1" || g.ID != "grant-1" || string(g.Identity) != "{}" {
		t.Fatalf("GetRefreshTokenGrant(rt-2) = %+v, %+v, %v", rt, g, err)
	}
	next := &store.RefreshToken{Hash: keys.hash("rt-3"), GrantID: "grant-1", ClientID: "client-1", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.RotateRefreshToken(ctx, rt2, next, now); err != nil {
		t.Fatalf("RotateRefreshToken(rt-2): %v", err)
	}
	if err := s.RotateRefreshToken(ctx, rt1, next, now); !errors.Is(err, store.ErrConflict) {
		t.Errorf("RotateRefreshToken(rt-1) = %v, want ErrConflict", err)
	}
	if n, err := s.DeleteExpired(ctx, now); err != nil || n != 2 {
		t.Errorf("DeleteExpired = %d, %v; want 2 (grant-old and rt-old)", n, err)
	}
	if _, err := s.GetRefreshToken(ctx, next.Hash); err != nil {
		t.Errorf("GetRefreshToken(rt-3): %v", err)
	}
}
