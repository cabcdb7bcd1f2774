package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// What verification proves, and what it cannot.
//
// Detected anywhere in the files given: a modified line (hash mismatch), a
// deleted line (seq gap / prev mismatch), a reordered line, an inserted or
// duplicated line, a line that is not a record, and — unless Partial — a
// removed head (the chain must start at seq 1). A checkpoint whose count
// disagrees with the records since the process started is reported too.
//
// Not detectable from the files alone: removal of the tail (the remaining
// prefix is a valid chain), and, with an unkeyed chain, a rewrite of
// everything from some record on (the attacker recomputes the hashes). These
// need something the attacker cannot rewrite:
//   - anchors: every checkpoint's seq and hash is also logged through slog
//     (ship it elsewhere), and mcpgate_audit_chain_seq is exported to
//     Prometheus; pass known (seq, hash) pairs as Anchors, and a log that was
//     truncated or rewritten before an anchor fails;
//   - a shutdown marker: a log whose gateway has stopped must end with a
//     "shutdown" checkpoint (Report.CleanShutdown), else it was cut or the
//     process crashed;
//   - an HMAC key (hmac_key_env): forging any record then requires the key.

// VerifyOptions configure verification.
type VerifyOptions struct {
	HMACKey []byte // the chain key, when the log was written with hmac_key_env
	// Partial accepts a first record that continues an earlier chain, for logs
	// whose oldest rotated files were deleted (max_backups).
	Partial bool
	Anchors []Anchor
}

// Anchor is a (seq, hash) pair known from outside the log, e.g. a checkpoint
// from the gateway's slog output.
type Anchor struct {
	Seq  uint64
	Hash string
}

// ParseAnchor parses "SEQ:HASH".
func ParseAnchor(s string) (Anchor, error) {
	seqText, sum, ok := strings.Cut(s, ":")
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if !ok || err != nil || seq == 0 || len(sum) != hashHexLen || !isLowerHex(sum) {
		return Anchor{}, fmt.Errorf("anchor %q: want SEQ:HASH with a 64-digit lowercase hex hash", s)
	}
	return Anchor{Seq: seq, Hash: sum}, nil
}

// Report summarizes the records checked (up to the first problem).
type Report struct {
	Files         int
	Records       int
	Checkpoints   int
	FirstSeq      uint64
	LastSeq       uint64
	LastHash      string
	Genesis       bool // the chain starts at seq 1
	CleanShutdown bool // the last record is a "shutdown" checkpoint
	// Gaps lists the RECORDS_LOST markers: records the gateway could not
	// write (e.g. disk full), and RecordsLost is the sum of their counts.
	// The chain is intact around a gap, but the log is not complete.
	Gaps        []Gap // the first MaxGaps
	GapCount    int
	RecordsLost uint64
}

// MaxGaps bounds Report.Gaps; RecordsLost counts them all.
const MaxGaps = 100

// Gap is one RECORDS_LOST marker.
type Gap struct {
	Seq   uint64 // of the marker, written once the log was writable again
	Count uint64 // records lost before it
	Time  string
}

// ChainError locates the first problem found.
type ChainError struct {
	File string // empty for a single stream
	Line int    // 1-based within File; 0 for problems found at the end
	Seq  uint64 // 0 when unknown
	Msg  string
}

func (e *ChainError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d", e.Line)
		if e.Seq > 0 {
			fmt.Fprintf(&b, " (seq %d)", e.Seq)
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Verifier checks a chain spread over several inputs fed in order.
type Verifier struct {
	opts     VerifyOptions
	chain    *chainHasher
	anchors  map[uint64]string
	rep      Report
	prevLine string // "file:line" of the last record, for messages
	runCount uint64 // records since the last "start" checkpoint; 0 = unknown
	err      error
}

// NewVerifier returns a Verifier.
func NewVerifier(opts VerifyOptions) *Verifier {
	v := &Verifier{opts: opts, chain: newChainHasher(opts.HMACKey), anchors: map[uint64]string{}}
	for _, a := range opts.Anchors {
		v.anchors[a.Seq] = a.Hash
	}
	return v
}

// Verify checks one stream.
func Verify(r io.Reader, opts VerifyOptions) (Report, error) {
	v := NewVerifier(opts)
	if err := v.Feed("", r); err != nil {
		return v.rep, err
	}
	return v.Finish()
}

// VerifyFiles checks files in chain order (see Files).
func VerifyFiles(paths []string, opts VerifyOptions) (Report, error) {
	v := NewVerifier(opts)
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return v.rep, err
		}
		err = v.Feed(p, f)
		f.Close()
		if err != nil {
			return v.rep, err
		}
	}
	return v.Finish()
}

// Feed checks the next input. It returns a *ChainError for the first broken
// link, or a read error; after an error further calls return it again.
func (v *Verifier) Feed(name string, r io.Reader) error {
	if v.err != nil {
		return v.err
	}
	v.rep.Files++
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxTail)
	sc.Split(splitLines)
	line := 0
	for sc.Scan() {
		line++
		if err := v.check(sc.Bytes()); err != nil {
			err.File, err.Line = name, line
			v.err = err
			return err
		}
		v.prevLine = fmt.Sprintf("%s:%d", name, line)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = &ChainError{File: name, Line: line + 1, Msg: fmt.Sprintf("line longer than %d bytes", maxTail)}
		}
		v.err = err
		return err
	}
	return nil
}

// splitLines splits after '\n' only, keeping it, so that no byte (a '\r', a
// missing final newline) escapes the check.
func splitLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i+1], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

func (v *Verifier) check(raw []byte) *ChainError {
	text, terminated := bytes.CutSuffix(raw, []byte{'\n'})
	e, err := parseLine(text)
	if err != nil {
		ce := &ChainError{Seq: lenientSeq(text), Msg: "not a valid audit record: " + err.Error()}
		if !terminated {
			ce.Msg += " (incomplete last line: torn write, or the file is being written)"
		}
		return ce
	}
	seq := *e.Seq
	fail := func(format string, args ...any) *ChainError {
		return &ChainError{Seq: seq, Msg: fmt.Sprintf(format, args...)}
	}
	first := v.rep.Records == 0
	switch {
	case seq == 0:
		return fail("seq must start at 1")
	case first && !v.opts.Partial && (seq != 1 || *e.Prev != ""):
		return fail("the chain does not start at seq 1: the head was removed, or older files are missing (pass them first, or use partial verification: --partial)")
	case first && seq == 1 && *e.Prev != "":
		return fail("seq 1 must have an empty prev")
	case !first && seq < v.rep.LastSeq+1:
		return fail("expected seq %d after %s: a record was inserted, duplicated or reordered", v.rep.LastSeq+1, v.prevLine)
	case !first && seq > v.rep.LastSeq+1:
		return fail("expected seq %d after %s: %d record(s) deleted, or records reordered", v.rep.LastSeq+1, v.prevLine, seq-v.rep.LastSeq-1)
	case !first && *e.Prev != v.rep.LastHash:
		return fail("prev does not match the hash of the previous record (%s): a record was replaced", v.prevLine)
	}
	if v.chain.sum(*e.Prev, e.canonical) != e.Hash {
		msg := "hash mismatch: the record was modified"
		if len(v.opts.HMACKey) == 0 {
			msg += " (or the log is keyed: give the hmac key)"
		} else {
			msg += " (or the hmac key is wrong)"
		}
		return fail("%s", msg)
	}
	if want, ok := v.anchors[seq]; ok && want != e.Hash {
		return fail("hash differs from the anchor: the log was rewritten at or before this record")
	}
	if e.Source == sourceAudit && e.Event == EventCheckpoint {
		switch {
		case strings.HasPrefix(e.Reason, "start"):
			v.runCount = 0
		case v.runCount == 0: // first checkpoint seen mid-run: learn the count
			v.runCount = e.Count - 1
		}
		v.runCount++
		if e.Count != v.runCount {
			return fail("checkpoint count %d, but %d records since the gateway started: records were removed or inserted", e.Count, v.runCount)
		}
		v.rep.Checkpoints++
	} else if v.runCount > 0 {
		v.runCount++
	}

	if e.Source == sourceAudit && e.Event == EventRecordsLost {
		if len(v.rep.Gaps) < MaxGaps {
			v.rep.Gaps = append(v.rep.Gaps, Gap{Seq: seq, Count: e.Count, Time: e.Time})
		}
		v.rep.GapCount++
		v.rep.RecordsLost += e.Count
	}
	if first {
		v.rep.FirstSeq = seq
		v.rep.Genesis = seq == 1
	}
	v.rep.Records++
	v.rep.LastSeq, v.rep.LastHash = seq, e.Hash
	v.rep.CleanShutdown = e.Source == sourceAudit && e.Event == EventCheckpoint && e.Reason == "shutdown"
	return nil
}

// lenientSeq extracts a seq from a damaged line for the error message.
func lenientSeq(line []byte) uint64 {
	var s struct {
		Seq uint64 `json:"seq"`
	}
	if json.Unmarshal(line, &s) != nil {
		return 0
	}
	return s.Seq
}

// Finish checks the anchors against the whole chain and returns the report.
func (v *Verifier) Finish() (Report, error) {
	if v.err != nil {
		return v.rep, v.err
	}
	for _, a := range v.opts.Anchors {
		switch {
		case v.rep.Records == 0 || a.Seq > v.rep.LastSeq:
			v.err = &ChainError{Seq: a.Seq, Msg: fmt.Sprintf("the log ends at seq %d, before anchored seq %d: the tail was removed", v.rep.LastSeq, a.Seq)}
		case a.Seq < v.rep.FirstSeq:
			v.err = &ChainError{Seq: a.Seq, Msg: fmt.Sprintf("anchored seq %d precedes the first record checked (seq %d): give the older files", a.Seq, v.rep.FirstSeq)}
		}
		if v.err != nil {
			return v.rep, v.err
		}
	}
	return v.rep, nil
}
