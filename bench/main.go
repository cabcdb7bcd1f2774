// Command bench measures mcpgate against a bare httputil.ReverseProxy and
// against the backend itself, all on loopback: a go-sdk MCP backend, the
// proxy in front of it, and mcpgate (jwt mode, a 20-rule policy, file audit)
// in front of the same backend. Closed-loop load from MCP sessions spoken
// with raw streamable-HTTP requests; it reports throughput, latency
// percentiles, the latency each hop adds, RSS and fds, and start-up time.
//
// With no -scenarios it also measures the token endpoint against
// floor-normal, a minimal authorization server (token.go): one run prints
// every comparison of issue 15.
//
//	go run ./bench                                  # defaults: -c 32 -d 10s -warmup 2s; token: -token-c 8,32
//	go run ./bench -c 32 -d 10s -write docs/benchmarks.md
//	go run ./bench -profile bench/profiles          # pprof of each process under load
//
// Or parts of it (see token.go and docs/benchmarks.md):
//
//	go run ./bench -scenarios tools/list,tools/list-json
//	go run ./bench -scenarios token                 # floor-normal vs mcpgate: exchange and refresh at c=8 and c=32
//	go run ./bench -scenarios scale                 # mcpgate refresh with 1k vs 100k stored grants (SQLite), on its own
//	go run ./bench -scenarios scale -store postgres -pg "$MCPGATE_TEST_POSTGRES_DSN"
//
//	go run ./bench replicas -load kill|sessions     # two replicas on PostgreSQL (replicas.go)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if role := os.Getenv(roleEnv); role != "" {
		if err := runRole(role, os.Getenv(roleArgEnv)); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "replicas" {
		if err := replicasMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench replicas:", err)
			os.Exit(1)
		}
		return
	}
	var (
		o         options
		scenarios string
		write     string
	)
	flag.IntVar(&o.Concurrency, "c", 32, "concurrent clients (one MCP session each)")
	flag.DurationVar(&o.Duration, "d", 10*time.Second, "measured duration per target and scenario (at most 60s)")
	flag.DurationVar(&o.Warmup, "warmup", 2*time.Second, "warm-up before each measurement")
	flag.IntVar(&o.Rounds, "rounds", 1, "repeat every measurement this many times, interleaved, and merge the samples (scale: default 6, in ABBA order, with each round's ratios and their median)")
	flag.StringVar(&scenarios, "scenarios", defaultScenarios, "comma-separated scenarios ("+strings.Join(allScenarios, ", ")+"; -json: a backend answering with application/json instead of SSE; "+scenarioToken+": the token endpoint against floor-normal; "+scenarioScale+", on its own: refresh with 1k against 100k stored grants)")
	flag.IntVar(&o.Tools, "tools", 100, "padding tools on the backend (the tools/list size)")
	flag.BoolVar(&o.InProcess, "inprocess", false, "run backend, proxy and mcpgate inside the harness process instead of as child processes")
	flag.StringVar(&o.Binary, "external", "", "mcpgate binary to run (default: go build ./cmd/mcpgate into a temp dir)")
	flag.IntVar(&o.Startups, "startups", 4, "extra mcpgate start-ups to time, besides the measured one (external mode)")
	flag.StringVar(&o.ProfileDir, "profile", "", "write CPU and allocation profiles and a 1 s execution trace of each target's process, per scenario, to this directory (e.g. bench/profiles); the token scenario profiles floor-normal too")
	var tokenC, scaleGrants, storeDriver, pgDSN string
	flag.StringVar(&tokenC, "token-c", "8,32", "token/scale scenarios: concurrent clients, one measurement each (scale uses the first)")
	flag.StringVar(&scaleGrants, "scale-grants", "1000,100000", "scale scenario: stored grants per instance; the first is the baseline")
	flag.StringVar(&storeDriver, "store", "sqlite", "token/scale scenarios: mcpgate's store, sqlite or postgres")
	flag.StringVar(&pgDSN, "pg", os.Getenv("MCPGATE_TEST_POSTGRES_DSN"), "-store postgres: PostgreSQL DSN (each instance gets its own schema, dropped after)")
	flag.StringVar(&write, "write", "", "also write the results into this markdown file (e.g. docs/benchmarks.md)")
	flag.Parse()
	o.Progress = os.Stderr
	o.Settle = time.Second
	if o.InProcess {
		o.Startups = 0
	}
	var tokenSc string
	var err error
	if o.Scenarios, tokenSc, err = splitScenarios(scenarios); err != nil {
		fail(err)
	}
	cmd := strings.Join(append([]string{"go run ./bench"}, os.Args[1:]...), " ")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var md string
	if len(o.Scenarios) > 0 {
		rep, err := run(ctx, o)
		if err != nil {
			fail(err)
		}
		md = rep.markdown(cmd)
		fmt.Print(md)
		if len(rep.Profiles) > 0 {
			fmt.Fprintln(os.Stderr, "profiles:", strings.Join(rep.Profiles, " "))
		}
	}
	tokenErrors := 0
	if tokenSc != "" {
		to := tokenOptions{Scenario: tokenSc, Duration: o.Duration, Warmup: o.Warmup, Rounds: o.Rounds,
			Store: storeDriver, PostgresDSN: pgDSN, ProfileDir: o.ProfileDir, Progress: os.Stderr}
		if tokenSc == scenarioScale && !flagSet("rounds") {
			// Seeding dominates the scale run: more rounds cost little and
			// give the per-round median its meaning.
			to.Rounds = defaultScaleRounds
		}
		if to.Conc, err = intList(tokenC); err == nil {
			to.Grants, err = intList(scaleGrants)
		}
		var rep *tokenReport
		if err == nil {
			rep, err = runToken(ctx, to)
		}
		if err != nil {
			fail(err)
		}
		tmd := rep.markdown(cmd)
		if md != "" {
			tmd = "\n### Token endpoint: floor-normal against mcpgate, code exchange and refresh\n\n" + tmd
		}
		fmt.Print(tmd)
		md += tmd
		tokenErrors = rep.errors()
	}
	if write != "" && len(o.Scenarios) > 0 {
		if err := writeDoc(write, md); err != nil {
			fail(err)
		}
		fmt.Fprintln(os.Stderr, "wrote", write)
	}
	if tokenErrors > 0 {
		os.Exit(1)
	}
}

// splitScenarios splits -scenarios into the proxy scenarios and the token
// endpoint's (token or scale, run after them); scale runs on its own.
func splitScenarios(list string) (proxy []string, token string, err error) {
	for _, sc := range strings.Split(list, ",") {
		switch {
		case sc != scenarioToken && sc != scenarioScale:
			proxy = append(proxy, sc)
		case token != "":
			return nil, "", fmt.Errorf("-scenarios: %s and %s run separately", token, sc)
		default:
			token = sc
		}
	}
	if token == scenarioScale && len(proxy) > 0 {
		return nil, "", fmt.Errorf("-scenarios %s runs on its own", scenarioScale)
	}
	return proxy, token, nil
}

// fail reports err and exits.
func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

// defaultScenarios is every proxy scenario, then the token endpoint against
// floor-normal: every comparison issue 15 asks for, in one run.
var defaultScenarios = strings.Join(allScenarios, ",") + "," + scenarioToken

// defaultScaleRounds is -rounds for -scenarios scale when not given.
const defaultScaleRounds = 6

// flagSet reports whether the command line set flag name.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// intList parses "8,32".
func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("bad number list %q", s)
		}
		out = append(out, n)
	}
	return out, nil
}
