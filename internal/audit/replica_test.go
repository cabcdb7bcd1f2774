package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// replicaLog returns the lines of one replica's chain written to stdout
// (start, n records, shutdown).
func replicaLog(t *testing.T, replica string, n int) []string {
	t.Helper()
	var buf bytes.Buffer
	l, err := New(Config{Replica: replica}, WithWriter(&buf), WithSlog(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := l.Log(context.Background(), &Record{RequestID: fmt.Sprintf("%s-%d", replica, i), Tool: "get_vm"}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	return withNewlines(strings.SplitAfter(strings.TrimSuffix(buf.String(), "\n"), "\n"))
}

// withNewlines ends every line with a newline, as a shipper delivers it.
func withNewlines(lines []string) []string {
	for i, l := range lines {
		if !strings.HasSuffix(l, "\n") {
			lines[i] = l + "\n"
		}
	}
	return lines
}

// interleave merges the chains as a log shipper does: each chain's lines
// stay in order, the chains mix at random, with other log lines between.
func interleave(seed uint64, other []string, chains ...[]string) string {
	r := rand.New(rand.NewPCG(seed, 1))
	var b strings.Builder
	idx := make([]int, len(chains))
	for {
		var open []int
		for i, c := range chains {
			if idx[i] < len(c) {
				open = append(open, i)
			}
		}
		if len(open) == 0 {
			return b.String()
		}
		if len(other) > 0 && r.IntN(3) == 0 {
			b.WriteString(other[r.IntN(len(other))])
		}
		i := open[r.IntN(len(open))]
		b.WriteString(chains[i][idx[i]])
		idx[i]++
	}
}

var otherLines = []string{
	`{"time":"2026-12-03T10:00:00Z","level":"INFO","msg":"mcpgate listening","addr":"0.0.0.0:8080"}` + "\n",
	"time=2026-12-03T10:00:00Z level=INFO msg=\"audit checkpoint\" seq=1 hash=00\n",
	"plain text from a sidecar\n",
	"\n",
}

func verifyStream(t *testing.T, in string, opts MultiOptions) MultiReport {
	t.Helper()
	m := NewMultiVerifier(opts)
	if err := m.Feed("stdin", strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	return m.Finish()
}

func replicaReport(t *testing.T, rep MultiReport, name string) ReplicaReport {
	t.Helper()
	for _, r := range rep.Replicas {
		if r.Replica == name {
			return r
		}
	}
	t.Fatalf("no report for replica %q in %+v", name, rep)
	return ReplicaReport{}
}

// TestVerifyInterleavedReplicas: two replicas' chains interleaved among
// other log lines (and with a container runtime's prefix on some records)
// verify, each on its own.
func TestVerifyInterleavedReplicas(t *testing.T) {
	a, b := replicaLog(t, "gw-a", 20), replicaLog(t, "gw-b", 30)
	b[3] = "2026-12-03T10:00:00.000000000Z stdout F " + b[3] // CRI log format
	in := interleave(1, otherLines, a, b)
	rep := verifyStream(t, in, MultiOptions{Stream: true})
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rep.Replicas) != 2 || rep.Skipped == 0 || rep.Lines != len(a)+len(b)+rep.Skipped {
		t.Fatalf("report %+v", rep)
	}
	if ra := replicaReport(t, rep, "gw-a"); ra.Records != 22 || !ra.CleanShutdown || ra.Runs != 1 {
		t.Errorf("gw-a: %+v", ra)
	}
	if rb := replicaReport(t, rep, "gw-b"); rb.Records != 32 || !rb.CleanShutdown {
		t.Errorf("gw-b: %+v", rb)
	}

	// Without Stream, other lines are not records: the input fails.
	if rep := verifyStream(t, in, MultiOptions{}); rep.Err() == nil || rep.StrayCount == 0 {
		t.Errorf("file mode accepted other lines: %+v", rep)
	}
	// Files of both replicas given together: each chain checked.
	dir := t.TempDir()
	pa, pb := filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl")
	os.WriteFile(pa, []byte(strings.Join(a, "")), 0o600)
	os.WriteFile(pb, []byte(strings.Join(replicaLog(t, "gw-b", 3), "")), 0o600)
	m := NewMultiVerifier(MultiOptions{})
	for _, p := range []string{pb, pa} {
		f, _ := os.Open(p)
		if err := m.Feed(p, f); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if rep := m.Finish(); rep.Err() != nil || len(rep.Replicas) != 2 || rep.Files != 2 {
		t.Errorf("two files: %+v, %v", rep, rep.Err())
	}
}

// TestVerifyReplicaTamperingAndGaps: a modified or a missing record is
// reported for its replica only.
func TestVerifyReplicaTamperingAndGaps(t *testing.T) {
	a, b := replicaLog(t, "gw-a", 10), replicaLog(t, "gw-b", 10)
	tests := []struct {
		name    string
		edit    func(a, b []string) ([]string, []string)
		replica string
		msg     string
	}{
		{"modified", func(a, b []string) ([]string, []string) {
			b = append([]string(nil), b...)
			b[4] = strings.Replace(b[4], `"tool":"get_vm"`, `"tool":"del_vm"`, 1)
			return a, b
		}, "gw-b", "hash mismatch"},
		{"deleted", func(a, b []string) ([]string, []string) {
			return append(append([]string(nil), a[:5]...), a[6:]...), b
		}, "gw-a", "1 record(s) deleted"},
		{"tail of one replica removed, middle kept", func(a, b []string) ([]string, []string) {
			return a, append(append([]string(nil), b[:3]...), b[5:]...)
		}, "gw-b", "2 record(s) deleted"},
		{"hash member removed", func(a, b []string) ([]string, []string) {
			a = append([]string(nil), a...)
			a[2] = a[2][:strings.Index(a[2], `,"hash"`)] + "}\n"
			return a, b
		}, "gw-a", "not a valid audit record"},
		{"moved to the other replica", func(a, b []string) ([]string, []string) {
			a = append([]string(nil), a...)
			a[3] = strings.Replace(a[3], `"replica":"gw-a"`, `"replica":"gw-b"`, 1)
			return a, b
		}, "gw-a", "hash mismatch"}, // the replica is hashed: the record still links to gw-a's chain
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ea, eb := tc.edit(a, b)
			rep := verifyStream(t, interleave(2, otherLines, ea, eb), MultiOptions{Stream: true})
			bad := replicaReport(t, rep, tc.replica)
			var ce *ChainError
			if !errors.As(bad.Err, &ce) || !strings.Contains(ce.Msg, tc.msg) || ce.File != "stdin" || ce.Line == 0 {
				t.Fatalf("%s: got %v, want %q", tc.replica, bad.Err, tc.msg)
			}
			if rep.Err() == nil || !strings.Contains(rep.Err().Error(), tc.replica) {
				t.Errorf("report error %v does not name %s", rep.Err(), tc.replica)
			}
			other := map[string]string{"gw-a": "gw-b", "gw-b": "gw-a"}[tc.replica]
			if tc.name != "moved to the other replica" {
				if r := replicaReport(t, rep, other); r.Err != nil {
					t.Errorf("%s failed too: %v", other, r.Err)
				}
			}
		})
	}
}

// TestVerifyStreamRules: what a stream may hold besides records.
func TestVerifyStreamRules(t *testing.T) {
	a := replicaLog(t, "gw-a", 3)
	t.Run("damaged record without a replica is a stray failure", func(t *testing.T) {
		in := strings.Join(a, "") + `{"seq":9,"oops` + "\n"
		rep := verifyStream(t, in, MultiOptions{Stream: true})
		if rep.Stray == nil || rep.StrayCount != 1 || rep.Err() == nil {
			t.Fatalf("%+v", rep)
		}
		if r := replicaReport(t, rep, "gw-a"); r.Err != nil {
			t.Errorf("gw-a: %v", r.Err)
		}
	})
	t.Run("restart with a new chain", func(t *testing.T) {
		second := replicaLog(t, "gw-a", 2)
		rep := verifyStream(t, strings.Join(a[:len(a)-1], "")+strings.Join(second, ""), MultiOptions{Stream: true})
		r := replicaReport(t, rep, "gw-a")
		if rep.Err() != nil || r.Runs != 2 || r.UncleanRestarts != 1 || r.Records != 4+4 {
			t.Fatalf("%+v, %v", r, rep.Err())
		}
		// A file is one chain: a second genesis in it is refused.
		if rep := verifyStream(t, strings.Join(a, "")+strings.Join(second, ""), MultiOptions{}); rep.Err() == nil {
			t.Error("file mode accepted a second chain")
		}
	})
	t.Run("chain picked up mid-way needs partial", func(t *testing.T) {
		in := strings.Join(a[2:], "")
		if rep := verifyStream(t, in, MultiOptions{Stream: true}); rep.Err() == nil {
			t.Error("accepted a chain without its head")
		}
		rep := verifyStream(t, in, MultiOptions{Stream: true, VerifyOptions: VerifyOptions{Partial: true}})
		if rep.Err() != nil {
			t.Error(rep.Err())
		}
	})
	t.Run("records of older logs have no replica", func(t *testing.T) {
		old := withNewlines(rechain(t, stripReplica(t, sampleLog(t, nil)), 0, nil))
		rep := verifyStream(t, interleave(3, nil, old, a), MultiOptions{Stream: true})
		if rep.Err() != nil || len(rep.Replicas) != 2 || rep.Replicas[0].Replica != "" {
			t.Fatalf("%+v, %v", rep, rep.Err())
		}
	})
	t.Run("anchors name their replica", func(t *testing.T) {
		b := replicaLog(t, "gw-b", 3)
		in := interleave(4, nil, a, b)
		ea, _ := parseLine([]byte(strings.TrimSuffix(a[len(a)-1], "\n")))
		good := Anchor{Replica: "gw-a", Seq: *ea.Seq, Hash: ea.Hash}
		if rep := verifyStream(t, in, MultiOptions{Stream: true, VerifyOptions: VerifyOptions{Anchors: []Anchor{good}}}); rep.Err() != nil {
			t.Fatal(rep.Err())
		}
		cut := strings.Join(a[:len(a)-1], "") + strings.Join(b, "") // gw-a's tail removed
		rep := verifyStream(t, cut, MultiOptions{VerifyOptions: VerifyOptions{Anchors: []Anchor{good}}})
		if r := replicaReport(t, rep, "gw-a"); r.Err == nil || !strings.Contains(r.Err.Error(), "tail was removed") {
			t.Errorf("gw-a against its anchor: %v", r.Err)
		}
		if r := replicaReport(t, rep, "gw-b"); r.Err != nil {
			t.Errorf("gw-b: %v", r.Err)
		}
		// An anchor without a replica name is found by its hash; one that
		// is not found cannot be placed among two replicas.
		unnamed := good
		unnamed.Replica = ""
		if rep := verifyStream(t, in, MultiOptions{Stream: true, VerifyOptions: VerifyOptions{Anchors: []Anchor{unnamed}}}); rep.Err() != nil {
			t.Error(rep.Err())
		}
		rep = verifyStream(t, cut, MultiOptions{VerifyOptions: VerifyOptions{Anchors: []Anchor{unnamed}}})
		if rep.Err() == nil || !strings.Contains(rep.Err().Error(), "REPLICA=SEQ:HASH") {
			t.Errorf("unplaceable anchor: %v", rep.Err())
		}
		missing := good
		missing.Replica = "gw-c"
		if rep := verifyStream(t, in, MultiOptions{Stream: true, VerifyOptions: VerifyOptions{Anchors: []Anchor{missing}}}); rep.Err() == nil {
			t.Error("an anchor of an absent replica was accepted")
		}
	})
}

// stripReplica removes the replica member, as in logs written before it.
func stripReplica(t *testing.T, lines []string) []string {
	t.Helper()
	out := make([]string, len(lines))
	for i, l := range lines {
		j := strings.Index(l, `,"replica":"`)
		if j < 0 {
			out[i] = l
			continue
		}
		k := strings.Index(l[j+len(`,"replica":"`):], `"`)
		out[i] = l[:j] + l[j+len(`,"replica":"`)+k+1:]
	}
	return out
}

func TestParseAnchorReplica(t *testing.T) {
	h := strings.Repeat("ab", 32)
	if a, err := ParseAnchor("gw-1.ns:0=12:" + h); err != nil || a.Replica != "gw-1.ns:0" || a.Seq != 12 {
		t.Errorf("got %+v, %v", a, err)
	}
	for _, bad := range []string{"=12:" + h, "gw 1=12:" + h, "a=b=12:" + h} {
		if _, err := ParseAnchor(bad); err == nil {
			t.Errorf("ParseAnchor(%q) accepted", bad)
		}
	}
}

// FuzzVerifyStream: a stream of anything never panics, and what passes
// holds only gap-free chains that start at seq 1.
func FuzzVerifyStream(f *testing.F) {
	lines := sampleLog(f, nil)
	f.Add([]byte(strings.Join(lines, "") + "\nnoise\n" + strings.Join(lines, "")))
	f.Add([]byte(`{"seq":1,"replica":"a","prev":"","hash":"` + strings.Repeat("0", 64) + `"}` + "\nnoise\n"))
	f.Add([]byte("2026 stdout F {\"seq\":1,\"prev\":\"\"}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m := NewMultiVerifier(MultiOptions{Stream: true})
		if m.Feed("fuzz", bytes.NewReader(data)) != nil {
			return
		}
		rep := m.Finish()
		if rep.Err() != nil {
			return
		}
		for _, r := range rep.Replicas {
			if !r.Genesis || r.Records == 0 || r.Runs < 1 {
				t.Fatalf("accepted %+v", r)
			}
		}
	})
}

// TestVerifyChainContinuedUnderAnotherName: a log file written before
// records named their replica, continued by a gateway that names it (an
// upgrade; or a new host name on the same volume), is one chain.
func TestVerifyChainContinuedUnderAnotherName(t *testing.T) {
	cfg := fileConfig(t)
	old := withNewlines(rechain(t, stripReplica(t, sampleLog(t, nil)), 0, nil))
	os.MkdirAll(filepath.Dir(cfg.Path), 0o700)
	if err := os.WriteFile(cfg.Path, []byte(strings.Join(old, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"gw-a", "gw-a2"} {
		cfg.Replica = name
		l := mustNew(t, cfg)
		logN(t, l, 2, name)
		l.Close()
	}
	m := NewMultiVerifier(MultiOptions{})
	f, _ := os.Open(cfg.Path)
	defer f.Close()
	if err := m.Feed(cfg.Path, f); err != nil {
		t.Fatal(err)
	}
	rep := m.Finish()
	if rep.Err() != nil || len(rep.Replicas) != 1 {
		t.Fatalf("%+v, %v", rep, rep.Err())
	}
	r := rep.Replicas[0]
	if r.Replica != "gw-a2" || !slices.Equal(r.Renamed, []string{"", "gw-a"}) || r.Records != len(old)+8 || !r.Genesis || !r.CleanShutdown {
		t.Errorf("%+v", r)
	}
}
