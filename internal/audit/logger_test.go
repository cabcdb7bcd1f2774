package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/mcpgate/mcpgate/internal/testutil"
)

func fileConfig(t *testing.T) Config {
	t.Helper()
	return Config{Sink: SinkFile, Path: filepath.Join(t.TempDir(), "logs", "audit.jsonl")}
}

func mustNew(t *testing.T, cfg Config, opts ...Option) *Logger {
	t.Helper()
	opts = append([]Option{WithSlog(slog.New(slog.DiscardHandler))}, opts...)
	l, err := New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func logN(t *testing.T, l *Logger, n int, tool string) {
	t.Helper()
	for i := range n {
		r := &Record{RequestID: fmt.Sprintf("req-%d", i), Tool: tool, Decision: DecisionAllow, Subject: "u1", Issuer: "https://idp"}
		if err := l.Log(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
}

func readRecords(t *testing.T, path string) []Record {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []Record
	for line := range strings.SplitSeq(strings.TrimSuffix(string(data), "\n"), "\n") {
		var r Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

func metricValue(t *testing.T, l *Logger, name string) float64 {
	t.Helper()
	for _, c := range l.Collectors() {
		m, ok := c.(prometheus.Metric)
		if !ok || !strings.Contains(m.Desc().String(), `"`+name+`"`) {
			continue
		}
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		if pb.Counter != nil {
			return pb.Counter.GetValue()
		}
		return pb.Gauge.GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestLogWritesRedactedChainedRecord(t *testing.T) {
	cfg := fileConfig(t)
	cfg.Replica = "gw-0"
	fixed := time.Date(2026, 1, 2, 3, 4, 5, 678901234, time.UTC)
	l := mustNew(t, cfg, WithClock(func() time.Time { return fixed }))
	in := &Record{
		Replica: "forged", RequestID: "r1", ClientIP: "192.0.2.1", UserAgent: "claude-code/1.0",
		Issuer: "https://idp.example", Subject: "sub-123", User: "ryan@example.com", Username: "ryan",
		Email: "ryan@example.com", Groups: []string{"vsphere-admins"}, ClientID: "c1", TokenID: "jti1", SessionID: "s1",
		Method: "tools/call", Tool: "power_on",
		Args:     json.RawMessage(`{"vm_name":"web","password":"hunter2","auth":"Bearer sk-live-123"}`),
		Decision: DecisionDeny, Rule: "roles.reader", Reason: "tool not granted", RequiredPermission: "vm_lifecycle",
		Event: EventPermissionDenied, Status: 200, RPCError: -32003, DurationMS: 1.5, Backend: "vsphere", Result: ResultError,
	}
	orig := *in
	if err := l.Log(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(orig, *in); diff != "" {
		t.Errorf("Log modified its argument:\n%s", diff)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"hunter2", "sk-live-123"} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("log contains %q:\n%s", secret, raw)
		}
	}
	if !regexp.MustCompile(`"time":"2026-01-02T03:04:05\.678901Z"`).Match(raw) {
		t.Errorf("time not RFC 3339 UTC with µs:\n%s", raw)
	}
	recs := readRecords(t, cfg.Path)
	if len(recs) != 3 {
		t.Fatalf("want start checkpoint, record, shutdown checkpoint; got %d records", len(recs))
	}
	for _, r := range recs {
		if r.Replica != "gw-0" {
			t.Errorf("record %d names replica %q", r.Seq, r.Replica)
		}
	}
	want := orig
	want.Time = fixed.Truncate(time.Microsecond)
	want.Source = SourceMCP
	want.Replica = "gw-0" // the logger's, whatever the caller set
	want.Args = json.RawMessage(`{"auth":"[REDACTED]","password":"[REDACTED]","vm_name":"web"}`)
	want.Seq = 2
	want.Prev = recs[0].Hash
	if diff := cmp.Diff(want, recs[1], cmpopts.IgnoreFields(Record{}, "Hash")); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) || len(r.Hash) != 64 || (i > 0 && r.Prev != recs[i-1].Hash) {
			t.Errorf("record %d: bad chain fields seq=%d prev=%q hash=%q", i, r.Seq, r.Prev, r.Hash)
		}
	}
	if recs[0].Event != EventCheckpoint || recs[0].Reason != "start" || recs[2].Reason != "shutdown" || recs[2].Count != 3 {
		t.Errorf("checkpoints: %+v / %+v", recs[0], recs[2])
	}
	st, err := os.Stat(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	rep, err := VerifyFiles([]string{cfg.Path}, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.CleanShutdown || !rep.Genesis || rep.Records != 3 || rep.Checkpoints != 2 {
		t.Errorf("report %+v", rep)
	}
}

func TestExistingFileGetsPrivateMode(t *testing.T) {
	cfg := fileConfig(t)
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.Path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	mustNew(t, cfg)
	st, err := os.Stat(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
}

func TestContinueAfterRestart(t *testing.T) {
	cfg := fileConfig(t)
	for run := range 3 {
		l := mustNew(t, cfg)
		logN(t, l, 4, fmt.Sprintf("run%d", run))
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := VerifyFiles([]string{cfg.Path}, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Each run: start checkpoint + 4 records + shutdown checkpoint.
	if rep.Records != 18 || rep.LastSeq != 18 || !rep.Genesis || !rep.CleanShutdown {
		t.Errorf("report %+v", rep)
	}
}

func TestRestartRefusesInvalidTail(t *testing.T) {
	for name, tail := range map[string]string{
		"garbage":       "not json\n",
		"modified hash": "",
	} {
		t.Run(name, func(t *testing.T) {
			cfg := fileConfig(t)
			l := mustNew(t, cfg)
			logN(t, l, 2, "x")
			l.Close()
			data, _ := os.ReadFile(cfg.Path)
			if tail != "" {
				data = append(data, tail...)
			} else {
				data = flipLastHashDigit(data)
			}
			os.WriteFile(cfg.Path, data, 0o600)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), "cannot continue the hash chain") {
				t.Fatalf("New: got %v, want refusal", err)
			}
		})
	}
}

func flipLastHashDigit(data []byte) []byte {
	i := len(data) - 4 // before `"}\n`
	if data[i] == '0' {
		data[i] = '1'
	} else {
		data[i] = '0'
	}
	return data
}

func TestRestartAfterTornLine(t *testing.T) {
	cfg := fileConfig(t)
	l := mustNew(t, cfg)
	logN(t, l, 2, "x")
	l.Close()
	f, _ := os.OpenFile(cfg.Path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"seq":5,"time":"2026`) // power loss mid-write
	f.Close()

	var logs bytes.Buffer
	l = mustNew(t, cfg, WithSlog(slog.New(slog.NewTextHandler(&logs, nil))))
	logN(t, l, 1, "y")
	l.Close()
	if !strings.Contains(logs.String(), "incomplete line") {
		t.Errorf("no warning logged: %s", logs.String())
	}
	recs := strings.Split(strings.TrimSuffix(readFile(t, cfg.Path), "\n"), "\n")
	if recs[4] != `{"seq":5,"time":"2026` {
		t.Fatalf("torn fragment should stay on its own line, got %q", recs[4])
	}
	_, err := VerifyFiles([]string{cfg.Path}, VerifyOptions{})
	var ce *ChainError
	if !errors.As(err, &ce) || ce.Line != 5 || !strings.Contains(ce.Msg, "not a valid audit record") {
		t.Fatalf("verify: got %v, want the torn line reported at line 5", err)
	}
	// The chain itself continued from seq 4 (the last complete record).
	var next Record
	json.Unmarshal([]byte(recs[5]), &next)
	if next.Seq != 5 || !strings.Contains(next.Reason, "torn") {
		t.Errorf("record after the fragment: %+v", next)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRotationAndCrossFileVerify(t *testing.T) {
	cfg := fileConfig(t)
	clock := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	l := mustNew(t, cfg, WithClock(func() time.Time { clock = clock.Add(time.Millisecond); return clock }))
	l.file.max = 2048 // a few records per file
	logN(t, l, 40, "rotating-tool")
	l.Close()

	files, err := Files(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("expected several rotated files, got %v", files)
	}
	var total int
	for i, f := range files {
		st, _ := os.Stat(f)
		if st.Size() > 2048 {
			t.Errorf("%s: %d bytes, over the limit", f, st.Size())
		}
		recs := readRecords(t, f)
		total += len(recs)
		if i > 0 {
			prev := readRecords(t, files[i-1])
			if recs[0].Reason != "rotate" || recs[0].Prev != prev[len(prev)-1].Hash {
				t.Errorf("%s does not start with a rotate checkpoint linked to %s", f, files[i-1])
			}
		}
	}
	rep, err := VerifyFiles(files, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != total || rep.Files != len(files) || !rep.CleanShutdown {
		t.Errorf("report %+v, want %d records", rep, total)
	}
	// The current file alone continues an earlier chain.
	if _, err := VerifyFiles(files[len(files)-1:], VerifyOptions{}); err == nil || !strings.Contains(err.Error(), "does not start at seq 1") {
		t.Errorf("current file alone: got %v, want not-genesis error", err)
	}
	if _, err := VerifyFiles(files[len(files)-1:], VerifyOptions{Partial: true}); err != nil {
		t.Errorf("partial: %v", err)
	}
	// Files out of order are caught.
	swapped := append([]string{files[1], files[0]}, files[2:]...)
	if _, err := VerifyFiles(swapped, VerifyOptions{}); err == nil {
		t.Errorf("files out of order verified")
	}
}

func TestRotationPrunesBackups(t *testing.T) {
	cfg := fileConfig(t)
	cfg.MaxBackups = 2
	l := mustNew(t, cfg)
	l.file.max = 1024
	logN(t, l, 40, "x")
	l.Close()
	files, _ := Files(cfg.Path)
	if len(files) != 3 {
		t.Fatalf("want 2 backups + current, got %v", files)
	}
	if _, err := VerifyFiles(files, VerifyOptions{}); err == nil {
		t.Errorf("pruned log verified as starting at genesis")
	}
	if _, err := VerifyFiles(files, VerifyOptions{Partial: true}); err != nil {
		t.Errorf("partial: %v", err)
	}
}

func TestRestartContinuesFromNewestBackup(t *testing.T) {
	cfg := fileConfig(t)
	l := mustNew(t, cfg)
	logN(t, l, 3, "x")
	l.Close()
	// An external tool moved the current file aside under a backup name.
	if err := os.Rename(cfg.Path, cfg.Path+".20260101T000000.000000Z"); err != nil {
		t.Fatal(err)
	}
	l = mustNew(t, cfg)
	logN(t, l, 3, "y")
	l.Close()
	files, _ := Files(cfg.Path)
	rep, err := VerifyFiles(files, VerifyOptions{})
	if err != nil || rep.Records != 10 {
		t.Fatalf("got %+v, %v", rep, err)
	}
}

// flakyWriter fails while fail is set; partial makes it write half a line first.
type flakyWriter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	fail    atomic.Bool
	partial bool
}

func (w *flakyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail.Load() {
		if w.partial {
			w.buf.Write(p[:len(p)/2])
			return len(p) / 2, errors.New("no space left on device")
		}
		return 0, errors.New("no space left on device")
	}
	return w.buf.Write(p)
}

func TestOnErrorFail(t *testing.T) {
	w := &flakyWriter{}
	var logs bytes.Buffer
	l := mustNew(t, Config{}, WithWriter(w), WithSlog(slog.New(slog.NewTextHandler(&logs, nil))))
	logN(t, l, 1, "ok")
	w.fail.Store(true)
	err := l.Log(context.Background(), &Record{Tool: "must-not-run"})
	if err == nil {
		t.Fatal("Log returned nil on a failed write with on_error: fail")
	}
	if got := metricValue(t, l, "mcpgate_audit_write_failures_total"); got != 1 {
		t.Errorf("failures = %v, want 1", got)
	}
	if !strings.Contains(logs.String(), "refusing the request") {
		t.Errorf("failure not logged: %s", logs.String())
	}
	w.fail.Store(false)
	logN(t, l, 1, "after")
	l.Close()
	rep, err := Verify(bytes.NewReader(w.buf.Bytes()), VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The refused request's record is missing: the gap is in the chain,
	// right before the first record written after recovery.
	if rep.Records != 5 || strings.Contains(w.buf.String(), "must-not-run") || rep.RecordsLost != 1 ||
		len(rep.Gaps) != 1 || rep.Gaps[0].Seq != 3 || rep.Gaps[0].Count != 1 {
		t.Errorf("report %+v\n%s", rep, w.buf.String())
	}
}

func TestOnErrorContinue(t *testing.T) {
	for _, partial := range []bool{false, true} {
		t.Run(fmt.Sprintf("partial=%v", partial), func(t *testing.T) {
			w := &flakyWriter{partial: partial}
			var logs bytes.Buffer
			l := mustNew(t, Config{OnError: OnErrorContinue}, WithWriter(w), WithSlog(slog.New(slog.NewTextHandler(&logs, nil))))
			logN(t, l, 1, "ok")
			w.fail.Store(true)
			for range 2 {
				if err := l.Log(context.Background(), &Record{Tool: "lost"}); err != nil {
					t.Fatalf("on_error: continue returned %v", err)
				}
			}
			if got := metricValue(t, l, "mcpgate_audit_write_failures_total"); got != 2 {
				t.Errorf("failures = %v, want 2", got)
			}
			if !strings.Contains(logs.String(), "record lost") {
				t.Errorf("loss not logged: %s", logs.String())
			}
			w.fail.Store(false)
			logN(t, l, 1, "back")
			l.Close()

			var lostRec *Record
			for line := range strings.SplitSeq(w.buf.String(), "\n") {
				var r Record
				if json.Unmarshal([]byte(line), &r) == nil && r.Event == EventRecordsLost {
					lostRec = &r
				}
			}
			if lostRec == nil || lostRec.Count != 2 {
				t.Fatalf("no RECORDS_LOST record with count 2:\n%s", w.buf.String())
			}
			_, err := Verify(bytes.NewReader(w.buf.Bytes()), VerifyOptions{})
			if partial {
				// The half-written line is evidence and must be reported.
				var ce *ChainError
				if !errors.As(err, &ce) || ce.Line != 3 {
					t.Fatalf("got %v, want the torn line 3 reported", err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSinkNoneAndClosed(t *testing.T) {
	l := mustNew(t, Config{Sink: SinkNone})
	if err := l.Log(context.Background(), &Record{}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if err := l.Log(context.Background(), &Record{}); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: got %v, want ErrClosed", err)
	}
	l2 := mustNew(t, fileConfig(t))
	l2.Close()
	if err := l2.Log(context.Background(), &Record{}); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: got %v, want ErrClosed", err)
	}
}

func TestBatchIsContiguous(t *testing.T) {
	var buf bytes.Buffer
	l := mustNew(t, Config{}, WithWriter(&buf))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			batch := []*Record{{RequestID: fmt.Sprint(g)}, {RequestID: fmt.Sprint(g)}, {RequestID: fmt.Sprint(g)}}
			if err := l.LogBatch(context.Background(), batch); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	l.Close()
	recs := readRecordsFrom(t, buf.String())
	ids := make([]string, 0, len(recs))
	for _, r := range recs[1 : len(recs)-1] {
		ids = append(ids, r.RequestID)
	}
	for i := 0; i < len(ids); i += 3 {
		if ids[i] != ids[i+1] || ids[i] != ids[i+2] {
			t.Fatalf("batch interleaved: %v", ids)
		}
	}
}

func readRecordsFrom(t *testing.T, s string) []Record {
	t.Helper()
	var out []Record
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func TestConcurrentLoggingKeepsChain(t *testing.T) {
	cfg := fileConfig(t)
	cfg.CheckpointEvery = 50
	l := mustNew(t, cfg)
	const workers, each = 8, 150
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for i := range each {
				if err := l.Log(context.Background(), &Record{RequestID: fmt.Sprintf("%d-%d", g, i), Args: json.RawMessage(`{"token":"t"}`)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	l.Close()
	rep, err := VerifyFiles([]string{cfg.Path}, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// start + records + one checkpoint per 50 records + shutdown.
	wantCP := 1 + workers*each/50 + 1
	if rep.Records != workers*each+wantCP || rep.Checkpoints != wantCP {
		t.Errorf("report %+v, want %d records, %d checkpoints", rep, workers*each+wantCP, wantCP)
	}
	if got := metricValue(t, l, "mcpgate_audit_chain_seq"); got != float64(rep.LastSeq) {
		t.Errorf("chain_seq gauge %v, want %d", got, rep.LastSeq)
	}
}

func TestCheckpointIntervalAndAnchor(t *testing.T) {
	cfg := fileConfig(t)
	cfg.CheckpointInterval = 20 * time.Millisecond
	cfg.FsyncInterval = 10 * time.Millisecond
	var logs syncBuffer
	l := mustNew(t, cfg, WithSlog(slog.New(slog.NewJSONHandler(&logs, nil))))
	logN(t, l, 2, "x")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(readFile(t, cfg.Path), `"reason":"interval"`) {
		if time.Now().After(deadline) {
			t.Fatal("no interval checkpoint written")
		}
		time.Sleep(5 * time.Millisecond)
	}
	logN(t, l, 2, "y")
	l.Close()

	// Anchor: the seq and hash of a checkpoint as logged through slog.
	var anchor Anchor
	for line := range strings.SplitSeq(logs.String(), "\n") {
		var m struct {
			Msg    string
			Seq    uint64
			Hash   string
			Reason string
		}
		if json.Unmarshal([]byte(line), &m) == nil && m.Msg == "audit checkpoint" && m.Reason == "interval" {
			anchor = Anchor{Seq: m.Seq, Hash: m.Hash}
			break
		}
	}
	if anchor.Seq == 0 {
		t.Fatalf("no checkpoint in slog output: %s", logs.String())
	}
	opts := VerifyOptions{Anchors: []Anchor{anchor}}
	if _, err := VerifyFiles([]string{cfg.Path}, opts); err != nil {
		t.Fatalf("anchored verify: %v", err)
	}
	// Truncating the log before the anchor is caught only thanks to it.
	lines := strings.SplitAfter(readFile(t, cfg.Path), "\n")
	cut := strings.Join(lines[:anchor.Seq-1], "")
	if _, err := Verify(strings.NewReader(cut), VerifyOptions{}); err != nil {
		t.Fatalf("truncated prefix without anchor should verify, got %v", err)
	}
	if _, err := Verify(strings.NewReader(cut), opts); err == nil || !strings.Contains(err.Error(), "tail was removed") {
		t.Errorf("truncated with anchor: got %v", err)
	}
}

type syncBuffer = testutil.SyncBuffer

func TestFsyncPolicies(t *testing.T) {
	for _, policy := range []string{FsyncAlways, FsyncInterval, FsyncNever} {
		t.Run(policy, func(t *testing.T) {
			cfg := fileConfig(t)
			cfg.Fsync = policy
			l := mustNew(t, cfg)
			logN(t, l, 5, "x")
			l.Close()
			if _, err := VerifyFiles([]string{cfg.Path}, VerifyOptions{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestHMACChain(t *testing.T) {
	key := strings.Repeat("k", 32)
	t.Setenv("MCPGATE_TEST_AUDIT_KEY", key)
	cfg := fileConfig(t)
	cfg.HMACKeyEnv = "MCPGATE_TEST_AUDIT_KEY"
	l := mustNew(t, cfg)
	logN(t, l, 3, "x")
	l.Close()
	if _, err := VerifyFiles([]string{cfg.Path}, VerifyOptions{HMACKey: []byte(key)}); err != nil {
		t.Fatal(err)
	}
	_, err := VerifyFiles([]string{cfg.Path}, VerifyOptions{})
	var ce *ChainError
	if !errors.As(err, &ce) || ce.Line != 1 || !strings.Contains(ce.Msg, "hmac") {
		t.Errorf("unkeyed verify of keyed log: got %v", err)
	}
	// Restarting with another key refuses to extend the chain.
	t.Setenv("MCPGATE_TEST_AUDIT_KEY", strings.Repeat("j", 32))
	if _, err := New(cfg); err == nil {
		t.Error("New continued a chain under a different key")
	}
}

// BenchmarkLog measures Log with a file sink: a lone caller (c=1), and
// concurrent callers as behind a busy gateway (c=32: b.RunParallel with
// 32 goroutines whatever GOMAXPROCS), where group commit shares writes.
func BenchmarkLog(b *testing.B) {
	plain := json.RawMessage(`{"vm_name":"web-server-01","options":{"force":true,"timeout":30}}`)
	secret := json.RawMessage(`{"vm_name":"web-server-01","password":"x","options":{"force":true,"timeout":30}}`)
	for _, bc := range []struct {
		fsync string
		c     int
		args  json.RawMessage
	}{{FsyncInterval, 1, plain}, {FsyncInterval, 32, plain}, {FsyncInterval, 32, secret}, {FsyncAlways, 32, plain}} {
		name := fmt.Sprintf("fsync=%s/c=%d", bc.fsync, bc.c)
		if &bc.args[0] == &secret[0] {
			name += "/redact"
		}
		b.Run(name, func(b *testing.B) { benchmarkLog(b, bc.fsync, bc.c, bc.args) })
	}
}

// benchmarkLog logs tools/call records; args with a secret take the
// redactor's decode and re-encode path, others (the usual case) its shortcut.
func benchmarkLog(b *testing.B, fsync string, c int, args json.RawMessage) {
	cfg := Config{Sink: SinkFile, Path: filepath.Join(b.TempDir(), "audit.jsonl"), Fsync: fsync}
	l, err := New(cfg, WithSlog(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	l.file.max = 1 << 40 // measure writing, not rotation
	b.ReportAllocs()
	if c > 1 {
		b.SetParallelism((c + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	}
	b.ResetTimer()
	start, cpu0 := time.Now(), testutil.ProcessCPU()
	do := func() {
		r := &Record{RequestID: "0190a5e4-7c1d-7f00-8000-000000000000", ClientIP: "192.0.2.10", Issuer: "https://idp.example.com",
			Subject: "248289761001", User: "ryan@example.com", Groups: []string{"vsphere-admins"}, Method: "tools/call",
			Tool: "power_on", Args: args, Decision: DecisionAllow, Rule: "roles.operator", Status: 200, DurationMS: 12.3, Result: ResultSuccess}
		if err := l.Log(context.Background(), r); err != nil {
			b.Fatal(err)
		}
	}
	if c == 1 {
		for b.Loop() {
			do()
		}
	} else {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				do()
			}
		})
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
	// CPU time of the process per record: unlike ns/op, it hardly moves
	// when other processes load the machine.
	b.ReportMetric(float64(testutil.ProcessCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	b.StopTimer()
	l.Close()
}

func TestFsyncAlwaysGroupCommitWithRotation(t *testing.T) {
	cfg := fileConfig(t)
	cfg.Fsync = FsyncAlways
	l := mustNew(t, cfg)
	l.file.max = 4096
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 25 {
				if err := l.Log(context.Background(), &Record{RequestID: fmt.Sprintf("%d-%d", g, i)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	l.mu.Lock()
	dirty := l.dirty
	l.mu.Unlock()
	if dirty {
		t.Error("after all Log calls returned, records were written but not fsynced")
	}
	l.Close()
	files, _ := Files(cfg.Path)
	rep, err := VerifyFiles(files, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 || rep.Records < 200 {
		t.Errorf("files %d, report %+v", len(files), rep)
	}
}
