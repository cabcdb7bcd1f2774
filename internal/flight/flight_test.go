package flight

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSharesOneCall(t *testing.T) {
	var f Group[int]
	var joined sync.WaitGroup
	f.Joined = func(string) { joined.Done() }
	var calls atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	results := make([]int, 8)
	joined.Add(len(results))
	for i := range results {
		wg.Go(func() {
			results[i], _ = f.Do(context.Background(), "k", func(context.Context) (int, error) {
				calls.Add(1)
				<-release
				return 7, nil
			})
		})
	}
	// Every caller waits on the running call before it is released.
	joined.Wait()
	close(release)
	wg.Wait()
	if calls.Load() != 1 {
		t.Fatalf("calls = %d, want 1", calls.Load())
	}
	for i, r := range results {
		if r != 7 {
			t.Errorf("result %d = %d", i, r)
		}
	}
	// The call is forgotten once done: the next caller runs a new one.
	f.Joined = nil
	if v, _ := f.Do(context.Background(), "k", func(context.Context) (int, error) { calls.Add(1); return 8, nil }); v != 8 || calls.Load() != 2 {
		t.Errorf("after the shared call: %d, %d calls; want 8, 2", v, calls.Load())
	}
	// Other keys do not share.
	if v, _ := f.Do(context.Background(), "other", func(context.Context) (int, error) { return 9, nil }); v != 9 {
		t.Errorf("other key = %d", v)
	}
}

func TestWaiterHonoursOwnContext(t *testing.T) {
	var f Group[int]
	release := make(chan struct{})
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := f.Do(ctx, "k", func(context.Context) (int, error) { <-release; return 1, nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// TestCallOutlivesCaller: the call does not see the first caller's
// cancellation, and is bounded by Timeout instead.
func TestCallOutlivesCaller(t *testing.T) {
	f := Group[error]{Timeout: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _ = f.Do(ctx, "k", func(c context.Context) (error, error) {
			cancel() // the caller gives up
			time.Sleep(10 * time.Millisecond)
			if c.Err() != nil {
				done <- errors.New("call cancelled with its caller")
				return nil, nil
			}
			<-c.Done() // Timeout ends it
			done <- c.Err()
			return nil, nil
		})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call ended with %v, want DeadlineExceeded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Timeout did not bound the call")
	}
}

func TestErrorShared(t *testing.T) {
	var f Group[*int]
	boom := errors.New("boom")
	v, err := f.Do(context.Background(), "k", func(context.Context) (*int, error) { return nil, boom })
	if v != nil || !errors.Is(err, boom) {
		t.Fatalf("got %v, %v", v, err)
	}
}
