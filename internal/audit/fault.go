package audit

import (
	"io"
	"sync/atomic"
	"syscall"
)

// Fault makes the audit sink fail on demand the way a full disk does
// (ENOSPC), or its fsyncs the way a failing device does (EIO), for tests
// and fault drills (see WithFault), and counts the sink's writes and
// fsyncs. The zero value injects nothing.
type Fault struct {
	failing  atomic.Bool
	partial  atomic.Bool
	syncFail atomic.Bool
	writes   atomic.Int64
	syncs    atomic.Int64

	// onWrite, when set (tests in this package), replaces every write.
	onWrite func(w io.Writer, p []byte) (int, error)
}

// Writes returns how many writes reached the sink, failed ones included.
func (f *Fault) Writes() int64 { return f.writes.Load() }

// Syncs returns how many fsyncs the file sink has made.
func (f *Fault) Syncs() int64 { return f.syncs.Load() }

// sync counts an fsync of the file sink and returns the injected failure,
// if any.
func (f *Fault) sync() error {
	if f == nil {
		return nil
	}
	f.syncs.Add(1)
	if f.syncFail.Load() {
		return syscall.EIO
	}
	return nil
}

// FailSync starts (true) or stops (false) failing the file sink's fsyncs.
func (f *Fault) FailSync(on bool) { f.syncFail.Store(on) }

// Fail starts (true) or stops (false) failing writes.
func (f *Fault) Fail(on bool) { f.failing.Store(on) }

// Partial makes a failing write put out half of its bytes first, as
// write(2) does when the disk fills mid-record.
func (f *Fault) Partial(on bool) { f.partial.Store(on) }

// write writes p to w, or fails as configured.
func (f *Fault) write(w io.Writer, p []byte) (int, error) {
	if f == nil {
		return w.Write(p)
	}
	f.writes.Add(1)
	if f.onWrite != nil {
		return f.onWrite(w, p)
	}
	if !f.failing.Load() {
		return w.Write(p)
	}
	if f.partial.Load() && len(p) > 1 {
		n, _ := w.Write(p[:len(p)/2])
		return n, syscall.ENOSPC
	}
	return 0, syscall.ENOSPC
}

// faultWriter applies a Fault to a non-file sink.
type faultWriter struct {
	w io.Writer
	f *Fault
}

func (w faultWriter) Write(p []byte) (int, error) { return w.f.write(w.w, p) }
