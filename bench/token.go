package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/mcpgate/mcpgate/internal/authserver"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/idp"
	"github.com/mcpgate/mcpgate/internal/keys"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/backends"
)

// Token endpoint scenarios (run on their own: -scenarios token or scale).
const (
	scenarioToken = "token" // floor vs mcpgate: code exchange and refresh at each -token-c
	scenarioScale = "scale" // mcpgate refresh with -scale-grants stored grants, e.g. 1k vs 100k
)

const roleFloor = "floor"

// tokenOptions configure the token endpoint scenarios.
type tokenOptions struct {
	Scenario    string
	Conc        []int // concurrent clients, one measurement each
	Duration    time.Duration
	Warmup      time.Duration
	Rounds      int
	Grants      []int  // scale: stored grants of each instance, e.g. 1000,100000
	Store       string // sqlite | postgres
	PostgresDSN string // for -store postgres: each instance gets its own schema
	ProfileDir  string
	Progress    io.Writer
}

func (o *tokenOptions) check() error {
	var errs []error
	if len(o.Conc) == 0 {
		errs = append(errs, errors.New("-token-c: no concurrency"))
	}
	for _, c := range o.Conc {
		if c < 1 || c > maxConcurrency {
			errs = append(errs, fmt.Errorf("-token-c must be 1..%d", maxConcurrency))
		}
	}
	errs = append(errs, checkTiming(o.Duration, o.Warmup, o.Rounds)...)
	if o.Scenario == scenarioScale && len(o.Grants) < 2 {
		errs = append(errs, errors.New("-scale-grants needs at least two sizes (the first is the baseline)"))
	}
	for _, g := range o.Grants {
		if g < 1 || g > 1_000_000 {
			errs = append(errs, errors.New("-scale-grants must be 1..1000000"))
		}
	}
	switch o.Store {
	case store.DriverSQLite:
	case store.DriverPostgres:
		if o.PostgresDSN == "" {
			errs = append(errs, errors.New("-store postgres needs -pg DSN (or MCPGATE_TEST_POSTGRES_DSN)"))
		}
		if o.Scenario == scenarioToken {
			errs = append(errs, errors.New("-scenarios token compares with the SQLite floor: use -store sqlite"))
		}
	default:
		errs = append(errs, fmt.Errorf("-store must be sqlite or postgres (got %q)", o.Store))
	}
	return errors.Join(errs...)
}

func (o *tokenOptions) logf(format string, args ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, format+"\n", args...)
	}
}

// tokenResult is one measurement of one server at one concurrency.
type tokenResult struct {
	tally
	Window time.Duration
	CPU    time.Duration // of the server's process during the window
	Ran    bool          // out of codes before the window ended (the result is short)
}

func (r *tokenResult) rate() float64 { return float64(r.Requests) / r.Window.Seconds() }

// cpuPer is the server's CPU time per answered grant.
func (r *tokenResult) cpuPer() time.Duration {
	if r.Requests == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.Requests)
}

func (r *tokenResult) merge(o *tokenResult) {
	r.add(&o.tally)
	r.Window += o.Window
	r.CPU += o.CPU
	r.Ran = r.Ran || o.Ran
}

// asInstance is mcpgate as an authorization server in a child process (the
// gateway role: internal/server, as `mcpgate serve` runs it), and a seeder:
// an authorization server over the same store and encryption key inside the
// harness, which stores codes (authserver.IssueCode) and redeems them
// through its own token endpoint to make grants.
type asInstance struct {
	child   *child
	cfgPath string
	logPath string
	dbPath  string // SQLite
	base    string
	pprof   string
	seeder  *authserver.Server
	st      store.Store
	dropPG  func()
	client  string
	redir   string
}

const (
	benchVerifier = "bench-verifier-0123456789-0123456789-0123456789"
	benchUser     = "bench"
)

// asYAML is mcpgate's configuration for the token scenarios: the built-in
// authorization server with one static user, file audit (default fsync
// interval; AS_CODE_REDEEMED and AS_TOKEN_ISSUED are written before the
// answer), info logs, and the per-address limiters off (all load comes from
// 127.0.0.1; the limiter would answer 429).
func asYAML(listen, key, dir string, st store.Config, grace string) string {
	hash, _ := bcrypt.GenerateFromPassword([]byte("unused"), bcrypt.MinCost)
	extra := ""
	if grace != "" {
		extra = "    refresh_grace: " + grace + "\n"
	}
	return fmt.Sprintf(`listen: %s
public_url: http://%s
encryption_key: %s
log:
  level: info
auth:
  mode: authorization_server
  authorization_server:
    code_lifetime: 10m
%s    rate_limit:
      enabled: false
    upstream:
      type: static
      users: [{username: %s, password_hash: %q}]
rate_limit:
  per_ip: { rps: 1000000, burst: 1000000 }
  per_user: { rps: 1000000, burst: 1000000 }
backends:
  - name: demo
    url: http://127.0.0.1:9/mcp
store:
  driver: %s
  dsn: %q
audit:
  sink: file
  path: %s
`, listen, listen, key, extra, benchUser, hash, st.Driver, st.DSN, filepath.Join(dir, "audit.log"))
}

// startAS starts mcpgate's authorization server with its store in dir (or
// in a new schema of o.PostgresDSN) and its seeder.
func startAS(ctx context.Context, o *tokenOptions, dir string, grace string) (_ *asInstance, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	in := &asInstance{redir: "http://127.0.0.1:9/cb"}
	defer func() {
		if err != nil {
			in.stop()
		}
	}()
	in.dbPath = filepath.Join(dir, "mcpgate.db")
	sc := store.Config{Driver: store.DriverSQLite, DSN: in.dbPath}
	if o.Store == store.DriverPostgres {
		if sc.DSN, in.dropPG, err = pgSchema(ctx, o.PostgresDSN); err != nil {
			return nil, err
		}
		sc.Driver = store.DriverPostgres
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	k := make([]byte, 32)
	rand.Read(k)
	yaml := asYAML(addr, base64.StdEncoding.EncodeToString(k), dir, sc, grace)
	cfgPath := filepath.Join(dir, "mcpgate.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		return nil, err
	}
	in.cfgPath, in.logPath = cfgPath, filepath.Join(dir, "mcpgate.log")
	if err := in.startChild(o.ProfileDir != ""); err != nil {
		return nil, err
	}

	cfg, err := config.Parse([]byte(yaml), func(string) (string, bool) { return "", false }, config.Overrides{})
	if err != nil {
		return nil, err
	}
	raw, err := keys.ParseKey(cfg.EncryptionKey)
	if err != nil {
		return nil, err
	}
	sealer, err := keys.NewSealer(raw)
	if err != nil {
		return nil, err
	}
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	if in.st, err = backends.Open(ctx, cfg.Store, discard); err != nil {
		return nil, err
	}
	km, err := keys.NewManager(ctx, in.st, sealer, keys.Options{Algorithm: cfg.Auth.AuthorizationServer.SigningAlg})
	if err != nil {
		return nil, err
	}
	if in.seeder, err = authserver.New(cfg.Auth.AuthorizationServer, authserver.Deps{Store: in.st, Signer: km, Sealer: sealer, Logger: discard}); err != nil {
		return nil, err
	}
	in.client = "bench-" + rand.Text()
	err = in.st.CreateClient(ctx, &store.Client{ID: in.client, Name: "bench", RedirectURIs: []string{in.redir},
		GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"},
		TokenEndpointAuthMethod: "none", Kind: store.ClientKindDynamic, CreatedAt: time.Now()})
	return in, err
}

// startChild (re)starts the server process on its configuration and store.
func (in *asInstance) startChild(profiling bool) error {
	c, base, pp, err := startRole(roleGateway, in.cfgPath, in.logPath, profiling)
	if err != nil {
		return err
	}
	in.child, in.base, in.pprof = c, base, pp
	if _, err := waitHealthy(base+"/healthz", time.Now(), c.done); err != nil {
		return err
	}
	return nil
}

// release closes the seeder's store, so that the child is the only process
// on the database while it is measured, as `mcpgate serve` is. For SQLite it
// first moves the seeded writes out of the WAL into the database file and
// empties the WAL (TRUNCATE checkpoint, which syncs both files). Without
// that, the seeder's own checkpointer kept checkpointing the child's file
// from this process (a RESTART checkpoint holds the write lock while it
// waits for readers), and under disk load the child's first commit paid
// for syncing the seeder's megabytes of WAL: an instance measured right
// after seeding could answer nothing in a short window.
func (in *asInstance) release(ctx context.Context) error {
	if in.st == nil {
		return nil
	}
	err := in.st.Close()
	in.st, in.seeder = nil, nil
	if err != nil || in.dropPG != nil {
		return err
	}
	db, err := sql.Open("sqlite", in.dbPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	// The child's checkpointer may hold the checkpoint lock, for as long as
	// its fsync takes (a checkpoint does not wait for another): try again.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var busy, logFrames, moved int
		if err := db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &moved); err != nil {
			return fmt.Errorf("checkpoint after seeding: %w", err)
		}
		if busy == 0 {
			return nil
		}
	}
	return errors.New("checkpoint after seeding: database busy for 30 s")
}

func (in *asInstance) stop() {
	if in.child != nil {
		in.child.stop()
	}
	if in.st != nil {
		in.st.Close()
	}
	if in.dropPG != nil {
		in.dropPG()
	}
}

// pgSchema creates a schema for one instance and returns a DSN whose
// search_path is that schema, and a func that drops it.
func pgSchema(ctx context.Context, dsn string) (string, func(), error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", nil, fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close(ctx)
	schema := "mcpgate_bench_" + strings.ToLower(rand.Text()[:12])
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return "", nil, fmt.Errorf("postgres: %w", err)
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, dsn); err == nil {
			c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
			c.Close(ctx)
		}
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	if !strings.Contains(dsn, "://") {
		return dsn + " search_path=" + schema, drop, nil
	}
	return dsn + sep + "search_path=" + schema, drop, nil
}

// seedCodes stores n authorization codes through the seeder.
func (in *asInstance) seedCodes(ctx context.Context, n int) ([]string, error) {
	out := make([]string, n)
	err := parallel(n, func(i int) error {
		var err error
		out[i], err = in.issueCode(ctx)
		return err
	})
	return out, err
}

func (in *asInstance) issueCode(ctx context.Context) (string, error) {
	// The identity the static connector gives the configured user, so a
	// refresh finds it unchanged and writes nothing but the rotation.
	id := &idp.Identity{Issuer: in.seeder.Issuer() + "#static", Subject: benchUser, Username: benchUser}
	return in.seeder.IssueCode(ctx, in.client, in.redir, pkceChallenge(benchVerifier), []string{"mcp"}, id)
}

func pkceChallenge(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// seedGrants makes n grants the way a client does: a code (IssueCode) then
// its exchange at the seeder's token endpoint, in process. It returns each
// grant's refresh token.
func (in *asInstance) seedGrants(ctx context.Context, n int) ([]string, error) {
	out := make([]string, n)
	h := in.seeder.Handler()
	err := parallel(n, func(i int) error {
		code, err := in.issueCode(ctx)
		if err != nil {
			return err
		}
		req := httptest.NewRequest(http.MethodPost, in.seeder.Issuer()+"/token", strings.NewReader(in.exchangeForm(code).Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		var resp struct {
			RefreshToken string `json:"refresh_token"`
		}
		if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &resp) != nil || resp.RefreshToken == "" {
			return fmt.Errorf("seed grant: %d %.200s", w.Code, w.Body)
		}
		out[i] = resp.RefreshToken
		return nil
	})
	return out, err
}

func (in *asInstance) exchangeForm(code string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {in.redir},
		"code_verifier": {benchVerifier}, "client_id": {in.client}}
}

func refreshForm(client, rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {client}}
}

// parallel runs f(0..n-1) on 4 goroutines and returns the first error.
func parallel(n int, f func(i int) error) error {
	var next atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || first.Load() != nil {
					return
				}
				if err := f(i); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		return err
	}
	return nil
}

// tokenLoad drives closed-loop token requests at endpoint from c workers:
// form(w) builds worker w's next request (nil: nothing left), done(w, rt)
// takes the refresh token of its answer. It measures for d, answered
// requests, latency, and the CPU time of process pid, once warmup has passed
// and every worker has had an answer (or stopped): a server's first
// answers (its first commit syncing what seeding wrote, say, which took
// over 400 ms on a loaded disk) are cold start, not its rate. When the
// window ends, requests in flight are answered, not cancelled: a refresh the
// server committed but the client never read would leave done a rotated-away
// token, and its next use, in the next measurement, is a replay that ends the
// grant.
func tokenLoad(ctx context.Context, endpoint string, c int, warmup, d time.Duration, pid int,
	form func(w int) url.Values, done func(w int, rt string)) *tokenResult {
	var stop atomic.Bool
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: c, MaxConnsPerHost: c}}
	defer hc.CloseIdleConnections()
	var measuring atomic.Bool
	res := &tokenResult{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	warm := make(chan struct{}) // closed when every worker has had an answer or stopped
	var cold atomic.Int64
	cold.Store(int64(c))
	for w := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answered := sync.OnceFunc(func() {
				if cold.Add(-1) == 0 {
					close(warm)
				}
			})
			defer answered()
			var lat []time.Duration
			n, errs, first, ran := 0, 0, "", false
			defer func() {
				mu.Lock()
				res.Requests += n
				res.Errors += errs
				if res.FirstErr == "" {
					res.FirstErr = first
				}
				res.Lat = append(res.Lat, lat...)
				res.Ran = res.Ran || ran
				mu.Unlock()
			}()
			for ctx.Err() == nil && !stop.Load() {
				f := form(w)
				if f == nil {
					ran = measuring.Load()
					return
				}
				start := time.Now()
				rt, err := postToken(ctx, hc, endpoint, f)
				if ctx.Err() != nil {
					return
				}
				answered()
				counted := measuring.Load()
				if err != nil {
					if counted {
						errs++
						if first == "" {
							first = err.Error()
						}
					}
					time.Sleep(10 * time.Millisecond)
					continue
				}
				done(w, rt)
				if counted {
					n++
					lat = append(lat, time.Since(start))
				}
			}
		}()
	}
	select {
	case <-time.After(warmup):
	case <-ctx.Done():
	}
	select {
	case <-warm:
	case <-ctx.Done():
	}
	cpu0, _ := cpuTime(pid)
	start := time.Now()
	measuring.Store(true)
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	measuring.Store(false)
	res.Window = time.Since(start)
	cpu1, _ := cpuTime(pid)
	res.CPU = cpu1 - cpu0
	stop.Store(true)
	wg.Wait()
	return res
}

// postToken posts a token request and returns the answer's refresh token.
func postToken(ctx context.Context, hc *http.Client, endpoint string, form url.Values) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, body)
	}
	var tr struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		return "", fmt.Errorf("bad token response: %.200s", body)
	}
	return tr.RefreshToken, nil
}

// refreshAll refreshes every grant of pool once through the server, with
// pool's workers, and returns the rate. The seeder wrote the grants from
// this process; after this pass the tokens the rounds present are ones the
// server issued, as a client's always are.
func (in *asInstance) refreshAll(ctx context.Context, pool *refreshPool) (float64, error) {
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: pool.c, MaxConnsPerHost: pool.c}}
	defer hc.CloseIdleConnections()
	form := pool.form(in.client)
	errs := make(chan error, pool.c)
	start := time.Now()
	for w := range pool.c {
		go func() {
			for range pool.share(w) {
				rt, err := postToken(ctx, hc, in.base+"/token", form(w))
				if err != nil {
					errs <- fmt.Errorf("first refresh pass: %w", err)
					return
				}
				pool.done(w, rt)
			}
			errs <- nil
		}()
	}
	var err error
	for range pool.c {
		err = cmp.Or(err, <-errs)
	}
	return float64(len(pool.tokens)) / time.Since(start).Seconds(), err
}

// refreshPool hands each worker its own grants in turn, so no two requests
// use one grant at the same time, and keeps each grant's current token.
type refreshPool struct {
	tokens []string
	next   []int // per worker: index into its share
	c      int
}

func newRefreshPool(tokens []string, c int) *refreshPool {
	return &refreshPool{tokens: tokens, next: make([]int, c), c: c}
}

// slot is worker w's current grant: w, w+c, w+2c, … in turn.
func (p *refreshPool) slot(w int) int {
	return w + (p.next[w]%p.share(w))*p.c
}

// share is the number of worker w's grants.
func (p *refreshPool) share(w int) int { return (len(p.tokens) - w + p.c - 1) / p.c }

func (p *refreshPool) form(client string) func(w int) url.Values {
	return func(w int) url.Values { return refreshForm(client, p.tokens[p.slot(w)]) }
}

func (p *refreshPool) done(w int, rt string) {
	p.tokens[p.slot(w)] = rt
	p.next[w]++
}

// tokenReport is what the token scenarios measured.
type tokenReport struct {
	Opts    tokenOptions
	Start   time.Time
	Wall    time.Duration
	Results map[string]*tokenResult // key: "<grant> c=<n> <server>"
	Keys    []string
	Seeded  map[string]time.Duration // how long seeding took, per instance
	// The rate of the pass that refreshed every seeded grant once before
	// the rounds (refreshAll), per instance.
	FirstPass map[string]float64
	// Scale: per round, each size's measurement (in -scale-grants order)
	// and whether the round measured the sizes in reverse order.
	PerRound [][]*tokenResult
	Reversed []bool
}

func (r *tokenReport) add(key string, res *tokenResult) {
	if r.Results[key] == nil {
		r.Results[key] = res
		r.Keys = append(r.Keys, key)
		return
	}
	r.Results[key].merge(res)
}

const (
	serverFloor   = "floor-normal"
	serverMcpgate = "mcpgate"
)

// runToken runs -scenarios token or scale.
func runToken(ctx context.Context, o tokenOptions) (_ *tokenReport, err error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	rep := &tokenReport{Opts: o, Start: time.Now(), Results: map[string]*tokenResult{}, Seeded: map[string]time.Duration{},
		FirstPass: map[string]float64{}}
	dir, err := os.MkdirTemp("", "mcpgate-tokenbench-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w (logs kept in %s)", err, dir)
		} else {
			os.RemoveAll(dir)
		}
	}()
	prof := &report{Opts: options{ProfileDir: o.ProfileDir, Duration: o.Duration, Progress: o.Progress}, pprof: map[string]string{}}
	if o.Scenario == scenarioScale {
		err = runScale(ctx, &o, rep, dir, prof)
	} else {
		err = runFloorVsMcpgate(ctx, &o, rep, dir, prof)
	}
	rep.Wall = time.Since(rep.Start)
	if len(prof.Profiles) > 0 {
		o.logf("profiles: %s", strings.Join(prof.Profiles, " "))
	}
	return rep, err
}

func runFloorVsMcpgate(ctx context.Context, o *tokenOptions, rep *tokenReport, dir string, prof *report) error {
	floor, floorBase, floorPprof, err := startRole(roleFloor, filepath.Join(dir, "floor.db"), filepath.Join(dir, "floor.log"), o.ProfileDir != "")
	if err != nil {
		return err
	}
	defer floor.stop()
	prof.pprof[serverFloor] = floorPprof
	in, err := startAS(ctx, o, filepath.Join(dir, "mcpgate"), "")
	if err != nil {
		return err
	}
	defer in.stop()
	prof.pprof[serverMcpgate] = in.pprof
	maxC := slices.Max(o.Conc)
	nGrants := max(1000, maxC)
	start := time.Now()
	rts, err := in.seedGrants(ctx, nGrants)
	if err != nil {
		return err
	}
	rep.Seeded[serverMcpgate] = time.Since(start)
	o.logf("seeded %d grants in %s", nGrants, rep.Seeded[serverMcpgate].Round(time.Millisecond))
	pool := newRefreshPool(rts, maxC)
	if rep.FirstPass[serverMcpgate], err = in.refreshAll(ctx, pool); err != nil {
		return err
	}
	floorRate := map[int]float64{}
	for round := range o.Rounds {
		for _, c := range o.Conc {
			// Exchange: the floor first, whose rate sizes the codes mcpgate gets.
			var seq atomic.Int64
			stopProf, err := prof.startProfile(fmt.Sprintf("token-exchange-c%d-r%d", c, round+1), serverFloor)
			if err != nil {
				return err
			}
			res := tokenLoad(ctx, floorBase+"/token", c, o.Warmup, o.Duration, floor.pid(),
				func(int) url.Values { return in.exchangeForm(fmt.Sprint("code-", seq.Add(1))) }, func(int, string) {})
			if stopProf != nil {
				stopProf()
			}
			rep.add(fmt.Sprintf("exchange c=%d %s", c, serverFloor), res)
			floorRate[c] = max(floorRate[c], res.rate())
			o.logf("round %d exchange c=%d floor: %.0f/s", round+1, c, res.rate())

			n := int(floorRate[c]*1.5*(o.Warmup+o.Duration).Seconds()) + 500
			codes, err := in.seedCodes(ctx, n)
			if err != nil {
				return err
			}
			var idx atomic.Int64
			stopProf, err = prof.startProfile(fmt.Sprintf("token-exchange-c%d-r%d", c, round+1), serverMcpgate)
			if err != nil {
				return err
			}
			res = tokenLoad(ctx, in.base+"/token", c, o.Warmup, o.Duration, in.child.pid(), func(int) url.Values {
				i := int(idx.Add(1) - 1)
				if i >= len(codes) {
					return nil
				}
				return in.exchangeForm(codes[i])
			}, func(int, string) {})
			if stopProf != nil {
				stopProf()
			}
			rep.add(fmt.Sprintf("exchange c=%d %s", c, serverMcpgate), res)
			o.logf("round %d exchange c=%d mcpgate: %.0f/s", round+1, c, res.rate())

			stopProf, err = prof.startProfile(fmt.Sprintf("token-refresh-c%d-r%d", c, round+1), serverFloor)
			if err != nil {
				return err
			}
			res = tokenLoad(ctx, floorBase+"/token", c, o.Warmup, o.Duration, floor.pid(),
				func(int) url.Values { return refreshForm(in.client, "rt") }, func(int, string) {})
			if stopProf != nil {
				stopProf()
			}
			rep.add(fmt.Sprintf("refresh c=%d %s", c, serverFloor), res)
			o.logf("round %d refresh c=%d floor: %.0f/s", round+1, c, res.rate())

			stopProf, err = prof.startProfile(fmt.Sprintf("token-refresh-c%d-r%d", c, round+1), serverMcpgate)
			if err != nil {
				return err
			}
			p := newRefreshPool(pool.tokens, c)
			res = tokenLoad(ctx, in.base+"/token", c, o.Warmup, o.Duration, in.child.pid(), p.form(in.client), p.done)
			if stopProf != nil {
				stopProf()
			}
			rep.add(fmt.Sprintf("refresh c=%d %s", c, serverMcpgate), res)
			o.logf("round %d refresh c=%d mcpgate: %.0f/s", round+1, c, res.rate())
		}
	}
	return nil
}

// runScale measures mcpgate's refresh with each number of stored grants,
// one instance (process and database) per size, measured in turn, round by
// round, at the first -token-c. Every other round measures the sizes in
// reverse order (ABBA), so a machine getting busier or quieter during the
// run does not favour one size; the report gives each round's ratios and
// their median beside the merged figures.
func runScale(ctx context.Context, o *tokenOptions, rep *tokenReport, dir string, prof *report) error {
	c := o.Conc[0]
	ins := make([]*asInstance, len(o.Grants))
	pools := make([]*refreshPool, len(o.Grants))
	for i, n := range o.Grants {
		in, err := startAS(ctx, o, filepath.Join(dir, fmt.Sprintf("grants-%d", n)), "")
		if err != nil {
			return err
		}
		defer in.stop()
		name := fmt.Sprintf("%s %d grants", serverMcpgate, n)
		prof.pprof[name] = in.pprof
		start := time.Now()
		o.logf("seeding %d grants (%s) …", n, o.Store)
		rts, err := in.seedGrants(ctx, n)
		if err != nil {
			return err
		}
		if err := in.release(ctx); err != nil {
			return err
		}
		rep.Seeded[name] = time.Since(start)
		o.logf("seeded %d grants in %s", n, rep.Seeded[name].Round(time.Millisecond))
		ins[i], pools[i] = in, newRefreshPool(rts, c)
		if rep.FirstPass[name], err = in.refreshAll(ctx, pools[i]); err != nil {
			return err
		}
		o.logf("first pass over %d grants: %.0f/s", n, rep.FirstPass[name])
	}
	for round := range o.Rounds {
		order := make([]int, len(o.Grants))
		for i := range order {
			order[i] = i
		}
		reversed := round%2 == 1
		if reversed {
			slices.Reverse(order)
		}
		perSize := make([]*tokenResult, len(o.Grants))
		for _, i := range order {
			n := o.Grants[i]
			name := fmt.Sprintf("%s %d grants", serverMcpgate, n)
			stopProf, err := prof.startProfile(fmt.Sprintf("scale-refresh-%d-r%d", n, round+1), name)
			if err != nil {
				return err
			}
			res := tokenLoad(ctx, ins[i].base+"/token", c, o.Warmup, o.Duration, ins[i].child.pid(), pools[i].form(ins[i].client), pools[i].done)
			if stopProf != nil {
				stopProf()
			}
			o.logf("round %d refresh c=%d %d grants: %.0f/s, %.0f µs CPU/refresh", round+1, c, n, res.rate(),
				float64(res.cpuPer())/float64(time.Microsecond))
			perSize[i] = res
		}
		// Merge after the round so that the merged table keeps -scale-grants order.
		for i, n := range o.Grants {
			r := *perSize[i]
			r.Lat = slices.Clone(r.Lat)
			rep.add(fmt.Sprintf("refresh c=%d %s %d grants", c, serverMcpgate, n), &r)
		}
		rep.PerRound = append(rep.PerRound, perSize)
		rep.Reversed = append(rep.Reversed, reversed)
	}
	return nil
}

// scaleRatios are each round's rate and CPU ratios of size i to the
// baseline (the first size), and their medians.
func (r *tokenReport) scaleRatios(i int) (rate, cpu []float64, medRate, medCPU float64) {
	for _, round := range r.PerRound {
		base, res := round[0], round[i]
		if base.Requests == 0 || res.Requests == 0 {
			continue
		}
		rate = append(rate, res.rate()/base.rate())
		cpu = append(cpu, float64(res.cpuPer())/float64(base.cpuPer()))
	}
	return rate, cpu, median(rate), median(cpu)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (r *tokenReport) errors() int {
	n := 0
	for _, res := range r.Results {
		n += res.Errors
	}
	return n
}

// markdown renders the results: per line the server's rate, latency and
// CPU per grant, and (for mcpgate) the ratios to the baseline measured in
// the same run: floor-normal, or the first -scale-grants size.
func (r *tokenReport) markdown(cmd string) string {
	var b strings.Builder
	o := r.Opts
	fmt.Fprintf(&b, "Command: `%s` (%s store, %s warm-up + %s measured × %d rounds, %s, commit %s)\n\n",
		cmd, o.Store, o.Warmup, o.Duration, o.Rounds, r.Start.UTC().Format("2006-01-02 15:04 UTC"), commit())
	baseline := func(key string) string {
		if o.Scenario == scenarioScale {
			f := strings.Fields(key)
			return strings.Join(f[:2], " ") + fmt.Sprintf(" %s %d grants", serverMcpgate, o.Grants[0])
		}
		return strings.Replace(key, serverMcpgate, serverFloor, 1)
	}
	b.WriteString("| grant | clients | server | req/s | p50 ms | CPU µs/grant | req/s ratio | CPU ratio | errors |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, k := range r.Keys {
		res := r.Results[k]
		f := strings.Fields(k)
		ratio, cpuRatio := "", ""
		if bk := baseline(k); bk != k {
			if base := r.Results[bk]; base != nil && base.Requests > 0 {
				ratio = fmt.Sprintf("**%.2f×**", res.rate()/base.rate())
				cpuRatio = fmt.Sprintf("%.2f×", float64(res.cpuPer())/float64(base.cpuPer()))
			}
		}
		p50 := "-"
		if len(res.Lat) > 0 {
			slices.Sort(res.Lat)
			p50 = fmt.Sprintf("%.2f", float64(res.pct(0.5))/float64(time.Millisecond))
		}
		errs := fmt.Sprint(res.Errors)
		if res.Ran {
			errs += " (ran out of codes)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.0f | %s | %.0f | %s | %s | %s |\n", f[0], strings.TrimPrefix(f[1], "c="),
			strings.Join(f[2:], " "), res.rate(), p50, float64(res.cpuPer())/float64(time.Microsecond), ratio, cpuRatio, errs)
	}
	if o.Scenario == scenarioScale && len(r.PerRound) > 0 {
		r.scaleRounds(&b)
	}
	for k, d := range r.Seeded {
		fmt.Fprintf(&b, "\nSeeding (%s): %s.", k, d.Round(time.Millisecond))
	}
	if len(r.FirstPass) > 0 {
		b.WriteString("\n\nBefore the rounds every seeded grant was refreshed once through the server, so that the tokens measured are" +
			" ones it issued, as a client's are (SQLite keeps them in its refresh cache); that first pass read each token from the database:")
		for _, k := range slices.Sorted(maps.Keys(r.FirstPass)) {
			fmt.Fprintf(&b, " %s %.0f/s;", k, r.FirstPass[k])
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	for _, k := range r.Keys {
		if res := r.Results[k]; res.FirstErr != "" {
			fmt.Fprintf(&b, "\nFirst error, %s: %s\n", k, res.FirstErr)
		}
	}
	return b.String()
}

// scaleRounds writes the scale scenario's per-round table: each size's rate
// and CPU per refresh, and its ratios to the baseline measured in the same
// round, then the medians of those ratios.
func (r *tokenReport) scaleRounds(b *strings.Builder) {
	g := r.Opts.Grants
	b.WriteString("\nPer round (each ratio is to the " + fmt.Sprint(g[0]) + "-grant instance measured in the same round):\n\n| round | order |")
	for _, n := range g {
		fmt.Fprintf(b, " %d: req/s | CPU µs |", n)
	}
	for _, n := range g[1:] {
		fmt.Fprintf(b, " %d: req/s ratio | CPU ratio |", n)
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---|---|", len(g)+len(g)-1) + "\n")
	for ri, round := range r.PerRound {
		order := "ascending"
		if r.Reversed[ri] {
			order = "descending"
		}
		fmt.Fprintf(b, "| %d | %s |", ri+1, order)
		for _, res := range round {
			fmt.Fprintf(b, " %.0f | %.0f |", res.rate(), float64(res.cpuPer())/float64(time.Microsecond))
		}
		for i := 1; i < len(g); i++ {
			if round[0].Requests == 0 || round[i].Requests == 0 {
				b.WriteString(" - | - |")
				continue
			}
			fmt.Fprintf(b, " %.2f× | %.2f× |", round[i].rate()/round[0].rate(),
				float64(round[i].cpuPer())/float64(round[0].cpuPer()))
		}
		b.WriteString("\n")
	}
	for i := 1; i < len(g); i++ {
		rate, _, medRate, medCPU := r.scaleRatios(i)
		fmt.Fprintf(b, "\nMedian of %d rounds, %d grants ÷ %d grants: req/s ratio %.2f×, CPU ratio %.2f×.\n",
			len(rate), g[i], g[0], medRate, medCPU)
	}
}

// runFloorRole serves floor-normal on loopback for the floor child role.
func runFloorRole(path string) (http.Handler, func() error, error) {
	f, err := newFloorServer(context.Background(), path)
	if err != nil {
		return nil, nil, err
	}
	return f, f.Close, nil
}
