package store

import (
	"context"
	"log/slog"
	"time"
)

// Sweeper is the part of Store that RunSweeper needs.
type Sweeper interface {
	DeleteExpired(ctx context.Context, now time.Time) (int64, error)
}

// RunSweeper calls s.DeleteExpired every interval until ctx is done. Errors
// are logged and the sweep is retried at the next tick: expired objects are
// already invisible to getters, so a failed sweep only delays cleanup.
func RunSweeper(ctx context.Context, s Sweeper, interval time.Duration, log *slog.Logger) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n, err := s.DeleteExpired(ctx, now)
			switch {
			case err != nil && ctx.Err() == nil:
				log.Warn("store: sweeping expired objects failed", "err", err)
			case n > 0:
				log.Debug("store: swept expired objects", "count", n)
			}
		}
	}
}
