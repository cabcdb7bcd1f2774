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
	maxRounds      = 5
	maxStartups    = 20
)

func (o *options) check() error {
	var errs []error
	if o.Concurrency < 1 || o.Concurrency > maxConcurrency {
		errs = append(errs, fmt.Errorf("-c must be 1..%d", maxConcurrency))
	}
	if o.Duration <= 0 || o.Duration > maxDuration {
		errs = append(errs, fmt.Errorf("-d must be > 0 and at most %s", maxDuration))
	}
	if o.Warmup < 0 || o.Warmup > maxWarmup {
		errs = append(errs, fmt.Errorf("-warmup must be 0..%s", maxWarmup))
	}
	if o.Rounds < 1 || o.Rounds > maxRounds {
		errs = append(errs, fmt.Errorf("-rounds must be 1..%d", maxRounds))
	}
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
		if s != scenarioCall && s != scenarioList {
			errs = append(errs, fmt.Errorf("unknown scenario %q (want %s or %s)", s, scenarioCall, scenarioList))
		}
	}
	if o.ProfileDir != "" && !o.InProcess {
		errs = append(errs, errors.New("-profile needs -inprocess (the profile is of the harness process)"))
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
	rep := &report{Opts: opts, Start: time.Now(), Results: map[string]map[string]*loadResult{}}
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
		if err == nil {
			os.RemoveAll(dir)
		} else {
			err = fmt.Errorf("%w (logs kept in %s)", err, dir)
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
		g, base, up, err := startInProcessGateway(dir, is.url, urls[targetDirect])
		if err != nil {
			return nil, err
		}
		stops = append(stops, g.stop)
		urls[targetMcpgate] = base + "/mcp"
		rep.Startup = append(rep.Startup, up)
		rep.Processes = []*process{{Name: "harness (everything in one process)", PID: os.Getpid()}}
		for _, t := range targets {
			pids[t] = os.Getpid()
		}
	} else {
		backend, base, err := startRole(roleBackend, fmt.Sprint(opts.Tools), filepath.Join(dir, "backend.log"))
		if err != nil {
			return nil, err
		}
		stops = append(stops, backend.stop)
		urls[targetDirect] = base + "/mcp"
		proxy, base, err := startRole(roleProxy, urls[targetDirect]+" "+fmt.Sprint(opts.Concurrency), filepath.Join(dir, "proxy.log"))
		if err != nil {
			return nil, err
		}
		stops = append(stops, proxy.stop)
		urls[targetProxy] = base + "/mcp"

		bin := opts.Binary
		if bin == "" {
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
			c, _, up, err := startMcpgate(bin, sdir, is.url, urls[targetDirect])
			if err != nil {
				return nil, err
			}
			c.stop()
			rep.Startup = append(rep.Startup, up)
		}
		gw, base, up, err := startMcpgate(bin, dir, is.url, urls[targetDirect])
		if err != nil {
			return nil, err
		}
		stops = append(stops, gw.stop)
		urls[targetMcpgate] = base + "/mcp"
		rep.Startup = append(rep.Startup, up)
		pids = map[string]int{targetDirect: backend.pid(), targetProxy: proxy.pid(), targetMcpgate: gw.pid()}
		rep.Processes = []*process{
			{Name: "backend (go-sdk demo)", PID: backend.pid()},
			{Name: "bare-proxy", PID: proxy.pid()},
			{Name: "mcpgate", PID: gw.pid()},
		}
	}
	slices.Sort(rep.Startup)

	// One token per worker (distinct users), audience = mcpgate's resource.
	tokens := make([]string, opts.Concurrency)
	for i := range tokens {
		if tokens[i], err = is.token(i, urls[targetMcpgate]); err != nil {
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
				sample := func(wctx context.Context) {
					stopProfile, err := rep.startProfile(sc, t)
					if err != nil {
						rep.logf("profile: %v", err)
					}
					var ps []int
					for _, p := range rep.Processes {
						ps = append(ps, p.PID)
					}
					peaks := peak(wctx, ps)
					for i, p := range rep.Processes {
						if p.PID == pids[t] || len(rep.Processes) == 1 {
							old := p.Peak[sc]
							p.Peak[sc] = procStats{RSS: max(old.RSS, peaks[i].RSS), FDs: max(old.FDs, peaks[i].FDs)}
						}
					}
					if stopProfile != nil {
						stopProfile()
					}
				}
				res, err := runLoad(ctx, client, urls[t], tokens, sc, opts.Warmup, opts.Duration, sample)
				if err != nil {
					return nil, fmt.Errorf("%s %s: %w", t, sc, err)
				}
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

// startProfile writes a CPU profile of the harness process while one target
// is under load, and an allocation profile when it stops.
func (r *report) startProfile(scenario, target string) (stop func(), err error) {
	if r.Opts.ProfileDir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(r.Opts.ProfileDir, 0o755); err != nil {
		return nil, err
	}
	name := strings.ReplaceAll(scenario, "/", "_") + "-" + target
	// The allocs profile is cumulative: snapshots before and after the
	// window give this target's allocations with pprof -base.
	writeAllocs := func(suffix string) {
		path := filepath.Join(r.Opts.ProfileDir, name+suffix)
		if f, err := os.Create(path); err == nil {
			runtime.GC()
			pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
			r.Profiles = append(r.Profiles, path)
		}
	}
	writeAllocs(".allocs0.prof")
	cpuPath := filepath.Join(r.Opts.ProfileDir, name+".cpu.prof")
	f, err := os.Create(cpuPath)
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
		r.Profiles = append(r.Profiles, cpuPath)
		writeAllocs(".allocs1.prof")
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
