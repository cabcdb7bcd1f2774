package audit

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestDiskFullOnFile: a full disk (every write, then writes that put out
// half a record) loses the records written meanwhile, in both on_error modes;
// the partial line is taken back, and once the disk has room the chain goes
// on with one RECORDS_LOST marker that verify reports. Down is set while
// the writes fail (on_error: fail only) and cleared by the next write.
func TestDiskFullOnFile(t *testing.T) {
	for _, mode := range []string{OnErrorFail, OnErrorContinue} {
		for _, partial := range []bool{false, true} {
			t.Run(mode+map[bool]string{true: "/partial", false: "/whole"}[partial], func(t *testing.T) {
				cfg := fileConfig(t)
				cfg.OnError = mode
				f := &Fault{}
				l := mustNew(t, cfg, WithFault(f))
				logN(t, l, 2, "before")
				if l.Down() {
					t.Error("Down before any failure")
				}
				f.Partial(partial)
				f.Fail(true)
				for range 3 {
					err := l.Log(context.Background(), &Record{Tool: "lost"})
					if (err != nil) != (mode == OnErrorFail) {
						t.Fatalf("Log = %v with on_error: %s", err, mode)
					}
					if err != nil && !errors.Is(err, syscall.ENOSPC) {
						t.Errorf("error %v does not wrap ENOSPC", err)
					}
				}
				// Down says the next record would be refused: only with on_error: fail.
				if l.Down() != (mode == OnErrorFail) {
					t.Errorf("Down = %v while writes fail, on_error: %s", l.Down(), mode)
				}
				f.Fail(false)
				logN(t, l, 1, "after")
				if l.Down() {
					t.Error("Down after a write succeeded again")
				}
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				data, _ := os.ReadFile(cfg.Path)
				if bytes.Contains(data, []byte(`"lost"`)) {
					t.Errorf("a failed record reached the file:\n%s", data)
				}
				rep, err := VerifyFiles([]string{cfg.Path}, VerifyOptions{})
				if err != nil {
					t.Fatalf("%v\n%s", err, data)
				}
				if rep.RecordsLost != 3 || rep.GapCount != 1 || rep.Gaps[0].Seq != 4 || !rep.CleanShutdown {
					t.Errorf("report %+v\n%s", rep, data)
				}
			})
		}
	}
}

// TestLostRecordsMarkedAtShutdown: records lost just before shutdown are
// marked by the shutdown checkpoint's write.
func TestLostRecordsMarkedAtShutdown(t *testing.T) {
	cfg := fileConfig(t)
	f := &Fault{}
	l := mustNew(t, cfg, WithFault(f))
	f.Fail(true)
	l.Log(context.Background(), &Record{Tool: "lost"})
	f.Fail(false)
	l.Close()
	rep, err := VerifyFiles([]string{cfg.Path}, VerifyOptions{})
	if err != nil || rep.RecordsLost != 1 || !rep.CleanShutdown {
		t.Fatalf("%+v, %v", rep, err)
	}
}

// TestAnchorFile: the anchor file holds the head of the last checkpoint;
// a log cut back to an earlier shutdown record still verifies on its own
// (it ends with a clean shutdown) but not against the anchor.
func TestAnchorFile(t *testing.T) {
	cfg := fileConfig(t)
	cfg.AnchorFile = filepath.Join(t.TempDir(), "anchor.json")
	l := mustNew(t, cfg)
	logN(t, l, 3, "first run")
	l.Close()
	first, err := os.ReadFile(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	a1, err := ReadAnchorFile(cfg.AnchorFile)
	if err != nil {
		t.Fatal(err)
	}
	rep1, _ := VerifyFiles([]string{cfg.Path}, VerifyOptions{})
	if a1.Seq != rep1.LastSeq || a1.Hash != rep1.LastHash {
		t.Fatalf("anchor %+v, log head %d %s", a1, rep1.LastSeq, rep1.LastHash)
	}

	l = mustNew(t, cfg)
	logN(t, l, 5, "second run")
	if got := metricValue(t, l, "mcpgate_audit_chain_seq"); got != float64(rep1.LastSeq+6) {
		t.Errorf("mcpgate_audit_chain_seq = %v, want %d", got, rep1.LastSeq+6)
	}
	l.Close()
	a2, err := ReadAnchorFile(cfg.AnchorFile)
	if err != nil {
		t.Fatal(err)
	}
	if a2.Seq != rep1.LastSeq+7 { // start + 5 + shutdown
		t.Fatalf("anchor after second run: %+v", a2)
	}
	if rep, err := VerifyFiles([]string{cfg.Path}, VerifyOptions{Anchors: []Anchor{a2}}); err != nil || !rep.CleanShutdown {
		t.Fatalf("intact log against its anchor: %+v, %v", rep, err)
	}

	// Truncate back to the first run's shutdown record.
	if err := os.WriteFile(cfg.Path, first, 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyFiles([]string{cfg.Path}, VerifyOptions{})
	if err != nil || !rep.CleanShutdown {
		t.Fatalf("without an anchor the truncated log looks complete: %+v, %v", rep, err)
	}
	_, err = VerifyFiles([]string{cfg.Path}, VerifyOptions{Anchors: []Anchor{a2}})
	if err == nil || !strings.Contains(err.Error(), "tail was removed") {
		t.Fatalf("truncation not caught by the anchor: %v", err)
	}
}

func TestReadAnchorFileRejects(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"empty":     ``,
		"seq 0":     `{"seq":0,"hash":"` + strings.Repeat("a", 64) + `"}`,
		"short":     `{"seq":3,"hash":"abc"}`,
		"uppercase": `{"seq":3,"hash":"` + strings.Repeat("A", 64) + `"}`,
		"unknown":   `{"seq":3,"hash":"` + strings.Repeat("a", 64) + `","x":1}`,
		"huge":      `{"seq":3,"hash":"` + strings.Repeat("a", 64) + `","reason":"` + strings.Repeat("x", 5000) + `"}`,
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		os.WriteFile(p, []byte(body), 0o600)
		if _, err := ReadAnchorFile(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	p := filepath.Join(dir, "ok")
	os.WriteFile(p, []byte(`{"seq":3,"hash":"`+strings.Repeat("a", 64)+`","time":"t","reason":"shutdown"}`), 0o600)
	if a, err := ReadAnchorFile(p); err != nil || a.Seq != 3 {
		t.Errorf("valid anchor: %+v, %v", a, err)
	}
}

// TestLostMarkerThatRotates: when the RECORDS_LOST marker itself fills the
// file, the rotation's checkpoint does not mark the gap a second time.
func TestLostMarkerThatRotates(t *testing.T) {
	cfg := fileConfig(t)
	f := &Fault{}
	l := mustNew(t, cfg, WithFault(f))
	logN(t, l, 1, "x")
	f.Fail(true)
	for range 3 {
		l.Log(context.Background(), &Record{Tool: "lost"})
	}
	f.Fail(false)
	l.mu.Lock()
	l.file.max = l.file.size + 1 // the next write (the marker) rotates
	l.mu.Unlock()
	logN(t, l, 1, "y")
	l.mu.Lock()
	l.file.max = 1 << 30
	l.mu.Unlock()
	l.Close()
	files, _ := Files(cfg.Path)
	rep, err := VerifyFiles(files, VerifyOptions{})
	if err != nil || len(files) < 2 || rep.RecordsLost != 3 || rep.GapCount != 1 {
		t.Fatalf("%d files, %+v, %v", len(files), rep, err)
	}
}

// TestDownClearedByDurableWrite: Down stays set until a write succeeds and
// is durable as audit.fsync asks. With fsync: always a checkpoint written
// while fsyncs fail does not clear it (nothing was made durable); only a
// record whose fsync succeeds does. With fsync: interval the write itself
// is what the setting promises, so the checkpoint clears it. After Close
// Down is set in both on_error modes: every record is refused then.
func TestDownClearedByDurableWrite(t *testing.T) {
	for _, tc := range []struct {
		fsync            string
		checkpointClears bool
	}{
		{FsyncAlways, false},
		{FsyncInterval, true},
	} {
		t.Run(tc.fsync, func(t *testing.T) {
			cfg := fileConfig(t)
			cfg.Fsync = tc.fsync
			f := &Fault{}
			l := mustNew(t, cfg, WithFault(f))
			logN(t, l, 1, "before")
			// The log fails: a write (fsync: interval) or an fsync (always).
			f.Fail(true)
			f.FailSync(true)
			if err := l.Log(context.Background(), &Record{Tool: "lost"}); err == nil {
				t.Fatal("Log succeeded while the sink fails")
			}
			if !l.Down() {
				t.Fatal("Down not set by the failure")
			}
			f.Fail(false) // writes work again, fsyncs still fail
			l.mu.Lock()
			err := l.checkpointLocked("interval")
			l.mu.Unlock()
			if err != nil {
				t.Fatalf("checkpoint: %v", err)
			}
			if l.Down() == tc.checkpointClears {
				t.Errorf("Down = %v after a checkpoint written while fsyncs fail", l.Down())
			}
			if tc.fsync == FsyncAlways {
				if err := l.Log(context.Background(), &Record{Tool: "not durable"}); err == nil || !l.Down() {
					t.Errorf("a record whose fsync failed: Log = %v, Down = %v; want an error and Down", err, l.Down())
				}
			}
			f.FailSync(false)
			logN(t, l, 1, "after")
			if l.Down() {
				t.Error("Down after a durable write")
			}
		})
	}
	for _, mode := range []string{OnErrorFail, OnErrorContinue} {
		t.Run("closed/"+mode, func(t *testing.T) {
			cfg := fileConfig(t)
			cfg.OnError = mode
			l := mustNew(t, cfg)
			if l.Down() {
				t.Fatal("Down before Close")
			}
			l.Close()
			if !l.Down() {
				t.Error("Down not set after Close")
			}
		})
	}
}
