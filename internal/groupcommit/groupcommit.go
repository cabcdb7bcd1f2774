// Package groupcommit shares one durable commit among concurrent callers
// (group commit). The first caller leads: it commits its own item at once,
// with no batching delay. Callers that arrive meanwhile queue; when the
// commit returns, the leader wakes the callers it covered and hands the
// lead to the first caller still queued, which commits the queue (up to a
// bound) as the next batch. A caller returns only after the commit that
// holds its item returned, so nothing a caller was answered is less
// durable than its own commit would have made it.
//
// internal/audit writes a batch of log lines with one write(2) (and one
// fsync), internal/store/sqlite runs a batch of token-endpoint writes in
// one transaction.
package groupcommit

import "sync"

// Waiter is the queue's state of one item. Embed it in the item type (the
// zero value is ready); an item may be reused once Do returned.
type Waiter struct {
	done bool          // the item's batch was committed; else: lead
	wake chan struct{} // one token per wait: done, or the lead handed over
}

func (w *Waiter) waiter() *Waiter { return w }

// Item is a pointer to a type that embeds Waiter.
type Item interface{ waiter() *Waiter }

// Queue is the queue of items waiting for a commit.
type Queue[T Item] struct {
	max    int
	commit func(batch []T)

	mu      sync.Mutex
	queue   []T // waiting for the next commit, in arrival order
	spare   []T // the previous batch's array, reused
	leading bool
}

// New returns a queue whose batches hold at most max items (0: no bound)
// and are committed by commit. commit runs in the leading caller, one
// batch at a time and never under the queue's lock; it records each item's
// outcome in the item, and must not panic: a panic of one item's work is
// its caller's to re-raise after Do. batch[0] is the leader's own item.
func New[T Item](max int, commit func(batch []T)) *Queue[T] {
	return &Queue[T]{max: max, commit: commit}
}

// Do queues it and returns once a commit that held it returned.
func (q *Queue[T]) Do(it T) {
	w := it.waiter()
	if w.wake == nil {
		w.wake = make(chan struct{}, 1)
	}
	w.done = false
	q.mu.Lock()
	q.queue = append(q.queue, it)
	lead := !q.leading
	q.leading = true
	q.mu.Unlock()
	if !lead {
		<-w.wake // done, or handed the lead
	}
	if !w.done {
		q.lead()
	}
}

// Queued is the number of items waiting for a commit (for tests).
func (q *Queue[T]) Queued() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.queue)
}

// lead commits up to max queued items (the caller's own first: it queued
// before any it leads: the lead goes to the first queued item), wakes their
// callers and hands the lead to the next queued caller, if any.
func (q *Queue[T]) lead() {
	q.mu.Lock()
	n := len(q.queue)
	if q.max > 0 {
		n = min(n, q.max)
	}
	var batch []T
	if n == len(q.queue) {
		batch, q.queue = q.queue, q.spare[:0]
	} else {
		batch = append(q.spare[:0], q.queue[:n]...)
		q.queue = append(q.queue[:0], q.queue[n:]...)
	}
	q.mu.Unlock()

	q.commit(batch)

	for i, it := range batch {
		w := it.waiter()
		w.done = true
		if i > 0 { // batch[0] is the caller's
			w.wake <- struct{}{} // never blocks: one token per wait
		}
	}
	clear(batch)
	q.mu.Lock()
	q.spare = batch[:0]
	var next T
	handOff := len(q.queue) > 0
	if handOff {
		next = q.queue[0]
	} else {
		q.leading = false
	}
	q.mu.Unlock()
	if handOff {
		next.waiter().wake <- struct{}{} // not done: it leads
	}
}
