package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash"
	"strconv"
)

// The chain format.
//
// A line is the record's JSON object with "seq" as the first member and
// "prev" and "hash" as the last two:
//
//	{"seq":7,"time":"…",…,"prev":"<hex>","hash":"<hex>"}
//
// The canonical form of a line is the line without its hash member, i.e. the
// bytes up to and including the prev value followed by "}":
//
//	{"seq":7,"time":"…",…,"prev":"<hex>"}
//
// and hash = hex(SHA-256(prev ‖ canonical)), or HMAC-SHA256 with the chain key,
// where prev is the previous record's hash as hex text ("" for the first
// record of a chain, seq 1). Hashing the bytes as written (not a re-encoding)
// makes the chain checkable by any tool, in any language: strip the trailing
// `,"hash":"…"` and hash what is left.

const (
	hashHexLen   = 2 * sha256.Size
	hashPrefix   = `,"hash":"`
	lineSuffixLn = len(hashPrefix) + hashHexLen + len(`"}`)
)

// maxLineOverhead bounds what appendLine adds to a body: seq, prev, hash, newline.
const maxLineOverhead = len(`{"seq":18446744073709551615,`) + len(`,"prev":""`) + 2*hashHexLen + lineSuffixLn - len(hashPrefix) - hashHexLen + 1

type chainHasher struct {
	h   hash.Hash
	out [sha256.Size]byte // scratch for Sum, so that it does not escape
}

// hexHash is a chain hash as lowercase hex.
type hexHash [hashHexLen]byte

func newChainHasher(key []byte) *chainHasher {
	if len(key) > 0 {
		return &chainHasher{h: hmac.New(sha256.New, key)}
	}
	return &chainHasher{h: sha256.New()}
}

// sum returns the hex hash of canonical chained to prev. Not safe for
// concurrent use.
func (c *chainHasher) sum(prev string, canonical []byte) string {
	h := c.sumBytes([]byte(prev), canonical)
	return string(h[:])
}

func (c *chainHasher) sumBytes(prev, canonical []byte) (out hexHash) {
	c.h.Reset()
	c.h.Write(prev)
	c.h.Write(canonical)
	hex.Encode(out[:], c.h.Sum(c.out[:0]))
	return out
}

// appendLine appends to dst the line (with trailing newline) for body, the
// JSON object of a record without chain fields, and returns it with the
// line's hash. Not safe for concurrent use.
func (c *chainHasher) appendLine(dst, body []byte, seq uint64, prev []byte) ([]byte, hexHash) {
	start := len(dst)
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, ',')
	dst = append(dst, body[1:len(body)-1]...)
	dst = append(dst, `,"prev":"`...)
	dst = append(dst, prev...)
	dst = append(dst, `"}`...)
	sum := c.sumBytes(prev, dst[start:])
	dst = append(dst[:len(dst)-1], hashPrefix...)
	dst = append(dst, sum[:]...)
	dst = append(dst, `"}`...)
	dst = append(dst, '\n')
	return dst, sum
}

// entry is what the chain needs from one line.
type entry struct {
	Seq     *uint64 `json:"seq"`
	Prev    *string `json:"prev"`
	Replica string  `json:"replica"`
	Event   string  `json:"event"`
	Reason  string  `json:"reason"`
	Count   uint64  `json:"count"`
	Source  string  `json:"source"`
	Time    string  `json:"time"`
	Hash    string  `json:"-"`

	canonical []byte
}

var (
	errNoHash   = errors.New(`line does not end with a "hash" member`)
	errBadJSON  = errors.New("line is not a JSON object")
	errNoFields = errors.New(`line lacks "seq" or "prev"`)
	errBadPrev  = errors.New(`"prev" is not a hex SHA-256`)
)

// parseLine splits a line (without newline) into its canonical form and hash.
func parseLine(line []byte) (*entry, error) {
	if len(line) < lineSuffixLn+2 || string(line[len(line)-lineSuffixLn:len(line)-lineSuffixLn+len(hashPrefix)]) != hashPrefix ||
		string(line[len(line)-2:]) != `"}` {
		return nil, errNoHash
	}
	sum := string(line[len(line)-2-hashHexLen : len(line)-2])
	if !isLowerHex(sum) {
		return nil, errNoHash
	}
	canonical := make([]byte, 0, len(line)-lineSuffixLn+1)
	canonical = append(canonical, line[:len(line)-lineSuffixLn]...)
	canonical = append(canonical, '}')
	var e entry
	if !json.Valid(canonical) || json.Unmarshal(canonical, &e) != nil {
		return nil, errBadJSON
	}
	if e.Seq == nil || e.Prev == nil {
		return nil, errNoFields
	}
	if *e.Prev != "" && (len(*e.Prev) != hashHexLen || !isLowerHex(*e.Prev)) {
		return nil, errBadPrev
	}
	e.Hash = sum
	e.canonical = canonical
	return &e, nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
