// Package jsonenc appends JSON values without reflection, byte for byte as
// encoding/json writes them, for the fixed-shape documents of the hot paths
// (audit records, access-token claims, token responses).
package jsonenc

import (
	"strconv"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// safe marks the ASCII bytes written as they are: not a control
// character, '"', '\\', or the HTML-sensitive <, > and &.
var safe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// AppendString appends s as a JSON string (RFC 8259 §7) escaped as
// encoding/json does by default: control characters, <, > and & as \u00XX
// (short forms for \b \f \n \r \t), invalid UTF-8 as \ufffd, and
// U+2028/U+2029 escaped.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if safe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// AppendKey appends `,"key":` (or `"key":` first in an object, when b ends
// in '{'). key must need no escaping: it is a constant of the caller.
func AppendKey(b []byte, key string) []byte {
	if n := len(b); n > 0 && b[n-1] != '{' {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, key...)
	return append(b, '"', ':')
}

// AppendStringField appends the member key: s, as encoding/json writes a
// string field (omitempty omits an empty s).
func AppendStringField(b []byte, key, s string, omitEmpty bool) []byte {
	if omitEmpty && s == "" {
		return b
	}
	return AppendString(AppendKey(b, key), s)
}

// AppendIntField appends the member key: v (omitempty omits 0).
func AppendIntField(b []byte, key string, v int64, omitEmpty bool) []byte {
	if omitEmpty && v == 0 {
		return b
	}
	return strconv.AppendInt(AppendKey(b, key), v, 10)
}

// AppendStringsField appends the member key: [s…]; omitempty omits an
// empty list, and without it a nil list is null, as encoding/json writes.
func AppendStringsField(b []byte, key string, ss []string, omitEmpty bool) []byte {
	if omitEmpty && len(ss) == 0 {
		return b
	}
	b = AppendKey(b, key)
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendString(b, s)
	}
	return append(b, ']')
}
