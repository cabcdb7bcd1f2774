package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
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
// from the gateway's slog output, of the chain of Replica ("": the only
// chain of the input).
type Anchor struct {
	Replica string
	Seq     uint64
	Hash    string
}

// ParseAnchor parses "SEQ:HASH" or "REPLICA=SEQ:HASH".
func ParseAnchor(s string) (Anchor, error) {
	replica, rest, named := strings.Cut(s, "=")
	if !named {
		replica, rest = "", s
	}
	seqText, sum, ok := strings.Cut(rest, ":")
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if !ok || err != nil || seq == 0 || len(sum) != hashHexLen || !isLowerHex(sum) || (named && !validReplica(replica)) {
		return Anchor{}, fmt.Errorf("anchor %q: want [REPLICA=]SEQ:HASH with a 64-digit lowercase hex hash", s)
	}
	return Anchor{Replica: replica, Seq: seq, Hash: sum}, nil
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
	// Runs counts the chains checked: 1, or more for a replica that
	// restarted with a new chain in a stream (see MultiOptions.Stream);
	// UncleanRestarts counts the chains that ended without a shutdown
	// checkpoint before the next began.
	Runs            int
	UncleanRestarts int
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
	sc := lineScanner(r)
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
		return invalidLine(text, terminated, err)
	}
	return v.checkEntry(e)
}

func invalidLine(text []byte, terminated bool, err error) *ChainError {
	ce := &ChainError{Seq: lenientSeq(text), Msg: "not a valid audit record: " + err.Error()}
	if !terminated {
		ce.Msg += " (incomplete last line: torn write, or the file is being written)"
	}
	return ce
}

// checkEntry checks the next record of the chain.
func (v *Verifier) checkEntry(e *entry) *ChainError {
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
		v.rep.Runs = 1
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

// MultiOptions configure MultiVerifier.
type MultiOptions struct {
	VerifyOptions
	// Stream reads the input as a log shipper delivers it: records of
	// several replicas interleaved, possibly among other log lines. Then
	//   - a line is an audit record candidate if it contains `{"seq":`; the
	//     record is the line from there on (a prefix a container runtime or
	//     shipper adds, such as "2026-… stdout F ", is dropped); other
	//     lines are skipped and counted. Skipping is safe: a record that is
	//     removed, or damaged so that it no longer looks like one, leaves a
	//     gap in its chain that is reported;
	//   - a replica may start a new chain (seq 1, empty prev): a restart with
	//     the stdout sink, which cannot continue the previous chain. It is
	//     counted in Runs.
	// Without Stream every line must be a valid record, as in a log file,
	// and a replica's chain starts only once.
	Stream bool
}

// ReplicaReport is the verification of one replica's chains.
type ReplicaReport struct {
	Replica string // "" for records without a replica (older logs)
	// Renamed lists other replica names that earlier records of its chain
	// carried: a chain continued in the same file by a gateway with another
	// name (an upgrade from a version without replicas, a new host name).
	Renamed []string
	Report
	Err error // the first problem of its chains (a *ChainError), nil if intact
}

// MultiReport is the verification of every chain in the input.
type MultiReport struct {
	Replicas []ReplicaReport // sorted by name
	Files    int
	Lines    int
	Skipped  int // Stream: lines that are not audit records
	// Stray is the first problem that belongs to no replica (a line that is
	// not a valid record and names none, an anchor that cannot be
	// placed); StrayCount counts them. They fail the verification.
	Stray      *ChainError
	StrayCount int
}

// Err returns the first problem: a replica's, else a stray one.
func (r *MultiReport) Err() error {
	for _, rr := range r.Replicas {
		if rr.Err != nil {
			return fmt.Errorf("replica %q: %w", rr.Replica, rr.Err)
		}
	}
	if r.Stray != nil {
		return r.Stray
	}
	return nil
}

// MultiVerifier checks the chains of several replicas in one pass over
// files or a stream. A record continues the chain whose last record its
// prev names (whatever its replica), else the latest chain of its replica
// ("replica" member), where a deleted or reordered record then shows as a
// gap; seq 1 with an empty prev starts a chain. Each chain is checked on its
// own, in the order its records appear: files of one replica must be given
// in chain order (rotated backups first), files of different replicas in any
// order.
type MultiVerifier struct {
	opts    MultiOptions
	chains  []*mchain
	byLast  map[string]*mchain // by the hash of the chain's last record
	byName  map[string]*mchain // a replica's latest chain
	hit     []bool             // opts.Anchors found with their hash
	tooMany bool
	rep     MultiReport
}

type mchain struct {
	v       *Verifier
	replica string   // of its latest record
	names   []string // every replica name its records carried
}

// maxChains bounds the chains one verification tracks.
const maxChains = 10000

// NewMultiVerifier returns a MultiVerifier.
func NewMultiVerifier(opts MultiOptions) *MultiVerifier {
	return &MultiVerifier{opts: opts, byLast: map[string]*mchain{}, byName: map[string]*mchain{}, hit: make([]bool, len(opts.Anchors))}
}

// lineScanner reads r line by line as the log writes it (splitLines), a
// line at most maxTail bytes.
func lineScanner(r io.Reader) *bufio.Scanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxTail)
	sc.Split(splitLines)
	return sc
}

var seqPrefix = []byte(`{"seq":`)

// Feed checks the next input (name is its file name, for messages). It
// returns only read errors; chain problems are in the report.
func (m *MultiVerifier) Feed(name string, r io.Reader) error {
	m.rep.Files++
	sc := lineScanner(r)
	line := 0
	for sc.Scan() {
		line++
		m.rep.Lines++
		raw := sc.Bytes()
		if m.opts.Stream {
			i := bytes.Index(raw, seqPrefix)
			if i < 0 {
				m.rep.Skipped++
				continue
			}
			raw = raw[i:]
		}
		text, terminated := bytes.CutSuffix(raw, []byte{'\n'})
		e, err := parseLine(text)
		if err != nil {
			ce := invalidLine(text, terminated, err)
			ce.File, ce.Line = name, line
			replica, ok := lenientReplica(text)
			if c := m.byName[replica]; ok && c != nil {
				if c.v.err == nil {
					c.v.err = ce
				}
				continue
			}
			m.stray(ce)
			continue
		}
		c := m.chainFor(e)
		if c == nil || c.v.err != nil {
			continue // too many chains (reported), or this chain already failed
		}
		last := c.v.rep.LastHash
		if ce := c.v.checkEntry(e); ce != nil {
			ce.File, ce.Line = name, line
			c.v.err = ce
			continue
		}
		c.v.prevLine = name + ":" + strconv.Itoa(line)
		if m.byLast[last] == c {
			delete(m.byLast, last)
		}
		m.byLast[e.Hash] = c
		if c.replica != e.Replica {
			c.replica = e.Replica
			if !slices.Contains(c.names, e.Replica) && len(c.names) < 16 {
				c.names = append(c.names, e.Replica)
			}
		}
		m.byName[e.Replica] = c
		for i, a := range m.opts.Anchors {
			if a.Seq == *e.Seq && a.Hash == e.Hash && (a.Replica == "" || a.Replica == e.Replica) {
				m.hit[i] = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = &ChainError{File: name, Line: line + 1, Msg: fmt.Sprintf("line longer than %d bytes", maxTail)}
		}
		return err
	}
	return nil
}

// chainFor returns the chain e belongs to, starting one if e begins a chain
// (or, unless e names a replica seen before, when it continues none);
// nil past maxChains.
func (m *MultiVerifier) chainFor(e *entry) *mchain {
	genesis := *e.Seq == 1 && *e.Prev == ""
	if !genesis {
		if c := m.byLast[*e.Prev]; c != nil && *e.Prev != "" {
			return c
		}
	}
	if c := m.byName[e.Replica]; c != nil && (!genesis || !m.opts.Stream) {
		return c // a gap, a reordering, or (outside a stream) a second start: reported by its chain
	}
	if len(m.chains) >= maxChains {
		if !m.tooMany {
			m.tooMany = true
			m.stray(&ChainError{Msg: fmt.Sprintf("more than %d chains: the rest were not checked", maxChains)})
		}
		return nil
	}
	c := &mchain{v: NewVerifier(VerifyOptions{HMACKey: m.opts.HMACKey, Partial: m.opts.Partial}), replica: e.Replica, names: []string{e.Replica}}
	m.chains = append(m.chains, c)
	return c
}

func (m *MultiVerifier) stray(ce *ChainError) {
	if m.rep.Stray == nil {
		m.rep.Stray = ce
	}
	m.rep.StrayCount++
}

// Finish checks the anchors and returns the report of every replica.
func (m *MultiVerifier) Finish() MultiReport {
	groups := map[string][]*mchain{}
	for _, c := range m.chains {
		groups[c.replica] = append(groups[c.replica], c)
	}
	names := make([]string, 0, len(groups))
	for name := range groups {
		names = append(names, name)
	}
	slices.Sort(names)
	rep := m.rep
	reports := map[string]*ReplicaReport{}
	for _, name := range names {
		rep.Replicas = append(rep.Replicas, mergeChains(name, groups[name]))
	}
	for i := range rep.Replicas {
		reports[rep.Replicas[i].Replica] = &rep.Replicas[i]
	}
	for i, a := range m.opts.Anchors {
		if m.hit[i] {
			continue
		}
		rr := reports[a.Replica]
		if a.Replica == "" && len(rep.Replicas) == 1 {
			rr = &rep.Replicas[0]
		}
		var ce *ChainError
		switch {
		case rr == nil && a.Replica == "" && len(rep.Replicas) > 1:
			ce = &ChainError{Seq: a.Seq, Msg: fmt.Sprintf("an anchor without a replica name, but the input holds %d replicas: give REPLICA=SEQ:HASH", len(rep.Replicas))}
		case rr == nil:
			ce = &ChainError{Seq: a.Seq, Msg: fmt.Sprintf("anchored replica %q has no record in the input", a.Replica)}
		case rr.Records == 0 || a.Seq > rr.LastSeq:
			ce = &ChainError{Seq: a.Seq, Msg: fmt.Sprintf("the log ends at seq %d, before anchored seq %d: the tail was removed", rr.LastSeq, a.Seq)}
		case a.Seq < rr.FirstSeq:
			ce = &ChainError{Seq: a.Seq, Msg: fmt.Sprintf("anchored seq %d precedes the first record checked (seq %d): give the older files", a.Seq, rr.FirstSeq)}
		default:
			ce = &ChainError{Seq: a.Seq, Msg: "the record at the anchored seq differs from the anchor: the log was rewritten at or before it"}
		}
		if rr == nil {
			if m.rep.Stray == nil {
				rep.Stray = ce
			}
			rep.StrayCount++
		} else if rr.Err == nil {
			rr.Err = ce
		}
	}
	return rep
}

// mergeChains reports a replica's chains (in input order) as one.
func mergeChains(name string, chains []*mchain) ReplicaReport {
	rr := ReplicaReport{Replica: name}
	for i, c := range chains {
		r, err := c.v.Finish()
		if err == nil && r.Records == 0 {
			err = &ChainError{Msg: "no valid record"}
		}
		if rr.Err == nil {
			rr.Err = err
		}
		if i == 0 {
			rr.FirstSeq, rr.Genesis = r.FirstSeq, r.Genesis
		} else if !rr.CleanShutdown {
			rr.UncleanRestarts++
		}
		rr.Records += r.Records
		rr.Checkpoints += r.Checkpoints
		rr.LastSeq, rr.LastHash, rr.CleanShutdown = r.LastSeq, r.LastHash, r.CleanShutdown
		for _, g := range r.Gaps {
			if len(rr.Gaps) < MaxGaps {
				rr.Gaps = append(rr.Gaps, g)
			}
		}
		rr.GapCount += r.GapCount
		rr.RecordsLost += r.RecordsLost
		for _, n := range c.names {
			if n != name && !slices.Contains(rr.Renamed, n) {
				rr.Renamed = append(rr.Renamed, n)
			}
		}
	}
	rr.Runs = len(chains)
	return rr
}

// lenientReplica extracts the replica of a damaged record, for the report.
func lenientReplica(line []byte) (string, bool) {
	var s struct {
		Replica *string `json:"replica"`
	}
	if json.Unmarshal(line, &s) != nil || s.Replica == nil {
		return "", false
	}
	return *s.Replica, true
}
