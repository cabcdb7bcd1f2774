package policy

import (
	"context"
	"os"
	"sync/atomic"
	"time"
)

// Holder holds the current Engine for hot reload: requests Load it once and
// finish under that engine while a reload Stores a new one.
type Holder struct {
	p atomic.Pointer[Engine]
}

// NewHolder returns a Holder holding e.
func NewHolder(e *Engine) *Holder {
	h := &Holder{}
	h.p.Store(e)
	return h
}

// Load returns the current engine.
func (h *Holder) Load() *Engine { return h.p.Load() }

// Store makes e the current engine. A nil e is ignored, so a failed reload
// can never leave the gateway without a policy.
func (h *Holder) Store(e *Engine) {
	if e != nil {
		h.p.Store(e)
	}
}

// WatchInterval is how often Watch polls by default.
const WatchInterval = 2 * time.Second

// Watch polls the files every interval (WatchInterval if zero) and calls
// reload once after any of them changes (modification time, size, or the
// file appearing or disappearing, which covers editors that replace the
// file and Kubernetes ConfigMap symlink swaps). It returns when ctx ends.
// reload should compile the new policy and Store it only on success.
func Watch(ctx context.Context, interval time.Duration, reload func(), files ...string) {
	if interval <= 0 {
		interval = WatchInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	watch(ctx, t.C, reload, files)
}

// watch is Watch driven by tick, so that tests step it without sleeping.
func watch(ctx context.Context, tick <-chan time.Time, reload func(), files []string) {
	last := make([]fileStamp, len(files))
	for i, f := range files {
		last[i] = stampOf(f)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		changed := false
		for i, f := range files {
			if s := stampOf(f); s != last[i] {
				last[i], changed = s, true
			}
		}
		if changed {
			reload()
		}
	}
}

type fileStamp struct {
	exists bool
	mod    time.Time
	size   int64
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path) // follows symlinks: a swapped target counts
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{exists: true, mod: fi.ModTime(), size: fi.Size()}
}
