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
	"time"

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
	failMode bool // on_error: fail

	failures prometheus.Counter
	written  prometheus.Counter
	lastSeq  prometheus.Gauge

	syncMu    sync.Mutex // serializes fsync: always; held before mu, never inside it
	syncedGen uint64     // writeGen covered by the last fsync; guarded by syncMu

	mu         sync.Mutex
	chain      *chainHasher
	w          io.Writer // nil for sink: none
	file       *rotatingFile
	seq        uint64 // of the last written record
	prev       string // hash of the last written record
	count      uint64 // records written by this process
	sinceCP    int    // records since the last checkpoint
	lastCP     time.Time
	lost       uint64 // records lost since the last successful write
	torn       bool   // the last write was partial: start the next one on a fresh line
	dirty      bool   // written since the last fsync
	writeGen   uint64 // successful writes, for group commit
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
	for _, o := range opts {
		o(l)
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
			l.seq, l.prev = *e.Seq, e.Hash
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

// LogBatch writes records contiguously, e.g. one per element of a JSON-RPC
// batch sharing a request_id. On error the records before the failing one
// may have been written.
func (l *Logger) LogBatch(ctx context.Context, recs []*Record) error {
	bodies := make([][]byte, len(recs))
	var encErr error
	for i, r := range recs {
		bodies[i], encErr = l.encode(r) // outside the lock: the costly part
		if encErr != nil {
			break
		}
	}
	if err := l.appendAll(ctx, bodies, encErr); err != nil {
		return err
	}
	if l.file != nil && l.cfg.Fsync == FsyncAlways {
		return l.waitDurable(ctx)
	}
	return nil
}

func (l *Logger) appendAll(ctx context.Context, bodies [][]byte, encErr error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.w == nil {
		return nil // sink: none
	}
	for _, b := range bodies {
		if b == nil {
			return l.failed(ctx, fmt.Errorf("encode record: %w", encErr), true)
		}
		if err := l.appendLocked(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

// waitDurable returns once everything written so far is fsynced (fsync:
// always). Group commit: callers queue on syncMu, and one fsync covers every
// record written before it started, so concurrent requests share the disk
// flush instead of each holding the chain lock through its own.
func (l *Logger) waitDurable(ctx context.Context) error {
	l.mu.Lock()
	mine := l.writeGen
	l.mu.Unlock()
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	for l.syncedGen < mine {
		l.mu.Lock()
		f, fileGen := l.file.current()
		upTo := l.writeGen
		l.mu.Unlock()
		err := f.Sync()
		if err == nil {
			l.syncedGen = upTo
			break
		}
		l.mu.Lock()
		_, now := l.file.current()
		closed := l.closed
		l.mu.Unlock()
		if closed {
			return nil // Close synced the file before closing it
		}
		if now != fileGen {
			continue // rotated (and the old file synced) meanwhile: sync the new one
		}
		l.failures.Inc()
		err = fmt.Errorf("audit: fsync failed: %w", err)
		if l.failMode {
			l.log.ErrorContext(ctx, "audit record written but not durable; refusing the request (on_error: fail)", "err", err)
			return err
		}
		l.log.ErrorContext(ctx, "audit record written but not durable (on_error: continue)", "err", err)
		return nil
	}
	return nil
}

// encode returns the JSON object of r without chain fields.
func (l *Logger) encode(r *Record) ([]byte, error) {
	c := *r
	if c.Time.IsZero() {
		c.Time = l.now()
	}
	if c.Source == "" {
		c.Source = SourceMCP
	}
	c.Args = l.redactor.Args(c.Args)
	if math.IsNaN(c.DurationMS) || math.IsInf(c.DurationMS, 0) {
		c.DurationMS = 0 // not representable in JSON
	}
	c.Seq, c.Prev, c.Hash = 0, "", ""
	bound(&c, MaxFieldBytes)
	return encodeBounded(&c) // direct MarshalJSON: json.Marshal would re-compact the output
}

// appendLocked writes one record and whatever bookkeeping records precede or
// follow it.
func (l *Logger) appendLocked(ctx context.Context, body []byte) error {
	if err := l.writeLostLocked(); err != nil {
		return l.failed(ctx, err, true)
	}
	if err := l.writeLocked(body); err != nil {
		return l.failed(ctx, err, true)
	}
	if l.sinceCP >= l.cfg.CheckpointEvery {
		if err := l.checkpointLocked("interval"); err != nil {
			// The caller's record is written; only the checkpoint is missing.
			return l.failed(ctx, fmt.Errorf("checkpoint: %w", err), false)
		}
	}
	return nil
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
	body, err := l.encode(&Record{Source: sourceAudit, Event: EventRecordsLost, Count: n,
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

// writeLocked chains body and writes it; the chain advances only on success.
func (l *Logger) writeLocked(body []byte) error {
	if err := l.rotateIfFullLocked(len(body)); err != nil {
		return err
	}
	line, sum := l.chain.chainLine(body, l.seq+1, l.prev)
	if l.torn {
		line = append([]byte{'\n'}, line...)
	}
	n, err := l.w.Write(line)
	if err != nil || n != len(line) {
		if n > 0 { // part of the line is out: does the sink now end mid-line?
			l.torn = line[n-1] != '\n'
		}
		if err == nil {
			err = io.ErrShortWrite
		}
		return err
	}
	l.torn = false
	l.seq, l.prev = l.seq+1, sum
	l.count++
	l.sinceCP++
	l.dirty = true
	l.writeGen++
	l.written.Inc()
	l.lastSeq.Set(float64(l.seq))
	return nil
}

// checkpointLocked writes a CHECKPOINT record. The chain head it creates is
// also logged through slog and written to the anchor file, so copies exist
// outside the audit file (anchors for `audit verify --anchor`).
func (l *Logger) checkpointLocked(reason string) error {
	// Rotate first: the rotate checkpoint would change the count.
	if err := l.rotateIfFullLocked(maxCheckpointBody); err != nil {
		return err
	}
	if err := l.writeLostLocked(); err != nil {
		return err
	}
	body, err := l.encode(&Record{Source: sourceAudit, Event: EventCheckpoint, Reason: reason, Count: l.count + 1})
	if err != nil {
		return err
	}
	if err := l.writeLocked(body); err != nil {
		return err
	}
	l.sinceCP = 0
	l.lastCP = l.now()
	l.log.Info("audit checkpoint", "seq", l.seq, "hash", l.prev, "reason", reason)
	l.anchor.set(Head{Seq: l.seq, Hash: l.prev, Reason: reason, Time: l.now().UTC().Format(timeLayout)})
	return nil
}

// maxCheckpointBody bounds the encoded size of a checkpoint record.
const maxCheckpointBody = 256

// rotateIfFullLocked rotates when a record body of n bytes would not fit. A
// fresh file is never full, so the rotate checkpoint does not recurse.
func (l *Logger) rotateIfFullLocked(n int) error {
	if l.file == nil || !l.file.full(n+maxLineOverhead) {
		return nil
	}
	return l.rotateLocked()
}

// rotateLocked moves the current file aside and starts the new one with a
// "rotate" checkpoint, whose prev is the old file's last hash.
func (l *Logger) rotateLocked() error {
	if err := l.file.rotate(l.now()); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	l.dirty = false
	return l.checkpointLocked("rotate")
}

// failed applies on_error to a failed write; l.mu must be held. lost says
// whether the record was not written.
func (l *Logger) failed(ctx context.Context, err error, lost bool) error {
	l.failures.Inc()
	err = fmt.Errorf("audit: write failed: %w", err)
	if lost {
		l.lost++ // either way the record is missing: RECORDS_LOST says so
	}
	if l.failMode {
		l.log.ErrorContext(ctx, "audit write failed; refusing the request (on_error: fail)", "err", err, "lost", l.lost)
		return err
	}
	l.log.ErrorContext(ctx, "audit write failed; record lost (on_error: continue)", "err", err, "lost", l.lost)
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
