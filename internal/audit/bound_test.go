package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
)

// crash abandons l as a kill -9 would: no shutdown checkpoint.
func crash(l *Logger) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	l.closeSink()
}

// A record of huge client-chosen fields is written within the line limit,
// verifies, and the gateway can restart on it (issue 11.3: a 2 MB method
// name made the log unverifiable and the gateway unable to restart).
func TestHugeFieldsAreTruncated(t *testing.T) {
	huge := strings.Repeat("<", 2<<20) // escapes to 6 bytes each in JSON
	cfg := fileConfig(t)
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	groups := make([]string, 1000)
	for i := range groups {
		groups[i] = huge[:1000]
	}
	rec := &Record{
		RequestID: huge, UserAgent: huge, ClientIP: huge, Issuer: huge, Subject: huge, User: huge, Username: huge,
		Email: huge, ClientID: huge, TokenID: huge, SessionID: huge, MCPSessionID: huge, Method: huge, Tool: huge,
		Resource: huge, Rule: huge, Reason: huge, RequiredPermission: huge, Event: huge, Backend: huge, Workload: huge, Result: huge,
		Decision: Decision(huge), Groups: groups,
		Args: json.RawMessage(`{"vm":"web-1","blob":"` + strings.Repeat("x", 2<<20) + `"}`),
	}
	if err := l.Log(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.Groups) != 1000 || rec.Method != huge {
		t.Error("Log modified the caller's record")
	}
	crash(l)

	data, err := os.ReadFile(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range bytes.SplitAfter(data, []byte("\n")) {
		if len(line) > maxTail {
			t.Errorf("line %d is %d bytes, more than %d", i+1, len(line), maxTail)
		}
	}
	recs := readRecords(t, cfg.Path)
	got := recs[len(recs)-1]
	if !strings.HasSuffix(got.Method, "…[truncated 2097152 bytes]") || len(got.Method) > MaxFieldBytes+64 {
		t.Errorf("method = %.40q… (%d bytes), want a truncation marker", got.Method, len(got.Method))
	}
	if len(got.Groups) != MaxGroups+1 || !strings.Contains(got.Groups[MaxGroups], "truncated 936 groups") {
		t.Errorf("groups: %d, last %q", len(got.Groups), got.Groups[len(got.Groups)-1])
	}
	// The huge argument truncates only itself.
	if want := `{"blob":{"_truncated":true,"_size":2097154},"vm":"web-1"}`; string(got.Args) != want {
		t.Errorf("args = %s, want %s", got.Args, want)
	}
	if _, err := VerifyFiles([]string{cfg.Path}, VerifyOptions{}); err != nil {
		t.Fatalf("verify: %v", err)
	}
	// Start-up reads the huge record as the chain's tail.
	l2, err := New(cfg)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyFiles([]string{cfg.Path}, VerifyOptions{}); err != nil {
		t.Fatalf("verify after restart: %v", err)
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"abcdefghijk", 4, "abcd…[truncated 11 bytes]"},
		{"ééé", 3, "é…[truncated 6 bytes]"}, // never splits a rune
	}
	for _, tt := range tests {
		if got := truncate(tt.in, tt.max); got != tt.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
}

// encodeBounded's fallback keeps a record within the line limit even with
// fields the caps do not cover.
func TestEncodeBoundedFallback(t *testing.T) {
	c := &Record{Method: strings.Repeat("<", maxTail), Args: json.RawMessage(`"` + strings.Repeat("x", maxTail) + `"`)}
	body, err := encodeBounded(nil, c, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(body) > maxRecordBytes {
		t.Fatalf("body is %d bytes", len(body))
	}
}

// Every string field of a Record is capped, including fields added later.
func TestBoundCoversEveryField(t *testing.T) {
	huge := strings.Repeat("x", 2*MaxFieldBytes)
	var r Record
	v := reflect.ValueOf(&r).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.String {
			f.SetString(huge)
		}
	}
	bound(&r, MaxFieldBytes)
	for i := range v.NumField() {
		f, name := v.Field(i), v.Type().Field(i).Name
		if f.Kind() != reflect.String || name == "Prev" || name == "Hash" { // chain fields: set by the Logger
			continue
		}
		if f.Len() > MaxFieldBytes+64 {
			t.Errorf("field %s is not capped (%d bytes)", name, f.Len())
		}
	}
}
