package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/internal/groupcommit"
	"github.com/mcpgate/mcpgate/internal/validate"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrClosed is returned by Log after Close.
var ErrClosed = errors.New("audit: logger closed")

// Logger appends hash-chained records to a sink. It is safe for concurrent
// use; records are chained in the order Log acquires the chain lock.
type Logger struct {
	cfg      Config
	redactor *Redactor
	log      *slog.Logger
	now      func() time.Time
	failMode bool        // on_error: fail
	down     atomic.Bool // see Down

	failures prometheus.Counter
	written  prometheus.Counter
	lastSeq  prometheus.Gauge

	// Group commit: callers queue; one of them, the leader, takes the
	// queue, chains every record in it under mu and writes them with one
	// write(2) (and one fsync with fsync: always), then hands the lead to
	// the first caller that queued meanwhile (commit). The queue's lock is
	// never held while waiting for mu.
	group *groupcommit.Queue[*call]

	mu         sync.Mutex
	chain      *chainHasher
	w          io.Writer // nil for sink: none
	file       *rotatingFile
	seq        uint64  // of the last written record
	prev       hexHash // hash of the last written record
	prevLen    int     // len of prev: 0 at the start of a chain, else hashHexLen
	count      uint64  // records written by this process
	sinceCP    int     // records since the last checkpoint
	lastCP     time.Time
	lost       uint64        // records lost since the last successful write
	torn       bool          // the last write was partial: start the next one on a fresh line
	dirty      bool          // written since the last fsync
	buf        []byte        // chained lines not yet written; empty whenever mu is free
	pending    []pendingLine // the lines in buf
	closed     bool
	stop, done chan struct{}

	fault  *Fault   // see WithFault
	anchor *anchors // nil without anchor_file
}

// Option configures New.
type Option func(*Logger)

// WithWriter sends records to w instead of the configured sink (for tests and
// embedding). Chain and on_error rules apply as for stdout.
func WithWriter(w io.Writer) Option { return func(l *Logger) { l.w = w } }

// WithSlog sets the logger for audit write failures and checkpoints.
func WithSlog(s *slog.Logger) Option { return func(l *Logger) { l.log = s } }

// WithFault makes the sink fail on demand (see Fault), for tests and fault
// drills.
func WithFault(f *Fault) Option { return func(l *Logger) { l.fault = f } }

// WithClock sets the clock (for tests).
func WithClock(now func() time.Time) Option { return func(l *Logger) { l.now = now } }

// New opens the sink described by cfg (defaults are applied to a copy) and
// writes a "start" checkpoint. With sink: file and an existing log, the chain
// continues from the last record of the file (or of its newest rotated
// backup); New refuses to start when that record is not a valid chain record,
// rather than start a chain that does not verify.
func New(cfg Config, opts ...Option) (*Logger, error) {
	cfg.SetDefaults()
	var p validate.Problems
	cfg.Validate("audit", &p)
	if err := p.Err(); err != nil {
		return nil, err
	}
	l := &Logger{
		cfg:      cfg,
		redactor: NewRedactor(cfg.RedactKeys, cfg.MaxArgsBytes),
		log:      slog.Default(),
		now:      time.Now,
		failMode: cfg.OnError == OnErrorFail,
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mcpgate_audit_write_failures_total",
			Help: "Audit records or fsyncs that failed; with on_error: continue each failed record is lost.",
		}),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mcpgate_audit_records_total",
			Help: "Audit records written, checkpoints included.",
		}),
		lastSeq: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mcpgate_audit_chain_seq",
			Help: "Sequence number of the last audit record; its history anchors the chain length outside the log.",
		}),
	}
	l.group = groupcommit.New(0, l.commit)
	for _, o := range opts {
		o(l)
	}
	if l.cfg.Replica == "" {
		name, err := os.Hostname()
		if err != nil || !validReplica(name) {
			return nil, fmt.Errorf("audit: set audit.replica: the host name %q cannot name this replica (%v)", name, err)
		}
		l.cfg.Replica = name
	}
	var key []byte
	if cfg.HMACKeyEnv != "" {
		key = []byte(os.Getenv(cfg.HMACKeyEnv))
	}
	l.chain = newChainHasher(key)
	l.lastCP = l.now()

	startReason := "start"
	switch {
	case l.w != nil:
	case cfg.Sink == SinkStdout:
		l.w = os.Stdout
	case cfg.Sink == SinkFile:
		f, tail, err := openRotating(cfg.Path, int64(cfg.MaxSizeMB)<<20, cfg.MaxBackups)
		if err != nil {
			return nil, err
		}
		if tail.line != nil {
			e, err := parseLine(tail.line)
			if err == nil && l.chain.sum(*e.Prev, e.canonical) != e.Hash {
				err = errors.New("hash mismatch (wrong hmac key?)")
			}
			if err != nil {
				f.close()
				return nil, fmt.Errorf("audit: cannot continue the hash chain: last record of %s is invalid: %v; run `mcpgate audit verify` on it and move it aside", tail.name, err)
			}
			l.seq, l.prevLen = *e.Seq, copy(l.prev[:], e.Hash)
		}
		if tail.torn {
			startReason = "start after a torn final line (unclean shutdown)"
			l.log.Warn("audit: the log ended with an incomplete line; continuing the chain after it", "path", tail.name)
		}
		f.fault = l.fault
		l.file, l.w = f, f
	case cfg.Sink == SinkNone:
		return l, nil
	}
	if l.fault != nil && l.file == nil {
		l.w = faultWriter{w: l.w, f: l.fault}
	}
	if cfg.AnchorFile != "" {
		l.anchor = startAnchors(cfg.AnchorFile, l.log)
	}
	if err := l.checkpointLocked(startReason); err != nil {
		l.anchor.stop()
		l.closeSink()
		return nil, fmt.Errorf("audit: write start checkpoint: %w", err)
	}
	l.lastSeq.Set(float64(l.seq))
	if (l.file != nil && cfg.Fsync == FsyncInterval) || cfg.CheckpointInterval > 0 {
		l.stop, l.done = make(chan struct{}), make(chan struct{})
		go l.background()
	}
	return l, nil
}

// Collectors returns the Prometheus collectors for the caller to register:
// mcpgate_audit_write_failures_total, mcpgate_audit_records_total and
// mcpgate_audit_chain_seq.
func (l *Logger) Collectors() []prometheus.Collector {
	return []prometheus.Collector{l.failures, l.written, l.lastSeq}
}

// Log redacts r's arguments, chains r and writes it. It does not modify r.
// Cancellation of ctx does not stop the write: a cancelled request is audited
// too. With on_error: fail an error means the record was not written and the
// caller must not perform the action (fail the request, e.g. with 503); with
// on_error: continue, Log returns nil and the loss is counted and logged.
func (l *Logger) Log(ctx context.Context, r *Record) error {
	return l.LogBatch(ctx, []*Record{r})
}

// Down reports whether, with on_error: fail, the last write or fsync
// failed, so that the next record would most likely be refused too: the
// gateway refuses every request while it is set, on every path, so that no
// action goes unrecorded. It is cleared by the next write that succeeds
// and is durable as audit.fsync asks (with fsync: always, once its fsync
// succeeded too), whoever wrote it: a request's record (the refusal's own
// record probes the log) or a checkpoint. With on_error: continue it is
// false until Close; after Close it is true, as every record is then
// refused (ErrClosed).
func (l *Logger) Down() bool { return l.down.Load() }

// call is one LogBatch waiting for the write that covers its records.
// Calls are pooled.
type call struct {
	groupcommit.Waiter
	ctx    context.Context
	arena  []byte // the encoded records, back to back (reused with the call)
	ends   []int  // the end of each record in arena
	total  int    // records given
	encErr error  // encoding the record after the last in ends failed

	// Set by the leader under mu.
	appended int   // lines chained into buf
	written  int   // lines the sink took
	err      error // the first failure, nil if all written
	result   error
}

var callPool = sync.Pool{New: func() any { return new(call) }}

// pendingLine is a chained line in Logger.buf.
type pendingLine struct {
	end  int // offset in buf just past the line
	seq  uint64
	hash hexHash
	c    *call // nil for the logger's own records
}

// LogBatch writes records contiguously, e.g. one per element of a JSON-RPC
// batch sharing a request_id. On error the records before the failing one
// may have been written.
//
// Concurrent calls share writes (group commit): the first caller that finds
// no write in progress writes its records at once, with no batching delay;
// the callers that arrive meanwhile wait, and the first of them then writes
// all of theirs with one write(2), and one fsync with fsync: always. Each
// caller still gets the outcome of its own records.
func (l *Logger) LogBatch(ctx context.Context, recs []*Record) error {
	if l.w == nil { // sink: none
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.closed {
			return ErrClosed
		}
		return nil
	}
	c := callPool.Get().(*call)
	c.ctx, c.total = ctx, len(recs)
	for _, r := range recs {
		b, err := l.encode(c.arena, r) // outside any lock: the costly part
		if err != nil {
			c.encErr = fmt.Errorf("encode record: %w", err)
			break
		}
		c.arena = b
		c.ends = append(c.ends, len(b))
	}
	l.group.Do(c)
	err := c.result
	arena := c.arena[:0]
	if cap(arena) > maxKeptBuf {
		arena = nil // one huge record does not pin its buffer
	}
	*c = call{Waiter: c.Waiter, arena: arena, ends: c.ends[:0]}
	callPool.Put(c)
	return err
}

// commit writes a batch of calls (l.group's commit).
func (l *Logger) commit(batch []*call) {
	l.mu.Lock()
	l.commitLocked(batch)
	l.mu.Unlock()
}

// commitLocked chains the records of batch, writes them and sets each
// call's result.
func (l *Logger) commitLocked(batch []*call) {
	if l.closed {
		for _, c := range batch {
			c.result = ErrClosed
		}
		return
	}
	wrote := false
	for _, c := range batch {
		start := 0
		for _, end := range c.ends {
			b := c.arena[start:end]
			start = end
			if err := l.appendRecordLocked(c, b); err != nil {
				if c.err == nil {
					c.err = err
				}
				break
			}
		}
	}
	l.flushLocked()
	var syncErr error
	for _, c := range batch {
		wrote = wrote || c.written > 0
	}
	if wrote && l.syncsEachWrite() {
		// One fsync for the whole batch, under mu: rotation and Close
		// cannot swap the file meanwhile.
		if err := l.file.sync(); err != nil {
			l.failures.Inc()
			syncErr = fmt.Errorf("audit: fsync failed: %w", err)
			if l.failMode {
				l.down.Store(true)
				l.log.Error("audit records written but not durable; refusing the requests (on_error: fail)", "err", syncErr, "records", len(batch))
			} else {
				l.log.Error("audit records written but not durable (on_error: continue)", "err", syncErr, "records", len(batch))
				syncErr = nil
			}
		} else {
			l.dirty = false
			l.down.Store(false) // durable now; a call of the batch that failed sets it again below
		}
	}
	for _, c := range batch {
		n := c.total // with encErr, the records from the one that could not be encoded on are lost
		if c.encErr != nil && c.err == nil {
			c.err = c.encErr
		}
		if c.err == nil {
			c.result = syncErr
			continue
		}
		// Every record of the call that is not in the log counts as lost
		// (flushLocked counted those it chained; count the rest).
		l.lost += uint64(n - c.appended)
		c.result = l.failed(c.ctx, c.err, c.written, n)
	}
}

// appendRecordLocked chains one record of c into the pending lines, with the
// bookkeeping records that precede or follow it.
func (l *Logger) appendRecordLocked(c *call, body []byte) error {
	if err := l.writeLostLocked(); err != nil {
		return err
	}
	if err := l.rotateIfFullLocked(len(body)); err != nil {
		return err
	}
	l.appendLocked(body, c)
	if l.sinceCP+len(l.pending) >= l.cfg.CheckpointEvery {
		if err := l.checkpointLocked("interval"); err != nil {
			// The record may be written; if it is not, flushLocked
			// counted it lost.
			return fmt.Errorf("checkpoint: %w", err)
		}
	}
	return nil
}

// encode appends the JSON object of r without chain fields to dst.
func (l *Logger) encode(dst []byte, r *Record) ([]byte, error) {
	c := *r
	if c.Time.IsZero() {
		c.Time = l.now()
	}
	if c.Source == "" {
		c.Source = SourceMCP
	}
	c.Replica = l.cfg.Replica
	c.Args = l.redactor.Args(c.Args)
	if math.IsNaN(c.DurationMS) || math.IsInf(c.DurationMS, 0) {
		c.DurationMS = 0 // not representable in JSON
	}
	c.Seq, c.Prev, c.Hash = 0, "", ""
	bound(&c, MaxFieldBytes)
	return encodeBounded(dst, &c, true) // the redactor's output is plain JSON
}

// writeLostLocked writes the RECORDS_LOST marker for the records that could
// not be written since the last successful write, if any: the first thing
// written once the log is writable again, so the gap is in the chain.
func (l *Logger) writeLostLocked() error {
	n := l.lost
	if n == 0 {
		return nil
	}
	l.lost = 0 // before writing: a rotation the marker causes checkpoints, which must not mark the gap again
	body, err := l.encode(nil, &Record{Source: sourceAudit, Event: EventRecordsLost, Count: n,
		Reason: "audit records could not be written (on_error: " + l.cfg.OnError + ")"})
	if err == nil {
		err = l.writeLocked(body)
	}
	if err != nil {
		l.lost += n
		return err
	}
	l.log.Warn("audit: wrote RECORDS_LOST marker", "lost", n, "seq", l.seq)
	return nil
}

// writeLocked chains body after the pending lines and writes them all; the
// chain advances only over what was written.
func (l *Logger) writeLocked(body []byte) error {
	if err := l.rotateIfFullLocked(len(body)); err != nil {
		return err
	}
	l.appendLocked(body, nil)
	return l.flushLocked()
}

// appendLocked chains body after the last pending line (or the last written
// one) and adds it to buf for the next flushLocked.
func (l *Logger) appendLocked(body []byte, c *call) {
	seq, prev := l.seq, l.prevBytes()
	if n := len(l.pending); n > 0 {
		seq, prev = l.pending[n-1].seq, l.pending[n-1].hash[:]
	}
	if len(l.buf) == 0 && l.torn {
		l.buf = append(l.buf, '\n') // after a partial line, start on a fresh one
	}
	var sum hexHash
	l.buf, sum = l.chain.appendLine(l.buf, body, seq+1, prev)
	l.pending = append(l.pending, pendingLine{end: len(l.buf), seq: seq + 1, hash: sum, c: c})
	if c != nil {
		c.appended++
	}
}

// prevBytes returns the hash of the last written record ("" at the start of
// a chain).
func (l *Logger) prevBytes() []byte { return l.prev[:l.prevLen] }

// flushLocked writes buf with one write and advances the chain over the
// lines written. After a failed or short write the chain resumes after the
// last whole line written; the records of the lines not written count as
// lost (their call's err is set) and buf is emptied either way. It returns
// the write error if any line was not written.
func (l *Logger) flushLocked() error {
	if len(l.pending) == 0 {
		return nil
	}
	n, err := l.w.Write(l.buf)
	if err == nil && n != len(l.buf) {
		err = io.ErrShortWrite
	}
	if err != nil && n > 0 { // part of buf is out: does the sink now end mid-line?
		l.torn = l.buf[min(n, len(l.buf))-1] != '\n'
	} else if err == nil {
		l.torn = false
	}
	k := 0 // lines written whole
	for k < len(l.pending) && l.pending[k].end <= n {
		if c := l.pending[k].c; c != nil {
			c.written++
		}
		k++
	}
	if k > 0 {
		last := &l.pending[k-1]
		l.seq, l.prev, l.prevLen = last.seq, last.hash, hashHexLen
		l.count += uint64(k)
		l.sinceCP += k
		l.dirty = true
		l.written.Add(float64(k))
		l.lastSeq.Set(float64(l.seq))
		if err == nil && !l.syncsEachWrite() {
			l.down.Store(false) // with fsync: always, commitLocked clears it once the fsync succeeded
		}
	}
	for _, p := range l.pending[k:] {
		if p.c != nil {
			l.lost++
			if p.c.err == nil {
				p.c.err = err
			}
		}
	}
	clear(l.pending) // drop the call pointers
	l.pending, l.buf = l.pending[:0], l.buf[:0]
	if cap(l.buf) > maxKeptBuf {
		l.buf = nil // one huge record does not pin its buffer
	}
	return err
}

// syncsEachWrite reports whether every write is fsynced before its callers
// return (fsync: always on a file).
func (l *Logger) syncsEachWrite() bool { return l.file != nil && l.cfg.Fsync == FsyncAlways }

// maxKeptBuf bounds the write buffer kept between writes.
const maxKeptBuf = 256 << 10

// checkpointLocked writes a CHECKPOINT record. The chain head it creates is
// also logged through slog and written to the anchor file, so copies exist
// outside the audit file (anchors for `audit verify --anchor`).
func (l *Logger) checkpointLocked(reason string) error {
	// Write what is pending first: the count covers it.
	if err := l.flushLocked(); err != nil {
		return err
	}
	// Rotate first: the rotate checkpoint would change the count.
	if err := l.rotateIfFullLocked(maxCheckpointBody); err != nil {
		return err
	}
	if err := l.writeLostLocked(); err != nil {
		return err
	}
	body, err := l.encode(nil, &Record{Source: sourceAudit, Event: EventCheckpoint, Reason: reason, Count: l.count + 1})
	if err != nil {
		return err
	}
	if err := l.writeLocked(body); err != nil {
		return err
	}
	l.sinceCP = 0
	l.lastCP = l.now()
	head := string(l.prevBytes())
	l.log.Info("audit checkpoint", "seq", l.seq, "hash", head, "reason", reason)
	l.anchor.set(Head{Replica: l.cfg.Replica, Seq: l.seq, Hash: head, Reason: reason, Time: l.now().UTC().Format(timeLayout)})
	return nil
}

// maxCheckpointBody bounds the encoded size of a checkpoint record.
const maxCheckpointBody = 256

// rotateIfFullLocked rotates when a record body of n bytes would not fit. A
// fresh file is never full, so the rotate checkpoint does not recurse.
func (l *Logger) rotateIfFullLocked(n int) error {
	if l.file == nil || !l.file.full(len(l.buf)+n+maxLineOverhead) {
		return nil
	}
	return l.rotateLocked()
}

// rotateLocked moves the current file aside and starts the new one with a
// "rotate" checkpoint, whose prev is the old file's last hash.
func (l *Logger) rotateLocked() error {
	if err := l.flushLocked(); err != nil { // the pending lines belong to the old file
		return err
	}
	if err := l.file.rotate(l.now()); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	l.dirty = false
	return l.checkpointLocked("rotate")
}

// failed applies on_error to a call whose records were not all written
// (written of n are in the log; flushLocked and commitLocked counted the
// others in l.lost, so RECORDS_LOST says they are missing).
func (l *Logger) failed(ctx context.Context, err error, written, n int) error {
	l.failures.Inc()
	err = fmt.Errorf("audit: write failed: %w", err)
	if l.failMode {
		l.down.Store(true)
		l.log.ErrorContext(ctx, "audit write failed; refusing the request (on_error: fail)", "err", err, "written", written, "records", n, "lost", l.lost)
		return err
	}
	l.log.ErrorContext(ctx, "audit write failed; record lost (on_error: continue)", "err", err, "written", written, "records", n, "lost", l.lost)
	return nil
}

func (l *Logger) background() {
	defer close(l.done)
	var syncC, cpC <-chan time.Time
	if l.file != nil && l.cfg.Fsync == FsyncInterval {
		t := time.NewTicker(l.cfg.FsyncInterval)
		defer t.Stop()
		syncC = t.C
	}
	if l.cfg.CheckpointInterval > 0 {
		t := time.NewTicker(l.cfg.CheckpointInterval / 4) // checks are cheap; keeps the period close to the setting
		defer t.Stop()
		cpC = t.C
	}
	for {
		select {
		case <-l.stop:
			return
		case <-syncC:
			l.syncIfDirty()
		case <-cpC:
			l.mu.Lock()
			if !l.closed && l.now().Sub(l.lastCP) >= l.cfg.CheckpointInterval {
				if err := l.checkpointLocked("interval"); err != nil {
					l.failures.Inc()
					l.log.Error("audit: periodic checkpoint failed", "err", err)
				}
			}
			l.mu.Unlock()
		}
	}
}

// syncIfDirty fsyncs outside the chain lock so writers are not blocked by the
// disk; rotation and Close sync under the lock themselves.
func (l *Logger) syncIfDirty() {
	l.mu.Lock()
	if l.closed || !l.dirty {
		l.mu.Unlock()
		return
	}
	l.dirty = false
	f, gen := l.file.current()
	l.mu.Unlock()
	if err := f.Sync(); err != nil {
		l.mu.Lock()
		_, now := l.file.current()
		l.mu.Unlock()
		if now == gen { // else the file was rotated (and synced) meanwhile
			l.failures.Inc()
			l.log.Error("audit: fsync failed; recent records may not survive a power loss", "err", err)
		}
	}
}

// Close writes a "shutdown" checkpoint, syncs and closes the sink. Further
// Log calls return ErrClosed.
func (l *Logger) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	var err error
	if l.w != nil {
		if err = l.checkpointLocked("shutdown"); err != nil {
			l.failures.Inc()
			l.log.Error("audit: shutdown checkpoint failed", "err", err)
		}
	}
	l.closed = true
	l.down.Store(true) // every record is refused from now on
	l.mu.Unlock()
	if l.stop != nil {
		close(l.stop)
		<-l.done
	}
	l.anchor.stop() // writes the shutdown head
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(err, l.closeSink())
}

func (l *Logger) closeSink() error {
	if l.file == nil {
		return nil
	}
	return l.file.close()
}
