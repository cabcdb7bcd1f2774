package audit

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRedactorArgs(t *testing.T) {
	const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
	tests := []struct {
		name  string
		extra []string
		max   int
		in    string
		want  string
	}{
		{name: "empty", in: "", want: ""},
		{name: "plain kept as sent", in: `{"vm_name":"web-1","count":3}`, want: `{"vm_name":"web-1","count":3}`},
		{name: "plain with whitespace compacted", in: "{ \"vm_name\" : \"web-1\",\n \"count\": 3 }", want: `{"count":3,"vm_name":"web-1"}`},
		{name: "escaped key", in: `{"p\u0061ssword":"hunter2"}`, want: `{"password":"[REDACTED]"}`},
		{name: "key that case-folds to a pattern", in: `{"To\u212Aen":"hunter2","note":"Ωk"}`, want: "{\"To\u212Aen\":\"[REDACTED]\",\"note\":\"Ωk\"}"},
		{name: "non-ASCII key that case-folds to a pattern", in: "{\"To\u212Aen\":\"hunter2\"}", want: "{\"To\u212Aen\":\"[REDACTED]\"}"},
		{name: "top-level keys", in: `{"password":"hunter2","user":"bob"}`, want: `{"password":"[REDACTED]","user":"bob"}`},
		{name: "case-insensitive and separators",
			in:   `{"PassWord":"a","X-Api-Key":"b","apiKey":"c","Client_Secret":"d","AUTHORIZATION":"e","privateKey":"f","passwd":"g","db.credentials":"h"}`,
			want: `{"AUTHORIZATION":"[REDACTED]","Client_Secret":"[REDACTED]","PassWord":"[REDACTED]","X-Api-Key":"[REDACTED]","apiKey":"[REDACTED]","db.credentials":"[REDACTED]","passwd":"[REDACTED]","privateKey":"[REDACTED]"}`},
		{name: "nested object and arrays",
			in:   `{"a":{"b":[{"refresh_token":"r"},{"ok":1,"deep":{"secret":"s"}}]}}`,
			want: `{"a":{"b":[{"refresh_token":"[REDACTED]"},{"deep":{"secret":"[REDACTED]"},"ok":1}]}}`},
		{name: "whole subtree under sensitive key",
			in:   `{"credentials":{"user":"u","pw":"p"},"tokens":["a","b"]}`,
			want: `{"credentials":"[REDACTED]","tokens":"[REDACTED]"}`},
		{name: "bearer and jwt values under innocent keys",
			in:   `{"header":"Bearer abc.def","note":"basic dXNlcjpwYXNz","list":["x","` + jwt + `"]}`,
			want: `{"header":"[REDACTED]","list":["x","[REDACTED]"],"note":"[REDACTED]"}`},
		{name: "not a jwt", in: `{"s":"eyJ not.a.jwt"}`, want: `{"s":"eyJ not.a.jwt"}`},
		{name: "top-level array", in: `[{"token":"t"},1]`, want: `[{"token":"[REDACTED]"},1]`},
		{name: "big numbers kept exactly", in: `{"n":12345678901234567890123,"f":1.50}`, want: `{"n":12345678901234567890123,"f":1.50}`},
		{name: "extra keys", extra: []string{"ssn"}, in: `{"SSN":"1","ok":"2"}`, want: `{"SSN":"[REDACTED]","ok":"2"}`},
		{name: "invalid json", in: `{"password":"hunter2"`, want: `{"_invalid_json":true,"_size":21}`},
		{name: "trailing data", in: `{"a":1} {"b":2}`, want: `{"_invalid_json":true,"_size":15}`},
		{name: "too large: only the huge argument is truncated", max: 64, in: `{"data":"` + strings.Repeat("x", 100) + `","vm":"web-1"}`,
			want: `{"data":{"_truncated":true,"_size":102},"vm":"web-1"}`},
		{name: "too large: largest arguments first", max: 96,
			in:   `{"a":"` + strings.Repeat("x", 50) + `","b":"` + strings.Repeat("y", 60) + `","c":"short"}`,
			want: `{"a":{"_truncated":true,"_size":52},"b":{"_truncated":true,"_size":62},"c":"short"}`},
		{name: "too large array", max: 64, in: `["` + strings.Repeat("x", 100) + `"]`, want: `{"_truncated":true,"_size":104}`},
		{name: "too many small arguments", max: 64, in: `{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11}`,
			want: `{"_truncated":true,"_size":69}`},
		{name: "too large after redaction", max: 64,
			in:   `{"token1":1,"token2":2,"token3":3,"token4":4,"t5":5}`,
			want: `{"_truncated":true,"_size":52}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			maxBytes := tc.max
			if maxBytes == 0 {
				maxBytes = DefaultMaxArgsBytes
			}
			got := string(NewRedactor(tc.extra, maxBytes).Args(json.RawMessage(tc.in)))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Args(%s) mismatch (-want +got):\n%s", tc.in, diff)
			}
			if strings.Contains(got, "hunter2") {
				t.Errorf("secret leaked: %s", got)
			}
		})
	}
}

func TestRecordJSON(t *testing.T) {
	r := Record{
		Time:       time.Date(2025, 12, 27, 9, 15, 32, 123456789, time.FixedZone("CET", 3600)),
		User:       "ryan@example.com",
		DurationMS: Millis(1234567891 * time.Nanosecond),
		Decision:   DecisionAllow,
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"time":"2025-12-27T08:15:32.123456Z","user":"ryan@example.com","decision":"allow","duration_ms":1234.568}`
	if diff := cmp.Diff(want, string(b)); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
	var back Record
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !back.Time.Equal(r.Time.Truncate(time.Microsecond)) {
		t.Errorf("time round trip: got %v", back.Time)
	}
}

// FuzzRedactorShortcut: whenever Args returns its input unchanged, the full
// redaction gives the same JSON value (only member order may differ).
func FuzzRedactorShortcut(f *testing.F) {
	for _, s := range []string{`{"vm_name":"web-1","count":3}`, `{"password":"x"}`, `{"a":"<b>&\u2028"}`, `{ "a" : 1 }`, `not json`, `[1,"a",{"b":null}]`, `{"a":{"b":"Bearer x"}}`, `{"x":1,"x":2}`} {
		f.Add(s)
	}
	rd := NewRedactor([]string{"ssn"}, DefaultMaxArgsBytes)
	f.Fuzz(func(t *testing.T, raw string) {
		// The logger copies Args' output into the line unchecked
		// (appendJSON's plainArgs): it must be what encoding/json writes.
		if out := rd.Args(json.RawMessage(raw)); len(out) > 0 {
			if want, err := json.Marshal(out); err != nil || !bytes.Equal(want, out) {
				t.Fatalf("Args(%q) = %q, but encoding/json writes %q (%v)", raw, out, want, err)
			}
		}
		if !rd.nothingToRedact([]byte(raw)) {
			return
		}
		full := rd.redact(json.RawMessage(raw))
		var a, b any
		da, db := json.NewDecoder(strings.NewReader(raw)), json.NewDecoder(strings.NewReader(string(full)))
		da.UseNumber()
		db.UseNumber()
		if err := da.Decode(&a); err != nil {
			t.Fatalf("shortcut kept invalid JSON %q: %v", raw, err)
		}
		if err := db.Decode(&b); err != nil {
			t.Fatalf("redact(%q) = %q: %v", raw, full, err)
		}
		if !cmp.Equal(a, b) {
			t.Fatalf("shortcut kept %q, full redaction gives %q", raw, full)
		}
	})
}
