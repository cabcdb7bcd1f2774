package audit

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// Bounds on a record, so that no line exceeds what `audit verify` and the
// start-up tail read (maxTail): many fields hold client input (user agent,
// session id, method, names), and a record that cannot be read back would
// make the log unverifiable and the gateway unable to restart.
const (
	// MaxFieldBytes bounds every string field; longer values are cut and end
	// with a truncation marker ("…[truncated N bytes]"). It leaves room for
	// the longest resource URI the MCP decoder accepts, quoted in a reason.
	MaxFieldBytes = 4096
	// MaxGroups and maxGroupBytes bound the groups list.
	MaxGroups     = 64
	maxGroupBytes = 256
	// MaxArgsBytesLimit is the largest audit.max_args_bytes allowed.
	MaxArgsBytesLimit = 256 << 10
	// maxRecordBytes is the largest encoded record body. JSON escaping
	// makes a byte at most 6 ("\u003c"), so the bounds above stay below it
	// (24 fields × 6 × 4 KiB + 64 groups × 6 × 256 B + args ≈ 900 KiB);
	// bound checks the result anyway.
	maxRecordBytes = maxTail - maxLineOverhead - 1
)

// bound caps every field of r (a copy, owned by the caller).
func bound(r *Record, maxField int) {
	for _, f := range []*string{
		&r.Replica, &r.RequestID, &r.Source, &r.ClientIP, &r.UserAgent,
		&r.Issuer, &r.Subject, &r.User, &r.Username, &r.Email, &r.ClientID, &r.TokenID, &r.SessionID,
		&r.MCPSessionID, &r.TraceID, &r.Method, &r.Tool, &r.Resource, &r.Scope,
		&r.Rule, &r.Reason, &r.RequiredPermission, &r.Event, &r.Backend, &r.Workload, &r.Result,
	} {
		*f = truncate(*f, maxField)
	}
	r.Decision = Decision(truncate(string(r.Decision), maxField))
	if groupsTooLarge(r.Groups) {
		// A new slice: r.Groups is shared with the caller.
		n := min(len(r.Groups), MaxGroups)
		out := make([]string, n, n+1)
		for i, g := range r.Groups[:n] {
			out[i] = truncate(g, min(maxGroupBytes, maxField))
		}
		if len(r.Groups) > n {
			out = append(out, "…[truncated "+strconv.Itoa(len(r.Groups)-n)+" groups]")
		}
		r.Groups = out
	}
}

func groupsTooLarge(gs []string) bool {
	if len(gs) > MaxGroups {
		return true
	}
	for _, g := range gs {
		if len(g) > maxGroupBytes {
			return true
		}
	}
	return false
}

// truncate cuts s to at most max bytes (on a UTF-8 boundary) and appends a
// marker with the original length.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…[truncated " + strconv.Itoa(len(s)) + " bytes]"
}

// encodeBounded appends c, which bound has capped, to dst (plainArgs as
// for appendJSON); if the result is still too large for a line (it cannot be
// with the documented limits, but a record must never make the log
// unreadable), it is re-encoded with every field cut to 256 bytes and the
// arguments replaced by a marker.
func encodeBounded(dst []byte, c *Record, plainArgs bool) ([]byte, error) {
	start := len(dst)
	out, err := c.appendJSON(dst, plainArgs)
	if err != nil {
		return dst, err
	}
	if len(out)-start <= maxRecordBytes {
		return out, nil
	}
	bound(c, 256)
	c.Args = json.RawMessage(`{"_truncated":true,"_size":` + strconv.Itoa(len(c.Args)) + `}`)
	return c.appendJSON(out[:start], true)
}
