package audit

import (
	"encoding/json"
	"errors"
	"math"
	"strconv"

	"github.com/mcpgate/mcpgate/internal/jsonenc"
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
			b = jsonenc.AppendString(b, g)
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
	return jsonenc.AppendStringField(b, key, v, true)
}

func appendIntField(b []byte, key string, v int64) []byte {
	return jsonenc.AppendIntField(b, key, v, true)
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
