package jsonenc

import (
	"encoding/json"
	"math"
	"testing"
)

// doc is a struct with every kind of field the package appends; append is
// its encoding by this package, which must equal encoding/json's.
type doc struct {
	First  string   `json:"first"`
	Opt    string   `json:"opt,omitempty"`
	List   []string `json:"list"`
	OptL   []string `json:"optl,omitempty"`
	N      int64    `json:"n"`
	OptN   int64    `json:"optn,omitempty"`
	Escape string   `json:"escape"`
}

func (d *doc) append(b []byte) []byte {
	b = append(b, '{')
	b = AppendStringField(b, "first", d.First, false)
	b = AppendStringField(b, "opt", d.Opt, true)
	b = AppendStringsField(b, "list", d.List, false)
	b = AppendStringsField(b, "optl", d.OptL, true)
	b = AppendIntField(b, "n", d.N, false)
	b = AppendIntField(b, "optn", d.OptN, true)
	b = AppendStringField(b, "escape", d.Escape, false)
	return append(b, '}')
}

func checkDoc(t *testing.T, d doc) {
	t.Helper()
	want, err := json.Marshal(&d)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.append(nil); string(got) != string(want) {
		t.Fatalf("differs from encoding/json:\n got %s\nwant %s", got, want)
	}
}

func TestAppendMatchesEncodingJSON(t *testing.T) {
	cases := map[string]doc{
		"zero":          {},
		"empty list":    {List: []string{}, OptL: []string{}},
		"lists":         {List: []string{"a", ""}, OptL: []string{"x<y"}},
		"all set":       {First: "f", Opt: "o", N: -7, OptN: math.MaxInt64},
		"html":          {Escape: `<script>&"\</script>`},
		"controls":      {Escape: "\x00\x01\b\f\n\r\t\x1f\x7f"},
		"line sep":      {Escape: "a\u2028b\u2029c"},
		"invalid utf-8": {Escape: "a\xffb\xc3", First: "\xed\xa0\x80"},
		"unicode":       {Escape: "Ünïcödé 漢字 🙂"},
	}
	for name, d := range cases {
		t.Run(name, func(t *testing.T) { checkDoc(t, d) })
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("plain", "<&>", int64(1))
	f.Add("\xff\u2028\x00", "", int64(0))
	f.Fuzz(func(t *testing.T, a, b string, n int64) {
		checkDoc(t, doc{First: a, Opt: b, List: []string{b, a}, N: n, OptN: n, Escape: a + b})
	})
}
