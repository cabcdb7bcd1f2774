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
	cmd := newAuditCmd()
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
