package mcp

import (
	"bytes"
	"errors"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// JSON validation and navigation. validateJSON is the strict gate (RFC 8259
// grammar, RFC 7493 I-JSON strings, plus case-folded duplicate names); the
// navigation helpers below it assume validated input and only slice it, so
// that filtering a large list costs one validation pass and cheap skips.
// Both never panic, whatever the input.

var (
	errSyntax        = errors.New("invalid JSON")
	errEOF           = errors.New("unexpected end of input")
	errInvalidUTF8   = errors.New("invalid UTF-8")
	errTooDeep       = errors.New("nesting too deep")
	errTrailingData  = errors.New("trailing data after JSON value")
	errFoldDuplicate = errors.New("duplicate object member name")
	errNotObject     = errors.New("not a JSON object")
	errNotArray      = errors.New("not a JSON array")
)

// validateJSON checks that b is exactly one JSON value (RFC 8259), nested at
// most maxDepth deep, whose strings are valid UTF-8 without lone surrogate
// escapes (RFC 7493 §2.1), and in which no object has two member names that
// are equal under Unicode simple case folding, compared after unescaping.
// Folded duplicates are rejected because JSON parsers disagree on them: some
// keep the first, some the last, and Go's encoding/json matches struct fields
// case-insensitively, so {"name":"a","Name":"b"} can mean different things
// to the gateway and to the backend.
func validateJSON(b []byte, maxDepth int) error {
	v := validator{b: b, maxDepth: maxDepth}
	v.ws()
	if err := v.value(inNone); err != nil {
		return err
	}
	v.ws()
	if v.i != len(b) {
		return errTrailingData
	}
	return nil
}

// ValidateJSON is validateJSON with the package's depth limit, for other
// untrusted JSON documents whose raw bytes are kept or passed on.
func ValidateJSON(b []byte) error { return validateJSON(b, MaxDepth) }

type validator struct {
	b        []byte
	i        int
	depth    int
	maxDepth int
	names    [][]byte // member names of the open objects, innermost last
	// ix, when set, records where the parts of list responses are while
	// validating (listscan.go); peak is the deepest nesting seen.
	ix   *listIndex
	peak int
}

func (v *validator) ws() {
	for v.i < len(v.b) && isSpace(v.b[v.i]) {
		v.i++
	}
}

// value validates the value at v.i; ctx says what it is to the list index
// (inNone when not indexing).
func (v *validator) value(ctx scanCtx) error {
	if v.i >= len(v.b) {
		return errEOF
	}
	if ctx > lastPlain {
		return v.indexed(ctx)
	}
	switch c := v.b[v.i]; {
	case c == '{':
		return v.object(inNone)
	case c == '[':
		return v.array(inNone)
	case c == '"':
		_, _, _, err := v.str()
		return err
	case c == 't':
		return v.lit("true")
	case c == 'f':
		return v.lit("false")
	case c == 'n':
		return v.lit("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return v.number()
	}
	return errSyntax
}

func (v *validator) lit(s string) error {
	if len(v.b)-v.i < len(s) {
		return errEOF
	}
	if string(v.b[v.i:v.i+len(s)]) != s {
		return errSyntax
	}
	v.i += len(s)
	return nil
}

func (v *validator) digits() int {
	n := 0
	for v.i < len(v.b) && v.b[v.i] >= '0' && v.b[v.i] <= '9' {
		v.i++
		n++
	}
	return n
}

// number follows RFC 8259 §6.
func (v *validator) number() error {
	if v.b[v.i] == '-' {
		v.i++
	}
	switch {
	case v.i >= len(v.b):
		return errEOF
	case v.b[v.i] == '0':
		v.i++
	case v.b[v.i] >= '1' && v.b[v.i] <= '9':
		v.digits()
	default:
		return errSyntax
	}
	if v.i < len(v.b) && v.b[v.i] == '.' {
		v.i++
		if v.digits() == 0 {
			return errSyntax
		}
	}
	if v.i < len(v.b) && (v.b[v.i] == 'e' || v.b[v.i] == 'E') {
		v.i++
		if v.i < len(v.b) && (v.b[v.i] == '+' || v.b[v.i] == '-') {
			v.i++
		}
		if v.digits() == 0 {
			return errSyntax
		}
	}
	return nil
}

// str validates the string starting at v.i and returns the bounds of its
// content (between the quotes) and whether it contains escapes.
func (v *validator) str() (start, end int, escaped bool, err error) {
	b := v.b
	i := v.i + 1
	for {
		for i < len(b) {
			if c := b[i]; c == '"' || c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
				break
			}
			i++
		}
		if i >= len(b) {
			return 0, 0, false, errEOF
		}
		switch c := b[i]; {
		case c == '"':
			start = v.i + 1
			v.i = i + 1
			return start, i, escaped, nil
		case c == '\\':
			escaped = true
			n, err := escapeLen(b[i:])
			if err != nil {
				return 0, 0, false, err
			}
			i += n
		case c < 0x20:
			return 0, 0, false, errSyntax
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size <= 1 {
				return 0, 0, false, errInvalidUTF8
			}
			i += size
		}
	}
}

// escapeLen validates the escape sequence at the start of b (b[0] == '\\')
// and returns its length. A \u escape of a surrogate must be a high surrogate
// immediately followed by a \u escape of a low one.
func escapeLen(b []byte) (int, error) {
	if len(b) < 2 {
		return 0, errEOF
	}
	switch b[1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2, nil
	case 'u':
		r, ok := hex4(b[2:])
		if !ok {
			return 0, errSyntax
		}
		if !utf16.IsSurrogate(r) {
			return 6, nil
		}
		if r >= 0xdc00 || len(b) < 12 || b[6] != '\\' || b[7] != 'u' {
			return 0, errInvalidUTF8
		}
		if r2, ok := hex4(b[8:]); !ok || r2 < 0xdc00 || r2 > 0xdfff {
			return 0, errInvalidUTF8
		}
		return 12, nil
	}
	return 0, errSyntax
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

func (v *validator) object(ctx scanCtx) error {
	if empty, err := v.open('}'); empty || err != nil {
		return err
	}
	base := len(v.names)
	defer func() { v.names = v.names[:base] }()
	var large map[string]struct{} // set when the object outgrows smallObject
	for {
		if v.i >= len(v.b) {
			return errEOF
		}
		if v.b[v.i] != '"' {
			return errSyntax
		}
		start, end, escaped, err := v.str()
		if err != nil {
			return err
		}
		name := v.b[start:end]
		if escaped {
			name = appendUnescaped(nil, name)
		}
		if large == nil {
			for _, n := range v.names[base:] {
				if bytes.EqualFold(n, name) {
					return errFoldDuplicate
				}
			}
			v.names = append(v.names, name)
			if len(v.names)-base > smallObject {
				large = make(map[string]struct{}, 4*smallObject)
				for _, n := range v.names[base:] {
					large[foldKey(string(n))] = struct{}{}
				}
			}
		} else {
			k := foldKey(string(name))
			if _, dup := large[k]; dup {
				return errFoldDuplicate
			}
			large[k] = struct{}{}
		}
		v.ws()
		if v.i >= len(v.b) {
			return errEOF
		}
		if v.b[v.i] != ':' {
			return errSyntax
		}
		v.i++
		v.ws()
		if ctx == inNone {
			if err := v.value(inNone); err != nil {
				return err
			}
		} else if err := v.member(ctx, name); err != nil {
			return err
		}
		if end, err := v.next('}'); end || err != nil {
			return err
		}
	}
}

func (v *validator) array(ctx scanCtx) error {
	if empty, err := v.open(']'); empty || err != nil {
		return err
	}
	elem := elemCtx(ctx)
	for {
		if err := v.value(elem); err != nil {
			return err
		}
		if end, err := v.next(']'); end || err != nil {
			return err
		}
	}
}

// open enters the container at v.i, which ends with close, and reports
// whether it is empty (and already left).
func (v *validator) open(close byte) (empty bool, err error) {
	v.depth++
	if v.depth > v.maxDepth {
		return false, errTooDeep
	}
	v.peak = max(v.peak, v.depth)
	v.i++
	v.ws()
	if v.i < len(v.b) && v.b[v.i] == close {
		v.i++
		v.depth--
		return true, nil
	}
	return false, nil
}

// next moves past the comma after an item of the container that ends with
// close, or leaves the container at close and reports that it ended.
func (v *validator) next(close byte) (end bool, err error) {
	v.ws()
	if v.i >= len(v.b) {
		return false, errEOF
	}
	switch v.b[v.i] {
	case ',':
		v.i++
		v.ws()
		return false, nil
	case close:
		v.i++
		v.depth--
		return true, nil
	}
	return false, errSyntax
}

// smallObject is the member count up to which duplicate names are found by a
// linear scan; larger objects use a map, so a hostile body with many members
// costs linear, not quadratic, time.
const smallObject = 16

// foldKey maps s to a canonical form such that foldKey(a) == foldKey(b)
// exactly when strings.EqualFold(a, b): each rune becomes the smallest rune
// of its simple case-folding orbit.
func foldKey(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToUpper(s) // the smallest rune of an ASCII letter's orbit is its upper case
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < m {
				m = f
			}
		}
		b.WriteRune(m)
	}
	return b.String()
}

// appendUnescaped appends the unescaped content of a validated JSON string
// (without its quotes) to dst.
func appendUnescaped(dst, s []byte) []byte {
	for len(s) > 0 {
		i := bytes.IndexByte(s, '\\')
		if i < 0 || i+1 >= len(s) {
			return append(dst, s...)
		}
		dst = append(dst, s[:i]...)
		s = s[i:]
		switch s[1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, _ := hex4(s[2:])
			n := 6
			if utf16.IsSurrogate(r) {
				r2, _ := hex4(s[8:])
				r = utf16.DecodeRune(r, r2)
				n = 12
			}
			dst = utf8.AppendRune(dst, r)
			s = s[min(n, len(s)):]
			continue
		default: // '"', '\\', '/'
			dst = append(dst, s[1])
		}
		s = s[2:]
	}
	return dst
}

// Navigation over validated JSON.

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

func trimSpace(b []byte) []byte {
	i, j := 0, len(b)
	for i < j && isSpace(b[i]) {
		i++
	}
	for j > i && isSpace(b[j-1]) {
		j--
	}
	return b[i:j]
}

// skipString returns the index just past the string starting at b[i] == '"'.
func skipString(b []byte, i int) int {
	for i++; i < len(b); {
		switch b[i] {
		case '\\':
			i += 2
		case '"':
			return i + 1
		default:
			i++
		}
	}
	return len(b)
}

// skipValue returns the index just past the value starting at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return len(b)
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	}
	for i < len(b) && !isSpace(b[i]) && b[i] != ',' && b[i] != '}' && b[i] != ']' {
		i++
	}
	return i
}

// member is one name/value pair of an object. name is unescaped; both may
// alias the input.
type member struct {
	name  []byte
	value []byte
}

// objectMembers appends the members of the validated JSON object obj to dst.
// Values alias obj.
func objectMembers(obj []byte, dst []member) ([]member, error) {
	err := eachItem(obj, '{', '}', errNotObject, func(i int) int {
		if obj[i] != '"' {
			return -1
		}
		end := skipString(obj, i)
		name := obj[i+1 : max(i+1, end-1)]
		if bytes.IndexByte(name, '\\') >= 0 {
			name = appendUnescaped(nil, name)
		}
		i = skipSpace(obj, end)
		if i >= len(obj) || obj[i] != ':' {
			return -1
		}
		i = skipSpace(obj, i+1)
		vend := skipValue(obj, i)
		dst = append(dst, member{name: name, value: obj[i:vend]})
		return vend
	})
	return dst, err
}

// arrayElements returns the elements of the validated JSON array arr; they
// alias arr.
func arrayElements(arr []byte) ([][]byte, error) {
	var out [][]byte
	err := eachItem(arr, '[', ']', errNotArray, func(i int) int {
		end := skipValue(arr, i)
		if end == i {
			return -1
		}
		out = append(out, arr[i:end])
		return end
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// eachItem walks the comma-separated items of the JSON container c, which
// opens with open and closes with close (else: notErr). item is called with
// the offset of each item's first byte and returns the offset just past
// the item, or -1 for a syntax error.
func eachItem(c []byte, open, close byte, notErr error, item func(i int) int) error {
	i := skipSpace(c, 0)
	if i >= len(c) || c[i] != open {
		return notErr
	}
	i = skipSpace(c, i+1)
	if i < len(c) && c[i] == close {
		return nil
	}
	for i < len(c) {
		end := item(i)
		if end < 0 {
			return errSyntax
		}
		i = skipSpace(c, end)
		if i >= len(c) {
			break
		}
		switch c[i] {
		case ',':
			i = skipSpace(c, i+1)
		case close:
			return nil
		default:
			return errSyntax
		}
	}
	return errSyntax
}

func lookup(ms []member, name string) ([]byte, bool) {
	for _, m := range ms {
		if string(m.name) == name {
			return m.value, true
		}
	}
	return nil, false
}

// lookupFold finds a member by name under Unicode simple case folding, as
// case-insensitive parsers (Go's encoding/json) would. Validated objects have
// at most one such member.
func lookupFold(ms []member, name string) ([]byte, bool) {
	for _, m := range ms {
		if bytes.EqualFold(m.name, []byte(name)) {
			return m.value, true
		}
	}
	return nil, false
}

// caseVariant returns a member whose name equals one of names only under
// case folding: a case-sensitive reader ignores it, a case-insensitive one
// does not.
func caseVariant(ms []member, names ...string) (string, bool) {
	for _, m := range ms {
		for _, n := range names {
			if string(m.name) != n && bytes.EqualFold(m.name, []byte(n)) {
				return n, true
			}
		}
	}
	return "", false
}

// kindOf is the JSON kind of a raw value: '"', '{', '[', 'b' (boolean),
// 'n' (null) or '0' (number); 0 for an empty slice.
func kindOf(v []byte) byte {
	if len(v) == 0 {
		return 0
	}
	switch c := v[0]; c {
	case '"', '{', '[', 'n':
		return c
	case 't', 'f':
		return 'b'
	}
	return '0'
}

// unquote decodes a validated raw JSON string value.
func unquote(v []byte) (string, bool) {
	if kindOf(v) != '"' || len(v) < 2 {
		return "", false
	}
	s := v[1 : len(v)-1]
	if bytes.IndexByte(s, '\\') < 0 {
		return string(s), true
	}
	return string(appendUnescaped(nil, s)), true
}
