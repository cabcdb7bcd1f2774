package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// replicasMain runs `go run ./bench replicas`: two `mcpgate serve` replicas
// on one PostgreSQL behind a round-robin proxy without stickiness, under
// one of two loads (issue 14):
//
//	go run ./bench replicas -load kill -workers 8 -d 20s -kill-after 8s
//	go run ./bench replicas -load sessions -c 500 -d 60s -think 1s
//
// The DSN is -dsn or MCPGATE_TEST_POSTGRES_DSN; each run makes its own
// schema and drops it.
func replicasMain(args []string) error {
	fs := flag.NewFlagSet("bench replicas", flag.ContinueOnError)
	var (
		load      = fs.String("load", "kill", "kill: registration + sign-in + refresh from -workers, one replica killed with SIGKILL at -kill-after; sessions: -c MCP clients calling a tool")
		dsn       = fs.String("dsn", os.Getenv("MCPGATE_TEST_POSTGRES_DSN"), "PostgreSQL database to make a throwaway schema in")
		bin       = fs.String("external", "", "mcpgate binary (default: go build ./cmd/mcpgate into a temp dir)")
		dur       = fs.Duration("d", 20*time.Second, "load duration")
		workers   = fs.Int("workers", 8, "kill: concurrent sign-in loops")
		killAfter = fs.Duration("kill-after", 8*time.Second, "kill: SIGKILL replica 0 this long into the load (0: never)")
		refreshes = fs.Int("refreshes", 3, "kill: refreshes per sign-in")
		clients   = fs.Int("c", 500, "sessions: concurrent MCP clients")
		think     = fs.Duration("think", time.Second, "sessions: mean pause between a client's calls")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dsn == "" {
		return errors.New("no PostgreSQL: pass -dsn or set MCPGATE_TEST_POSTGRES_DSN")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "mcpgate-bench-replicas-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if *bin == "" {
		if *bin, err = buildMcpgate(ctx, dir); err != nil {
			return err
		}
	}
	switch *load {
	case "kill":
		r, err := runKillLoad(ctx, killOptions{Bin: *bin, Dir: dir, BaseDSN: *dsn, Workers: *workers, Duration: *dur,
			KillAfter: *killAfter, Refreshes: *refreshes, Progress: os.Stderr})
		if err != nil {
			return err
		}
		fmt.Print(r.markdown())
		for _, s := range r.Samples {
			fmt.Fprintln(os.Stderr, "sample:", s)
		}
		if !r.ok() {
			return errors.New("FAIL: something committed was lost, or the clients did not go on through the survivor")
		}
	case "sessions":
		r, err := runSessionsLoad(ctx, sessionsOptions{Bin: *bin, Dir: dir, BaseDSN: *dsn, Clients: *clients, Duration: *dur,
			Think: *think, Progress: os.Stderr})
		if err != nil {
			return err
		}
		fmt.Print(r.markdown())
		for _, s := range r.Samples {
			fmt.Fprintln(os.Stderr, "sample:", s)
		}
		if r.Errors > 0 {
			return fmt.Errorf("FAIL: %d errors", r.Errors)
		}
	default:
		return fmt.Errorf("-load %q: want kill or sessions", *load)
	}
	return nil
}
