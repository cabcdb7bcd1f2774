// Package ratelimit limits request rates with in-process token buckets
// (golang.org/x/time/rate), one bucket per key: the client IP before
// authentication, the principal's key after.
//
// By default the buckets live in the gateway's memory, so there is no store
// that can fail; a limit is enforced or the process is not running. The costs
// of that choice: every replica has its own buckets (with N replicas behind a
// load balancer a client gets up to N times the rate), and a restart refills
// all buckets. With `shared: {store: postgres}` the limits hold across
// replicas (see Shared), and what happens when PostgreSQL cannot answer is
// chosen per limit (OnError).
//
// Memory is bounded: at most MaxKeys buckets are kept. Buckets idle for
// IdleTTL (never less than the time a bucket takes to refill, so dropping
// one gives its key nothing it would not have had anyway) are evicted
// lazily; when the table is full the least recently used bucket is evicted
// even if not idle, which may hand that key a fresh burst — the price of
// bounded memory under a flood of distinct keys (counted in
// mcpgate_ratelimit_evictions_total). Use IPKey so that an IPv6 client cannot
// mint a new key per address of its /64.
package ratelimit

import (
	"cmp"
	"container/list"
	"context"
	"crypto/sha256"
	"fmt"
	"hash/maphash"
	"math"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/mcpgate/mcpgate/internal/policy"
	"github.com/mcpgate/mcpgate/internal/validate"
)

// Limit is a token bucket: RPS tokens per second, up to Burst.
type Limit struct {
	// RPS is the sustained rate, in requests per second.
	RPS float64 `yaml:"rps"`
	// Burst is how many requests may arrive at once above the rate.
	Burst int `yaml:"burst"`
}

// Config is the `rate_limit:` section.
type Config struct {
	Enabled *bool `yaml:"enabled"` // default true
	// PerIP applies before authentication, keyed by the client address
	// (IPv6: its /64). Default 50 rps, burst 100: room for several agents
	// behind one NAT, while a single scanner is slowed. Over a limit: 429
	// with Retry-After and a JSON-RPC error -32029.
	PerIP Limit `yaml:"per_ip"`
	// PerUser applies per principal (issuer + subject) after
	// authentication. Default 20 rps, burst 40: an agent calling tools in a
	// tight loop is far below that. A body of only responses and
	// notifications (a client answering a sampling or elicitation request)
	// is never limited.
	PerUser Limit `yaml:"per_user"`
	// PerTool limits tools/call per user and tool, for the tools operators
	// want to throttle (destructive ones). A call is checked against every
	// rule whose tools (and backends) match, after the policy allowed it.
	// None by default.
	PerTool []ToolLimit   `yaml:"per_tool"`
	MaxKeys int           `yaml:"max_keys"` // buckets per limiter; default 100000 (about 25 MB when full)
	IdleTTL time.Duration `yaml:"idle_ttl"` // default 10m
	// Shared keeps the buckets in a store every replica uses, so N replicas
	// allow the configured rate, not N times it. Off by default (in-process
	// buckets: right for one replica).
	Shared SharedConfig `yaml:"shared"`
}

// ToolLimit is one `rate_limit.per_tool` rule.
type ToolLimit struct {
	// Tools are glob patterns over tool names (as in policy roles).
	Tools []string `yaml:"tools"`
	// Backends restricts the rule to these backends (by name); empty means
	// every backend.
	Backends []string `yaml:"backends"`
	// RPS is the sustained rate of each (user, backend, tool), in calls per
	// second (0.0167: one a minute).
	RPS float64 `yaml:"rps"`
	// Burst is how many calls of the tool a user may make at once.
	Burst int `yaml:"burst"`
}

// Defaults.
var (
	DefaultPerIP   = Limit{RPS: 50, Burst: 100}
	DefaultPerUser = Limit{RPS: 20, Burst: 40}
)

const (
	DefaultMaxKeys = 100_000
	DefaultIdleTTL = 10 * time.Minute
)

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.Enabled == nil {
		t := true
		c.Enabled = &t
	}
	if c.PerIP == (Limit{}) {
		c.PerIP = DefaultPerIP
	}
	if c.PerUser == (Limit{}) {
		c.PerUser = DefaultPerUser
	}
	c.MaxKeys = cmp.Or(c.MaxKeys, DefaultMaxKeys)
	c.IdleTTL = cmp.Or(c.IdleTTL, DefaultIdleTTL)
	c.Shared.SetDefaults()
}

// Validate reports every problem under path (e.g. "rate_limit").
func (c *Config) Validate(path string, p *validate.Problems) {
	c.PerIP.Validate(validate.Join(path, "per_ip"), p)
	c.PerUser.Validate(validate.Join(path, "per_user"), p)
	for i, t := range c.PerTool {
		at := validate.Join(path, fmt.Sprintf("per_tool[%d]", i))
		Limit{RPS: t.RPS, Burst: t.Burst}.Validate(at, p)
		if len(t.Tools) == 0 {
			p.Add(validate.Join(at, "tools"), "must name at least one tool pattern")
		}
		for j, pat := range t.Tools {
			if _, err := policy.CompileGlob(pat); err != nil {
				p.Add(validate.Join(at, fmt.Sprintf("tools[%d]", j)), "%v", err)
			}
		}
		for j, b := range t.Backends {
			if b == "" {
				p.Add(validate.Join(at, fmt.Sprintf("backends[%d]", j)), "must not be empty")
			}
		}
	}
	c.Shared.validate(validate.Join(path, "shared"), p)
	if c.MaxKeys < 1 {
		p.Add(validate.Join(path, "max_keys"), "must be at least 1 (got %d)", c.MaxKeys)
	}
	if c.IdleTTL < 0 {
		p.Add(validate.Join(path, "idle_ttl"), "must not be negative (got %s)", c.IdleTTL)
	}
}

// Validate reports the problems of a limit at path at (the authorization
// server's limits use it too).
func (l Limit) Validate(at string, p *validate.Problems) {
	if !(l.RPS > 0) || math.IsInf(l.RPS, 0) {
		p.Add(validate.Join(at, "rps"), "must be a positive number (got %v)", l.RPS)
	}
	if l.Burst < 1 {
		p.Add(validate.Join(at, "burst"), "must be at least 1 (got %d)", l.Burst)
	}
}

// Taker is one limit as the gateway asks it: may key make one more request?
// When not, retryAfter says how long until it may. *Limiter (in-process) and
// *Shared (across replicas) implement it.
type Taker interface {
	Take(ctx context.Context, key string) (ok bool, retryAfter time.Duration)
}

// Set holds the limiters the gateway uses. When limiting is disabled PerIP
// and PerUser are nil *Limiters, which allow everything, and PerTool is nil.
type Set struct {
	PerIP   Taker
	PerUser Taker
	PerTool *ToolLimits

	collectors []prometheus.Collector
	closers    []func()
}

// NewSet builds the limiters of cfg (defaults applied to a copy). With a
// shared store it connects to it (see OpenShared); the caller closes the
// Set.
func NewSet(ctx context.Context, cfg Config, opts SharedOptions) (*Set, error) {
	cfg.SetDefaults()
	if !*cfg.Enabled {
		return &Set{PerIP: (*Limiter)(nil), PerUser: (*Limiter)(nil)}, nil
	}
	s := &Set{}
	var db *sharedStore
	if cfg.Shared.Store != "" {
		var err error
		if db, err = openSharedStore(ctx, cfg.Shared, opts); err != nil {
			return nil, err
		}
		s.closers = append(s.closers, db.close)
		s.collectors = append(s.collectors, db.errors)
	}
	// build makes one limit: in-process, or shared with an in-process
	// fallback.
	build := func(name string, l Limit, onError string) Taker {
		local := New(name, l, cfg.MaxKeys, cfg.IdleTTL)
		s.collectors = append(s.collectors, local.evictions, local.keys)
		if db == nil {
			return local
		}
		return db.limit(name, l, onError, local)
	}
	s.PerIP = build("ip", cfg.PerIP, cfg.Shared.OnError.PerIP)
	s.PerUser = build("user", cfg.PerUser, cfg.Shared.OnError.PerUser)
	if len(cfg.PerTool) > 0 {
		s.PerTool = &ToolLimits{}
		for i, t := range cfg.PerTool {
			l := Limit{RPS: t.RPS, Burst: t.Burst}
			if err := s.PerTool.add(t, build(fmt.Sprintf("tool_%d", i), l, cfg.Shared.OnError.PerTool)); err != nil {
				return nil, fmt.Errorf("rate_limit.per_tool[%d]: %w", i, err)
			}
		}
	}
	return s, nil
}

// Collectors returns the limiters' Prometheus collectors for registration.
func (s *Set) Collectors() []prometheus.Collector { return s.collectors }

// Close releases the shared store's connections, if any.
func (s *Set) Close() {
	for _, c := range s.closers {
		c()
	}
}

// shards spread lock contention; each has its own LRU.
const shards = 32

// maxKeyLen: longer keys (e.g. issuer#subject) are stored as a SHA-256 so a
// key costs a bounded amount of memory.
const maxKeyLen = 64

// boundKey is the key the limiter tables store for key: its SHA-256 when
// it is longer than maxKeyLen.
func boundKey(key string) string {
	if len(key) > maxKeyLen {
		sum := sha256.Sum256([]byte(key))
		return string(sum[:])
	}
	return key
}

// Limiter is a set of token buckets keyed by string. Safe for concurrent use.
type Limiter struct {
	limit     Limit
	idle      time.Duration
	perShard  int
	seed      maphash.Seed
	now       func() time.Time
	shards    [shards]shard
	evictions prometheus.Counter
	keys      prometheus.GaugeFunc
}

type shard struct {
	mu  sync.Mutex
	lru list.List // of *bucket, most recently used first
	m   map[string]*list.Element
}

type bucket struct {
	key  string
	lim  *rate.Limiter
	seen time.Time
}

// New returns a Limiter holding at most maxKeys buckets (rounded up to a
// multiple of the shard count). name labels its metrics ("ip", "user"). l
// must be valid (see Config.Validate).
func New(name string, l Limit, maxKeys int, idleTTL time.Duration) *Limiter {
	refill := time.Duration(0)
	if l.RPS > 0 {
		refill = time.Duration(float64(l.Burst) / l.RPS * float64(time.Second))
	}
	lim := &Limiter{
		limit:    l,
		idle:     max(idleTTL, refill),
		perShard: max(1, (maxKeys+shards-1)/shards),
		seed:     maphash.MakeSeed(),
		now:      time.Now,
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "mcpgate_ratelimit_evictions_total",
			Help:        "Rate-limit buckets evicted while still in use because the key table was full.",
			ConstLabels: prometheus.Labels{"limiter": name},
		}),
	}
	for i := range lim.shards {
		lim.shards[i].m = map[string]*list.Element{}
	}
	lim.keys = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "mcpgate_ratelimit_keys",
		Help:        "Rate-limit buckets currently held.",
		ConstLabels: prometheus.Labels{"limiter": name},
	}, func() float64 { return float64(lim.Len()) })
	return lim
}

// Take is Allow, as a Taker.
func (l *Limiter) Take(_ context.Context, key string) (bool, time.Duration) { return l.Allow(key) }

// Allow takes one token from key's bucket. When none is left it returns
// false and how long until one is (for Retry-After, RFC 9110 §10.2.3, rounded
// up to whole seconds). A nil Limiter allows everything.
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	key = boundKey(key)
	s := &l.shards[maphash.String(l.seed, key)%shards]
	now := l.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.get(key, now, l)
	if b.lim.AllowN(now, 1) {
		return true, 0
	}
	if !(l.limit.RPS > 0) {
		return false, time.Hour // misconfigured: fail closed
	}
	missing := 1 - b.lim.TokensAt(now)
	return false, time.Duration(math.Ceil(missing / l.limit.RPS * float64(time.Second)))
}

// get returns key's bucket, creating it and evicting as needed.
func (s *shard) get(key string, now time.Time, l *Limiter) *bucket {
	if e, ok := s.m[key]; ok {
		b := e.Value.(*bucket)
		b.seen = now
		s.lru.MoveToFront(e)
		return b
	}
	// Drop idle buckets from the cold end; they would be full again anyway.
	for e := s.lru.Back(); e != nil && now.Sub(e.Value.(*bucket).seen) >= l.idle; e = s.lru.Back() {
		s.remove(e)
	}
	if s.lru.Len() >= l.perShard {
		s.remove(s.lru.Back())
		l.evictions.Inc()
	}
	b := &bucket{key: key, lim: rate.NewLimiter(rate.Limit(l.limit.RPS), l.limit.Burst), seen: now}
	s.m[key] = s.lru.PushFront(b)
	return b
}

func (s *shard) remove(e *list.Element) {
	s.lru.Remove(e)
	delete(s.m, e.Value.(*bucket).key)
}

// Len returns the number of buckets held.
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += s.lru.Len()
		s.mu.Unlock()
	}
	return n
}

// IPKey is the rate-limit key of a client address: the address itself for
// IPv4, its /64 prefix for IPv6 (one subscriber usually holds a whole /64).
func IPKey(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.String()
	}
	p, err := ip.Prefix(64)
	if err != nil {
		return ip.String()
	}
	return p.String()
}
