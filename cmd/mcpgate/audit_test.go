package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/audit"
)

func runAuditVerify(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runAuditVerifyStdin(t, "", args...)
}

func runAuditVerifyStdin(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := newAuditCmd()
	cmd.SetIn(strings.NewReader(stdin))
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{"verify"}, args...))
	err := cmd.Execute()
	return out.String(), err
}

// TestAuditVerifyAnchorFileAndGaps: verify reports a RECORDS_LOST gap, and
// with --anchor FILE catches a log cut back to an earlier shutdown record.
func TestAuditVerifyAnchorFileAndGaps(t *testing.T) {
	dir := t.TempDir()
	cfg := audit.Config{Sink: audit.SinkFile, Path: filepath.Join(dir, "audit.jsonl"), AnchorFile: filepath.Join(dir, "anchor", "head.json")}
	if err := os.MkdirAll(filepath.Dir(cfg.AnchorFile), 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := audit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l.Log(context.Background(), &audit.Record{Tool: "one"})
	l.Close()
	firstRun, _ := os.ReadFile(cfg.Path)

	fault := &audit.Fault{}
	l, err = audit.New(cfg, audit.WithFault(fault))
	if err != nil {
		t.Fatal(err)
	}
	fault.Fail(true)
	l.Log(context.Background(), &audit.Record{Tool: "lost"}) // on_error: fail: refused, and lost
	l.Log(context.Background(), &audit.Record{Tool: "lost"})
	fault.Fail(false)
	l.Log(context.Background(), &audit.Record{Tool: "two"})
	l.Close()

	out, err := runAuditVerify(t, "--anchor", cfg.AnchorFile, cfg.Path)
	if err != nil || !strings.HasPrefix(out, "OK: ") || !strings.Contains(out, "GAP: seq 5 ") ||
		!strings.Contains(out, "2 record(s) could not be written") || !strings.Contains(out, "WARNING: 2 record(s) lost in 1 gap(s)") {
		t.Fatalf("intact log with a gap: %v\n%s", err, out)
	}

	// Cut back to the first run's shutdown: fine alone, caught by the anchor.
	if err := os.WriteFile(cfg.Path, firstRun, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runAuditVerify(t, cfg.Path); err != nil || strings.Contains(out, "does not end with a shutdown") {
		t.Fatalf("truncated log alone: %v\n%s", err, out)
	}
	if _, err := runAuditVerify(t, "--anchor", cfg.AnchorFile, cfg.Path); err == nil || !strings.Contains(err.Error(), "the tail was removed") {
		t.Fatalf("truncated log against the anchor file: %v", err)
	}
	if _, err := runAuditVerify(t, "--anchor", filepath.Join(dir, "missing"), cfg.Path); err == nil || !strings.Contains(err.Error(), "no anchor file") {
		t.Fatalf("missing anchor file: %v", err)
	}
}

// replicaStdout is what one replica writes to stdout: start, n records,
// shutdown.
func replicaStdout(t *testing.T, replica string, n int) []string {
	t.Helper()
	var buf bytes.Buffer
	l, err := audit.New(audit.Config{Replica: replica}, audit.WithWriter(&buf))
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		l.Log(context.Background(), &audit.Record{Tool: "get_vm"})
	}
	l.Close()
	return strings.SplitAfter(strings.TrimSuffix(buf.String(), "\n"), "\n")
}

// TestAuditVerifyReplicas: `audit verify -` reads two replicas' stdout as
// a shipper collects it (interleaved, among other lines) and reports each
// chain; a tampered record fails its replica only; files of two replicas
// verify together.
func TestAuditVerifyReplicas(t *testing.T) {
	a, b := replicaStdout(t, "gw-a", 4), replicaStdout(t, "gw-b", 4)
	var mixed []string
	for i := range max(len(a), len(b)) {
		if i < len(a) {
			mixed = append(mixed, strings.TrimSuffix(a[i], "\n")+"\n")
		}
		mixed = append(mixed, `{"level":"INFO","msg":"request served"}`+"\n")
		if i < len(b) {
			mixed = append(mixed, strings.TrimSuffix(b[i], "\n")+"\n")
		}
	}
	in := strings.Join(mixed, "")
	out, err := runAuditVerifyStdin(t, in, "-")
	if err != nil || strings.Count(out, "OK: 6 records, chain intact (replica ") != 2 || !strings.Contains(out, `"gw-b"`) ||
		!strings.Contains(out, "6 of 18 lines are not audit records") {
		t.Fatalf("%v\n%s", err, out)
	}
	// Without "-" or --stream the other lines are refused.
	dir := t.TempDir()
	mixedFile := filepath.Join(dir, "collected.log")
	os.WriteFile(mixedFile, []byte(in), 0o600)
	if _, err := runAuditVerify(t, mixedFile); err == nil {
		t.Error("a file with other lines verified without --stream")
	}
	if out, err := runAuditVerify(t, "--stream", mixedFile); err != nil {
		t.Errorf("--stream: %v\n%s", err, out)
	}

	tampered := strings.Replace(in, `"replica":"gw-b","source":"mcp","tool":"get_vm"`, `"replica":"gw-b","source":"mcp","tool":"del_vm"`, 1)
	out, err = runAuditVerifyStdin(t, tampered, "-")
	if err == nil || !strings.Contains(err.Error(), `replica "gw-b"`) || !strings.Contains(err.Error(), "hash mismatch") ||
		!strings.Contains(out, `OK: 6 records, chain intact (replica "gw-a"`) || !strings.Contains(out, `FAIL: replica "gw-b"`) {
		t.Fatalf("tampered gw-b: %v\n%s", err, out)
	}

	pa, pb := filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl")
	os.WriteFile(pa, []byte(strings.Join(a, "")+"\n"), 0o600)
	os.WriteFile(pb, []byte(strings.Join(b, "")+"\n"), 0o600)
	if out, err := runAuditVerify(t, pa, pb); err != nil || strings.Count(out, "OK: ") != 2 {
		t.Fatalf("two files: %v\n%s", err, out)
	}
}
