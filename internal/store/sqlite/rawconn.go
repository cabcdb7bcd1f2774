package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"slices"
)

// rawConn runs the token endpoint's statements on the writer connection
// through the driver (modernc.org/sqlite) itself, not database/sql: a
// group commit's BEGIN, ops and COMMIT (see commitBatch) and the reads on
// the writer (see warmRow). database/sql costs per statement a Stmt's
// connection lookup, the conversion of every argument, a Rows with its
// locks, and a Scan that copies every blob the driver already copied; per
// transaction a Tx, and the driver prepares the BEGIN and the COMMIT
// anew. BenchmarkTokenPath (issue 15; 2 cores, three interleaved runs
// each), database/sql → rawConn: CPU per exchange 87 → 67 µs, per refresh
// 103 → 92 µs; allocations 150 → 117 and 161 → 129.
//
// Statements are prepared once per connection, at first use: the pool
// replaces a connection that went bad (a callback's driver.ErrBadConn,
// or a panic), and the statements of the old one went with it. A
// rawConn is used only inside sql.Conn.Raw on the writer, which has one
// connection: one caller at a time.
type rawConn struct {
	dc    driver.ConnPrepareContext // the connection stmts were prepared on
	stmts map[string]rawStmt
	args  []driver.NamedValue // scratch for a statement's arguments
	inTx  bool                // a BEGIN of ours is open
}

type rawStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

const (
	qBegin    = `BEGIN IMMEDIATE`
	qCommit   = `COMMIT`
	qRollback = `ROLLBACK`
)

// rawQueries are the statements run through rawConn, prepared at Open on
// the writer (as writeQueries, which holds the others): the transactions'
// and the token endpoint's (tokenQueries).
var (
	tokenQueries = []string{
		qConsumeCode, qUsedCode, qInsertGrant, qInsertRefresh, qRotateRefresh, qRefreshLive,
		qGetGrant, qGetRefresh, qGetRefreshGrant,
	}
	rawQueries = slices.Concat([]string{qBegin, qCommit, qRollback, qSavepoint, qRelease, qRollbackTo}, tokenQueries)
)

// withWriter runs f with the writer connection (waiting for it as
// database/sql does, until ctx is done). Callers that must not be
// interrupted pass a context without cancellation: with one, the driver
// starts a goroutine per statement to interrupt it (see warmRow).
func (s *Store) withWriter(ctx context.Context, f func(c *rawConn) error) error {
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		c := &s.raw
		if c.dc != dc {
			pc, ok := dc.(driver.ConnPrepareContext)
			if !ok {
				return fmt.Errorf("sqlite: driver connection %T cannot prepare", dc)
			}
			// The old connection was closed with its statements.
			c.dc, c.stmts, c.inTx = pc, make(map[string]rawStmt, len(rawQueries)), false
		}
		err := f(c)
		if c.inTx {
			// f left a transaction open (a bug): it must not reach the
			// pool's next user.
			if _, rerr := c.exec(context.Background(), qRollback); rerr != nil {
				return driver.ErrBadConn
			}
			c.inTx = false
		}
		return err
	})
}

// prepareRaw prepares rawQueries on the writer.
func (s *Store) prepareRaw(ctx context.Context) error {
	return s.withWriter(ctx, func(c *rawConn) error {
		for _, q := range rawQueries {
			if _, err := c.stmt(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
}

// closeRaw finalizes the statements of rawConn (at Close).
func (s *Store) closeRaw() error {
	return s.withWriter(context.Background(), func(c *rawConn) error {
		var err error
		for q, st := range c.stmts {
			err = errors.Join(err, st.Close())
			delete(c.stmts, q)
		}
		return err
	})
}

func (c *rawConn) stmt(ctx context.Context, q string) (rawStmt, error) {
	if st, ok := c.stmts[q]; ok {
		return st, nil
	}
	ds, err := c.dc.PrepareContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("sqlite: prepare %q: %w", q, err)
	}
	st, ok := ds.(rawStmt)
	if !ok {
		ds.Close()
		return nil, fmt.Errorf("sqlite: driver statement %T runs without a context", ds)
	}
	c.stmts[q] = st
	return st, nil
}

// bind sets c.args to args, as database/sql would pass them: int as int64
// (the store's other arguments are driver.Values already).
func (c *rawConn) bind(args []any) []driver.NamedValue {
	c.args = c.args[:0]
	for i, a := range args {
		if n, ok := a.(int); ok {
			a = int64(n)
		}
		c.args = append(c.args, driver.NamedValue{Ordinal: i + 1, Value: a})
	}
	return c.args
}

// exec runs q. The arguments are released before it returns: the driver
// keeps none of them.
func (c *rawConn) exec(ctx context.Context, q string, args ...any) (driver.Result, error) {
	st, err := c.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	res, err := st.ExecContext(ctx, c.bind(args))
	clear(c.args)
	switch {
	case err != nil:
	case q == qBegin:
		c.inTx = true
	case q == qCommit || q == qRollback:
		c.inTx = false
	}
	return res, err
}

// row runs q and returns its first row, read to the end (a RETURNING
// statement completes its write) and closed.
func (c *rawConn) row(ctx context.Context, q string, args ...any) scanner {
	st, err := c.stmt(ctx, q)
	if err != nil {
		return errRow{err}
	}
	rows, err := st.QueryContext(ctx, c.bind(args))
	clear(c.args)
	if err != nil {
		return errRow{err}
	}
	r := rawRow{vals: make([]driver.Value, len(rows.Columns()))}
	switch err := rows.Next(r.vals); {
	case err == io.EOF:
		r.err = sql.ErrNoRows
	case err != nil:
		r.err = err
	}
	if err := rows.Close(); err != nil && r.err == nil {
		r.err = err
	}
	return r
}

// begin starts a write transaction.
func (c *rawConn) begin(ctx context.Context) error {
	_, err := c.exec(ctx, qBegin)
	return err
}

// commit commits the transaction. A COMMIT that fails (a deferred
// constraint, a busy database) may leave it open: it is rolled back, so
// that the connection goes back to the pool clean, as modernc.org/sqlite's
// tx.Commit does.
func (c *rawConn) commit(ctx context.Context) error {
	if _, err := c.exec(ctx, qCommit); err != nil {
		c.rollback()
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	return nil
}

// rollback ends the transaction, if one is open (an error may have ended
// it already).
func (c *rawConn) rollback() {
	if c.inTx {
		if _, err := c.exec(context.Background(), qRollback); err != nil {
			// No transaction left to roll back (SQLite ended it).
			c.inTx = false
		}
	}
}

// rawRow is a row as the driver returned it: its blobs are copies the
// driver made for it, so Scan hands them over rather than copying again.
type rawRow struct {
	vals []driver.Value
	err  error
}

// Scan stores the row's columns in dest: *string, *int64, *bool, *[]byte
// or *any, the types the store scans to, with database/sql's rules for
// them (a TEXT or BLOB to a string or a []byte, an integer to a bool; NULL
// only to a []byte or an any).
func (r rawRow) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	if len(dest) != len(r.vals) {
		return fmt.Errorf("sqlite: %d columns scanned to %d destinations", len(r.vals), len(dest))
	}
	for i, v := range r.vals {
		ok := false
		switch d := dest[i].(type) {
		case *string:
			switch v := v.(type) {
			case string:
				*d, ok = v, true
			case []byte:
				*d, ok = string(v), true
			}
		case *int64:
			*d, ok = v.(int64)
		case *bool:
			var n int64
			n, ok = v.(int64)
			*d = n != 0
		case *[]byte:
			switch v := v.(type) {
			case []byte:
				*d, ok = v, true
			case string:
				*d, ok = []byte(v), true
			case nil:
				*d, ok = nil, true
			}
		case *any:
			*d, ok = v, true
		}
		if !ok {
			return fmt.Errorf("sqlite: column %d: cannot scan %T into %T", i, v, dest[i])
		}
	}
	return nil
}
