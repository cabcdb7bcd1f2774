package audit

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"
)

// reflectJSON is the encoding/json rendering appendJSON must match byte for
// byte: Time as RFC 3339 UTC with microseconds, then the struct's fields.
func reflectJSON(r Record) ([]byte, error) {
	type plain Record // no methods: avoids recursion
	return json.Marshal(struct {
		Time string `json:"time"` // shadows plain.Time
		plain
	}{r.Time.UTC().Format(timeLayout), plain(r)})
}

func checkSameJSON(t *testing.T, r Record) {
	t.Helper()
	want, werr := reflectJSON(r)
	got, gerr := r.MarshalJSON()
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("errors differ: encoding/json %v, appendJSON %v", werr, gerr)
	}
	if werr == nil && !bytes.Equal(got, want) {
		t.Fatalf("appendJSON differs from encoding/json:\n got %s\nwant %s", got, want)
	}
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	full := Record{
		Time: time.Date(2026, 12, 3, 9, 30, 0, 123456789, time.FixedZone("x", 3600)), RequestID: "r1", Source: SourceMCP,
		ClientIP: "192.0.2.1", UserAgent: "ua <script>&\u2028\u2029", Issuer: "https://idp", Subject: "s\"\\",
		User: "Ünïcödé", Username: "bob", Email: "bob@example.com", Groups: []string{"a", "", "c\x00"},
		ClientID: "c", TokenID: "t", SessionID: "ts", MCPSessionID: "m", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Method: "tools/call", Tool: "echo",
		Resource: "demo://x", Scope: "mcp", Args: json.RawMessage(` { "a" : [1, 2, "<&>"] } `),
		Decision: DecisionAllow, Rule: "r", Reason: "why\n\t\r\b\f\x01\x1f", RequiredPermission: "p", Event: EventForward,
		Status: 200, RPCError: -32003, DurationMS: 1.25, Backend: "b", Workload: "spiffe://example.org/w", Result: ResultSuccess, Count: 3,
		Seq: 9, Prev: "p", Hash: "h",
	}
	cases := map[string]Record{
		"zero":            {},
		"full":            full,
		"invalid utf-8":   {Reason: "a\xffb\xc3"},
		"empty groups":    {Groups: []string{}},
		"tiny duration":   {DurationMS: 1e-7},
		"huge duration":   {DurationMS: 1e22},
		"negative":        {DurationMS: -0.5, Status: -1, RPCError: -32700},
		"big count":       {Count: math.MaxUint64, Seq: math.MaxUint64},
		"nan duration":    {DurationMS: math.NaN()},
		"invalid args":    {Args: json.RawMessage(`{"a":`)},
		"args whitespace": {Args: json.RawMessage("\n[ 1 ,\t2 ]\n")},
	}
	for name, r := range cases {
		t.Run(name, func(t *testing.T) { checkSameJSON(t, r) })
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("req", "ua <&>", "reason\n", "g1", `{"a":1}`, 12.5, 200, uint64(3), int64(1764750000123456))
	f.Add("\xff\u2028", "", "\x00", "", ``, 1e-9, -1, uint64(0), int64(0))
	f.Fuzz(func(t *testing.T, s1, s2, s3, g, args string, dur float64, status int, count uint64, micros int64) {
		r := Record{
			Time: time.UnixMicro(micros), RequestID: s1, UserAgent: s2, Reason: s3, Tool: s1 + s3,
			Groups: []string{g, s2}, Args: json.RawMessage(args), DurationMS: dur, Status: status, Count: count,
			Decision: Decision(s2),
		}
		checkSameJSON(t, r)
	})
}

func BenchmarkRecordMarshal(b *testing.B) {
	r := Record{
		Time: time.Now(), RequestID: "0123456789abcdef", Source: SourceMCP, ClientIP: "127.0.0.1", UserAgent: "bench",
		Issuer: "https://idp.example.com", Subject: "user-1", User: "user-1", Groups: []string{"mcp-admins"},
		ClientID: "client", MCPSessionID: "abc", Method: "tools/call", Tool: "echo", Args: json.RawMessage(`{"message":"hi"}`),
		Decision: DecisionAllow, Rule: "role:admin", Event: EventForward, Backend: "demo",
	}
	b.Run("append", func(b *testing.B) {
		for b.Loop() {
			if _, err := r.MarshalJSON(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reflect", func(b *testing.B) {
		for b.Loop() {
			if _, err := reflectJSON(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
