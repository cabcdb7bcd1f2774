package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The sessions load (issue 14): C MCP clients, each its own user signed in
// at the authorization server, hold one session each through the
// round-robin proxy for the whole run and call a tool in a closed loop
// with think time. It reports errors and each replica's RSS and open fds
// before, at the peak of, and after the load.

type sessionsOptions struct {
	Bin, Dir, BaseDSN string
	Clients           int
	Duration          time.Duration
	Think             time.Duration // mean pause between a client's calls (uniform in [think/2, 3·think/2])
	Progress          io.Writer
}

type sessionsResult struct {
	Clients    int
	Duration   time.Duration
	Think      time.Duration
	SignIn     time.Duration // signing every client in
	Requests   int
	Errors     int
	Samples    []string
	P50, P99   time.Duration
	Max        time.Duration
	Idle, Peak []procStats // per replica: before the sessions, highest during
	After      []procStats // after the sessions closed and 2 s of quiet
	Served     []int64
	FDLimit    string
}

func runSessionsLoad(ctx context.Context, o sessionsOptions) (*sessionsResult, error) {
	c, err := startCluster(ctx, clusterOptions{Bin: o.Bin, Dir: o.Dir, BaseDSN: o.BaseDSN, Replicas: 2, Users: o.Clients})
	if err != nil {
		return nil, err
	}
	defer c.close()
	res := &sessionsResult{Clients: o.Clients, Think: o.Think, FDLimit: fdLimit()}
	hc := &http.Client{Transport: newClientTransport(o.Clients), Timeout: 30 * time.Second}
	for _, pid := range c.pids() {
		st, _ := readProc(pid)
		res.Idle = append(res.Idle, st)
	}

	// Sign every user in (16 at a time), as their MCP clients would.
	start := time.Now()
	toks := make([]string, o.Clients)
	var signErr atomic.Value
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range o.Clients {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			cl, err := register(ctx, hc, c.base, fmt.Sprintf("sessions load %d", i))
			if err == nil {
				var t tokens
				t, err = cl.signIn(ctx, c.users[i], c.password)
				toks[i] = t.Access
			}
			if err != nil {
				signErr.CompareAndSwap(nil, err)
			}
		})
	}
	wg.Wait()
	if err, _ := signErr.Load().(error); err != nil {
		return nil, fmt.Errorf("sign-in: %w", err)
	}
	res.SignIn = time.Since(start)
	fmt.Fprintf(o.Progress, "%d clients signed in in %v; load for %v\n", o.Clients, res.SignIn.Round(time.Millisecond), o.Duration)

	loadCtx, cancel := context.WithCancel(ctx)
	peakDone := make(chan []procStats, 1)
	go func() { peakDone <- peak(loadCtx, c.pids()) }()
	var (
		mu        sync.Mutex
		latencies []time.Duration
	)
	fail := func(err error) {
		mu.Lock()
		res.Errors++
		if len(res.Samples) < 5 {
			res.Samples = append(res.Samples, err.Error())
		}
		mu.Unlock()
	}
	deadline := time.Now().Add(o.Duration)
	start = time.Now()
	for i := range o.Clients {
		wg.Go(func() {
			// Spread the initializes over the first think time.
			time.Sleep(time.Duration(rand.Int64N(int64(o.Think) + 1)))
			s, err := openSession(ctx, hc, c.base+"/mcp", toks[i])
			if err != nil {
				fail(err)
				return
			}
			var lat []time.Duration
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if _, err := s.step(ctx, scenarioCall); err != nil {
					fail(err)
				} else {
					lat = append(lat, time.Since(t0))
				}
				time.Sleep(o.Think/2 + time.Duration(rand.Int64N(int64(o.Think)+1)))
			}
			s.close(ctx)
			mu.Lock()
			latencies = append(latencies, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	res.Duration = time.Since(start)
	cancel()
	res.Peak = <-peakDone
	res.Requests = len(latencies)
	if len(latencies) > 0 {
		slices.Sort(latencies)
		res.P50 = latencies[len(latencies)/2]
		res.P99 = latencies[len(latencies)*99/100]
		res.Max = latencies[len(latencies)-1]
	}
	hc.CloseIdleConnections()
	c.proxy.transport.CloseIdleConnections()
	time.Sleep(2 * time.Second)
	for i, pid := range c.pids() {
		st, _ := readProc(pid)
		res.After = append(res.After, st)
		res.Served = append(res.Served, c.proxy.served[i].Load())
	}
	return res, nil
}

// fdLimit is this process's soft and hard RLIMIT_NOFILE, which the
// replicas inherit.
func fdLimit() string {
	b, err := os.ReadFile("/proc/self/limits")
	if err != nil {
		return "?"
	}
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, "Max open files") {
			f := strings.Fields(line)
			if len(f) >= 5 {
				return f[3] + " / " + f[4]
			}
		}
	}
	return "?"
}

func (r *sessionsResult) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, `| | |
|---|---|
| load | %d clients (one user and one MCP session each) for %.0f s, tools/call then %v think time (uniform ±50%%) |
| sign-in of every client (16 at a time) | %.1f s |
| tools/call answered | %d (%.0f/s) |
| errors | %d |
| latency p50 / p99 / max | %s / %s / %s |
| requests per replica (proxy) | %v |
| fd limit (soft / hard) | %s |
`, r.Clients, r.Duration.Seconds(), r.Think, r.SignIn.Seconds(), r.Requests, float64(r.Requests)/r.Duration.Seconds(),
		r.Errors, fmtDur(r.P50), fmtDur(r.P99), fmtDur(r.Max), r.Served, r.FDLimit)
	b.WriteString("\n| replica | RSS idle | RSS peak | RSS after | fds idle | fds peak | fds after |\n|---|---|---|---|---|---|---|\n")
	for i := range r.Idle {
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %d | %d | %d |\n", i, fmtBytes(r.Idle[i].RSS), fmtBytes(r.Peak[i].RSS), fmtBytes(r.After[i].RSS),
			r.Idle[i].FDs, r.Peak[i].FDs, r.After[i].FDs)
	}
	return b.String()
}
