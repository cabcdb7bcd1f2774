// Package backends opens the store.Store a store.Config names. It lives
// apart from package store so that the backends can import store without a
// cycle.
package backends

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/memory"
	"github.com/mcpgate/mcpgate/internal/store/postgres"
	"github.com/mcpgate/mcpgate/internal/store/sqlite"
)

// Open opens the configured backend. cfg must have had SetDefaults and
// Validate applied. The caller closes the store and runs
// store.RunSweeper(ctx, s, cfg.SweepInterval, log) if it wants sweeping.
func Open(ctx context.Context, cfg store.Config, log *slog.Logger) (store.Store, error) {
	switch cfg.Driver {
	case store.DriverSQLite:
		return sqlite.OpenOptions(ctx, cfg.DSN, sqlite.Options{RefreshCacheBytes: cfg.RefreshCacheMiB << 20})
	case store.DriverPostgres:
		return postgres.Open(ctx, cfg.DSN)
	case store.DriverMemory:
		log.Warn("store: using the in-memory store; clients, sessions and signing keys are lost on restart and not shared between replicas (development only)")
		return memory.New(), nil
	default:
		return nil, fmt.Errorf("store: unknown driver %q", cfg.Driver)
	}
}
