package groupcommit

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// item is a caller's work: fn runs in the batch; err and panicked are its
// outcome, batch the number of the commit that held it.
type item struct {
	Waiter
	id       int
	fn       func() error
	err      error
	panicked any
	batch    int
}

// recorder commits batches, running each item's fn as internal/store/sqlite
// does: an error or a panic stays in its item.
type recorder struct {
	mu      sync.Mutex
	batches [][]int // item ids per commit
	gate    chan struct{}
	entered chan struct{}
}

func (r *recorder) commit(batch []*item) {
	r.mu.Lock()
	ids := make([]int, len(batch))
	for i, it := range batch {
		ids[i] = it.id
	}
	r.batches = append(r.batches, ids)
	n := len(r.batches)
	gate, entered := r.gate, r.entered
	r.gate, r.entered = nil, nil
	r.mu.Unlock()
	if gate != nil { // hold this commit until the test lets it go
		close(entered)
		<-gate
	}
	for _, it := range batch {
		it.batch = n
		if it.fn != nil {
			func() {
				defer func() {
					if p := recover(); p != nil {
						it.panicked, it.err = p, errors.New("panicked")
					}
				}()
				it.err = it.fn()
			}()
		}
	}
}

// do is a caller: it re-raises its item's panic, as a store write does.
func do(q *Queue[*item], it *item) error {
	q.Do(it)
	if it.panicked != nil {
		panic(it.panicked)
	}
	return it.err
}

// blockedLeader starts a caller whose commit blocks, and returns once it
// is committing; release lets it finish.
func blockedLeader(t *testing.T, q *Queue[*item], r *recorder) (release func()) {
	t.Helper()
	gate, entered := make(chan struct{}), make(chan struct{})
	r.mu.Lock()
	r.gate, r.entered = gate, entered
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { q.Do(&item{id: -1}); close(done) }()
	<-entered
	return func() {
		close(gate)
		<-done
	}
}

func waitQueued(t *testing.T, q *Queue[*item], n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); q.Queued() != n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d queued, want %d", q.Queued(), n)
		}
	}
}

// TestLeaderCommitsAtOnce: a caller alone commits its item in a batch of
// its own, in its own goroutine, without waiting for company.
func TestLeaderCommitsAtOnce(t *testing.T) {
	r := &recorder{}
	q := New(0, r.commit)
	it := &item{id: 1}
	if err := do(q, it); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.batches[0], []int{1}) || it.batch != 1 {
		t.Errorf("batches %v, item in batch %d; want [[1]], 1", r.batches, it.batch)
	}
	if err := do(q, it); err != nil || len(r.batches) != 2 { // reused once Do returned
		t.Errorf("second Do: %v, batches %v", err, r.batches)
	}
}

// TestFollowersWaitForTheirBatch: callers that arrive during a commit wait,
// then make one batch led by the first of them (batch[0]), in arrival
// order, and each returns only after that batch was committed.
func TestFollowersWaitForTheirBatch(t *testing.T) {
	r := &recorder{}
	q := New(0, r.commit)
	release := blockedLeader(t, q, r)
	items := make([]*item, 5)
	var returned atomic.Int32
	var wg sync.WaitGroup
	for i := range items {
		items[i] = &item{id: i}
		wg.Go(func() {
			do(q, items[i])
			returned.Add(1)
		})
		waitQueued(t, q, i+1) // arrival order is the queue's order
	}
	time.Sleep(10 * time.Millisecond)
	if n := returned.Load(); n != 0 {
		t.Fatalf("%d callers returned before their batch was committed", n)
	}
	release()
	wg.Wait()
	if want := [][]int{{-1}, {0, 1, 2, 3, 4}}; !slices.EqualFunc(r.batches, want, slices.Equal) {
		t.Errorf("batches %v, want %v", r.batches, want)
	}
	for _, it := range items {
		if it.batch != 2 {
			t.Errorf("item %d returned from batch %d, want 2", it.id, it.batch)
		}
	}
	if q.Queued() != 0 || q.leading {
		t.Errorf("after the last batch: %d queued, leading %v", q.Queued(), q.leading)
	}
}

// TestBatchBound: a queue longer than max is committed in batches of max,
// in order, each led by its first item.
func TestBatchBound(t *testing.T) {
	r := &recorder{}
	q := New(3, r.commit)
	release := blockedLeader(t, q, r)
	var wg sync.WaitGroup
	for i := range 7 {
		wg.Go(func() { do(q, &item{id: i}) })
		waitQueued(t, q, i+1)
	}
	release()
	wg.Wait()
	if want := [][]int{{-1}, {0, 1, 2}, {3, 4, 5}, {6}}; !slices.EqualFunc(r.batches, want, slices.Equal) {
		t.Errorf("batches %v, want %v", r.batches, want)
	}
}

// TestFailureStaysInItsItem: an item's error reaches its caller only; a
// panicking item's caller panics, the others of its batch succeed, and
// later callers still get the lead.
func TestFailureStaysInItsItem(t *testing.T) {
	r := &recorder{}
	q := New(0, r.commit)
	release := blockedLeader(t, q, r)
	refused := errors.New("refused")
	fns := []func() error{
		func() error { return nil },
		func() error { return refused },
		func() error { panic("bug") },
		func() error { return nil },
	}
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Go(func() {
			defer func() {
				if p := recover(); p != nil {
					errs[i] = fmt.Errorf("panic: %v", p)
				}
			}()
			errs[i] = do(q, &item{id: i, fn: fn})
		})
		waitQueued(t, q, i+1)
	}
	release()
	wg.Wait()
	if errs[0] != nil || errs[1] != refused || errs[2] == nil || errs[2].Error() != "panic: bug" || errs[3] != nil {
		t.Fatalf("errors %v; want nil, refused, the panic, nil", errs)
	}
	done := make(chan error, 1)
	go func() { done <- do(q, &item{id: 9}) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("after the panic: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no caller leads after a batch with a panic")
	}
}

// TestConcurrentCallersExactlyOnce: under load, with reused items, every
// Do is committed exactly once and no batch exceeds max.
func TestConcurrentCallersExactlyOnce(t *testing.T) {
	var mu sync.Mutex
	seen := map[int]int{}
	largest := 0
	q := New(4, func(batch []*item) {
		mu.Lock()
		defer mu.Unlock()
		largest = max(largest, len(batch))
		for _, it := range batch {
			seen[it.id]++
		}
	})
	const callers, each = 8, 200
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			it := &item{}
			for i := range each {
				it.id = c*each + i
				q.Do(it)
			}
		})
	}
	wg.Wait()
	if len(seen) != callers*each || largest > 4 {
		t.Fatalf("%d items committed, largest batch %d; want %d, ≤ 4", len(seen), largest, callers*each)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("item %d committed %d times", id, n)
		}
	}
}
