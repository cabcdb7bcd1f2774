package sqlite

import (
	"encoding/json"
	"strings"
	"time"
)

// micros encodes a time as unix microseconds, 0 for the zero time.
func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicros(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

func nowMicros() int64 { return time.Now().UnixMicro() }

// encodeList stores a string list as a JSON array ("[]" when empty). Lists
// of plain values (URIs, grant types, scopes: nearly all of them) are
// written directly, byte for byte as encoding/json would; others go
// through encoding/json.
func encodeList(v []string) string {
	if len(v) == 0 {
		return "[]"
	}
	n := 1
	for _, s := range v {
		if !plain(s) {
			b, _ := json.Marshal(v) // a []string always marshals
			return string(b)
		}
		n += len(s) + 3
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteByte('[')
	for i, s := range v {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(s)
		b.WriteByte('"')
	}
	b.WriteByte(']')
	return b.String()
}

// decodeList returns nil for an empty list. The form encodeList writes for
// plain values is split directly; anything else goes through encoding/json.
func decodeList(s string) ([]string, error) {
	if s == "[]" {
		return nil, nil
	}
	if v, ok := decodePlainList(s); ok {
		return v, nil
	}
	var v []string
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, err
	}
	if len(v) == 0 {
		return nil, nil
	}
	return v, nil
}

// plain reports whether encoding/json writes s unchanged between quotes:
// printable ASCII other than '"', '\' and the HTML characters it escapes.
func plain(s string) bool {
	for i := range len(s) {
		switch c := s[i]; {
		case c < 0x20, c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// decodePlainList parses `["a","b"]` of plain values without whitespace;
// ok is false for any other input.
func decodePlainList(s string) (v []string, ok bool) {
	if len(s) < 4 || s[0] != '[' || s[len(s)-1] != ']' {
		return nil, false
	}
	body := s[1 : len(s)-1]
	v = make([]string, 0, strings.Count(body, `","`)+1)
	for {
		if len(body) < 2 || body[0] != '"' {
			return nil, false
		}
		end := strings.IndexByte(body[1:], '"') + 1 // the closing quote
		if end == 0 || !plain(body[1:end]) {
			return nil, false
		}
		v = append(v, body[1:end])
		body = body[end+1:]
		if body == "" {
			return v, true
		}
		if body[0] != ',' {
			return nil, false
		}
		body = body[1:]
	}
}
