package sqlite

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEncodeList(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{nil, `[]`},
		{[]string{}, `[]`},
		{[]string{""}, `[""]`},
		{[]string{"authorization_code", "refresh_token"}, `["authorization_code","refresh_token"]`},
		{[]string{"http://127.0.0.1:3000/cb?x=1"}, `["http://127.0.0.1:3000/cb?x=1"]`},
		{[]string{`a"b`, `c\d`}, `["a\"b","c\\d"]`},
		{[]string{"<&>"}, `["\u003c\u0026\u003e"]`},
		{[]string{"ünï", "tab\t"}, `["ünï","tab\t"]`},
	}
	for _, tc := range tests {
		got := encodeList(tc.in)
		if got != tc.want {
			t.Errorf("encodeList(%q) = %s, want %s", tc.in, got, tc.want)
		}
		back, err := decodeList(got)
		if err != nil {
			t.Fatalf("decodeList(%s): %v", got, err)
		}
		want := tc.in
		if len(want) == 0 {
			want = nil
		}
		if d := cmp.Diff(want, back); d != "" {
			t.Errorf("round trip of %q (-want +got):\n%s", tc.in, d)
		}
	}
}

func TestDecodeList(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{`[]`, nil, false},
		{` [ ] `, nil, false},
		{`["a"]`, []string{"a"}, false},
		{`["a", "b"]`, []string{"a", "b"}, false}, // whitespace: the slow path
		{`["a\"b"]`, []string{`a"b`}, false},
		{`["a\u0041"]`, []string{"aA"}, false},
		{`["a",]`, nil, true},
		{`["a""b"]`, nil, true},
		{`["a"`, nil, true},
		{`[1]`, nil, true},
		{`null`, nil, false},
		{``, nil, true},
		{`["a","b"`, nil, true},
		{`["a"]x`, nil, true},
	}
	for _, tc := range tests {
		got, err := decodeList(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("decodeList(%s): error = %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("decodeList(%s) (-want +got):\n%s", tc.in, d)
		}
	}
}

// FuzzList checks the fast paths against encoding/json: encodeList writes
// what json.Marshal writes, and decodeList reads what json.Unmarshal reads.
func FuzzList(f *testing.F) {
	for _, s := range []string{`[]`, `["a","b"]`, `[""]`, `["a\"",""]`, `["a",]`, `[","]`, `["\",\""]`, `[" "]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var want []string
		jerr := json.Unmarshal([]byte(s), &want)
		got, err := decodeList(s)
		if (err != nil) != (jerr != nil) {
			t.Fatalf("decodeList(%q): error = %v, encoding/json: %v", s, err, jerr)
		}
		if err != nil {
			return
		}
		if len(want) == 0 {
			want = nil
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("decodeList(%q) differs from encoding/json (-json +got):\n%s", s, d)
		}
		if len(want) > 0 {
			j, _ := json.Marshal(want)
			if e := encodeList(want); e != string(j) {
				t.Fatalf("encodeList(%q) = %s, encoding/json: %s", want, e, j)
			}
		}
	})
}

func BenchmarkDecodeList(b *testing.B) {
	s := encodeList([]string{"authorization_code", "refresh_token"})
	for b.Loop() {
		if _, err := decodeList(s); err != nil {
			b.Fatal(err)
		}
	}
}
