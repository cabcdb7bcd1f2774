package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// sampleLog returns the lines of a log: start checkpoint, six records,
// shutdown checkpoint (seq 1..8).
func sampleLog(t testing.TB, key []byte) []string {
	t.Helper()
	var buf bytes.Buffer
	cfg := Config{}
	if key != nil {
		t.Setenv("MCPGATE_TEST_VERIFY_KEY", string(key))
		cfg.HMACKeyEnv = "MCPGATE_TEST_VERIFY_KEY"
	}
	l, err := New(cfg, WithWriter(&buf), WithSlog(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if err := l.Log(context.Background(), &Record{RequestID: fmt.Sprint(i), Tool: "get_vm", Decision: DecisionAllow, Subject: "alice"}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	return strings.SplitAfter(strings.TrimSuffix(buf.String(), "\n"), "\n")
}

// rechain recomputes seq, prev and hash of lines[from:], as an attacker
// without the key (or with it) would after editing.
func rechain(t *testing.T, lines []string, from int, key []byte) []string {
	t.Helper()
	out := append([]string(nil), lines...)
	h := newChainHasher(key)
	var prev string
	var seq uint64
	if from > 0 {
		e, err := parseLine([]byte(strings.TrimSuffix(out[from-1], "\n")))
		if err != nil {
			t.Fatal(err)
		}
		prev, seq = e.Hash, *e.Seq
	}
	for i := from; i < len(out); i++ {
		var r Record
		if err := json.Unmarshal([]byte(out[i]), &r); err != nil {
			t.Fatal(err)
		}
		r.Seq, r.Prev, r.Hash = 0, "", ""
		body, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		seq++
		line, sum := h.appendLine(nil, body, seq, []byte(prev))
		out[i], prev = string(line), string(sum[:])
	}
	return out
}

func TestVerifyDetectsTampering(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(t *testing.T, l []string) []string // l is 0-based; messages are 1-based
		opts     VerifyOptions
		wantLine int
		wantSeq  uint64
		wantMsg  string
	}{
		{name: "modified field", mutate: func(t *testing.T, l []string) []string {
			l[3] = strings.Replace(l[3], `"decision":"allow"`, `"decision":"deny"`, 1)
			return l
		}, wantLine: 4, wantSeq: 4, wantMsg: "hash mismatch"},
		{name: "modified seq", mutate: func(t *testing.T, l []string) []string {
			l[3] = strings.Replace(l[3], `{"seq":4,`, `{"seq":9,`, 1)
			return l
		}, wantLine: 4, wantSeq: 9, wantMsg: "expected seq 4"},
		{name: "modified hash", mutate: func(t *testing.T, l []string) []string {
			b := []byte(l[3])
			flipLastHashDigit(b)
			l[3] = string(b)
			return l
		}, wantLine: 4, wantSeq: 4, wantMsg: "hash mismatch"},
		{name: "carriage return added", mutate: func(t *testing.T, l []string) []string {
			l[1] = strings.TrimSuffix(l[1], "\n") + "\r\n"
			return l
		}, wantLine: 2, wantSeq: 2, wantMsg: "not a valid audit record"},
		{name: "deleted line", mutate: func(t *testing.T, l []string) []string {
			return append(l[:3], l[4:]...)
		}, wantLine: 4, wantSeq: 5, wantMsg: "1 record(s) deleted"},
		{name: "deleted head", mutate: func(t *testing.T, l []string) []string {
			return l[1:]
		}, wantLine: 1, wantSeq: 2, wantMsg: "does not start at seq 1"},
		{name: "swapped pair", mutate: func(t *testing.T, l []string) []string {
			l[3], l[4] = l[4], l[3]
			return l
		}, wantLine: 4, wantSeq: 5, wantMsg: "expected seq 4"},
		{name: "duplicated line", mutate: func(t *testing.T, l []string) []string {
			return append(l[:3], append([]string{l[2]}, l[3:]...)...)
		}, wantLine: 4, wantSeq: 3, wantMsg: "inserted, duplicated or reordered"},
		{name: "inserted garbage", mutate: func(t *testing.T, l []string) []string {
			return append(l[:3], append([]string{"{\"seq\":4,\"tool\":\"rm -rf\"}\n"}, l[3:]...)...)
		}, wantLine: 4, wantSeq: 4, wantMsg: "not a valid audit record"},
		{name: "inserted blank line", mutate: func(t *testing.T, l []string) []string {
			return append(l[:3], append([]string{"\n"}, l[3:]...)...)
		}, wantLine: 4, wantMsg: "not a valid audit record"},
		{name: "inserted chained record, tail kept", mutate: func(t *testing.T, l []string) []string {
			forged := strings.Replace(l[3], `"request_id":"2"`, `"request_id":"forged"`, 1)
			head := rechain(t, append(append([]string(nil), l[:3]...), forged), 3, nil)
			return append(head, l[3:]...)
		}, wantLine: 5, wantSeq: 4, wantMsg: "inserted, duplicated or reordered"},
		{name: "replaced record", mutate: func(t *testing.T, l []string) []string {
			l[3] = strings.Replace(l[3], `"request_id":"2"`, `"request_id":"forged"`, 1)
			head := rechain(t, l[:4], 3, nil)
			return append(head, l[4:]...)
		}, wantLine: 5, wantSeq: 5, wantMsg: "prev does not match"},
		{name: "deleted record, rest re-chained: checkpoint count", mutate: func(t *testing.T, l []string) []string {
			return rechain(t, append(l[:3], l[4:]...), 3, nil)
		}, wantLine: 7, wantSeq: 7, wantMsg: "checkpoint count 8, but 7 records"},
		{name: "truncated tail is a valid prefix", mutate: func(t *testing.T, l []string) []string {
			return l[:5]
		}, wantLine: 0},
		{name: "truncated tail, anchored", mutate: func(t *testing.T, l []string) []string {
			return l[:5]
		}, opts: VerifyOptions{Anchors: []Anchor{{Seq: 7, Hash: "anchor"}}}, wantSeq: 7, wantMsg: "tail was removed"},
		{name: "whole tail rewritten, anchored", mutate: func(t *testing.T, l []string) []string {
			l[3] = strings.Replace(l[3], `"tool":"get_vm"`, `"tool":"get_vn"`, 1)
			return rechain(t, l, 3, nil)
		}, opts: VerifyOptions{Anchors: []Anchor{{Seq: 4, Hash: "anchor"}}}, wantLine: 4, wantSeq: 4, wantMsg: "differs from the anchor"},
		{name: "whole tail rewritten with the wrong key", mutate: func(t *testing.T, l []string) []string {
			l[3] = strings.Replace(l[3], `"tool":"get_vm"`, `"tool":"get_vn"`, 1)
			return rechain(t, l, 3, []byte(strings.Repeat("x", 32)))
		}, opts: VerifyOptions{HMACKey: []byte(strings.Repeat("k", 32))}, wantLine: 4, wantSeq: 4, wantMsg: "hash mismatch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var key []byte
			if tc.opts.HMACKey != nil {
				key = tc.opts.HMACKey
			}
			lines := sampleLog(t, key)
			if tc.opts.Anchors != nil && tc.opts.Anchors[0].Hash == "anchor" {
				e, err := parseLine([]byte(strings.TrimSuffix(lines[tc.opts.Anchors[0].Seq-1], "\n")))
				if err != nil {
					t.Fatal(err)
				}
				tc.opts.Anchors[0].Hash = e.Hash // the true hash, known from outside
			}
			// Unmodified, the log verifies.
			if _, err := Verify(strings.NewReader(strings.Join(lines, "")), tc.opts); err != nil {
				t.Fatalf("pristine log: %v", err)
			}
			in := strings.Join(tc.mutate(t, lines), "")
			rep, err := Verify(strings.NewReader(in), tc.opts)
			if tc.wantMsg == "" {
				if err != nil {
					t.Fatalf("got %v, want a valid chain", err)
				}
				if rep.CleanShutdown {
					t.Errorf("a cut log must not report a clean shutdown")
				}
				return
			}
			var ce *ChainError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a ChainError", err)
			}
			if ce.Line != tc.wantLine || ce.Seq != tc.wantSeq || !strings.Contains(ce.Msg, tc.wantMsg) {
				t.Errorf("got line %d seq %d %q; want line %d seq %d containing %q", ce.Line, ce.Seq, ce.Msg, tc.wantLine, tc.wantSeq, tc.wantMsg)
			}
		})
	}
}

func TestVerifyReadsOtherToolsLines(t *testing.T) {
	// A record written by hand by the documented rule: hash the line without
	// its hash member.
	canonical := `{"seq":1,"time":"2026-01-01T00:00:00.000000Z","source":"mcp","prev":""}`
	sum := newChainHasher(nil).sum("", []byte(canonical))
	line := strings.TrimSuffix(canonical, "}") + `,"hash":"` + sum + `"}` + "\n"
	rep, err := Verify(strings.NewReader(line), VerifyOptions{})
	if err != nil || rep.Records != 1 || rep.LastHash != sum {
		t.Fatalf("got %+v, %v", rep, err)
	}
}

func TestParseAnchor(t *testing.T) {
	good := "12:" + strings.Repeat("ab", 32)
	if a, err := ParseAnchor(good); err != nil || a.Seq != 12 {
		t.Errorf("ParseAnchor(%q) = %+v, %v", good, a, err)
	}
	for _, bad := range []string{"", "12", "x:" + strings.Repeat("ab", 32), "0:" + strings.Repeat("ab", 32), "12:" + strings.Repeat("AB", 32), "12:abc"} {
		if _, err := ParseAnchor(bad); err == nil {
			t.Errorf("ParseAnchor(%q) accepted", bad)
		}
	}
}

func TestVerifyLongLine(t *testing.T) {
	lines := sampleLog(t, nil)
	in := strings.Join(lines[:2], "") + strings.Repeat("x", maxTail+10) + "\n"
	_, err := Verify(strings.NewReader(in), VerifyOptions{})
	var ce *ChainError
	if !errors.As(err, &ce) || ce.Line != 3 || !strings.Contains(ce.Msg, "longer than") {
		t.Fatalf("got %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	lines := sampleLog(f, nil)
	f.Add([]byte(strings.Join(lines, "")), false)
	f.Add([]byte(strings.Join(lines[2:], "")), true)
	f.Add([]byte(strings.Join(lines[:3], "")+"garbage\n"), false)
	f.Add([]byte(`{"seq":1,"prev":"","hash":"`+strings.Repeat("0", 64)+`"}`), false)
	f.Add([]byte(`{"seq":18446744073709551615,"prev":"","hash":"`+strings.Repeat("0", 64)+`"}`+"\n"), true)
	f.Add([]byte("\n\n\r\n"), false)
	f.Add([]byte(nil), false)
	f.Fuzz(func(t *testing.T, data []byte, partial bool) {
		rep, err := Verify(bytes.NewReader(data), VerifyOptions{Partial: partial})
		if err == nil && rep.Records > 0 && rep.LastSeq-rep.FirstSeq != uint64(rep.Records-1) {
			t.Fatalf("accepted a chain with gaps: %+v", rep)
		}
		if err == nil && !partial && rep.Records > 0 && !rep.Genesis {
			t.Fatalf("accepted a chain without genesis: %+v", rep)
		}
	})
}
