// Package postgres is the store.Store backend for deployments with several
// replicas sharing one PostgreSQL database, built on pgx v5.
//
// Single-use operations are single UPDATE statements (or a transaction
// holding a row lock), so they stay atomic across replicas under the default
// READ COMMITTED isolation: PostgreSQL re-checks the WHERE clause of an
// UPDATE against the row version committed by a concurrent winner.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/migrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLock is the pg_advisory_xact_lock key serializing schema migrations
// of concurrently starting replicas (an arbitrary constant: "mcpgate").
const migrationLock int64 = 0x6d6370676174

// poolConfig, when set (by tests), adjusts the pool's configuration.
var poolConfig func(*pgxpool.Config)

// Store is a PostgreSQL-backed store.Store.
type Store struct {
	pool *pgxpool.Pool
	ch   *changes // LISTEN/NOTIFY (changes.go)
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at dsn (a postgres:// URL or key=value
// string), checks the connection and brings the schema up to date.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parse error may quote the DSN, password included: keep it out.
		return nil, errors.New("postgres: invalid dsn")
	}
	if poolConfig != nil {
		poolConfig(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	s := &Store{pool: pool}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := s.initChanges(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Close implements store.Store.
func (s *Store) Close() error {
	s.stopListening()
	s.pool.Close()
	return nil
}

// dialect is the PostgreSQL bookkeeping of migrate.Run: replicas starting
// together queue on an advisory lock held until the transaction ends.
var dialect = migrate.Dialect{
	Name:        "postgres",
	Lock:        fmt.Sprintf(`SELECT pg_advisory_xact_lock(%d)`, migrationLock),
	CreateTable: `CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL)`,
	Record:      `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())`,
}

// migrateTx adapts a pgx transaction to migrate.Committer. Without
// arguments pgx uses the simple protocol, which runs every statement of a
// migration file.
type migrateTx struct{ pgx.Tx }

func (m migrateTx) Exec(ctx context.Context, q string, args ...any) error {
	_, err := m.Tx.Exec(ctx, q, args...)
	return err
}

func (m migrateTx) QueryInt(ctx context.Context, q string) (n int, err error) {
	err = m.QueryRow(ctx, q).Scan(&n)
	return n, err
}

// migrate applies the embedded migrations in one transaction.
func (s *Store) migrate(ctx context.Context) error {
	return migrate.Apply(ctx, dialect, migrations, func(ctx context.Context) (migrate.Committer, error) {
		tx, err := s.pool.Begin(ctx)
		return migrateTx{tx}, err
	})
}

// mapErr turns constraint violations into the store's sentinel errors.
func mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505": // unique_violation
			return store.ErrConflict
		case "23503": // foreign_key_violation
			return store.ErrNotFound
		}
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}

// affected returns ErrNotFound when a statement changed no row.
func affected(op string, tag pgconn.CommandTag, err error) error {
	if err != nil {
		return mapErr(op, err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

// key is the stored key of a caller-supplied identifier (store.KeyBytes):
// the 32 bytes of its SHA-256 (store.HashKey's digest, unencoded), so long
// identifiers never become index keys, and an index entry takes 48 bytes
// instead of the 80 of a hex key (migration 0002); or the 40 bytes of a
// time-ordered token's hash, ordered by issue time (the bytea columns have
// no length constraint).
func key(id string) []byte { return store.KeyBytes(id) }

// grantKey is how a grant ID is stored (store.GrantKeyBytes): a
// time-ordered ID as its 24 bytes, in issue order.
func grantKey(id string) []byte { return store.GrantKeyBytes(id) }

// ts encodes the zero time as NULL.
func ts(t time.Time) pgtype.Timestamptz {
	return pgtype.Timestamptz{Time: t, Valid: !t.IsZero()}
}

func fromTS(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

// list never passes NULL for a NOT NULL array column.
func list(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

// unlist returns nil for an empty list, as the other backends do.
func unlist(v []string) []string {
	if len(v) == 0 {
		return nil
	}
	return v
}

const clientCols = `id, secret_hash, name, redirect_uris, grant_types, response_types, token_endpoint_auth_method,
	scope, application_type, kind, registered_ip, metadata, created_at, expires_at`

func scanClient(row store.Scanner) (*store.Client, error) {
	var c store.Client
	var created, expires pgtype.Timestamptz
	if err := row.Scan(&c.ID, &c.SecretHash, &c.Name, &c.RedirectURIs, &c.GrantTypes, &c.ResponseTypes,
		&c.TokenEndpointAuthMethod, &c.Scope, &c.ApplicationType, &c.Kind, &c.RegisteredIP, &c.Metadata,
		&created, &expires); err != nil {
		return nil, err
	}
	c.RedirectURIs, c.GrantTypes, c.ResponseTypes = unlist(c.RedirectURIs), unlist(c.GrantTypes), unlist(c.ResponseTypes)
	c.CreatedAt, c.ExpiresAt = fromTS(created), fromTS(expires)
	return &c, nil
}

// CreateClient implements store.Store.
func (s *Store) CreateClient(ctx context.Context, c *store.Client) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO clients (k, `+clientCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		key(c.ID), c.ID, c.SecretHash, c.Name, list(c.RedirectURIs), list(c.GrantTypes), list(c.ResponseTypes),
		c.TokenEndpointAuthMethod, c.Scope, c.ApplicationType, c.Kind, c.RegisteredIP, c.Metadata,
		ts(c.CreatedAt), ts(c.ExpiresAt))
	return mapErr("create client", err)
}

// GetClient implements store.Store.
func (s *Store) GetClient(ctx context.Context, id string) (*store.Client, error) {
	c, err := scanClient(s.pool.QueryRow(ctx, `SELECT `+clientCols+` FROM clients
		WHERE k = $1 AND (expires_at IS NULL OR expires_at > $2)`, key(id), time.Now()))
	return c, mapErr("get client", err)
}

// DeleteClient implements store.Store.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM clients WHERE k = $1`, key(id))
	return affected("delete client", tag, err)
}

// CountClientsByIP implements store.Store.
func (s *Store) CountClientsByIP(ctx context.Context, ip string, since time.Time) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT COUNT(*) FROM clients WHERE registered_ip = $1 AND created_at >= $2`,
		ip, since).Scan(&n)
	return n, mapErr("count clients", err)
}

// NthClientTimeByIP implements store.Store.
func (s *Store) NthClientTimeByIP(ctx context.Context, ip string, since time.Time, n int) (time.Time, error) {
	if n < 0 {
		return time.Time{}, store.ErrNotFound
	}
	var t pgtype.Timestamptz
	err := s.pool.QueryRow(ctx, `SELECT created_at FROM clients WHERE registered_ip = $1 AND created_at >= $2
		ORDER BY created_at LIMIT 1 OFFSET $3`, ip, since, n).Scan(&t)
	return fromTS(t), mapErr("nth client", err)
}

const requestCols = `id, client_id, redirect_uri, state, resource, scopes, code_challenge, code_challenge_method,
	upstream_state_hash, upstream_nonce, upstream_verifier, user_key, identity, upstream_tokens, consent_csrf, expires_at`

func scanRequest(row store.Scanner) (*store.AuthRequest, error) {
	var r store.AuthRequest
	var expires pgtype.Timestamptz
	if err := row.Scan(&r.ID, &r.ClientID, &r.RedirectURI, &r.State, &r.Resource, &r.Scopes, &r.CodeChallenge,
		&r.CodeChallengeMethod, &r.UpstreamStateHash, &r.UpstreamNonce, &r.UpstreamVerifier, &r.UserKey, &r.Identity,
		&r.UpstreamTokens, &r.ConsentCSRF, &expires); err != nil {
		return nil, err
	}
	r.Scopes = unlist(r.Scopes)
	r.ExpiresAt = fromTS(expires)
	return &r, nil
}

// stateKey is NULL for an empty (or taken) upstream state, so it never matches.
func stateKey(h string) []byte {
	if h == "" {
		return nil
	}
	return key(h)
}

// CreateAuthRequest implements store.Store.
func (s *Store) CreateAuthRequest(ctx context.Context, r *store.AuthRequest) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO auth_requests (k, upstream_state_k, `+requestCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)`,
		key(r.ID), stateKey(r.UpstreamStateHash), r.ID, r.ClientID, r.RedirectURI, r.State, r.Resource,
		list(r.Scopes), r.CodeChallenge, r.CodeChallengeMethod, r.UpstreamStateHash, r.UpstreamNonce,
		r.UpstreamVerifier, r.UserKey, r.Identity, r.UpstreamTokens, r.ConsentCSRF, ts(r.ExpiresAt))
	return mapErr("create auth request", err)
}

// GetAuthRequest implements store.Store.
func (s *Store) GetAuthRequest(ctx context.Context, id string) (*store.AuthRequest, error) {
	r, err := scanRequest(s.pool.QueryRow(ctx, `SELECT `+requestCols+` FROM auth_requests
		WHERE k = $1 AND (expires_at IS NULL OR expires_at > $2)`, key(id), time.Now()))
	return r, mapErr("get auth request", err)
}

// UpdateAuthRequest implements store.Store.
func (s *Store) UpdateAuthRequest(ctx context.Context, r *store.AuthRequest) error {
	tag, err := s.pool.Exec(ctx, `UPDATE auth_requests SET client_id = $1, redirect_uri = $2, state = $3,
		resource = $4, scopes = $5, code_challenge = $6, code_challenge_method = $7, upstream_state_k = $8,
		upstream_state_hash = $9, upstream_nonce = $10, upstream_verifier = $11, user_key = $12, identity = $13,
		upstream_tokens = $14, consent_csrf = $15, expires_at = $16
		WHERE k = $17 AND (expires_at IS NULL OR expires_at > $18)`,
		r.ClientID, r.RedirectURI, r.State, r.Resource, list(r.Scopes), r.CodeChallenge, r.CodeChallengeMethod,
		stateKey(r.UpstreamStateHash), r.UpstreamStateHash, r.UpstreamNonce, r.UpstreamVerifier, r.UserKey,
		r.Identity, r.UpstreamTokens, r.ConsentCSRF, ts(r.ExpiresAt), key(r.ID), time.Now())
	return affected("update auth request", tag, err)
}

// DeleteAuthRequest implements store.Store.
func (s *Store) DeleteAuthRequest(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM auth_requests WHERE k = $1`, key(id))
	return affected("delete auth request", tag, err)
}

// TakeAuthRequestByUpstreamState implements store.Store.
func (s *Store) TakeAuthRequestByUpstreamState(ctx context.Context, stateHash string) (*store.AuthRequest, error) {
	if stateHash == "" {
		return nil, store.ErrNotFound
	}
	// A concurrent taker blocks on the row lock, then re-checks
	// upstream_state_k against the winner's NULL and matches nothing.
	r, err := scanRequest(s.pool.QueryRow(ctx, `UPDATE auth_requests SET upstream_state_k = NULL, upstream_state_hash = ''
		WHERE upstream_state_k = $1 AND (expires_at IS NULL OR expires_at > $2)
		RETURNING `+requestCols, key(stateHash), time.Now()))
	return r, mapErr("take auth request", err)
}

const codeCols = `hash, client_id, redirect_uri, resource, user_key, scopes, code_challenge, grant_id, identity,
	upstream_tokens, expires_at`

func scanCode(row store.Scanner) (*store.AuthCode, error) {
	var c store.AuthCode
	var expires pgtype.Timestamptz
	if err := row.Scan(&c.Hash, &c.ClientID, &c.RedirectURI, &c.Resource, &c.UserKey, &c.Scopes, &c.CodeChallenge,
		&c.GrantID, &c.Identity, &c.UpstreamTokens, &expires); err != nil {
		return nil, err
	}
	c.Scopes = unlist(c.Scopes)
	c.ExpiresAt = fromTS(expires)
	return &c, nil
}

// CreateAuthCode implements store.Store.
func (s *Store) CreateAuthCode(ctx context.Context, c *store.AuthCode) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO auth_codes (k, `+codeCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		key(c.Hash), c.Hash, c.ClientID, c.RedirectURI, c.Resource, c.UserKey, list(c.Scopes),
		c.CodeChallenge, c.GrantID, c.Identity, c.UpstreamTokens, ts(c.ExpiresAt))
	return mapErr("create auth code", err)
}

// RedeemAuthCode implements store.Store: one transaction marks the code
// used and inserts the grant and its refresh token. A concurrent redemption
// waits on the code's row lock and then no longer matches "NOT used".
func (s *Store) RedeemAuthCode(ctx context.Context, hash string, issue store.IssueFunc) (*store.AuthCode, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, mapErr("redeem auth code", err)
	}
	defer tx.Rollback(ctx)
	k, now := key(hash), time.Now()
	c, err := scanCode(tx.QueryRow(ctx, `UPDATE auth_codes SET used = true
		WHERE k = $1 AND NOT used AND (expires_at IS NULL OR expires_at > $2) RETURNING `+codeCols, k, now))
	if errors.Is(err, pgx.ErrNoRows) {
		// Nothing changed: unknown, expired, or already used. Codes only
		// ever move to used, so this read cannot contradict the update.
		c, err = scanCode(tx.QueryRow(ctx, `SELECT `+codeCols+` FROM auth_codes
			WHERE k = $1 AND used AND (expires_at IS NULL OR expires_at > $2)`, k, now))
		if err != nil {
			return nil, mapErr("redeem auth code", err)
		}
		return c, store.ErrAlreadyUsed
	}
	if err != nil {
		return nil, mapErr("redeem auth code", err)
	}
	g, t, err := issue(c)
	if err != nil {
		// Refused: the code is spent all the same.
		if cerr := tx.Commit(ctx); cerr != nil {
			return nil, mapErr("redeem auth code", cerr)
		}
		return c, err
	}
	if err := store.CheckIssued(g, t); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO grants (k, `+grantCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		grantKey(g.ID), g.ID, g.ClientID, g.UserKey, g.Resource, list(g.Scopes), g.Identity, g.UpstreamTokens,
		ts(g.UpstreamExpiry), g.Version, ts(g.CreatedAt), ts(g.ExpiresAt), g.Revoked); err != nil {
		return nil, mapErr("redeem auth code: create grant", err)
	}
	if t != nil {
		if err := insertRefresh(ctx, tx, t); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, mapErr("redeem auth code", err)
	}
	return c, nil
}

const grantCols = `id, client_id, user_key, resource, scopes, identity, upstream_tokens, upstream_expiry, version,
	created_at, expires_at, revoked`

// The statements of the refresh path (and of revocation), named for
// TestQueryPlansUseIndexes: each finds its row by primary key, or its
// tokens through refresh_tokens_by_grant.
const (
	qGetGrant            = `SELECT ` + grantCols + ` FROM grants WHERE k = $1 AND (expires_at IS NULL OR expires_at > $2)`
	qRevokeGrant         = `UPDATE grants SET revoked = true WHERE k = $1`
	qUpdateGrantUpstream = `UPDATE grants SET identity = COALESCE($1, identity), upstream_tokens = $2,
		upstream_expiry = $3, version = version + 1
		WHERE k = $4 AND version = $5 AND NOT revoked AND (expires_at IS NULL OR expires_at > $6)`
	qGrantLive = `SELECT EXISTS (SELECT 1 FROM grants
		WHERE k = $1 AND NOT revoked AND (expires_at IS NULL OR expires_at > $2))`
	qGetRefresh = `SELECT ` + refreshCols + ` FROM refresh_tokens WHERE k = $1 AND (expires_at IS NULL OR expires_at > $2)`
	// One statement, so one round trip and its own transaction: the
	// successor is inserted only if the update matched a current token, and
	// a failed insert (a duplicate successor, a deleted grant) undoes the
	// update with it. Casts: parameters of an INSERT … SELECT take no type
	// from the target columns.
	qRotateRefresh = `WITH cur AS (UPDATE refresh_tokens SET rotated_at = $1, replaced_by = $2::text
			WHERE k = $3 AND rotated_at IS NULL AND (expires_at IS NULL OR expires_at > $4)
			AND NOT (SELECT revoked FROM grants WHERE k = refresh_tokens.grant_k) RETURNING 1)
		INSERT INTO refresh_tokens (k, grant_k, ` + refreshCols + `)
		SELECT $5::bytea, $6::bytea, $2::text, $7::text, $8::text, $9::timestamptz, $10::timestamptz, $11::timestamptz, $12::text
		FROM cur`
	// The token's grant, live as qGetGrant reads it (revoked included).
	qGetRefreshGrant = `SELECT t.hash, t.grant_id, t.client_id, t.created_at, t.expires_at, t.rotated_at, t.replaced_by,
		g.id, g.client_id, g.user_key, g.resource, g.scopes, g.identity, g.upstream_tokens, g.upstream_expiry,
		g.version, g.created_at, g.expires_at, g.revoked
		FROM refresh_tokens t JOIN grants g ON g.k = t.grant_k
		WHERE t.k = $1 AND (t.expires_at IS NULL OR t.expires_at > $2) AND (g.expires_at IS NULL OR g.expires_at > $2)`
	qRefreshLive = `SELECT EXISTS (SELECT 1 FROM refresh_tokens t JOIN grants g ON g.k = t.grant_k
		WHERE t.k = $1 AND (t.expires_at IS NULL OR t.expires_at > $2) AND NOT g.revoked)`
	qRevokeRefresh = `DELETE FROM refresh_tokens WHERE grant_k = $1`
)

// grantRow is where a grants row is scanned to: dest lists its columns in
// grantCols order, grant converts them. A query that joins grants (see
// GetRefreshTokenGrant) scans into it alongside other columns.
type grantRow struct {
	g                       store.Grant
	upExp, created, expires pgtype.Timestamptz
}

func (r *grantRow) dest() []any {
	g := &r.g
	return []any{&g.ID, &g.ClientID, &g.UserKey, &g.Resource, &g.Scopes, &g.Identity, &g.UpstreamTokens,
		&r.upExp, &g.Version, &r.created, &r.expires, &g.Revoked}
}

func (r *grantRow) grant() *store.Grant {
	r.g.Scopes = unlist(r.g.Scopes)
	r.g.UpstreamExpiry, r.g.CreatedAt, r.g.ExpiresAt = fromTS(r.upExp), fromTS(r.created), fromTS(r.expires)
	return &r.g
}

func scanGrant(row store.Scanner) (*store.Grant, error) {
	var r grantRow
	if err := row.Scan(r.dest()...); err != nil {
		return nil, err
	}
	return r.grant(), nil
}

// GetGrant implements store.Store.
func (s *Store) GetGrant(ctx context.Context, id string) (*store.Grant, error) {
	g, err := scanGrant(s.pool.QueryRow(ctx, qGetGrant, grantKey(id), time.Now()))
	return g, mapErr("get grant", err)
}

// RevokeGrant implements store.Store.
func (s *Store) RevokeGrant(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, qRevokeGrant, grantKey(id))
	return affected("revoke grant", tag, err)
}

// UpdateGrantUpstream implements store.Store.
func (s *Store) UpdateGrantUpstream(ctx context.Context, id string, identity, sealed []byte, expiry time.Time, expectedVersion int64) error {
	k, now := grantKey(id), time.Now()
	tag, err := s.pool.Exec(ctx, qUpdateGrantUpstream, identity, sealed, ts(expiry), k, expectedVersion, now)
	if err := affected("update grant upstream", tag, err); !errors.Is(err, store.ErrNotFound) {
		return err
	}
	// Tell a lost race (the grant is live but at another version) from a missing grant.
	var live bool
	err = s.pool.QueryRow(ctx, qGrantLive, k, now).Scan(&live)
	if err != nil {
		return mapErr("update grant upstream", err)
	}
	if live {
		return store.ErrConflict
	}
	return store.ErrNotFound
}

// ListGrants implements store.Store. It filters on the stored (unhashed)
// columns: an operator's command, a scan is fine.
func (s *Store) ListGrants(ctx context.Context, f store.GrantFilter) ([]*store.Grant, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+grantCols+` FROM grants
		WHERE (expires_at IS NULL OR expires_at > $1) AND ($2 = '' OR user_key = $2) AND ($3 = '' OR client_id = $3)
		ORDER BY created_at, id`, time.Now(), f.UserKey, f.ClientID)
	if err != nil {
		return nil, mapErr("list grants", err)
	}
	defer rows.Close()
	out, err := store.CollectRows(rows, scanGrant)
	return out, mapErr("list grants", err)
}

const refreshCols = `hash, grant_id, client_id, created_at, expires_at, rotated_at, replaced_by`

// refreshRow is where a refresh_tokens row is scanned to (see grantRow).
type refreshRow struct {
	t                         store.RefreshToken
	created, expires, rotated pgtype.Timestamptz
}

func (r *refreshRow) dest() []any {
	t := &r.t
	return []any{&t.Hash, &t.GrantID, &t.ClientID, &r.created, &r.expires, &r.rotated, &t.ReplacedBy}
}

func (r *refreshRow) token() *store.RefreshToken {
	r.t.CreatedAt, r.t.ExpiresAt, r.t.RotatedAt = fromTS(r.created), fromTS(r.expires), fromTS(r.rotated)
	return &r.t
}

func scanRefresh(row store.Scanner) (*store.RefreshToken, error) {
	var r refreshRow
	if err := row.Scan(r.dest()...); err != nil {
		return nil, err
	}
	return r.token(), nil
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func insertRefresh(ctx context.Context, db execer, t *store.RefreshToken) error {
	_, err := db.Exec(ctx, `INSERT INTO refresh_tokens (k, grant_k, `+refreshCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		key(t.Hash), grantKey(t.GrantID), t.Hash, t.GrantID, t.ClientID, ts(t.CreatedAt),
		ts(t.ExpiresAt), ts(t.RotatedAt), t.ReplacedBy)
	return mapErr("create refresh token", err)
}

// GetRefreshToken implements store.Store.
func (s *Store) GetRefreshToken(ctx context.Context, hash string) (*store.RefreshToken, error) {
	t, err := scanRefresh(s.pool.QueryRow(ctx, qGetRefresh, key(hash), time.Now()))
	return t, mapErr("get refresh token", err)
}

// GetRefreshTokenGrant implements store.Store: one query, the token by its
// key and its grant by primary key.
func (s *Store) GetRefreshTokenGrant(ctx context.Context, hash string) (*store.RefreshToken, *store.Grant, error) {
	var row struct {
		t refreshRow
		g grantRow
	}
	err := s.pool.QueryRow(ctx, qGetRefreshGrant, key(hash), time.Now()).Scan(append(row.t.dest(), row.g.dest()...)...)
	if err != nil {
		return nil, nil, mapErr("get refresh token and grant", err)
	}
	return row.t.token(), row.g.grant(), nil
}

// RotateRefreshToken implements store.Store: one statement that updates
// the token only if it is current and then inserts its successor.
// Concurrent rotations queue on the row lock; each later one re-checks
// "rotated_at IS NULL" against the winner's committed row and matches
// nothing.
func (s *Store) RotateRefreshToken(ctx context.Context, oldHash string, next *store.RefreshToken, now time.Time) error {
	k, cur := key(oldHash), time.Now()
	tag, err := s.pool.Exec(ctx, qRotateRefresh, ts(now), next.Hash, k, cur,
		key(next.Hash), grantKey(next.GrantID), next.GrantID, next.ClientID, ts(next.CreatedAt), ts(next.ExpiresAt),
		ts(next.RotatedAt), next.ReplacedBy)
	if err != nil {
		// A duplicate successor is ErrConflict, a deleted grant (foreign key) ErrNotFound.
		return mapErr("rotate refresh token", err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	// Not current: already rotated (a conflict), or unknown, expired or of
	// a revoked grant.
	var live bool
	if err := s.pool.QueryRow(ctx, qRefreshLive, k, cur).Scan(&live); err != nil {
		return mapErr("rotate refresh token", err)
	}
	if live {
		return store.ErrConflict
	}
	return store.ErrNotFound
}

// RevokeRefreshTokensForGrant implements store.Store.
func (s *Store) RevokeRefreshTokensForGrant(ctx context.Context, grantID string) error {
	_, err := s.pool.Exec(ctx, qRevokeRefresh, grantKey(grantID))
	return mapErr("revoke refresh tokens", err)
}

// GetConsent implements store.Store.
func (s *Store) GetConsent(ctx context.Context, userKey, clientID string) (*store.Consent, error) {
	var c store.Consent
	var created pgtype.Timestamptz
	err := s.pool.QueryRow(ctx, `SELECT user_key, client_id, scopes, created_at FROM consents
		WHERE user_k = $1 AND client_k = $2`, key(userKey), key(clientID)).
		Scan(&c.UserKey, &c.ClientID, &c.Scopes, &created)
	if err != nil {
		return nil, mapErr("get consent", err)
	}
	c.Scopes = unlist(c.Scopes)
	c.CreatedAt = fromTS(created)
	return &c, nil
}

// SaveConsent implements store.Store.
func (s *Store) SaveConsent(ctx context.Context, c *store.Consent) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO consents (user_k, client_k, user_key, client_id, scopes, created_at)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (user_k, client_k) DO UPDATE SET scopes = excluded.scopes, created_at = excluded.created_at`,
		key(c.UserKey), key(c.ClientID), c.UserKey, c.ClientID, list(c.Scopes), ts(c.CreatedAt))
	return mapErr("save consent", err)
}

// DeleteConsent implements store.Store.
func (s *Store) DeleteConsent(ctx context.Context, userKey, clientID string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM consents WHERE user_k = $1 AND client_k = $2`,
		key(userKey), key(clientID))
	return affected("delete consent", tag, err)
}

// ListSigningKeys implements store.Store.
func (s *Store) ListSigningKeys(ctx context.Context) ([]*store.SigningKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, algorithm, private, public, status, created_at, retire_at
		FROM signing_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, mapErr("list signing keys", err)
	}
	defer rows.Close()
	out, err := store.CollectRows(rows, scanKey)
	return out, mapErr("list signing keys", err)
}

func scanKey(row store.Scanner) (*store.SigningKey, error) {
	var k store.SigningKey
	var created, retire pgtype.Timestamptz
	if err := row.Scan(&k.ID, &k.Algorithm, &k.Private, &k.Public, &k.Status, &created, &retire); err != nil {
		return nil, err
	}
	k.CreatedAt, k.RetireAt = fromTS(created), fromTS(retire)
	return &k, nil
}

// CreateSigningKey implements store.Store.
func (s *Store) CreateSigningKey(ctx context.Context, k *store.SigningKey) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO signing_keys (k, id, algorithm, private, public, status, created_at, retire_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		key(k.ID), k.ID, k.Algorithm, k.Private, k.Public, k.Status, ts(k.CreatedAt), ts(k.RetireAt))
	return mapErr("create signing key", err)
}

// UpdateSigningKey implements store.Store.
func (s *Store) UpdateSigningKey(ctx context.Context, k *store.SigningKey) error {
	tag, err := s.pool.Exec(ctx, `UPDATE signing_keys SET status = $1, retire_at = $2, private = coalesce($3, private) WHERE k = $4`,
		k.Status, ts(k.RetireAt), store.NilIfEmpty(k.Private), key(k.ID))
	return affected("update signing key", tag, err)
}

// DeleteSigningKey implements store.Store.
func (s *Store) DeleteSigningKey(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM signing_keys WHERE k = $1`, key(id))
	return affected("delete signing key", tag, err)
}

// sweepBatch is how many rows one DELETE of DeleteExpired removes: each
// batch is its own short transaction, so a sweep of many expired rows
// never holds their locks, or a long transaction's snapshot, for long. A
// variable for tests.
var sweepBatch = 500

// afterSweepBatch, when set (by tests), runs after each committed batch.
var afterSweepBatch func()

// sweepQueries delete one batch each ($1 = now, $2 = batch size): the
// batch's keys come from the partial expiry index, and the rows are then
// deleted by primary key (k = ANY of an array, a plan that does not depend
// on the tables' statistics: with IN (subquery) the planner may hash-join
// against a walk of the whole primary key). Refresh tokens of expiring
// grants go first, so the count includes them (the ON DELETE CASCADE would
// remove them silently).
var sweepQueries = []string{
	`DELETE FROM refresh_tokens WHERE k = ANY (ARRAY (SELECT k FROM refresh_tokens WHERE expires_at <= $1 LIMIT $2))`,
	// LATERAL with a LIMIT cannot be flattened into a hash join over all tokens.
	`DELETE FROM refresh_tokens WHERE k = ANY (ARRAY (SELECT r.k FROM grants g
		CROSS JOIN LATERAL (SELECT k FROM refresh_tokens WHERE grant_k = g.k LIMIT $2) r
		WHERE g.expires_at <= $1 LIMIT $2))`,
	`DELETE FROM grants WHERE k = ANY (ARRAY (SELECT k FROM grants WHERE expires_at <= $1 LIMIT $2))`,
	`DELETE FROM auth_codes WHERE k = ANY (ARRAY (SELECT k FROM auth_codes WHERE expires_at <= $1 LIMIT $2))`,
	`DELETE FROM auth_requests WHERE k = ANY (ARRAY (SELECT k FROM auth_requests WHERE expires_at <= $1 LIMIT $2))`,
	`DELETE FROM clients WHERE k = ANY (ARRAY (SELECT k FROM clients WHERE expires_at <= $1 LIMIT $2))`,
}

// DeleteExpired implements store.Store, in batches of sweepBatch rows.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time) (int64, error) {
	var total int64
	for _, q := range sweepQueries {
		for {
			tag, err := s.pool.Exec(ctx, q, now, sweepBatch)
			if err != nil {
				return total, mapErr("delete expired", err)
			}
			total += tag.RowsAffected()
			if afterSweepBatch != nil {
				afterSweepBatch()
			}
			if tag.RowsAffected() < int64(sweepBatch) {
				break
			}
		}
	}
	return total, nil
}

// TryLock takes a session-level advisory lock named name if no other
// session (replica) holds it, on a connection kept until release. It lets
// one replica do what must happen once (automatic key rotation).
func (s *Store) TryLock(ctx context.Context, name string) (release func(), ok bool, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, mapErr("advisory lock", err)
	}
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext($1))`, name).Scan(&ok); err != nil || !ok {
		conn.Release()
		return nil, false, mapErr("advisory lock", err)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock(hashtext($1))`, name); err != nil {
			// Closing the connection ends the session, and its locks.
			conn.Conn().Close(ctx)
		}
		conn.Release()
	}, true, nil
}
