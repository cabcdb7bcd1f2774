package store_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/validate"
)

func TestConfigDefaults(t *testing.T) {
	var c store.Config
	c.SetDefaults()
	want := store.Config{Driver: "sqlite", DSN: "./mcpgate.db", SweepInterval: 5 * time.Minute, RefreshCacheMiB: 128}
	if d := cmp.Diff(want, c); d != "" {
		t.Errorf("defaults (-want +got):\n%s", d)
	}
	pg := store.Config{Driver: "postgres"}
	pg.SetDefaults()
	if pg.DSN != "" || pg.RefreshCacheMiB != 0 {
		t.Errorf("postgres got a default DSN %q or refresh cache %d", pg.DSN, pg.RefreshCacheMiB)
	}
}

func TestConfigYAML(t *testing.T) {
	var c store.Config
	if err := yaml.Unmarshal([]byte("driver: postgres\ndsn: postgres://u@h/db\nsweep_interval: 90s\n"), &c); err != nil {
		t.Fatal(err)
	}
	want := store.Config{Driver: "postgres", DSN: "postgres://u@h/db", SweepInterval: 90 * time.Second}
	if d := cmp.Diff(want, c); d != "" {
		t.Errorf("yaml (-want +got):\n%s", d)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  store.Config
		want []string
	}{
		{"sqlite ok", store.Config{Driver: "sqlite", DSN: "/var/lib/mcpgate/db", SweepInterval: time.Minute}, nil},
		{"postgres ok", store.Config{Driver: "postgres", DSN: "postgres://x", SweepInterval: time.Minute}, nil},
		{"memory ok", store.Config{Driver: "memory", SweepInterval: time.Minute}, nil},
		{"unknown driver", store.Config{Driver: "redis", SweepInterval: time.Minute},
			[]string{`store.driver: must be one of sqlite, postgres, memory (got "redis")`}},
		{"sqlite no dsn", store.Config{Driver: "sqlite", SweepInterval: time.Minute},
			[]string{"store.dsn: is required for driver sqlite (a file path)"}},
		{"sqlite uri", store.Config{Driver: "sqlite", DSN: "file:x.db?mode=ro", SweepInterval: time.Minute},
			[]string{"store.dsn: must be a plain file path for driver sqlite (no file: URI or query parameters)"}},
		{"postgres no dsn", store.Config{Driver: "postgres", SweepInterval: time.Minute},
			[]string{"store.dsn: is required for driver postgres (a connection string)"}},
		{"memory with dsn", store.Config{Driver: "memory", DSN: "x", SweepInterval: time.Minute},
			[]string{"store.dsn: must be empty for driver memory"}},
		{"sqlite refresh cache", store.Config{Driver: "sqlite", DSN: "x.db", SweepInterval: time.Minute, RefreshCacheMiB: 1}, nil},
		{"refresh cache too large", store.Config{Driver: "sqlite", DSN: "x.db", SweepInterval: time.Minute, RefreshCacheMiB: 4097},
			[]string{"store.refresh_cache_mib: must be 1 to 4096 (got 4097)"}},
		{"refresh cache negative", store.Config{Driver: "sqlite", DSN: "x.db", SweepInterval: time.Minute, RefreshCacheMiB: -1},
			[]string{"store.refresh_cache_mib: must be 1 to 4096 (got -1)"}},
		{"refresh cache on postgres", store.Config{Driver: "postgres", DSN: "postgres://x", SweepInterval: time.Minute, RefreshCacheMiB: 64},
			[]string{"store.refresh_cache_mib: is for driver sqlite only"}},
		{"every problem at once", store.Config{Driver: "sqlite", SweepInterval: -time.Second},
			[]string{"store.dsn: is required for driver sqlite (a file path)", "store.sweep_interval: must be at least 1s (got -1s)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p validate.Problems
			tc.cfg.Validate("store", &p)
			if d := cmp.Diff(tc.want, p.List()); d != "" {
				t.Errorf("problems (-want +got):\n%s", d)
			}
		})
	}
}

type countingSweeper struct {
	calls atomic.Int32
	err   error
}

func (s *countingSweeper) DeleteExpired(context.Context, time.Time) (int64, error) {
	s.calls.Add(1)
	return 1, s.err
}

func TestRunSweeper(t *testing.T) {
	for _, sweepErr := range []error{nil, errors.New("disk full")} {
		s := &countingSweeper{err: sweepErr}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			store.RunSweeper(ctx, s, 5*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
			close(done)
		}()
		deadline := time.Now().Add(5 * time.Second)
		for s.calls.Load() < 3 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("RunSweeper did not stop after cancel")
		}
		// Errors do not stop the loop: it kept sweeping.
		if n := s.calls.Load(); n < 3 {
			t.Errorf("sweeper (err=%v) ran %d times, want >= 3", sweepErr, n)
		}
	}
}
