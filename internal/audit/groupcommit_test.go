package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// gatedBatch runs one caller whose write blocks in the sink (it leads), then
// n callers that queue behind it, then lets the leader's write go: the n
// queued records make one batch, which batchWrite writes. It returns the
// error of each caller by request id ("leader", "q0", "q1", ...).
func gatedBatch(t *testing.T, l *Logger, f *Fault, n int, batchWrite func(w io.Writer, p []byte) (int, error)) map[string]error {
	t.Helper()
	var calls atomic.Int32
	entered, release := make(chan struct{}), make(chan struct{})
	f.onWrite = func(w io.Writer, p []byte) (int, error) {
		switch calls.Add(1) {
		case 1:
			close(entered)
			<-release
		case 2:
			return batchWrite(w, p)
		}
		return w.Write(p)
	}
	t.Cleanup(func() { f.onWrite = nil })
	var mu sync.Mutex
	errs := map[string]error{}
	log := func(id string) {
		err := l.Log(context.Background(), &Record{RequestID: id, Tool: "t"})
		mu.Lock()
		errs[id] = err
		mu.Unlock()
	}
	var wg sync.WaitGroup
	wg.Go(func() { log("leader") })
	<-entered
	for i := range n {
		wg.Go(func() { log(fmt.Sprintf("q%d", i)) })
	}
	waitQueued(t, l, n)
	close(release)
	wg.Wait()
	f.onWrite = func(w io.Writer, p []byte) (int, error) { return w.Write(p) }
	return errs
}

// waitQueued waits until n callers wait for the write in progress.
func waitQueued(t *testing.T, l *Logger, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		q := l.group.Queued()
		if q == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callers queued, want %d", q, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// countIDs counts the lines of out per request_id.
func countIDs(t *testing.T, out string) map[string]int {
	t.Helper()
	ids := map[string]int{}
	for _, r := range readRecordsFrom(t, out) {
		if r.RequestID != "" {
			ids[r.RequestID]++
		}
	}
	return ids
}

// TestGroupCommitOneWritePerBatch: callers that arrive while a write is in
// progress are written together with the next write, each exactly once,
// and the chain verifies.
func TestGroupCommitOneWritePerBatch(t *testing.T) {
	var buf syncBuffer
	f := &Fault{}
	l := mustNew(t, Config{}, WithWriter(&buf), WithFault(f))
	before := f.Writes()
	var batchLen int
	errs := gatedBatch(t, l, f, 20, func(w io.Writer, p []byte) (int, error) {
		batchLen = bytes.Count(p, []byte{'\n'})
		return w.Write(p)
	})
	for id, err := range errs {
		if err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
	if got := f.Writes() - before; got != 2 || batchLen != 20 {
		t.Errorf("%d writes, the second of %d lines; want 2 writes, the second with the 20 queued records", got, batchLen)
	}
	l.Close()
	for id, n := range countIDs(t, buf.String()) {
		if n != 1 {
			t.Errorf("%s written %d times", id, n)
		}
	}
	if rep, err := Verify(strings.NewReader(buf.String()), VerifyOptions{}); err != nil || rep.Records != 23 {
		t.Fatalf("%+v, %v", rep, err)
	}
}

// TestGroupCommitConcurrentExactlyOnce: many concurrent callers on the file
// sink, with checkpoints and rotations among their records: every record is
// in the log exactly once and the chain verifies across the files.
func TestGroupCommitConcurrentExactlyOnce(t *testing.T) {
	cfg := fileConfig(t)
	cfg.CheckpointEvery = 37
	f := &Fault{}
	l := mustNew(t, cfg, WithFault(f))
	l.file.max = 16 << 10
	const workers, each = 32, 60
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for i := range each {
				if err := l.Log(context.Background(), &Record{RequestID: fmt.Sprintf("%d-%d", g, i)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	l.Close()
	files, _ := Files(cfg.Path)
	rep, err := VerifyFiles(files, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for _, p := range files {
		all.WriteString(readFile(t, p))
	}
	ids := countIDs(t, all.String())
	if len(ids) != workers*each {
		t.Errorf("%d distinct records, want %d", len(ids), workers*each)
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("%s written %d times", id, n)
		}
	}
	if len(files) < 2 || rep.Records != workers*each+rep.Checkpoints {
		t.Errorf("%d files, report %+v", len(files), rep)
	}
	// The path `mcpgate audit verify` takes.
	m := NewMultiVerifier(MultiOptions{})
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		m.Feed(p, f)
		f.Close()
	}
	if mrep := m.Finish(); mrep.Err() != nil || len(mrep.Replicas) != 1 || mrep.Replicas[0].Records != rep.Records {
		t.Errorf("multi-chain verify: %+v, %v", mrep, mrep.Err())
	}
	t.Logf("%d records in %d writes", rep.Records, f.Writes())
}

// TestGroupCommitBatchFailure: a failed batch write loses exactly the
// batch's records; each caller gets on_error's answer; the next write marks
// the gap with their count.
func TestGroupCommitBatchFailure(t *testing.T) {
	for _, mode := range []string{OnErrorFail, OnErrorContinue} {
		t.Run(mode, func(t *testing.T) {
			cfg := fileConfig(t)
			cfg.OnError = mode
			f := &Fault{}
			l := mustNew(t, cfg, WithFault(f))
			errs := gatedBatch(t, l, f, 7, func(io.Writer, []byte) (int, error) { return 0, syscall.ENOSPC })
			for id, err := range errs {
				wantErr := id != "leader" && mode == OnErrorFail
				if (err != nil) != wantErr || (err != nil && !errors.Is(err, syscall.ENOSPC)) {
					t.Errorf("%s: %v (on_error: %s)", id, err, mode)
				}
			}
			if l.lost != 7 {
				t.Errorf("lost = %d, want 7", l.lost)
			}
			logN(t, l, 1, "after")
			l.Close()
			rep, err := VerifyFiles([]string{cfg.Path}, VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			// start, leader, RECORDS_LOST, after, shutdown.
			if rep.RecordsLost != 7 || rep.GapCount != 1 || rep.Gaps[0].Seq != 3 || rep.Records != 5 {
				t.Errorf("report %+v", rep)
			}
			if ids := countIDs(t, readFile(t, cfg.Path)); ids["q0"] != 0 || ids["leader"] != 1 {
				t.Errorf("records in the log: %v", ids)
			}
		})
	}
}

// TestGroupCommitShortWriteMidBatch: the sink takes two whole lines of a
// batch and half of the third: the two callers succeed, the others lose
// their records, and the chain resumes after the second line, on a fresh
// line after the fragment.
func TestGroupCommitShortWriteMidBatch(t *testing.T) {
	var buf syncBuffer
	f := &Fault{}
	l := mustNew(t, Config{}, WithWriter(&buf), WithFault(f))
	errs := gatedBatch(t, l, f, 6, func(w io.Writer, p []byte) (int, error) {
		cut := 0
		for range 2 {
			cut += bytes.IndexByte(p[cut:], '\n') + 1
		}
		cut += (bytes.IndexByte(p[cut:], '\n') + 1) / 2
		n, _ := w.Write(p[:cut])
		return n, syscall.ENOSPC
	})
	var ok []string
	for id, err := range errs {
		if err == nil {
			ok = append(ok, id)
		} else if !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("%s: %v", id, err)
		}
	}
	if len(ok) != 3 || l.lost != 4 {
		t.Fatalf("succeeded %v, lost %d; want the leader and two of the batch, 4 lost", ok, l.lost)
	}
	logN(t, l, 1, "after")
	l.Close()

	lines := strings.SplitAfter(buf.String(), "\n")
	var kept []string
	fragments := 0
	for _, line := range lines {
		if line == "" {
			continue
		}
		if _, err := parseLine([]byte(strings.TrimSuffix(line, "\n"))); err != nil {
			fragments++ // the half line, ended by the newline the next write starts with
			continue
		}
		kept = append(kept, line)
	}
	if fragments != 1 {
		t.Fatalf("%d fragments in\n%s", fragments, buf.String())
	}
	whole := strings.Join(kept, "")
	rep, err := Verify(strings.NewReader(whole), VerifyOptions{})
	if err != nil || rep.RecordsLost != 4 || rep.GapCount != 1 {
		t.Fatalf("%+v, %v\n%s", rep, err, whole)
	}
	ids := countIDs(t, whole)
	for _, id := range ok {
		if ids[id] != 1 {
			t.Errorf("%s succeeded but is written %d times", id, ids[id])
		}
	}
	if len(ids) != 4 { // leader, two of the batch, after
		t.Errorf("records in the log: %v", ids)
	}
	// Without removing the fragment, verify reports it.
	if _, err := Verify(strings.NewReader(buf.String()), VerifyOptions{}); err == nil {
		t.Error("verify accepted the fragment")
	}
}

// TestGroupCommitFsyncAlwaysOncePerBatch: with fsync: always, a batch of
// concurrent callers costs one fsync, and every caller returns only once it
// covers its record.
func TestGroupCommitFsyncAlwaysOncePerBatch(t *testing.T) {
	cfg := fileConfig(t)
	cfg.Fsync = FsyncAlways
	f := &Fault{}
	l := mustNew(t, cfg, WithFault(f))
	syncs, writes := f.Syncs(), f.Writes()
	var dirtyAtBatch bool
	errs := gatedBatch(t, l, f, 15, func(w io.Writer, p []byte) (int, error) {
		dirtyAtBatch = l.dirty // under mu: the leader's own records were fsynced before the batch
		return w.Write(p)
	})
	for id, err := range errs {
		if err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
	if s, w := f.Syncs()-syncs, f.Writes()-writes; s != 2 || w != 2 {
		t.Errorf("%d fsyncs for %d writes (leader, batch of 15); want 2 and 2", s, w)
	}
	if dirtyAtBatch || l.dirty {
		t.Error("a write was not covered by fsync before its callers returned")
	}
	// The same under free-running concurrency: never more fsyncs than writes.
	syncs, writes = f.Syncs(), f.Writes()
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() { logN(t, l, 10, fmt.Sprint(g)) })
	}
	wg.Wait()
	if s, w := f.Syncs()-syncs, f.Writes()-writes; s != w || w > 320 {
		t.Errorf("%d fsyncs, %d writes for 320 records", s, w)
	}
	l.Close()
	if _, err := VerifyFiles([]string{cfg.Path}, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}
