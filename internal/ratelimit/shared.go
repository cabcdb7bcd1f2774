package ratelimit

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/internal/validate"
)

// Shared-store choices.
const (
	SharedPostgres = "postgres"

	OnErrorLocal = "local" // count in this replica's own bucket
	OnErrorDeny  = "deny"  // refuse: 429
)

// Shared defaults.
const (
	DefaultSharedTimeout  = 100 * time.Millisecond
	DefaultSharedMaxConns = 8
)

// SharedConfig is `rate_limit.shared`.
type SharedConfig struct {
	// Store is "" (off: every replica counts on its own) or "postgres": the
	// buckets live in an UNLOGGED table of the store's database, so
	// store.driver must be postgres. The table holds only counters, which are
	// worth nothing after a crash: not writing them to the WAL is what makes
	// one check a cheap single-row upsert.
	Store string `yaml:"store"`
	// Timeout bounds one check (default 100ms). Past it, or when the
	// database fails, OnError applies.
	Timeout time.Duration `yaml:"timeout"`
	// MaxConns is the size of the limiter's own connection pool (default 8).
	MaxConns int `yaml:"max_conns"`
	// OnError says, per limit, what a check does when the store cannot
	// answer: "local" (default) falls back to this replica's in-process
	// bucket (the limit then holds per replica, as without sharing); "deny"
	// refuses the request with 429 (fail closed). Either way the failure is
	// logged and counted in mcpgate_ratelimit_shared_errors_total.
	OnError OnError `yaml:"on_error"`
}

// OnError is the per-limit failure behaviour of a shared limiter.
type OnError struct {
	// PerIP: local (default) or deny, for the per-address limit.
	PerIP string `yaml:"per_ip"`
	// PerUser: local (default) or deny, for the per-user limit.
	PerUser string `yaml:"per_user"`
	// PerTool: local (default) or deny, for every per_tool rule.
	PerTool string `yaml:"per_tool"`
}

// SetDefaults fills unset fields.
func (c *SharedConfig) SetDefaults() {
	c.Timeout = cmp.Or(c.Timeout, DefaultSharedTimeout)
	c.MaxConns = cmp.Or(c.MaxConns, DefaultSharedMaxConns)
	for _, a := range []*string{&c.OnError.PerIP, &c.OnError.PerUser, &c.OnError.PerTool} {
		if *a == "" {
			*a = OnErrorLocal
		}
	}
}

func (c *SharedConfig) validate(path string, p *validate.Problems) {
	if c.Store != "" && c.Store != SharedPostgres {
		p.Add(validate.Join(path, "store"), "must be empty (in-process limits) or %q (got %q)", SharedPostgres, c.Store)
	}
	if c.Timeout < time.Millisecond {
		p.Add(validate.Join(path, "timeout"), "must be at least 1ms (got %s)", c.Timeout)
	}
	if c.MaxConns < 1 {
		p.Add(validate.Join(path, "max_conns"), "must be at least 1 (got %d)", c.MaxConns)
	}
	for _, a := range []struct{ key, v string }{{"per_ip", c.OnError.PerIP}, {"per_user", c.OnError.PerUser}, {"per_tool", c.OnError.PerTool}} {
		if a.v != OnErrorLocal && a.v != OnErrorDeny {
			p.Add(validate.Join(path, "on_error", a.key), "must be %q or %q (got %q)", OnErrorLocal, OnErrorDeny, a.v)
		}
	}
}

// SharedOptions carries what the shared store needs from outside the
// `rate_limit` section.
type SharedOptions struct {
	// DSN is the PostgreSQL connection string (store.dsn).
	DSN string
	Log *slog.Logger
}

// sharedStore is the PostgreSQL side of shared limits: one pool, one table.
type sharedStore struct {
	pool    *pgxpool.Pool
	timeout time.Duration
	log     *slog.Logger
	errors  *prometheus.CounterVec

	logMu      sync.Mutex
	lastLog    time.Time
	suppressed int

	stop chan struct{}
	done chan struct{}
}

const createTable = `CREATE UNLOGGED TABLE IF NOT EXISTS mcpgate_rate_limits (
	k   bytea  PRIMARY KEY, -- SHA-256 of limiter name and key: bounded, and no user id in clear
	tat bigint NOT NULL     -- GCRA theoretical arrival time, µs since the epoch, database clock
)`

// takeSQL is one GCRA step (the generic cell rate algorithm, as in ATM
// traffic policing and redis-cell) in one statement: a request is allowed
// when the bucket's theoretical arrival time, pushed one interval ($2)
// further, is at most the burst tolerance ($3) ahead of now. The row lock
// of the upsert serializes replicas; the clock is the database's, so
// replicas' clock skew does not matter. The last subquery reads the
// snapshot from before the upsert (data-modifying CTEs are not visible to
// the rest of the statement), which gives the refused request's wait.
const takeSQL = `WITH c AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS now),
up AS (
	INSERT INTO mcpgate_rate_limits AS r (k, tat)
	SELECT $1, c.now + $2 FROM c
	ON CONFLICT (k) DO UPDATE SET tat = GREATEST(r.tat, EXCLUDED.tat - $2) + $2
	WHERE GREATEST(r.tat, EXCLUDED.tat - $2) + $2 - (EXCLUDED.tat - $2) <= $3
	RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM up), c.now, COALESCE((SELECT tat FROM mcpgate_rate_limits WHERE k = $1), 0) FROM c`

// sweepSQL deletes spent buckets in small batches: a row whose arrival time
// has passed is a full bucket, the same as no row.
const sweepSQL = `DELETE FROM mcpgate_rate_limits WHERE k IN (
	SELECT k FROM mcpgate_rate_limits
	WHERE tat < (extract(epoch FROM clock_timestamp()) * 1000000)::bigint LIMIT 1000)`

const sweepEvery = time.Minute

func openSharedStore(ctx context.Context, c SharedConfig, opts SharedOptions) (*sharedStore, error) {
	if opts.DSN == "" {
		return nil, errors.New("rate_limit.shared.store: postgres needs store.dsn")
	}
	pc, err := pgxpool.ParseConfig(opts.DSN)
	if err != nil {
		// pgx's message can quote the DSN, password included.
		return nil, errors.New("rate_limit.shared: store.dsn is not a valid PostgreSQL connection string")
	}
	pc.MaxConns = int32(c.MaxConns)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("rate_limit.shared: connecting to PostgreSQL: %w", err)
	}
	s := &sharedStore{
		pool: pool, timeout: c.Timeout, log: opts.Log,
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgate_ratelimit_shared_errors_total",
			Help: "Rate-limit checks the shared store could not answer, by limiter and by what was done instead (local: the replica's own bucket; deny: refused).",
		}, []string{"limiter", "action"}),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if err := s.create(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("rate_limit.shared: creating the limits table: %w", err)
	}
	go s.sweep()
	return s, nil
}

// create makes the table once, under an advisory lock, since replicas that
// start together would race in CREATE TABLE IF NOT EXISTS.
func (s *sharedStore) create(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('mcpgate_rate_limits'))`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, createTable)
		return err
	})
}

func (s *sharedStore) sweep() {
	defer close(s.done)
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			tag, err := s.pool.Exec(ctx, sweepSQL)
			cancel()
			if err != nil {
				s.log.Warn("rate limit: sweeping the shared table failed", "err", err)
				break
			}
			if tag.RowsAffected() < 1000 {
				break
			}
		}
	}
}

func (s *sharedStore) close() {
	close(s.stop)
	<-s.done
	s.pool.Close()
}

// limit returns a Taker for one limit, with local as its fallback.
func (s *sharedStore) limit(name string, l Limit, onError string, local *Limiter) *Shared {
	interval := int64(math.Ceil(float64(time.Second/time.Microsecond) / l.RPS))
	return &Shared{
		db: s, name: name, local: local, deny: onError == OnErrorDeny,
		interval: max(1, interval), tolerance: max(1, interval) * int64(l.Burst),
		failures: s.errors.WithLabelValues(name, onError),
	}
}

// failed logs a store failure, at most every 10 s per process with a count
// of those not logged, so that a database outage does not flood the log.
func (s *sharedStore) failed(name string, err error) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	if time.Since(s.lastLog) < 10*time.Second {
		s.suppressed++
		return
	}
	s.log.Warn("rate limit: the shared store did not answer; applying rate_limit.shared.on_error",
		"limiter", name, "err", err, "failures_not_logged", s.suppressed)
	s.lastLog, s.suppressed = time.Now(), 0
}

// Shared is one limit whose buckets live in PostgreSQL, shared by every
// replica.
type Shared struct {
	db                  *sharedStore
	name                string
	interval, tolerance int64 // µs: one request's share of the rate; burst × interval
	deny                bool
	local               *Limiter
	failures            prometheus.Counter
}

// Take asks the database; when it cannot answer in time it applies
// on_error.
func (s *Shared) Take(ctx context.Context, key string) (bool, time.Duration) {
	h := sha256.Sum256([]byte(s.name + "\x00" + key))
	qctx, cancel := context.WithTimeout(ctx, s.db.timeout)
	defer cancel()
	var ok bool
	var now, tat int64
	err := s.db.pool.QueryRow(qctx, takeSQL, h[:], s.interval, s.tolerance).Scan(&ok, &now, &tat)
	if err == nil {
		if ok {
			return true, 0
		}
		wait := tat + s.interval - s.tolerance - now
		return false, max(time.Duration(wait)*time.Microsecond, time.Millisecond)
	}
	if ctx.Err() != nil {
		// The client went away: nobody reads the answer, and the store is
		// not at fault.
		return false, 0
	}
	s.failures.Inc()
	s.db.failed(s.name, err)
	if s.deny {
		return false, time.Second
	}
	return s.local.Allow(key)
}
