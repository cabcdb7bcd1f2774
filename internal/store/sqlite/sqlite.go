// Package sqlite is the default, embedded store.Store backend, built on the
// pure-Go modernc.org/sqlite driver.
//
// Concurrency: the database runs in WAL mode so readers never block the
// writer. All writes in this process go through one connection, so they are
// serialized without SQLITE_BUSY churn; write transactions start with BEGIN
// IMMEDIATE and every connection has a busy_timeout, so other processes
// sharing the file (e.g. `mcpgate keys rotate`) wait for the lock instead of
// failing or deadlocking on a read-to-write upgrade. Concurrent code
// redemptions and refresh token rotations share one transaction (group
// commit, see group.go).
//
// Durability: synchronous=NORMAL, the usual WAL setting. A process crash
// loses nothing that was committed; a power loss may roll back the last
// transactions but never corrupts the database. A background goroutine
// checkpoints the WAL into the database file (see checkpointLoop), so
// requests do not pay for it.
//
// Every statement a request runs is prepared once (see stmts and rawConn).
package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/mcpgate/mcpgate/internal/groupcommit"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/migrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// MemoryDSN opens a private in-memory database (for tests).
const MemoryDSN = ":memory:"

// Store is a SQLite-backed store.Store.
type Store struct {
	// Changes reach this process only: SQLite serves one replica. A
	// command run beside it (`mcpgate keys rotate`) is picked up on
	// SIGHUP or by the caches' TTLs.
	store.Hub

	w   *sql.DB // exactly one connection: all writes
	r   *sql.DB // read-only pool (the same as w for in-memory databases)
	ws  stmts   // prepared on w
	rs  stmts   // prepared on r
	raw rawConn // the token endpoint's statements on w, through the driver

	group *groupcommit.Queue[*txOp] // write transactions of the token endpoint, committed together
	rc    *refreshCache             // current refresh tokens with their grants (see refreshCache)

	ckpt     *sql.DB // checkpoints the WAL in the background (nil in memory)
	walPath  string
	stopCkpt context.CancelFunc
	ckptDone chan struct{}
}

var _ store.Store = (*Store)(nil)

const busyTimeoutMillis = 10000

// Open opens (creating if needed) the database at path dsn and brings its
// schema up to date. The parent directory is created with mode 0700 and a
// new database file with mode 0600: the file holds sealed secrets and
// token metadata. dsn == MemoryDSN opens a private in-memory database.
func Open(ctx context.Context, dsn string) (*Store, error) {
	return OpenOptions(ctx, dsn, Options{})
}

// Options are the store's settings; the zero value means the defaults.
type Options struct {
	// RefreshCacheBytes bounds the refresh cache (see refreshCache); 0:
	// store.DefaultRefreshCacheMiB.
	RefreshCacheBytes int
}

// OpenOptions is Open with settings.
func OpenOptions(ctx context.Context, dsn string, o Options) (*Store, error) {
	if dsn == "" {
		return nil, errors.New("sqlite: empty path")
	}
	if strings.ContainsAny(dsn, "?#") || strings.HasPrefix(dsn, "file:") {
		return nil, errors.New("sqlite: dsn must be a plain file path (mcpgate sets the connection options itself)")
	}
	common := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)", busyTimeoutMillis)
	s := &Store{rc: newRefreshCache(cmp.Or(o.RefreshCacheBytes, store.DefaultRefreshCacheMiB<<20))}
	s.group = groupcommit.New(maxBatch, s.lead)
	if dsn == MemoryDSN {
		// Each connection to :memory: is a separate database: use one.
		db, err := sql.Open("sqlite", dsn+"?"+common)
		if err != nil {
			return nil, fmt.Errorf("sqlite: open: %w", err)
		}
		db.SetMaxOpenConns(1)
		db.SetConnMaxIdleTime(0)
		db.SetConnMaxLifetime(0)
		s.w, s.r = db, db
	} else {
		if err := os.MkdirAll(filepath.Dir(dsn), 0o700); err != nil {
			return nil, fmt.Errorf("sqlite: create directory: %w", err)
		}
		f, err := os.OpenFile(dsn, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("sqlite: create database file: %w", err)
		}
		f.Close()
		walLimit := fmt.Sprintf("&_pragma=journal_size_limit(%d)", WALSizeLimit)
		w, err := sql.Open("sqlite", dsn+"?"+common+"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"+
			fmt.Sprintf("&_pragma=cache_size(-%d)&_pragma=mmap_size(%d)", writerCacheKiB, writerMmapBytes)+
			fmt.Sprintf("&_pragma=wal_autocheckpoint(%d)", walBackstopPages)+walLimit+"&_txlock=immediate")
		if err != nil {
			return nil, fmt.Errorf("sqlite: open: %w", err)
		}
		w.SetMaxOpenConns(1)
		w.SetConnMaxIdleTime(0)
		w.SetConnMaxLifetime(0)
		r, err := sql.Open("sqlite", dsn+"?"+common+"&_pragma=query_only(1)")
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("sqlite: open: %w", err)
		}
		n := max(4, runtime.NumCPU())
		r.SetMaxOpenConns(n)
		r.SetMaxIdleConns(n)
		// The checkpointer waits briefly: a TRUNCATE checkpoint holds off new
		// writers while it waits for readers, and the next tick retries.
		c, err := sql.Open("sqlite", dsn+"?"+fmt.Sprintf("_pragma=busy_timeout(%d)", truncateBusyMillis)+walLimit)
		if err != nil {
			w.Close()
			r.Close()
			return nil, fmt.Errorf("sqlite: open: %w", err)
		}
		c.SetMaxOpenConns(1)
		s.w, s.r, s.ckpt, s.walPath = w, r, c, dsn+"-wal"
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	var err error
	if s.ws, err = prepare(ctx, s.w, writeQueries); err == nil {
		if s.rs, err = prepare(ctx, s.r, readQueries); err == nil {
			err = s.prepareRaw(ctx)
		}
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	if s.ckpt != nil {
		ctx, cancel := context.WithCancel(context.Background())
		s.stopCkpt, s.ckptDone = cancel, make(chan struct{})
		go s.checkpointLoop(ctx)
	}
	return s, nil
}

// writerCacheKiB is the writer connection's page cache. The writer keeps
// its cache across its own transactions (readers lose theirs whenever the
// database changed, so theirs stays at SQLite's default). A write walks
// every index it touches from the root, so the interior pages of all the
// b-trees must stay cached (with 100k grants about 100 pages since
// migration 0002's 32-byte keys, 240 before), or the writer re-reads them
// from the file. 8 MiB (2048 pages) holds them with room for the hot
// leaves. It is not sized for every leaf (about 22 MB for the refresh
// tokens' b-trees at 100k grants), because a larger cache costs more at
// commits: when a b-tree balance reorders the pages of a split,
// balance_nonroot renames one page through a temporary number, the lock-
// byte page (262145 with 4 KiB pages), which leaves the page cache's
// highest key far past the end of the database; the commit's
// sqlite3PcacheTruncate then scans every hash slot and cached page
// (pcache1TruncateUnsafe) instead of the few past the end. That happens at
// up to one commit in five (half as often with 0002's shorter keys), and
// costs in proportion to the pages cached. 1, 2, 4, 8 and 32 MiB, with and
// without mmap, measured alike per refresh (BenchmarkRefreshAtScale with
// MCPGATE_BENCH_CACHE_KIB and MCPGATE_BENCH_MMAP_MIB; docs/benchmarks.md):
// a smaller cache scans less and reads more pages back. Variables for that
// benchmark.
var writerCacheKiB = 8 << 10

// writerMmapBytes is the writer connection's mmap_size: 0, SQLite's
// default. Mapping the file spares the writer's cache misses a pread, but
// measured no faster per refresh at 100k grants than reading, and a reader
// pool connection unmaps at every commit of another connection.
var writerMmapBytes int64

// Checkpoints copy committed pages from the WAL into the database file and
// fsync it. SQLite runs them inside the commit that crosses a page
// threshold, so every few hundred requests one pays for them; instead a
// background goroutine checkpoints every checkpointInterval, and the
// writer's automatic checkpoint only steps in if the WAL reaches
// walBackstopPages (e.g. if checkpoints keep failing).
//
// A checkpoint does not shrink the WAL file: SQLite rewrites it from the
// start once every reader has moved past it, and under steady load (readers
// always active) it only grows (70 MB in a load test). So the writer and the
// checkpointer truncate it to WALSizeLimit whenever it is reset
// (journal_size_limit), and when the file is over the limit the checkpointer
// runs a RESTART checkpoint, which waits up to truncateBusyMillis for
// readers so that the writer's next commit starts the WAL over (and cuts
// the file to the limit). Only when no write came for idleBeforeTruncate
// (the server is idle) does it run a TRUNCATE checkpoint, which empties
// the file itself but rewrites the WAL header from this connection, so
// every other connection drops its page cache at its next transaction:
// under load that was the writer losing its 2048 cached pages every few
// hundred commits and reading them back (at 100k grants, where they are
// random leaves, not the whole database).
const (
	checkpointInterval = 100 * time.Millisecond
	walBackstopPages   = 16384 // 64 MiB of 4 KiB pages
	truncateBusyMillis = 250
	// idleBeforeTruncate is how long no write may have come before the
	// checkpointer empties an oversized WAL itself (a RESTART checkpoint
	// holds writers off for up to truncateBusyMillis: not a pause in the load).
	idleBeforeTruncate = time.Second
)

// WALSizeLimit is the size the -wal file is brought back to after a
// checkpoint.
const WALSizeLimit = 4 << 20

func (s *Store) checkpointLoop(ctx context.Context) {
	defer close(s.ckptDone)
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	var mtime, changed time.Time // the -wal file's mtime at the last tick, and when it last moved
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// PASSIVE never waits for readers or the writer; what it cannot
			// copy yet, the next round does. Errors are retried the same way.
			s.ckpt.ExecContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`)
			fi, err := os.Stat(s.walPath)
			if err != nil {
				continue
			}
			if !fi.ModTime().Equal(mtime) {
				mtime, changed = fi.ModTime(), time.Now()
			}
			switch {
			case fi.Size() <= WALSizeLimit:
			case time.Since(changed) >= idleBeforeTruncate:
				s.checkpoint(ctx, "TRUNCATE")
			default:
				s.checkpoint(ctx, "RESTART")
			}
		}
	}
}

// checkpointRan, when set (by tests), is told each RESTART or TRUNCATE
// checkpoint the loop runs.
var checkpointRan func(mode string)

func (s *Store) checkpoint(ctx context.Context, mode string) {
	if checkpointRan != nil {
		checkpointRan(mode)
	}
	s.ckpt.ExecContext(ctx, `PRAGMA wal_checkpoint(`+mode+`)`)
}

// stmts are statements prepared once, by SQL text. SQLite takes about as
// long to parse a statement as to run a point query or insert, so every
// statement on a request path is prepared at Open (each connection of a
// pool prepares it again on first use, then keeps it).
type stmts map[string]*sql.Stmt

func prepare(ctx context.Context, db *sql.DB, queries []string) (stmts, error) {
	m := make(stmts, len(queries))
	for _, q := range queries {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("sqlite: prepare %.60q: %w", q, err)
		}
		m[q] = st
	}
	return m, nil
}

// get returns the prepared statement for q. Statements are prepared
// eagerly because preparing on the writer pool inside a transaction would
// wait for the one connection the transaction holds.
func (m stmts) get(q string) (*sql.Stmt, error) {
	if st, ok := m[q]; ok {
		return st, nil
	}
	return nil, fmt.Errorf("sqlite: statement not prepared: %.60q", q)
}

// errRow is a scanner that fails with err.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// exec runs a prepared write statement outside a transaction.
func (s *Store) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	st, err := s.ws.get(q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// writeRow runs a prepared write statement that returns a row (RETURNING).
func (s *Store) writeRow(ctx context.Context, q string, args ...any) scanner {
	st, err := s.ws.get(q)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRowContext(ctx, args...)
}

// warmRow runs a prepared query on the writer connection, outside any
// transaction: the reads of a refresh (its token, its grant), which look
// up rows the writer has just written or will write next. A connection
// drops its whole page cache whenever another connection committed (WAL),
// so under write load a read on the pool starts cold and reads every
// b-tree page again, with a system call each; the writer's cache survives
// its own commits. Measured with a rotation between reads (issue 15), the
// two reads cost 0.45-0.85× as much on the writer as on the pool. They
// wait while a write holds the connection (a batch, a sweep step).
//
// They run without ctx's cancellation once started: for a cancellable
// context the driver starts a goroutine per statement to interrupt it
// (modernc.org/sqlite's interruptOnDone), which costs more than the point
// read itself; a cancelled request's read ends as soon as the writer is
// free (it waits for the writer like any read, then takes microseconds).
func (s *Store) warmRow(ctx context.Context, q string, args ...any) scanner {
	if err := ctx.Err(); err != nil {
		return errRow{err}
	}
	ctx = context.WithoutCancel(ctx)
	var row scanner
	if err := s.withWriter(ctx, func(c *rawConn) error {
		row = c.row(ctx, q, args...)
		return nil
	}); err != nil {
		return errRow{err}
	}
	return row
}

// readRow runs a prepared query on the read pool.
func (s *Store) readRow(ctx context.Context, q string, args ...any) scanner {
	st, err := s.rs.get(q)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRowContext(ctx, args...)
}

// Close implements store.Store.
func (s *Store) Close() error {
	var err error
	if s.ckpt != nil {
		if s.stopCkpt != nil {
			s.stopCkpt()
			<-s.ckptDone
		}
		err = s.ckpt.Close()
	}
	for _, m := range []stmts{s.ws, s.rs} {
		for _, st := range m {
			st.Close()
		}
	}
	s.closeRaw()
	err = errors.Join(err, s.w.Close())
	if s.r != s.w {
		err = errors.Join(err, s.r.Close())
	}
	return err
}

// dialect is the SQLite bookkeeping of migrate.Run. The write transaction
// excludes concurrent migrators: no lock of its own.
var dialect = migrate.Dialect{
	Name:        "sqlite",
	CreateTable: `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`,
	Record:      `INSERT INTO schema_migrations (version, applied_at) VALUES (?, unixepoch())`,
}

// migrateTx adapts a database/sql transaction to migrate.Committer.
type migrateTx struct{ tx *sql.Tx }

func (m migrateTx) Exec(ctx context.Context, q string, args ...any) error {
	_, err := m.tx.ExecContext(ctx, q, args...)
	return err
}

func (m migrateTx) QueryInt(ctx context.Context, q string) (n int, err error) {
	err = m.tx.QueryRowContext(ctx, q).Scan(&n)
	return n, err
}

func (m migrateTx) Commit(context.Context) error   { return m.tx.Commit() }
func (m migrateTx) Rollback(context.Context) error { return m.tx.Rollback() }

// migrate applies the embedded migrations in one write transaction.
func (s *Store) migrate(ctx context.Context) error {
	return migrate.Apply(ctx, dialect, migrations, func(ctx context.Context) (migrate.Committer, error) {
		tx, err := s.w.BeginTx(ctx, nil)
		return migrateTx{tx}, err
	})
}

// mapErr turns constraint violations into the store's sentinel errors.
func mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
			return store.ErrConflict
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return store.ErrNotFound
		}
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}

// affected returns ErrNotFound when a statement changed no row.
func affected(op string, res sql.Result, err error) error {
	if err != nil {
		return mapErr(op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return mapErr(op, err)
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// scanner is a row to scan (store.CollectRows takes the same).
type scanner = store.Scanner

// key is how every caller-supplied key is stored (store.KeyBytes): the 32
// bytes of its SHA-256 (half of store.HashKey's hex, in every index entry;
// migration 0002), or the 40 bytes of a time-ordered token's hash, ordered
// by issue time. BLOB keys take either length.
func key(s string) []byte { return store.KeyBytes(s) }

// writeQueries and readQueries are prepared at Open (and rawQueries, see
// rawConn): every statement the methods below run, except the rare
// maintenance ones (migrations, DeleteExpired).
var (
	writeQueries = []string{
		qInsertClient, qDeleteClient,
		qInsertRequest, qUpdateRequest, qDeleteRequest, qTakeRequest,
		qInsertCode,
		qRevokeGrant, qUpdateGrantUpstream, qGrantLive,
		qRevokeRefresh,
		qSaveConsent, qDeleteConsent,
		qInsertKey, qUpdateKey, qDeleteKey,
	}
	readQueries = []string{
		qGetClient, qCountClients, qNthClient, qGetRequest, qGetConsent, qListKeys,
	}
)

const clientCols = `id, secret_hash, name, redirect_uris, grant_types, response_types, token_endpoint_auth_method,
	scope, application_type, kind, registered_ip, metadata, created_at, expires_at`

const (
	qInsertClient = `INSERT INTO clients (k, ` + clientCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qGetClient    = `SELECT ` + clientCols + ` FROM clients WHERE k = ? AND (expires_at = 0 OR expires_at > ?)`
	qDeleteClient = `DELETE FROM clients WHERE k = ?`
	qCountClients = `SELECT COUNT(*) FROM clients WHERE registered_ip = ? AND created_at >= ?`
	qNthClient    = `SELECT created_at FROM clients WHERE registered_ip = ? AND created_at >= ? ORDER BY created_at LIMIT 1 OFFSET ?`
)

func scanClient(row scanner) (*store.Client, error) {
	var c store.Client
	var uris, grants, responses string
	var created, expires int64
	if err := row.Scan(&c.ID, &c.SecretHash, &c.Name, &uris, &grants, &responses, &c.TokenEndpointAuthMethod,
		&c.Scope, &c.ApplicationType, &c.Kind, &c.RegisteredIP, &c.Metadata, &created, &expires); err != nil {
		return nil, err
	}
	var err error
	if c.RedirectURIs, err = decodeList(uris); err != nil {
		return nil, err
	}
	if c.GrantTypes, err = decodeList(grants); err != nil {
		return nil, err
	}
	if c.ResponseTypes, err = decodeList(responses); err != nil {
		return nil, err
	}
	c.CreatedAt, c.ExpiresAt = fromMicros(created), fromMicros(expires)
	return &c, nil
}

// CreateClient implements store.Store.
func (s *Store) CreateClient(ctx context.Context, c *store.Client) error {
	_, err := s.exec(ctx, qInsertClient,
		key(c.ID), c.ID, c.SecretHash, c.Name, encodeList(c.RedirectURIs), encodeList(c.GrantTypes),
		encodeList(c.ResponseTypes), c.TokenEndpointAuthMethod, c.Scope, c.ApplicationType, c.Kind, c.RegisteredIP,
		c.Metadata, micros(c.CreatedAt), micros(c.ExpiresAt))
	return mapErr("create client", err)
}

// GetClient implements store.Store.
func (s *Store) GetClient(ctx context.Context, id string) (*store.Client, error) {
	c, err := scanClient(s.readRow(ctx, qGetClient, key(id), nowMicros()))
	return c, mapErr("get client", err)
}

// DeleteClient implements store.Store.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	res, err := s.exec(ctx, qDeleteClient, key(id))
	return affected("delete client", res, err)
}

// CountClientsByIP implements store.Store.
func (s *Store) CountClientsByIP(ctx context.Context, ip string, since time.Time) (int, error) {
	var n int
	err := s.readRow(ctx, qCountClients, ip, micros(since)).Scan(&n)
	return n, mapErr("count clients", err)
}

// NthClientTimeByIP implements store.Store.
func (s *Store) NthClientTimeByIP(ctx context.Context, ip string, since time.Time, n int) (time.Time, error) {
	if n < 0 {
		return time.Time{}, store.ErrNotFound
	}
	var v int64
	err := s.readRow(ctx, qNthClient, ip, micros(since), n).Scan(&v)
	return fromMicros(v), mapErr("nth client", err)
}

const requestCols = `id, client_id, redirect_uri, state, resource, scopes, code_challenge, code_challenge_method,
	upstream_state_hash, upstream_nonce, upstream_verifier, user_key, identity, upstream_tokens, consent_csrf, expires_at`

const (
	qInsertRequest = `INSERT INTO auth_requests (k, upstream_state_k, ` + requestCols + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qGetRequest    = `SELECT ` + requestCols + ` FROM auth_requests WHERE k = ? AND (expires_at = 0 OR expires_at > ?)`
	qUpdateRequest = `UPDATE auth_requests SET client_id = ?, redirect_uri = ?, state = ?, resource = ?,
		scopes = ?, code_challenge = ?, code_challenge_method = ?, upstream_state_k = ?, upstream_state_hash = ?,
		upstream_nonce = ?, upstream_verifier = ?, user_key = ?, identity = ?, upstream_tokens = ?, consent_csrf = ?,
		expires_at = ?
		WHERE k = ? AND (expires_at = 0 OR expires_at > ?)`
	qDeleteRequest = `DELETE FROM auth_requests WHERE k = ?`
	// One UPDATE both finds and disarms the state: single use even across processes.
	qTakeRequest = `UPDATE auth_requests SET upstream_state_k = NULL, upstream_state_hash = ''
		WHERE upstream_state_k = ? AND (expires_at = 0 OR expires_at > ?)
		RETURNING ` + requestCols
)

func scanRequest(row scanner) (*store.AuthRequest, error) {
	var r store.AuthRequest
	var scopes string
	var expires int64
	if err := row.Scan(&r.ID, &r.ClientID, &r.RedirectURI, &r.State, &r.Resource, &scopes, &r.CodeChallenge,
		&r.CodeChallengeMethod, &r.UpstreamStateHash, &r.UpstreamNonce, &r.UpstreamVerifier, &r.UserKey, &r.Identity,
		&r.UpstreamTokens, &r.ConsentCSRF, &expires); err != nil {
		return nil, err
	}
	var err error
	if r.Scopes, err = decodeList(scopes); err != nil {
		return nil, err
	}
	r.ExpiresAt = fromMicros(expires)
	return &r, nil
}

// stateKey is NULL for an empty (or taken) upstream state, so it never matches.
func stateKey(h string) any {
	if h == "" {
		return nil
	}
	return key(h)
}

// CreateAuthRequest implements store.Store.
func (s *Store) CreateAuthRequest(ctx context.Context, r *store.AuthRequest) error {
	_, err := s.exec(ctx, qInsertRequest,
		key(r.ID), stateKey(r.UpstreamStateHash), r.ID, r.ClientID, r.RedirectURI, r.State, r.Resource,
		encodeList(r.Scopes), r.CodeChallenge, r.CodeChallengeMethod, r.UpstreamStateHash, r.UpstreamNonce,
		r.UpstreamVerifier, r.UserKey, r.Identity, r.UpstreamTokens, r.ConsentCSRF, micros(r.ExpiresAt))
	return mapErr("create auth request", err)
}

// GetAuthRequest implements store.Store.
func (s *Store) GetAuthRequest(ctx context.Context, id string) (*store.AuthRequest, error) {
	r, err := scanRequest(s.readRow(ctx, qGetRequest, key(id), nowMicros()))
	return r, mapErr("get auth request", err)
}

// UpdateAuthRequest implements store.Store.
func (s *Store) UpdateAuthRequest(ctx context.Context, r *store.AuthRequest) error {
	res, err := s.exec(ctx, qUpdateRequest,
		r.ClientID, r.RedirectURI, r.State, r.Resource, encodeList(r.Scopes), r.CodeChallenge, r.CodeChallengeMethod,
		stateKey(r.UpstreamStateHash), r.UpstreamStateHash, r.UpstreamNonce, r.UpstreamVerifier, r.UserKey, r.Identity,
		r.UpstreamTokens, r.ConsentCSRF, micros(r.ExpiresAt), key(r.ID), nowMicros())
	return affected("update auth request", res, err)
}

// DeleteAuthRequest implements store.Store.
func (s *Store) DeleteAuthRequest(ctx context.Context, id string) error {
	res, err := s.exec(ctx, qDeleteRequest, key(id))
	return affected("delete auth request", res, err)
}

// TakeAuthRequestByUpstreamState implements store.Store.
func (s *Store) TakeAuthRequestByUpstreamState(ctx context.Context, stateHash string) (*store.AuthRequest, error) {
	if stateHash == "" {
		return nil, store.ErrNotFound
	}
	r, err := scanRequest(s.writeRow(ctx, qTakeRequest, key(stateHash), nowMicros()))
	return r, mapErr("take auth request", err)
}

const codeCols = `hash, client_id, redirect_uri, resource, user_key, scopes, code_challenge, grant_id, identity,
	upstream_tokens, expires_at`

const (
	qInsertCode  = `INSERT INTO auth_codes (k, ` + codeCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qConsumeCode = `UPDATE auth_codes SET used = 1
		WHERE k = ? AND used = 0 AND (expires_at = 0 OR expires_at > ?) RETURNING ` + codeCols
	qUsedCode = `SELECT ` + codeCols + ` FROM auth_codes WHERE k = ? AND used = 1 AND (expires_at = 0 OR expires_at > ?)`
)

func scanCode(row scanner) (*store.AuthCode, error) {
	var c store.AuthCode
	var scopes string
	var expires int64
	if err := row.Scan(&c.Hash, &c.ClientID, &c.RedirectURI, &c.Resource, &c.UserKey, &scopes, &c.CodeChallenge,
		&c.GrantID, &c.Identity, &c.UpstreamTokens, &expires); err != nil {
		return nil, err
	}
	var err error
	if c.Scopes, err = decodeList(scopes); err != nil {
		return nil, err
	}
	c.ExpiresAt = fromMicros(expires)
	return &c, nil
}

// CreateAuthCode implements store.Store.
func (s *Store) CreateAuthCode(ctx context.Context, c *store.AuthCode) error {
	_, err := s.exec(ctx, qInsertCode,
		key(c.Hash), c.Hash, c.ClientID, c.RedirectURI, c.Resource, c.UserKey, encodeList(c.Scopes),
		c.CodeChallenge, c.GrantID, c.Identity, c.UpstreamTokens, micros(c.ExpiresAt))
	return mapErr("create auth code", err)
}

// RedeemAuthCode implements store.Store: in one write transaction (shared
// with concurrent callers, see write), mark the code used and insert the
// grant and its refresh token.
func (s *Store) RedeemAuthCode(ctx context.Context, hash string, issue store.IssueFunc) (*store.AuthCode, error) {
	var (
		c        *store.AuthCode
		issueErr error
		// What issue answered, for a second run (see write): issue is
		// called once, and its answer depends on the code alone, which a
		// second run reads back unchanged (only used changes, and that
		// is rolled back).
		issuedFor *store.AuthCode
		g         *store.Grant
		t         *store.RefreshToken
	)
	k := key(hash)
	err := s.write(ctx, func(ctx context.Context, tx *rawConn) error {
		now := nowMicros()
		var err error
		c, err = scanCode(tx.row(ctx, qConsumeCode, k, now))
		if errors.Is(err, sql.ErrNoRows) {
			// Nothing changed: the code is unknown, expired, or already used.
			if c, err = scanCode(tx.row(ctx, qUsedCode, k, now)); err != nil {
				return mapErr("redeem auth code", err)
			}
			return store.ErrAlreadyUsed
		}
		if err != nil {
			return mapErr("redeem auth code", err)
		}
		if issuedFor == nil {
			g, t, issueErr = issue(c)
			issuedFor = c
		}
		c = issuedFor
		if issueErr != nil {
			return nil // refused: the code is spent all the same
		}
		if err := store.CheckIssued(g, t); err != nil {
			c = nil
			return err
		}
		res, err := tx.exec(ctx, qInsertGrant, grantArgs(g)...)
		if err != nil {
			c = nil
			return mapErr("redeem auth code: create grant", err)
		}
		if t != nil {
			// The token's grant by its row (n, the rowid just inserted), not
			// by another walk of the grants' key index.
			var grantN any
			if n, err := res.LastInsertId(); err == nil {
				grantN = n
			}
			if err := s.insertRefresh(ctx, tx, t, grantN); err != nil {
				c = nil
				return err
			}
		}
		return nil
	})
	switch {
	case errors.Is(err, store.ErrAlreadyUsed):
		return c, err
	case err != nil:
		return nil, err
	}
	return c, issueErr
}

const (
	grantCols = `id, client_id, user_key, resource, scopes, identity, upstream_tokens, upstream_expiry, version,
	created_at, expires_at, revoked`
	grantColsG = `g.id, g.client_id, g.user_key, g.resource, g.scopes, g.identity, g.upstream_tokens, g.upstream_expiry,
	g.version, g.created_at, g.expires_at, g.revoked`
)

const (
	qInsertGrant         = `INSERT INTO grants (k, ` + grantCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qGetGrant            = `SELECT ` + grantCols + ` FROM grants WHERE k = ? AND (expires_at = 0 OR expires_at > ?)`
	qRevokeGrant         = `UPDATE grants SET revoked = 1 WHERE k = ?`
	qUpdateGrantUpstream = `UPDATE grants SET identity = COALESCE(?, identity), upstream_tokens = ?, upstream_expiry = ?,
		version = version + 1
		WHERE k = ? AND version = ? AND revoked = 0 AND (expires_at = 0 OR expires_at > ?)`
	// ListGrants filters on the stored (unhashed) columns: an operator's
	// command, a scan is fine.
	qListGrants = `SELECT ` + grantCols + ` FROM grants WHERE (expires_at = 0 OR expires_at > ?)
		AND (? = '' OR user_key = ?) AND (? = '' OR client_id = ?) ORDER BY created_at, id`
	qGrantLive = `SELECT EXISTS (SELECT 1 FROM grants WHERE k = ? AND revoked = 0 AND (expires_at = 0 OR expires_at > ?))`
)

func grantArgs(g *store.Grant) []any {
	return []any{store.GrantKeyBytes(g.ID), g.ID, g.ClientID, g.UserKey, g.Resource, encodeList(g.Scopes), g.Identity,
		g.UpstreamTokens, micros(g.UpstreamExpiry), g.Version, micros(g.CreatedAt), micros(g.ExpiresAt), g.Revoked}
}

// grantRow is where a grants row is scanned to: dest lists its columns in
// grantCols order, grant converts them. A query that joins grants (see
// GetRefreshTokenGrant) scans into it alongside other columns.
type grantRow struct {
	g                       store.Grant
	scopes                  string
	upExp, created, expires int64
}

func (r *grantRow) dest() []any {
	g := &r.g
	return []any{&g.ID, &g.ClientID, &g.UserKey, &g.Resource, &r.scopes, &g.Identity, &g.UpstreamTokens, &r.upExp,
		&g.Version, &r.created, &r.expires, &g.Revoked}
}

func (r *grantRow) grant() (*store.Grant, error) {
	var err error
	if r.g.Scopes, err = decodeList(r.scopes); err != nil {
		return nil, err
	}
	r.g.UpstreamExpiry, r.g.CreatedAt, r.g.ExpiresAt = fromMicros(r.upExp), fromMicros(r.created), fromMicros(r.expires)
	return &r.g, nil
}

func scanGrant(row scanner) (*store.Grant, error) {
	var r grantRow
	if err := row.Scan(r.dest()...); err != nil {
		return nil, err
	}
	return r.grant()
}

// GetGrant implements store.Store, on the writer (see warmRow).
func (s *Store) GetGrant(ctx context.Context, id string) (*store.Grant, error) {
	g, err := scanGrant(s.warmRow(ctx, qGetGrant, store.GrantKeyBytes(id), nowMicros()))
	return g, mapErr("get grant", err)
}

// RevokeGrant implements store.Store.
func (s *Store) RevokeGrant(ctx context.Context, id string) error {
	defer s.rc.dropGrant(id)
	res, err := s.exec(ctx, qRevokeGrant, store.GrantKeyBytes(id))
	return affected("revoke grant", res, err)
}

// UpdateGrantUpstream implements store.Store.
func (s *Store) UpdateGrantUpstream(ctx context.Context, id string, identity, sealed []byte, expiry time.Time, expectedVersion int64) error {
	defer s.rc.dropGrant(id)
	k, now := store.GrantKeyBytes(id), nowMicros()
	var ident any // NULL keeps the stored identity
	if identity != nil {
		ident = identity
	}
	res, err := s.exec(ctx, qUpdateGrantUpstream, ident, sealed, micros(expiry), k, expectedVersion, now)
	if err := affected("update grant upstream", res, err); !errors.Is(err, store.ErrNotFound) {
		return err
	}
	// Tell a lost race (the grant is live but at another version) from a missing grant.
	var live bool
	if err := s.writeRow(ctx, qGrantLive, k, now).Scan(&live); err != nil {
		return mapErr("update grant upstream", err)
	}
	if live {
		return store.ErrConflict
	}
	return store.ErrNotFound
}

// ListGrants implements store.Store.
func (s *Store) ListGrants(ctx context.Context, f store.GrantFilter) ([]*store.Grant, error) {
	rows, err := s.r.QueryContext(ctx, qListGrants, nowMicros(), f.UserKey, f.UserKey, f.ClientID, f.ClientID)
	if err != nil {
		return nil, mapErr("list grants", err)
	}
	defer rows.Close()
	out, err := store.CollectRows(rows, scanGrant)
	return out, mapErr("list grants", err)
}

// A refresh token's grant ID is its grant's (grant_n is the grant's row).
// Its hash is not read back: tokens are only read by their key, and the
// key of a hash is unique to it (store.KeyBytes), so the hash is the one
// asked for. Since migration 0003 the hash column is written empty: 80
// bytes less in every row (a rotation's UPDATE then splits leaves less
// often, and more rows share a page).
const refreshColsT = `g.id, t.client_id, t.created_at, t.expires_at, t.rotated_at, t.replaced_by`

const (
	// No row is inserted when the grant does not exist (ErrNotFound). ?9,
	// when set, is the grant's row as a rotation read it from the old
	// token: found by rowid, the grant's key index is not read.
	qInsertRefresh = `INSERT INTO refresh_tokens (k, grant_n, hash, client_id, created_at, expires_at, rotated_at, replaced_by)
		SELECT ?1, n, ?2, ?3, ?4, ?5, ?6, ?7 FROM grants WHERE n = ifnull(?9, (SELECT n FROM grants WHERE k = ?8)) AND k = ?8`
	// By the token's key alone; the caller checks the expiry (see qGetRefreshGrant).
	qGetRefresh = `SELECT ` + refreshColsT + ` FROM refresh_tokens t JOIN grants g ON g.n = t.grant_n WHERE t.k = ?`
	// Only a current token of a grant that is not revoked: the database
	// decides, whatever the caller (or refreshCache) read before.
	qRotateRefresh = `UPDATE refresh_tokens SET rotated_at = ?, replaced_by = ?
		WHERE k = ? AND rotated_at = 0 AND (expires_at = 0 OR expires_at > ?)
		AND (SELECT revoked FROM grants WHERE n = refresh_tokens.grant_n) = 0 RETURNING grant_n`
	// A token and its grant, by the token's key alone: GetRefreshTokenGrant
	// checks both expiries. Bound in SQL, they made SQLite prepare the
	// join again at every step, as the planner's choice depends on them.
	qGetRefreshGrant = `SELECT ` + refreshColsT + `, ` + grantColsG + `
		FROM refresh_tokens t JOIN grants g ON g.n = t.grant_n WHERE t.k = ?`
	qRefreshLive = `SELECT EXISTS (SELECT 1 FROM refresh_tokens t JOIN grants g ON g.n = t.grant_n
		WHERE t.k = ? AND (t.expires_at = 0 OR t.expires_at > ?) AND g.revoked = 0)`
	qRevokeRefresh = `DELETE FROM refresh_tokens WHERE grant_n = (SELECT n FROM grants WHERE k = ?)`
)

// refreshArgs are qInsertRefresh's arguments; grantN is the grant's row
// if known (nil: found by the grant's key).
func refreshArgs(t *store.RefreshToken, grantN any) []any {
	return []any{key(t.Hash), "", t.ClientID, micros(t.CreatedAt), micros(t.ExpiresAt), micros(t.RotatedAt), tokenRef(t.ReplacedBy),
		store.GrantKeyBytes(t.GrantID), grantN}
}

// tokenRef is how replaced_by stores the hash of a successor: a
// time-ordered token's hash as its 40 bytes (a BLOB, as its key), any other
// hash as given (TEXT); refTokenHash reverses it.
func tokenRef(h string) any {
	if len(h) == store.OrderedHashLen {
		if k := store.KeyBytes(h); len(k) == store.OrderedHashLen/2 {
			return k
		}
	}
	return h
}

func refTokenHash(v any) string {
	switch v := v.(type) {
	case []byte:
		return hex.EncodeToString(v)
	case string:
		return v
	}
	return ""
}

// insertRefresh inserts t in tx: ErrNotFound if its grant does not exist.
// grantN is the row of the grant t probably belongs to, or nil.
func (s *Store) insertRefresh(ctx context.Context, tx *rawConn, t *store.RefreshToken, grantN any) error {
	res, err := tx.exec(ctx, qInsertRefresh, refreshArgs(t, grantN)...)
	err = affected("create refresh token", res, err)
	if errors.Is(err, store.ErrNotFound) && grantN != nil {
		return s.insertRefresh(ctx, tx, t, nil) // another grant than guessed
	}
	return err
}

// refreshRow is where a refresh_tokens row is scanned to (see grantRow).
type refreshRow struct {
	t                         store.RefreshToken
	created, expires, rotated int64
	replacedBy                any // see tokenRef
}

func (r *refreshRow) dest() []any {
	t := &r.t
	return []any{&t.GrantID, &t.ClientID, &r.created, &r.expires, &r.rotated, &r.replacedBy}
}

// token returns the token of hash, the hash it was read by.
func (r *refreshRow) token(hash string) *store.RefreshToken {
	r.t.Hash, r.t.ReplacedBy = hash, refTokenHash(r.replacedBy)
	r.t.CreatedAt, r.t.ExpiresAt, r.t.RotatedAt = fromMicros(r.created), fromMicros(r.expires), fromMicros(r.rotated)
	return &r.t
}

// GetRefreshToken implements store.Store, on the writer (see warmRow).
func (s *Store) GetRefreshToken(ctx context.Context, hash string) (*store.RefreshToken, error) {
	var r refreshRow
	if err := s.warmRow(ctx, qGetRefresh, key(hash)).Scan(r.dest()...); err != nil {
		return nil, mapErr("get refresh token", err)
	}
	if r.expires != 0 && r.expires <= nowMicros() {
		return nil, store.ErrNotFound
	}
	return r.token(hash), nil
}

// GetRefreshTokenGrant implements store.Store: from refreshCache, or one
// query on the writer (see warmRow), the token by its key and its grant by
// primary key, which refreshCache then keeps.
func (s *Store) GetRefreshTokenGrant(ctx context.Context, hash string) (*store.RefreshToken, *store.Grant, error) {
	if t, g, ok := s.rc.get(hash, nowMicros()); ok {
		return t, g, nil
	}
	gen := s.rc.generation()
	var row struct {
		t refreshRow
		g grantRow
	}
	err := s.warmRow(ctx, qGetRefreshGrant, key(hash)).Scan(append(row.t.dest(), row.g.dest()...)...)
	if err != nil {
		return nil, nil, mapErr("get refresh token and grant", err)
	}
	// Live as in qGetRefresh and qGetGrant: no expiry, or a later one.
	if now := nowMicros(); (row.t.expires != 0 && row.t.expires <= now) || (row.g.expires != 0 && row.g.expires <= now) {
		return nil, nil, store.ErrNotFound
	}
	g, err := row.g.grant()
	if err != nil {
		return nil, nil, mapErr("get refresh token and grant", err)
	}
	t := row.t.token(hash)
	s.rc.put(t, g, gen)
	return t, g, nil
}

// RotateRefreshToken implements store.Store: in one write transaction
// (shared with concurrent callers, see write), an UPDATE that only matches
// a current token, then the successor's INSERT. fn reports nothing but
// its error, so a second run (see write) answers as the first would have.
func (s *Store) RotateRefreshToken(ctx context.Context, oldHash string, next *store.RefreshToken, now time.Time) error {
	k, rotatedAt := key(oldHash), micros(now)
	err := s.write(ctx, func(ctx context.Context, tx *rawConn) error {
		nowUS := nowMicros()
		var grantN int64
		if err := tx.row(ctx, qRotateRefresh, rotatedAt, tokenRef(next.Hash), k, nowUS).Scan(&grantN); err != nil {
			if err := mapErr("rotate refresh token", err); !errors.Is(err, store.ErrNotFound) {
				return err
			}
			// Not current: already rotated (a conflict), or unknown,
			// expired or of a revoked grant.
			var live bool
			if err := tx.row(ctx, qRefreshLive, k, nowUS).Scan(&live); err != nil {
				return mapErr("rotate refresh token", err)
			}
			if live {
				return store.ErrConflict
			}
			return store.ErrNotFound
		}
		return s.insertRefresh(ctx, tx, next, grantN)
	})
	if err != nil {
		s.rc.drop(oldHash)
		return err
	}
	s.rc.rotated(oldHash, next)
	return nil
}

// RevokeRefreshTokensForGrant implements store.Store.
func (s *Store) RevokeRefreshTokensForGrant(ctx context.Context, grantID string) error {
	defer s.rc.dropGrant(grantID)
	_, err := s.exec(ctx, qRevokeRefresh, store.GrantKeyBytes(grantID))
	return mapErr("revoke refresh tokens", err)
}

const (
	qGetConsent  = `SELECT user_key, client_id, scopes, created_at FROM consents WHERE user_k = ? AND client_k = ?`
	qSaveConsent = `INSERT INTO consents (user_k, client_k, user_key, client_id, scopes, created_at)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (user_k, client_k) DO UPDATE SET scopes = excluded.scopes, created_at = excluded.created_at`
	qDeleteConsent = `DELETE FROM consents WHERE user_k = ? AND client_k = ?`
)

// GetConsent implements store.Store.
func (s *Store) GetConsent(ctx context.Context, userKey, clientID string) (*store.Consent, error) {
	var c store.Consent
	var scopes string
	var created int64
	err := s.readRow(ctx, qGetConsent, key(userKey), key(clientID)).
		Scan(&c.UserKey, &c.ClientID, &scopes, &created)
	if err != nil {
		return nil, mapErr("get consent", err)
	}
	if c.Scopes, err = decodeList(scopes); err != nil {
		return nil, mapErr("get consent", err)
	}
	c.CreatedAt = fromMicros(created)
	return &c, nil
}

// SaveConsent implements store.Store.
func (s *Store) SaveConsent(ctx context.Context, c *store.Consent) error {
	_, err := s.exec(ctx, qSaveConsent,
		key(c.UserKey), key(c.ClientID), c.UserKey, c.ClientID, encodeList(c.Scopes), micros(c.CreatedAt))
	return mapErr("save consent", err)
}

// DeleteConsent implements store.Store.
func (s *Store) DeleteConsent(ctx context.Context, userKey, clientID string) error {
	res, err := s.exec(ctx, qDeleteConsent, key(userKey), key(clientID))
	return affected("delete consent", res, err)
}

const (
	qListKeys  = `SELECT id, algorithm, private, public, status, created_at, retire_at FROM signing_keys ORDER BY created_at, id`
	qInsertKey = `INSERT INTO signing_keys (k, id, algorithm, private, public, status, created_at, retire_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`
	qUpdateKey = `UPDATE signing_keys SET status = ?1, retire_at = ?2, private = coalesce(?3, private) WHERE k = ?4`
	qDeleteKey = `DELETE FROM signing_keys WHERE k = ?`
)

// ListSigningKeys implements store.Store.
func (s *Store) ListSigningKeys(ctx context.Context) ([]*store.SigningKey, error) {
	st, err := s.rs.get(qListKeys)
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(ctx)
	if err != nil {
		return nil, mapErr("list signing keys", err)
	}
	defer rows.Close()
	out, err := store.CollectRows(rows, scanKey)
	return out, mapErr("list signing keys", err)
}

func scanKey(row scanner) (*store.SigningKey, error) {
	var k store.SigningKey
	var created, retire int64
	if err := row.Scan(&k.ID, &k.Algorithm, &k.Private, &k.Public, &k.Status, &created, &retire); err != nil {
		return nil, err
	}
	k.CreatedAt, k.RetireAt = fromMicros(created), fromMicros(retire)
	return &k, nil
}

// CreateSigningKey implements store.Store.
func (s *Store) CreateSigningKey(ctx context.Context, k *store.SigningKey) error {
	_, err := s.exec(ctx, qInsertKey,
		key(k.ID), k.ID, k.Algorithm, k.Private, k.Public, k.Status, micros(k.CreatedAt), micros(k.RetireAt))
	return mapErr("create signing key", err)
}

// UpdateSigningKey implements store.Store.
func (s *Store) UpdateSigningKey(ctx context.Context, k *store.SigningKey) error {
	res, err := s.exec(ctx, qUpdateKey, k.Status, micros(k.RetireAt), store.NilIfEmpty(k.Private), key(k.ID))
	return affected("update signing key", res, err)
}

// DeleteSigningKey implements store.Store.
func (s *Store) DeleteSigningKey(ctx context.Context, id string) error {
	res, err := s.exec(ctx, qDeleteKey, key(id))
	return affected("delete signing key", res, err)
}

// sweepBatch is how many rows one DELETE of DeleteExpired removes. Each
// batch is its own short write transaction on the writer connection, so
// token requests queued for it go between two batches instead of waiting
// for a whole sweep (100k expired grants would hold the writer for
// seconds). A variable for tests.
var sweepBatch = 500

// sweepWindow is how many rows one read of a table walk (see walkExpired)
// visits. A variable for tests.
var sweepWindow = 2000

// afterSweepBatch, when set (by tests), runs after each committed batch,
// while the sweep holds no transaction and no connection.
var afterSweepBatch func()

// Grants and refresh tokens have no expiry index (migration 0003: every
// exchange and rotation paid one more b-tree insert for it, and a WAL frame
// per batch). Their rows are found by walking the table in rowid order
// from a read connection, sweepWindow rows per read (?1 = the last rowid
// seen, ?2 = now, ?3 = the window), and deleted by rowid on the writer,
// sweepBatch at a time (?1 = a JSON array of rowids, ?2 = now). A TTL can
// differ per client, so rows do not expire in rowid order: the walk visits
// every row, and each delete checks the expiry again.
const (
	qWalkRefresh = `SELECT rowid, expires_at > 0 AND expires_at <= ?2 FROM refresh_tokens WHERE rowid > ?1
		ORDER BY rowid LIMIT ?3`
	qWalkGrants = `SELECT n, expires_at > 0 AND expires_at <= ?2 FROM grants WHERE n > ?1 ORDER BY n LIMIT ?3`
	qDelRefresh = `DELETE FROM refresh_tokens WHERE rowid IN (SELECT value FROM json_each(?1))
		AND expires_at > 0 AND expires_at <= ?2`
	// The tokens of expiring grants go first, so the count includes them
	// (the ON DELETE CASCADE would remove them silently).
	qDelGrantTokens = `DELETE FROM refresh_tokens WHERE grant_n IN
		(SELECT n FROM grants WHERE n IN (SELECT value FROM json_each(?1)) AND expires_at > 0 AND expires_at <= ?2)`
	qDelGrants = `DELETE FROM grants WHERE n IN (SELECT value FROM json_each(?1)) AND expires_at > 0 AND expires_at <= ?2`
)

// sweepQueries delete one batch each (?1 = now, ?2 = batch size) of the
// tables that keep their partial expiry index (no token request inserts
// into them).
var sweepQueries = []string{
	`DELETE FROM auth_codes WHERE rowid IN (SELECT rowid FROM auth_codes WHERE expires_at > 0 AND expires_at <= ?1 LIMIT ?2)`,
	`DELETE FROM auth_requests WHERE rowid IN (SELECT rowid FROM auth_requests WHERE expires_at > 0 AND expires_at <= ?1 LIMIT ?2)`,
	`DELETE FROM clients WHERE rowid IN (SELECT rowid FROM clients WHERE expires_at > 0 AND expires_at <= ?1 LIMIT ?2)`,
}

// walkQueries are the sweep's statements for the tables it walks (for the
// query plan test).
var walkQueries = []string{qWalkRefresh, qWalkGrants, qDelRefresh, qDelGrantTokens, qDelGrants}

// DeleteExpired implements store.Store: refresh tokens, then grants (with
// their tokens), by walking their tables; then codes, requests and clients
// through their expiry indexes, in batches of sweepBatch rows.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time) (int64, error) {
	n := micros(now)
	total, err := s.walkExpired(ctx, qWalkRefresh, n, func(ids string) (int64, error) {
		return s.sweepTx(ctx, func(tx *sql.Tx) (sql.Result, error) { return tx.ExecContext(ctx, qDelRefresh, ids, n) })
	})
	if err != nil {
		return total, err
	}
	c, err := s.walkExpired(ctx, qWalkGrants, n, func(ids string) (int64, error) {
		var tokens int64
		c, err := s.sweepTx(ctx, func(tx *sql.Tx) (sql.Result, error) {
			res, err := tx.ExecContext(ctx, qDelGrantTokens, ids, n)
			if err != nil {
				return nil, err
			}
			if tokens, err = res.RowsAffected(); err != nil {
				return nil, err
			}
			return tx.ExecContext(ctx, qDelGrants, ids, n)
		})
		if err != nil {
			return 0, err
		}
		return c + tokens, nil
	})
	total += c
	if err != nil {
		return total, err
	}
	for _, q := range sweepQueries {
		for {
			if err := ctx.Err(); err != nil {
				return total, err
			}
			res, err := s.w.ExecContext(ctx, q, n, sweepBatch)
			if err != nil {
				return total, mapErr("delete expired", err)
			}
			c, err := res.RowsAffected()
			if err != nil {
				return total, mapErr("delete expired", err)
			}
			total += c
			if afterSweepBatch != nil {
				afterSweepBatch()
			}
			if c < int64(sweepBatch) {
				break
			}
		}
	}
	return total, nil
}

// walkExpired walks a table with walk (qWalkRefresh, qWalkGrants) on the
// read pool and calls del with the rowids it found expired at now, as a
// JSON array of at most sweepBatch, and returns what del removed. Each read
// visits at most sweepWindow rows: no read holds a snapshot for the whole
// table, and no delete waits for the walk.
func (s *Store) walkExpired(ctx context.Context, walk string, now int64, del func(ids string) (int64, error)) (int64, error) {
	var (
		total int64
		after int64 = math.MinInt64
		found []int64
		ids   []byte
	)
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		seen, err := s.walkWindow(ctx, walk, &after, now, &found)
		if err != nil {
			return total, err
		}
		for len(found) >= sweepBatch || (seen < sweepWindow && len(found) > 0) {
			batch := found[:min(len(found), sweepBatch)]
			ids = append(ids[:0], '[')
			for i, id := range batch {
				if i > 0 {
					ids = append(ids, ',')
				}
				ids = strconv.AppendInt(ids, id, 10)
			}
			ids = append(ids, ']')
			c, err := del(string(ids))
			total += c
			if err != nil {
				return total, mapErr("delete expired", err)
			}
			if afterSweepBatch != nil {
				afterSweepBatch()
			}
			found = found[:copy(found, found[len(batch):])]
		}
		if seen < sweepWindow {
			return total, nil
		}
	}
}

// walkWindow reads the next sweepWindow rows after *after, appends the
// expired ones' rowids to found, moves *after to the last row read and
// returns how many rows it read.
func (s *Store) walkWindow(ctx context.Context, walk string, after *int64, now int64, found *[]int64) (int, error) {
	rows, err := s.r.QueryContext(ctx, walk, *after, now, sweepWindow)
	if err != nil {
		return 0, mapErr("delete expired", err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var id int64
		var expired bool
		if err := rows.Scan(&id, &expired); err != nil {
			return seen, mapErr("delete expired", err)
		}
		seen++
		*after = id
		if expired {
			*found = append(*found, id)
		}
	}
	return seen, mapErr("delete expired", rows.Err())
}

// sweepTx runs one sweep batch's deletes in a write transaction of its own
// and returns the rows the last statement deleted.
func (s *Store) sweepTx(ctx context.Context, fn func(tx *sql.Tx) (sql.Result, error)) (int64, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	res, err := fn(tx)
	if err != nil {
		return 0, err
	}
	c, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	return c, commit(tx)
}
