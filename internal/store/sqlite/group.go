package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"github.com/mcpgate/mcpgate/internal/groupcommit"
)

// Group commit. SQLite has one writer, and much of a small write
// transaction's cost is its BEGIN and COMMIT: the locks, and the WAL frames
// of every page it changed, many of them shared by all writes (interior
// pages, the leaves rows are appended to).
// So the write transactions of the token endpoint (code redemption,
// refresh token rotation) queue up (internal/groupcommit): the first caller
// leads, the callers that arrive while its transaction runs wait, and the
// next leader runs all of theirs in one transaction. One request's failure
// (a code already redeemed, a constraint) rolls back its writes only (see
// commitBatch). Every caller gets its answer after the COMMIT that holds its
// writes returned, so nothing answered is lost to a crash (WAL, as with one
// transaction per request); a failed COMMIT fails every request of the
// batch. internal/audit batches its writes with the same queue.

// maxBatch bounds the requests one transaction holds: the queue is bounded
// by the concurrent requests, this bounds how long one COMMIT keeps the
// writer.
const maxBatch = 64

// txOp is one caller's write: fn runs its statements in the batch's
// transaction. An error from fn rolls back fn's writes only; a caller that
// must keep its writes and still fail (a refused redemption spends the
// code) returns nil and reports the failure itself. fn may run again after
// its writes were rolled back (see commitBatch): it must assign what it
// reports, not accumulate it, and touch nothing outside tx.
type txOp struct {
	groupcommit.Waiter
	ctx      context.Context
	fn       func(ctx context.Context, tx *rawConn) error
	err      error
	panicked any // what fn panicked with, re-raised in its caller
}

var opPool = sync.Pool{New: func() any { return new(txOp) }}

// write runs fn in a write transaction shared with concurrent callers and
// returns fn's error, or the error that kept its writes from committing.
func (s *Store) write(ctx context.Context, fn func(ctx context.Context, tx *rawConn) error) error {
	op := opPool.Get().(*txOp)
	op.ctx, op.fn = ctx, fn
	s.group.Do(op)
	err, p := op.err, op.panicked
	*op = txOp{Waiter: op.Waiter}
	opPool.Put(op)
	if p != nil {
		panic(p)
	}
	return err
}

// errPanicked is the outcome of a write whose fn panicked.
var errPanicked = errors.New("sqlite: write panicked")

// run runs op's fn. A panic (a bug in an IssueFunc, say) must not unwind
// the leader, which would leave the other callers waiting and the lead
// taken for good: it fails op, whose caller panics with it (write).
func (op *txOp) run(ctx context.Context, tx *rawConn) {
	defer func() {
		if p := recover(); p != nil {
			op.panicked, op.err = p, errPanicked
		}
	}()
	op.err = op.fn(ctx, tx)
}

// lead commits a batch of queued writes (s.group's commit).
func (s *Store) lead(batch []*txOp) {
	// The transaction is the batch's, not the leader's request's: a
	// cancelled leader must not roll back the others.
	s.commitBatch(context.WithoutCancel(batch[0].ctx), batch)
}

const (
	qSavepoint  = `SAVEPOINT op`
	qRelease    = `RELEASE op`
	qRollbackTo = `ROLLBACK TO op`
)

// commitBatch runs batch in one transaction and sets each op's err.
//
// A batch first runs optimistically: its ops one after another, with
// nothing between them. A SAVEPOINT and a RELEASE per op cost about half
// as much CPU as the op's own statements (issue 15's profile of a
// refresh), and ops rarely fail. If one does, the whole transaction is rolled back and the batch
// runs again with a savepoint per op (runBatch), so that the failed op's
// writes go and the others' are committed, once. Running an op twice is
// correct because every fn passed to write assigns its results (never
// accumulates them) and acts on nothing but the transaction: see
// RedeemAuthCode and RotateRefreshToken.
func (s *Store) commitBatch(ctx context.Context, batch []*txOp) {
	err := s.withWriter(ctx, func(c *rawConn) error {
		if len(batch) > 1 && tryBatch(ctx, c, batch) {
			return nil
		}
		runBatch(ctx, c, batch)
		return nil
	})
	if err != nil {
		failBatch(batch, mapErr("writer connection", err))
	}
}

// tryBatch runs batch in one transaction without savepoints and reports
// whether that settled it: false if an op failed, with the transaction
// rolled back and every op's outcome cleared for runBatch.
func tryBatch(ctx context.Context, c *rawConn, batch []*txOp) bool {
	if err := c.begin(ctx); err != nil {
		failBatch(batch, mapErr("begin", err))
		return true
	}
	for _, op := range batch {
		if op.err = op.ctx.Err(); op.err != nil {
			continue // gone: its writes are not wanted
		}
		if op.run(ctx, c); op.err != nil {
			// Its writes cannot be told from the others': start over.
			c.rollback()
			for _, op := range batch {
				op.err, op.panicked = nil, nil
			}
			return false
		}
	}
	if err := c.commit(ctx); err != nil {
		for _, op := range batch {
			op.err = err // nothing of the batch is stored
		}
	}
	return true
}

// failBatch fails every op of batch that has no error yet.
func failBatch(batch []*txOp, err error) {
	for _, op := range batch {
		if op.err == nil {
			op.err = err
		}
	}
}

// runBatch runs batch in one transaction, each op under its own savepoint
// (a lone op: the transaction is its savepoint).
func runBatch(ctx context.Context, c *rawConn, batch []*txOp) {
	if err := c.begin(ctx); err != nil {
		failBatch(batch, mapErr("begin", err))
		return
	}
	defer c.rollback() // unless committed
	if len(batch) == 1 {
		op := batch[0]
		if op.err = op.ctx.Err(); op.err == nil {
			op.run(ctx, c)
		}
		if op.err == nil {
			op.err = c.commit(ctx)
		}
		return
	}
	for _, op := range batch {
		if op.err = op.ctx.Err(); op.err != nil {
			continue
		}
		if _, err := c.exec(ctx, qSavepoint); err != nil {
			failBatch(batch, mapErr("savepoint", err))
			return
		}
		if op.run(ctx, c); op.err != nil {
			// ROLLBACK TO keeps the savepoint open: release it too. If
			// that fails, the transaction itself is gone.
			if _, err := c.exec(ctx, qRollbackTo); err != nil {
				failBatch(batch, mapErr("rollback to savepoint", err))
				return
			}
		}
		if _, err := c.exec(ctx, qRelease); err != nil {
			failBatch(batch, mapErr("release savepoint", err))
			return
		}
	}
	if err := c.commit(ctx); err != nil {
		for _, op := range batch {
			op.err = err // nothing of the batch is stored
		}
	}
}

// commit commits tx. When a COMMIT fails, the driver rolls back what is
// left of the transaction (modernc.org/sqlite's tx.Commit), so the writer
// connection goes back to the pool clean and the next BEGIN works.
func commit(tx *sql.Tx) error {
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	return nil
}
