// Package flight shares one call among concurrent callers with the same key
// (golang.org/x/sync/singleflight), run apart from any one caller's context:
// a fetch that serves every waiter cannot be failed by one impatient caller,
// and each caller still stops waiting when its own context ends.
package flight

import (
	"context"
	"time"

	"golang.org/x/sync/singleflight"
)

// Group runs one call per key at a time. The zero value is ready to use.
type Group[V any] struct {
	g singleflight.Group
	// Timeout bounds each call, since no caller's context does; 0: none.
	Timeout time.Duration
	// Joined, if set, is called once a caller waits on a call (its own or
	// a shared one): a test hook, so tests need not guess with sleeps.
	Joined func(key string)
}

// Do returns the result of fn, run once for every caller that arrives while
// it runs. fn gets the first caller's context values without its
// cancellation, bounded by Timeout. A caller whose ctx ends first gets
// ctx.Err(); the call goes on for the others.
func (f *Group[V]) Do(ctx context.Context, key string, fn func(context.Context) (V, error)) (V, error) {
	ch := f.g.DoChan(key, func() (any, error) {
		cctx := context.WithoutCancel(ctx)
		if f.Timeout > 0 {
			var cancel context.CancelFunc
			cctx, cancel = context.WithTimeout(cctx, f.Timeout)
			defer cancel()
		}
		return fn(cctx)
	})
	if f.Joined != nil {
		f.Joined(key)
	}
	select {
	case r := <-ch:
		v, _ := r.Val.(V)
		return v, r.Err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}
