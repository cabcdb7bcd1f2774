package audit

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// Redacted replaces the value of a sensitive argument.
const Redacted = "[REDACTED]"

// DefaultRedactKeys are always redacted; Config.RedactKeys adds to them.
var DefaultRedactKeys = []string{
	"password", "passwd", "secret", "token", "api_key", "apikey",
	"authorization", "credential", "private_key",
}

// Redactor rewrites tool arguments before they are logged.
//
// An object member is redacted, whatever its value (a whole sub-object or
// array included), when its key contains one of the patterns, compared
// case-insensitively and ignoring '-', '_', '.' and spaces: "api_key" matches
// "X-Api-Key" and "apiKey"; "token" matches "access_token" and, on purpose,
// also "max_tokens" (over-redaction is the safe error). String values that
// look like credentials whatever their key — "Bearer …", "Basic …" or a JWT —
// are redacted too, so a bearer token never reaches the log.
type Redactor struct {
	patterns []string
	maxBytes int
}

// NewRedactor returns a Redactor for DefaultRedactKeys plus extra keys.
// Arguments whose redacted form is larger than maxBytes are cut down to fit:
// the largest top-level arguments are replaced, one by one, by
// {"_truncated":true,"_size":N} (N: the argument's encoded size), so one huge
// argument truncates only itself; when that is not enough, the whole value
// is replaced by that marker.
func NewRedactor(extra []string, maxBytes int) *Redactor {
	rd := &Redactor{maxBytes: maxBytes}
	for _, k := range append(append([]string(nil), DefaultRedactKeys...), extra...) {
		if n := normalizeKey(k); n != "" {
			rd.patterns = append(rd.patterns, n)
		}
	}
	return rd
}

// Args returns the redacted, compact form of raw: raw itself when there is
// nothing to redact (see nothingToRedact), else re-encoded with object
// members sorted. Empty input stays empty;
// input that is not exactly one JSON value becomes {"_invalid_json":true,"_size":N}.
func (rd *Redactor) Args(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	if rd.nothingToRedact(raw) {
		return raw
	}
	return rd.redact(raw)
}

// redact is Args without the shortcut: it decodes raw, redacts, and encodes
// the result again (object members sorted).
func (rd *Redactor) redact(raw json.RawMessage) json.RawMessage {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // keep numbers exactly as sent
	var v any
	if err := dec.Decode(&v); err != nil {
		return marker("_invalid_json", len(raw))
	}
	if _, err := dec.Token(); err != io.EOF {
		return marker("_invalid_json", len(raw))
	}
	v = rd.walk(v)
	out, err := json.Marshal(v)
	if err != nil {
		return marker("_invalid_json", len(raw))
	}
	if len(out) > rd.maxBytes {
		if m, ok := v.(map[string]any); ok {
			out = rd.shrink(m, len(out))
		} else {
			out = nil
		}
		if out == nil {
			return marker("_truncated", len(raw))
		}
	}
	return out
}

// nothingToRedact reports, without decoding, that Args would return raw
// itself but for the order of object members: raw is small, compact, valid
// JSON in plain ASCII without escapes (so no key can hide a pattern behind
// \u escapes or Unicode case folding), and its text, normalised as keys are,
// contains no redaction pattern and nothing a credential value starts with.
// Most tool arguments are like this, and this is on every call's path.
func (rd *Redactor) nothingToRedact(raw []byte) bool {
	var buf [512]byte
	if len(raw) > len(buf) || len(raw) > rd.maxBytes {
		return false
	}
	norm := buf[:0]
	for _, c := range raw {
		switch {
		case c >= utf8.RuneSelf || c == '\\':
			return false
		case c == '-' || c == '_' || c == '.' || c == ' ':
		case 'A' <= c && c <= 'Z':
			norm = append(norm, c+'a'-'A')
		default:
			norm = append(norm, c)
		}
	}
	for _, p := range rd.patterns {
		if bytes.Contains(norm, []byte(p)) {
			return false
		}
	}
	for _, p := range [...]string{"bearer", "basic", "dpop", "eyj"} {
		if bytes.Contains(norm, []byte(p)) {
			return false
		}
	}
	return plainJSON(raw)
}

// shrink replaces the largest members of m by truncation markers until its
// encoding (size bytes now) fits maxBytes; nil if it cannot.
func (rd *Redactor) shrink(m map[string]any, size int) json.RawMessage {
	type member struct {
		key  string
		size int
	}
	ms := make([]member, 0, len(m))
	for k, x := range m {
		b, err := json.Marshal(x)
		if err != nil {
			return nil
		}
		ms = append(ms, member{k, len(b)})
	}
	slices.SortFunc(ms, func(a, b member) int { return cmp.Compare(b.size, a.size) })
	for _, x := range ms {
		if size <= rd.maxBytes {
			break
		}
		mk := marker("_truncated", x.size)
		if len(mk) >= x.size {
			break // the rest are smaller than their marker
		}
		m[x.key] = mk
		size -= x.size - len(mk)
	}
	if size > rd.maxBytes {
		return nil
	}
	out, err := json.Marshal(m)
	if err != nil || len(out) > rd.maxBytes {
		return nil
	}
	return out
}

func marker(kind string, size int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{%q:true,"_size":%d}`, kind, size))
}

func (rd *Redactor) walk(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			if rd.sensitiveKey(k) {
				t[k] = Redacted
			} else {
				t[k] = rd.walk(x)
			}
		}
	case []any:
		for i, x := range t {
			t[i] = rd.walk(x)
		}
	case string:
		if looksLikeCredential(t) {
			return Redacted
		}
	}
	return v
}

func (rd *Redactor) sensitiveKey(k string) bool {
	n := normalizeKey(k)
	for _, p := range rd.patterns {
		if strings.Contains(n, p) {
			return true
		}
	}
	return false
}

func normalizeKey(k string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '-', '_', '.', ' ':
			return -1
		}
		return r
	}, strings.ToLower(k))
}

// looksLikeCredential reports an HTTP authorization value (RFC 6750 §2.1
// bearer, RFC 7617 basic) or a compact JWS/JWE (RFC 7515 §7.1, RFC 7516 §7.1).
func looksLikeCredential(s string) bool {
	s = strings.TrimSpace(s)
	for _, scheme := range []string{"bearer ", "basic ", "dpop "} {
		if len(s) > len(scheme) && strings.EqualFold(s[:len(scheme)], scheme) {
			return true
		}
	}
	if !strings.HasPrefix(s, "eyJ") { // base64url of `{"`
		return false
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 && len(parts) != 5 {
		return false
	}
	for _, p := range parts[:2] {
		if p == "" || strings.ContainsFunc(p, func(r rune) bool {
			return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_')
		}) {
			return false
		}
	}
	return true
}
