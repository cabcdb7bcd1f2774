package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"
)

// Targets, in the order they are measured.
const (
	targetDirect  = "direct"
	targetProxy   = "bare-proxy"
	targetMcpgate = "mcpgate"
)

var targets = []string{targetDirect, targetProxy, targetMcpgate}

// options configure one harness run.
type options struct {
	Concurrency int
	Duration    time.Duration
	Warmup      time.Duration
	Rounds      int
	Scenarios   []string
	Tools       int           // padding tools on the backend (tools/list size)
	InProcess   bool          // run backend, proxy and mcpgate inside the harness
	Binary      string        // mcpgate binary for external mode; "" builds one
	Startups    int           // extra start-ups of mcpgate to time (external mode)
	ProfileDir  string        // CPU and allocation profiles per target and scenario (in-process mode)
	Settle      time.Duration // pause before the idle sample and before the after-load sample
	Progress    io.Writer
}

// Hard limits, so a typo cannot start an hour-long run.
const (
	maxDuration    = 60 * time.Second
	maxWarmup      = 30 * time.Second
	maxConcurrency = 1024
	maxRounds      = 10
	maxStartups    = 20
)

// checkTiming checks the flags every mode has: -d, -warmup and -rounds.
func checkTiming(d, warmup time.Duration, rounds int) []error {
	var errs []error
	if d <= 0 || d > maxDuration {
		errs = append(errs, fmt.Errorf("-d must be > 0 and at most %s", maxDuration))
	}
	if warmup < 0 || warmup > maxWarmup {
		errs = append(errs, fmt.Errorf("-warmup must be 0..%s", maxWarmup))
	}
	if rounds < 1 || rounds > maxRounds {
		errs = append(errs, fmt.Errorf("-rounds must be 1..%d", maxRounds))
	}
	return errs
}

func (o *options) check() error {
	var errs []error
	if o.Concurrency < 1 || o.Concurrency > maxConcurrency {
		errs = append(errs, fmt.Errorf("-c must be 1..%d", maxConcurrency))
	}
	errs = append(errs, checkTiming(o.Duration, o.Warmup, o.Rounds)...)
	if o.Startups < 0 || o.Startups > maxStartups {
		errs = append(errs, fmt.Errorf("-startups must be 0..%d", maxStartups))
	}
	if o.Settle < 0 || o.Settle > 10*time.Second {
		errs = append(errs, errors.New("settle must be 0..10s"))
	}
	if o.Tools < 0 || o.Tools > 1000 {
		errs = append(errs, errors.New("-tools must be 0..1000"))
	}
	if len(o.Scenarios) == 0 {
		errs = append(errs, errors.New("no scenario"))
	}
	for _, s := range o.Scenarios {
		if !slices.Contains(allScenarios, s) {
			errs = append(errs, fmt.Errorf("unknown scenario %q (want one of %s)", s, strings.Join(allScenarios, ", ")))
		}
	}
	if o.ProfileDir != "" && o.Binary != "" {
		errs = append(errs, errors.New("-profile runs mcpgate from its packages (for pprof) and cannot profile -external BIN"))
	}
	return errors.Join(errs...)
}

// process is a measured process and its resource use.
type process struct {
	Name  string
	PID   int
	Idle  procStats            // after start-up, before any load
	Peak  map[string]procStats // highest while a target was under load, by scenario
	After procStats            // a settle time after the last run
}

// Process names.
const (
	procBackend = "backend (go-sdk demo)"
	procProxy   = "bare-proxy"
	procMcpgate = "mcpgate"
	procHarness = "load generator (harness)"
	procAll     = "harness (everything in one process)"
)

// cpuTimes reads the CPU time used so far by each process.
func cpuTimes(ps []*process) map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, p := range ps {
		if d, err := cpuTime(p.PID); err == nil {
			out[p.Name] = d
		}
	}
	return out
}

// report is everything one harness run measured.
type report struct {
	Opts      options
	Start     time.Time
	Wall      time.Duration
	LoadStart [3]float64 // load average when the run started
	LoadEnd   [3]float64
	Results   map[string]map[string]*loadResult // scenario → target → result
	Processes []*process
	Startup   []time.Duration // mcpgate process start → /healthz 200
	Profiles  []string
	LogDir    string            // the processes' logs, kept when requests failed
	pprof     map[string]string // target → pprof base URL of its process (external profiling)
}

func (r *report) errors() int {
	n := 0
	for _, byTarget := range r.Results {
		for _, res := range byTarget {
			n += res.Errors
		}
	}
	return n
}

func (r *report) logf(format string, args ...any) {
	if r.Opts.Progress != nil {
		fmt.Fprintf(r.Opts.Progress, format+"\n", args...)
	}
}

// run starts the backend, the bare proxy and mcpgate on loopback, drives
// every scenario against every target, and returns the measurements.
func run(ctx context.Context, opts options) (_ *report, err error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	rep := &report{Opts: opts, Start: time.Now(), Results: map[string]map[string]*loadResult{}, pprof: map[string]string{}}
	rep.LoadStart = loadAvg()
	dir, err := os.MkdirTemp("", "mcpgate-bench-")
	if err != nil {
		return nil, err
	}
	var stops []func()
	defer func() {
		for _, stop := range slices.Backward(stops) {
			stop()
		}
		switch {
		case err != nil:
			err = fmt.Errorf("%w (logs kept in %s)", err, dir)
		case rep.errors() > 0:
			rep.LogDir = dir
			rep.logf("requests failed: logs kept in %s", dir)
		default:
			os.RemoveAll(dir)
		}
	}()

	is, err := startIssuer()
	if err != nil {
		return nil, err
	}
	stops = append(stops, is.Close)

	var urls = map[string]string{}
	var pids = map[string]int{}
	if opts.InProcess {
		base, srv, err := serveLoopback(backendHandler(opts.Tools))
		if err != nil {
			return nil, err
		}
		stops = append(stops, func() { srv.Close() })
		urls[targetDirect] = base + "/mcp"
		backendURL, _ := url.Parse(urls[targetDirect])
		base, srv, err = serveLoopback(bareProxy(backendURL, opts.Concurrency))
		if err != nil {
			return nil, err
		}
		stops = append(stops, func() { srv.Close() })
		urls[targetProxy] = base + "/mcp"
		g, up, err := startInProcessGateway(dir, is.url, urls[targetDirect])
		if err != nil {
			return nil, err
		}
		stops = append(stops, g.stop)
		urls[targetMcpgate] = g.base + "/mcp"
		rep.Startup = append(rep.Startup, up)
		rep.Processes = []*process{{Name: procAll, PID: os.Getpid()}}
		for _, t := range targets {
			pids[t] = os.Getpid()
		}
	} else {
		profiling := opts.ProfileDir != ""
		backend, base, pp, err := startRole(roleBackend, fmt.Sprint(opts.Tools), filepath.Join(dir, "backend.log"), profiling)
		if err != nil {
			return nil, err
		}
		stops = append(stops, backend.stop)
		urls[targetDirect], rep.pprof[targetDirect] = base+"/mcp", pp
		proxy, base, pp, err := startRole(roleProxy, urls[targetDirect]+" "+fmt.Sprint(opts.Concurrency), filepath.Join(dir, "proxy.log"), profiling)
		if err != nil {
			return nil, err
		}
		stops = append(stops, proxy.stop)
		urls[targetProxy], rep.pprof[targetProxy] = base+"/mcp", pp

		bin := opts.Binary
		if bin == "" && !profiling {
			rep.logf("building mcpgate …")
			if bin, err = buildMcpgate(ctx, dir); err != nil {
				return nil, err
			}
		}
		for i := range opts.Startups {
			sdir := filepath.Join(dir, fmt.Sprintf("startup-%d", i))
			if err := os.Mkdir(sdir, 0o700); err != nil {
				return nil, err
			}
			c, _, _, up, err := startMcpgate(bin, sdir, is.url, urls[targetDirect])
			if err != nil {
				return nil, err
			}
			c.stop()
			rep.Startup = append(rep.Startup, up)
		}
		gw, base, pp, up, err := startMcpgate(bin, dir, is.url, urls[targetDirect])
		if err != nil {
			return nil, err
		}
		stops = append(stops, gw.stop)
		urls[targetMcpgate], rep.pprof[targetMcpgate] = base+"/mcp", pp
		rep.Startup = append(rep.Startup, up)
		pids = map[string]int{targetDirect: backend.pid(), targetProxy: proxy.pid(), targetMcpgate: gw.pid()}
		rep.Processes = []*process{
			{Name: procBackend, PID: backend.pid()},
			{Name: procProxy, PID: proxy.pid()},
			{Name: procMcpgate, PID: gw.pid()},
			{Name: procHarness, PID: os.Getpid()},
		}
	}
	slices.Sort(rep.Startup)

	// One token per worker (distinct users, the same roles), audience =
	// mcpgate's two resources (the SSE and the JSON backend).
	tokens := make([]string, opts.Concurrency)
	for i := range tokens {
		if tokens[i], err = is.token(i, urls[targetMcpgate], scenarioURL(urls[targetMcpgate], scenarioListJSON)); err != nil {
			return nil, err
		}
	}
	tr := newClientTransport(opts.Concurrency)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	time.Sleep(opts.Settle) // let start-up work settle
	for _, p := range rep.Processes {
		p.Peak = map[string]procStats{}
		if p.Idle, err = readProc(p.PID); err != nil {
			return nil, fmt.Errorf("%s: %w", p.Name, err)
		}
	}

	for round := range opts.Rounds {
		for _, sc := range opts.Scenarios {
			if rep.Results[sc] == nil {
				rep.Results[sc] = map[string]*loadResult{}
			}
			// Rotate the order each round so no target always runs first.
			for i := range targets {
				t := targets[(i+round)%len(targets)]
				rep.logf("round %d/%d  %-10s  %-10s  c=%d d=%s …", round+1, opts.Rounds, sc, t, opts.Concurrency, opts.Duration)
				var cpu map[string]time.Duration
				sample := func(wctx context.Context) {
					stopProfile, err := rep.startProfile(sc, t)
					if err != nil {
						rep.logf("profile: %v", err)
					}
					var ps []int
					for _, p := range rep.Processes {
						ps = append(ps, p.PID)
					}
					cpu0 := cpuTimes(rep.Processes)
					peaks := peak(wctx, ps)
					cpu = cpuTimes(rep.Processes)
					for name, d := range cpu0 {
						cpu[name] -= d
					}
					for i, p := range rep.Processes {
						if p.PID == pids[t] || p.Name == procHarness {
							old := p.Peak[sc]
							p.Peak[sc] = procStats{RSS: max(old.RSS, peaks[i].RSS), FDs: max(old.FDs, peaks[i].FDs)}
						}
					}
					if stopProfile != nil {
						stopProfile()
					}
				}
				res, err := runLoad(ctx, client, scenarioURL(urls[t], sc), tokens, sc, opts.Warmup, opts.Duration, sample)
				if err != nil {
					return nil, fmt.Errorf("%s %s: %w", t, sc, err)
				}
				res.CPU = cpu
				if prev := rep.Results[sc][t]; prev != nil {
					prev.merge(res)
				} else {
					rep.Results[sc][t] = res
				}
				r := rep.Results[sc][t]
				rep.logf("    %8.0f req/s  p50 %s  p99 %s  errors %d", res.rps(), fmtDur(res.pct(0.5)), fmtDur(res.pct(0.99)), r.Errors)
				tr.CloseIdleConnections()
				time.Sleep(200 * time.Millisecond)
			}
		}
	}
	time.Sleep(opts.Settle)
	for _, p := range rep.Processes {
		p.After, _ = readProc(p.PID)
	}
	rep.Wall = time.Since(rep.Start)
	rep.LoadEnd = loadAvg()
	return rep, nil
}

// startProfile records a CPU profile of the process serving target while it
// is under load, and allocation snapshots before and after (the allocs
// profile is cumulative: compare them with pprof -base). In-process mode
// profiles the harness process; external mode fetches the profiles from the
// target process's pprof endpoint.
func (r *report) startProfile(scenario, target string) (stop func(), err error) {
	dir := r.Opts.ProfileDir
	if dir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	name := filepath.Join(dir, strings.ReplaceAll(scenario, "/", "_")+"-"+target)
	if r.Opts.InProcess {
		writeAllocs := func(path string) {
			if f, err := os.Create(path); err == nil {
				runtime.GC()
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
				r.Profiles = append(r.Profiles, path)
			}
		}
		writeAllocs(name + ".allocs0.prof")
		f, err := os.Create(name + ".cpu.prof")
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, err
		}
		return func() {
			pprof.StopCPUProfile()
			f.Close()
			r.Profiles = append(r.Profiles, name+".cpu.prof")
			writeAllocs(name + ".allocs1.prof")
		}, nil
	}
	base := r.pprof[target]
	// fetch writes what url serves to path; the caller lists the path
	// (r.Profiles is the collecting goroutine's).
	fetch := func(url, path string) error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
		}
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, io.LimitReader(resp.Body, 256<<20)); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	listed := func(path string, err error) error {
		if err == nil {
			r.Profiles = append(r.Profiles, path)
		}
		return err
	}
	if err := listed(name+".allocs0.prof", fetch(base+"/allocs?gc=1", name+".allocs0.prof")); err != nil {
		return nil, err
	}
	secs := max(1, int(r.Opts.Duration/time.Second))
	cpuErr := make(chan error, 1)
	go func() { cpuErr <- fetch(fmt.Sprintf("%s/profile?seconds=%d", base, secs), name+".cpu.prof") }()
	// One second of execution trace from the middle of the window: where
	// requests wait (go tool trace -pprof=sync or sched).
	traceErr := make(chan error, 1)
	go func() {
		time.Sleep(max(0, r.Opts.Duration/2-time.Second/2))
		traceErr <- fetch(base+"/trace?seconds=1", name+".trace")
	}()
	return func() {
		if err := listed(name+".cpu.prof", <-cpuErr); err != nil {
			r.logf("profile: %v", err)
		}
		if err := listed(name+".trace", <-traceErr); err != nil {
			r.logf("trace: %v", err)
		}
		if err := listed(name+".allocs1.prof", fetch(base+"/allocs?gc=1", name+".allocs1.prof")); err != nil {
			r.logf("profile: %v", err)
		}
	}, nil
}

// buildMcpgate builds cmd/mcpgate into dir.
func buildMcpgate(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "mcpgate")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/mcpgate")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/mcpgate: %w\n%s", err, out)
	}
	return bin, nil
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the mcpgate module: run from the repository, or pass -external BIN")
	}
	return filepath.Dir(mod), nil
}
