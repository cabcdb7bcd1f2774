package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/migrate"
	"github.com/mcpgate/mcpgate/internal/store/postgres/pgtest"
)

// applyOnly brings the schema of dsn to migration version n, as a binary
// that knew only the first n migrations did.
func applyOnly(t *testing.T, dsn string, n int) {
	t.Helper()
	ctx := context.Background()
	entries, err := fs.ReadDir(migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	old := fstest.MapFS{}
	for _, e := range entries[:n] {
		b, err := fs.ReadFile(migrations, "migrations/"+e.Name())
		if err != nil {
			t.Fatal(err)
		}
		old["migrations/"+e.Name()] = &fstest.MapFile{Data: b}
	}
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if err := migrate.Apply(ctx, dialect, old, func(ctx context.Context) (migrate.Committer, error) {
		tx, err := c.Begin(ctx)
		return migrateTx{tx}, err
	}); err != nil {
		t.Fatal(err)
	}
}

// A database written by a 0001 binary (keys as hex text) keeps working
// after 0002 converts its keys to bytea: the live refresh token still
// finds its grant and rotates once, the code redeems once, the pending
// authorization request is found by its upstream state, and the client,
// consent and signing key are found by their IDs.
func TestUpgradeFrom0001KeepsLiveTokens(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.SchemaDSN(t)
	applyOnly(t, dsn, 1)

	now := store.NormTime(time.Now())
	exp := now.Add(time.Hour)
	hk := store.HashKey
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	// The rows as the 0001 binary wrote them (its INSERTs, k = HashKey(id)).
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO clients (k, id, secret_hash, name, redirect_uris, grant_types, response_types,
			token_endpoint_auth_method, scope, application_type, kind, registered_ip, created_at, expires_at)
			VALUES ($1, 'client-1', '', 'c', '{https://c/cb}', '{authorization_code}', '{code}', 'none', 'mcp', 'web', 'dynamic', '127.0.0.1', $2, $3)`,
			[]any{hk("client-1"), now, exp}},
		{`INSERT INTO auth_requests (k, id, client_id, redirect_uri, state, resource, scopes, code_challenge,
			code_challenge_method, upstream_state_k, upstream_state_hash, upstream_nonce, user_key, consent_csrf, expires_at)
			VALUES ($1, 'req-1', 'client-1', 'https://c/cb', 's', 'https://r', '{mcp}', 'cc', 'S256', $2, 'state-hash', 'n', '', 'csrf', $3)`,
			[]any{hk("req-1"), hk("state-hash"), exp}},
		{`INSERT INTO auth_codes (k, hash, client_id, redirect_uri, resource, user_key, scopes, code_challenge, grant_id, expires_at)
			VALUES ($1, 'code-1', 'client-1', 'https://c/cb', 'https://r', 'alice', '{mcp}', 'cc', 'grant-2', $2)`,
			[]any{hk("code-1"), exp}},
		{`INSERT INTO grants (k, id, client_id, user_key, resource, scopes, identity, version, created_at, expires_at)
			VALUES ($1, 'grant-1', 'client-1', 'alice', 'https://r', '{mcp}', '\x7b7d', 1, $2, $3)`,
			[]any{hk("grant-1"), now, exp}},
		{`INSERT INTO refresh_tokens (k, grant_k, hash, grant_id, client_id, created_at, expires_at)
			VALUES ($1, $2, 'rt-1', 'grant-1', 'client-1', $3, $4)`,
			[]any{hk("rt-1"), hk("grant-1"), now, exp}},
		{`INSERT INTO consents (user_k, client_k, user_key, client_id, scopes, created_at)
			VALUES ($1, $2, 'alice', 'client-1', '{mcp}', $3)`,
			[]any{hk("alice"), hk("client-1"), now}},
		{`INSERT INTO signing_keys (k, id, algorithm, private, public, status, created_at)
			VALUES ($1, 'kid-1', 'ES256', '\x00', '\x7b7d', 'active', $2)`,
			[]any{hk("kid-1"), now}},
	} {
		if _, err := c.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatalf("%.40s: %v", q.sql, err)
		}
	}
	c.Close(ctx)

	s, err := Open(ctx, dsn) // applies 0002
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	var keyType, fill string
	if err := s.pool.QueryRow(ctx, `SELECT data_type FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = 'refresh_tokens' AND column_name = 'grant_k'`).Scan(&keyType); err != nil || keyType != "bytea" {
		t.Errorf("refresh_tokens.grant_k is %q (%v), want bytea", keyType, err)
	}
	if err := s.pool.QueryRow(ctx, `SELECT array_to_string(reloptions, ',') FROM pg_class
		WHERE oid = 'refresh_tokens'::regclass`).Scan(&fill); err != nil || fill != "fillfactor=80" {
		t.Errorf("refresh_tokens reloptions = %q (%v), want fillfactor=80", fill, err)
	}

	if cl, err := s.GetClient(ctx, "client-1"); err != nil || cl.RedirectURIs[0] != "https://c/cb" {
		t.Errorf("GetClient = %+v, %v", cl, err)
	}
	if r, err := s.TakeAuthRequestByUpstreamState(ctx, "state-hash"); err != nil || r.ID != "req-1" {
		t.Errorf("TakeAuthRequestByUpstreamState = %+v, %v", r, err)
	}
	if con, err := s.GetConsent(ctx, "alice", "client-1"); err != nil || con.Scopes[0] != "mcp" {
		t.Errorf("GetConsent = %+v, %v", con, err)
	}
	if keys, err := s.ListSigningKeys(ctx); err != nil || len(keys) != 1 || keys[0].ID != "kid-1" {
		t.Errorf("ListSigningKeys = %+v, %v", keys, err)
	}
	if err := s.UpdateSigningKey(ctx, &store.SigningKey{ID: "kid-1", Status: store.KeyRetired, RetireAt: now}); err != nil {
		t.Errorf("UpdateSigningKey: %v", err)
	}

	// The live refresh token: read with its grant, rotated once, then a conflict.
	rt, g, err := s.GetRefreshTokenGrant(ctx, "rt-1")
	if err != nil || rt.GrantID != "grant-1" || g.ID != "grant-1" || string(g.Identity) != "{}" {
		t.Fatalf("GetRefreshTokenGrant = %+v, %+v, %v", rt, g, err)
	}
	next := &store.RefreshToken{Hash: "rt-2", GrantID: "grant-1", ClientID: "client-1", CreatedAt: now, ExpiresAt: exp}
	if err := s.RotateRefreshToken(ctx, "rt-1", next, now); err != nil {
		t.Fatalf("RotateRefreshToken of the upgraded token: %v", err)
	}
	other := &store.RefreshToken{Hash: "rt-3", GrantID: "grant-1", ClientID: "client-1", CreatedAt: now, ExpiresAt: exp}
	if err := s.RotateRefreshToken(ctx, "rt-1", other, now); !errors.Is(err, store.ErrConflict) {
		t.Errorf("second rotation of the upgraded token = %v, want ErrConflict", err)
	}
	if rt, err := s.GetRefreshToken(ctx, "rt-1"); err != nil || rt.ReplacedBy != "rt-2" || rt.RotatedAt.IsZero() {
		t.Errorf("rotated token = %+v, %v", rt, err)
	}

	// The unused code redeems once into a grant and token of the new layout.
	issue := func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
		return &store.Grant{ID: c.GrantID, ClientID: c.ClientID, UserKey: c.UserKey, Resource: c.Resource, Version: 1, CreatedAt: now, ExpiresAt: exp},
			&store.RefreshToken{Hash: "rt-g2", GrantID: c.GrantID, ClientID: c.ClientID, CreatedAt: now, ExpiresAt: exp}, nil
	}
	if _, err := s.RedeemAuthCode(ctx, "code-1", issue); err != nil {
		t.Fatalf("RedeemAuthCode of the upgraded code: %v", err)
	}
	if _, err := s.RedeemAuthCode(ctx, "code-1", issue); !errors.Is(err, store.ErrAlreadyUsed) {
		t.Errorf("second redemption = %v, want ErrAlreadyUsed", err)
	}

	// The foreign key was restored: revoking the old grant's tokens and
	// deleting it by expiry still cascades.
	if err := s.RevokeRefreshTokensForGrant(ctx, "grant-1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.GetRefreshTokenGrant(ctx, "rt-2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("token of a revoked grant = %v, want ErrNotFound", err)
	}
	if err := s.RotateRefreshToken(ctx, "rt-g2", &store.RefreshToken{Hash: "rt-g3", GrantID: "no-such-grant", ClientID: "client-1", CreatedAt: now, ExpiresAt: exp}, now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rotation onto a missing grant = %v, want ErrNotFound (foreign key)", err)
	}
	if rt, err := s.GetRefreshToken(ctx, "rt-g2"); err != nil || !rt.RotatedAt.IsZero() {
		t.Errorf("after a refused rotation the token must stay current: %+v, %v", rt, err)
	}
}

// Rotation updates change no indexed column; with room left on each page
// (fillfactor, migration 0002) PostgreSQL writes them as heap-only tuples,
// with no new index entries. At 100k grants every rotation reaches a page
// that only inserts have touched since it filled, as here: one token per
// page is rotated, so no earlier rotation's dead version could have been
// pruned to make room. At the default fillfactor of 100 none of these
// updates is HOT: each writes its version on another page and an entry
// into each of the table's three indexes.
func TestRotationIsHOT(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, pgtest.SchemaDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := store.NormTime(time.Now())
	exp := now.Add(time.Hour)
	if _, err := s.pool.Exec(ctx, `INSERT INTO grants (k, `+grantCols+`)
		VALUES ($1, 'g', 'c', 'u', 'r', '{}', NULL, NULL, NULL, 1, $2, $3, false)`, key("g"), now, exp); err != nil {
		t.Fatal(err)
	}
	for i := range 600 {
		if err := insertRefresh(ctx, s.pool, &store.RefreshToken{Hash: fmt.Sprint("rt-", i), GrantID: "g", ClientID: "c", CreatedAt: now, ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
	}
	// The first token of every page but the last (which successors fill).
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT ON (p) hash FROM
		(SELECT hash, (ctid::text::point)[0] AS p, (ctid::text::point)[1] AS i FROM refresh_tokens) t
		WHERE p < (SELECT max((ctid::text::point)[0]) FROM refresh_tokens) ORDER BY p, i`)
	if err != nil {
		t.Fatal(err)
	}
	hashes, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(hashes) < 10 {
		t.Fatalf("tokens, one per page: %d, %v", len(hashes), err)
	}
	for i, h := range hashes {
		next := &store.RefreshToken{Hash: fmt.Sprint("next-", i), GrantID: "g", ClientID: "c", CreatedAt: now, ExpiresAt: exp}
		if err := s.RotateRefreshToken(ctx, h, next, now); err != nil {
			t.Fatalf("rotate %s: %v", h, err)
		}
	}
	// Backends publish their counters within about a second of going idle.
	var upd, hot int
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if err := s.pool.QueryRow(ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
			WHERE relid = 'refresh_tokens'::regclass`).Scan(&upd, &hot); err != nil {
			t.Fatal(err)
		}
		if upd >= len(hashes) || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("%d rotations, one per page: %d updates, %d HOT", len(hashes), upd, hot)
	if upd != len(hashes) || hot != upd {
		t.Errorf("%d of %d rotations were HOT updates, want all", hot, upd)
	}
}

// countQueries counts the statements sent to the server (BEGIN and COMMIT
// included), each one round trip.
type countQueries struct{ n atomic.Int64 }

func (c *countQueries) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}

func (c *countQueries) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// A refresh costs two round trips: one read of the token and its grant,
// and one statement that rotates the token and inserts its successor (it
// was BEGIN, UPDATE, INSERT, COMMIT). The failure paths add one read each.
func TestRefreshRoundTrips(t *testing.T) {
	ctx := context.Background()
	counter := &countQueries{}
	poolConfig = func(c *pgxpool.Config) { c.ConnConfig.Tracer = counter }
	defer func() { poolConfig = nil }()
	s, err := Open(ctx, pgtest.SchemaDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := store.NormTime(time.Now())
	exp := now.Add(time.Hour)
	code := &store.AuthCode{Hash: "code", ClientID: "c", GrantID: "g", ExpiresAt: exp}
	if err := s.CreateAuthCode(ctx, code); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RedeemAuthCode(ctx, "code", func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
		return &store.Grant{ID: "g", ClientID: "c", Version: 1, CreatedAt: now, ExpiresAt: exp},
			&store.RefreshToken{Hash: "rt-1", GrantID: "g", ClientID: "c", CreatedAt: now, ExpiresAt: exp}, nil
	}); err != nil {
		t.Fatal(err)
	}
	next := func(h string) *store.RefreshToken {
		return &store.RefreshToken{Hash: h, GrantID: "g", ClientID: "c", CreatedAt: now, ExpiresAt: exp}
	}
	for _, c := range []struct {
		name string
		run  func() error
		want int64
	}{
		{"refresh", func() error {
			if _, _, err := s.GetRefreshTokenGrant(ctx, "rt-1"); err != nil {
				return err
			}
			return s.RotateRefreshToken(ctx, "rt-1", next("rt-2"), now)
		}, 2},
		{"rotated token", func() error {
			if err := s.RotateRefreshToken(ctx, "rt-1", next("rt-3"), now); !errors.Is(err, store.ErrConflict) {
				return fmt.Errorf("got %v, want ErrConflict", err)
			}
			return nil
		}, 2},
		{"unknown token", func() error {
			if err := s.RotateRefreshToken(ctx, "nope", next("rt-4"), now); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("got %v, want ErrNotFound", err)
			}
			return nil
		}, 2},
	} {
		counter.n.Store(0)
		if err := c.run(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := counter.n.Load(); got != c.want {
			t.Errorf("%s: %d statements, want %d", c.name, got, c.want)
		}
	}
}
