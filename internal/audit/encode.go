package audit

import (
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"unicode/utf8"
)

// appendJSON appends r as the JSON object MarshalJSON documents. It writes
// the same bytes encoding/json would (field order, omitempty, HTML-safe
// string escaping, float format; FuzzAppendJSON holds it to that) without
// reflection: every forwarded MCP call encodes two records, so this is on
// the hot path.
//
// plainArgs says r.Args is already what encoding/json would write (the
// Redactor's output always is), so it is copied without a second scan.
func (r *Record) appendJSON(b []byte, plainArgs bool) ([]byte, error) {
	b = append(b, `{"time":"`...)
	b = r.Time.UTC().AppendFormat(b, timeLayout)
	b = append(b, '"')
	b = appendStringField(b, "replica", r.Replica)
	b = appendStringField(b, "request_id", r.RequestID)
	b = appendStringField(b, "source", r.Source)
	b = appendStringField(b, "client_ip", r.ClientIP)
	b = appendStringField(b, "user_agent", r.UserAgent)
	b = appendStringField(b, "issuer", r.Issuer)
	b = appendStringField(b, "subject", r.Subject)
	b = appendStringField(b, "user", r.User)
	b = appendStringField(b, "username", r.Username)
	b = appendStringField(b, "email", r.Email)
	if len(r.Groups) > 0 {
		b = append(b, `,"groups":[`...)
		for i, g := range r.Groups {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, g)
		}
		b = append(b, ']')
	}
	b = appendStringField(b, "client_id", r.ClientID)
	b = appendStringField(b, "token_id", r.TokenID)
	b = appendStringField(b, "session_id", r.SessionID)
	b = appendStringField(b, "mcp_session_id", r.MCPSessionID)
	b = appendStringField(b, "trace_id", r.TraceID)
	b = appendStringField(b, "method", r.Method)
	b = appendStringField(b, "tool", r.Tool)
	b = appendStringField(b, "resource", r.Resource)
	b = appendStringField(b, "scope", r.Scope)
	if len(r.Args) > 0 {
		b = append(b, `,"args":`...)
		if plainArgs || plainJSON(r.Args) {
			b = append(b, r.Args...) // what compacting and escaping would give
		} else {
			args, err := json.Marshal(r.Args) // compacted and HTML-escaped
			if err != nil {
				return nil, err
			}
			b = append(b, args...)
		}
	}
	b = appendStringField(b, "decision", string(r.Decision))
	b = appendStringField(b, "rule", r.Rule)
	b = appendStringField(b, "reason", r.Reason)
	b = appendStringField(b, "required_permission", r.RequiredPermission)
	b = appendStringField(b, "event", r.Event)
	b = appendIntField(b, "status", int64(r.Status))
	b = appendIntField(b, "rpc_error", int64(r.RPCError))
	if r.DurationMS != 0 {
		if math.IsNaN(r.DurationMS) || math.IsInf(r.DurationMS, 0) {
			return nil, errors.New("audit: duration_ms is not a JSON number")
		}
		b = append(b, `,"duration_ms":`...)
		b = appendFloat(b, r.DurationMS)
	}
	b = appendStringField(b, "backend", r.Backend)
	b = appendStringField(b, "workload", r.Workload)
	b = appendStringField(b, "result", r.Result)
	b = appendUintField(b, "count", r.Count)
	b = appendUintField(b, "seq", r.Seq)
	b = appendStringField(b, "prev", r.Prev)
	b = appendStringField(b, "hash", r.Hash)
	return append(b, '}'), nil
}

func appendStringField(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendString(b, v)
}

func appendIntField(b []byte, key string, v int64) []byte {
	if v == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, v, 10)
}

func appendUintField(b []byte, key string, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return strconv.AppendUint(b, v, 10)
}

// appendFloat formats f as encoding/json does: 'f' notation, 'e' below 1e-6
// or from 1e21, with a one-digit negative exponent unpadded.
func appendFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// plainJSON reports whether raw is valid JSON that encoding/json would copy
// unchanged: no whitespace to compact, nothing to HTML-escape (<, >, &, and
// U+2028/U+2029, whose UTF-8 encodings start with 0xE2). The redactor's
// output, i.e. every record's arguments, is.
func plainJSON(raw []byte) bool {
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\n', '\r', '<', '>', '&', 0xE2:
			return false
		}
	}
	return json.Valid(raw)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string escaped as encoding/json does by
// default: control characters, <, > and & as \u00XX (short forms for \b \f
// \n \r \t), invalid UTF-8 as \ufffd, and U+2028/U+2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
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
