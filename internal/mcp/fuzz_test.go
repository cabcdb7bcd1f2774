package mcp

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

var decodeSeeds = []string{
	`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"power_on","arguments":{"vm_name":"web-1"}}}`,
	`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_vm"}}]`,
	`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read","name":"delete"}}`,
	`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read","NAME":"delete"}}`,
	`{"jsonrpc":"2.0","id":"x","method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p"}}}`,
	`{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":["a"]}}}`,
	`{"jsonrpc":"2.0","id":1,"result":{}}`,
	`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
	`{"a":"\ud83d\ude00","b":"\u00e9\n","c":[1,-0.5e+3,true,false,null]}`,
	"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\xff\"}",
	`[[[[[[[[[[]]]]]]]]]]`,
	``, `[]`, `{}`, `"s"`, `0`, `-`, `01`, `1.`, `{"a":1,}`, `[1,]`,
}

// oracleValidate is the reference for validateJSON: the jsontext decoder
// (RFC 7493: UTF-8, no lone surrogates) plus case-folded duplicate names and
// the depth limit, checked with the standard library's EqualFold.
func oracleValidate(b []byte, maxDepth int) bool {
	dec := jsontext.NewDecoder(bytes.NewReader(b), jsontext.AllowDuplicateNames(true))
	type frame struct {
		obj, wantName bool
		names         []string
	}
	var stack []frame
	for {
		tok, err := dec.ReadToken()
		if err != nil {
			return false
		}
		k := tok.Kind()
		if k == '}' || k == ']' {
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				break
			}
			continue
		}
		if n := len(stack); n > 0 && stack[n-1].obj {
			top := &stack[n-1]
			if top.wantName {
				name := tok.String()
				for _, o := range top.names {
					if strings.EqualFold(o, name) {
						return false
					}
				}
				top.names = append(top.names, name)
				top.wantName = false
				continue
			}
			top.wantName = true
		}
		if k == '{' || k == '[' {
			stack = append(stack, frame{obj: k == '{', wantName: k == '{'})
			if len(stack) > maxDepth {
				return false
			}
			continue
		}
		if len(stack) == 0 {
			break
		}
	}
	_, err := dec.ReadToken()
	return err == io.EOF
}

func FuzzValidateJSON(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := validateJSON(b, 8) == nil
		if want := oracleValidate(b, 8); got != want {
			t.Fatalf("validateJSON(%q) accepted=%v, oracle says %v", b, got, want)
		}
	})
}

func FuzzDecode(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := Decode(body)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %T is not *Error", err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		if len(m.Calls) == 0 || len(m.Calls) > MaxBatch {
			t.Fatalf("accepted %d calls", len(m.Calls))
		}
		for _, c := range m.Calls {
			if c.ID != nil && !json.Valid(c.ID) {
				t.Fatalf("id %q is not JSON", c.ID)
			}
			if c.Arguments != nil && (kindOf(c.Arguments) != '{' || !json.Valid(c.Arguments)) {
				t.Fatalf("arguments %q are not a JSON object", c.Arguments)
			}
			if hasControl(c.Name) || hasControl(c.Method) {
				t.Fatalf("control characters in %q / %q", c.Method, c.Name)
			}
			if _, named := namedMethods[c.Method]; named && c.Name == "" {
				t.Fatalf("%s accepted without a name", c.Method)
			}
			if c.IsResponse && (c.Method != "" || c.IsNotification) {
				t.Fatalf("inconsistent call %+v", c)
			}
		}
		// The gateway's reading of the name must match a standard parser's.
		if !m.Batch {
			var std struct {
				Method string `json:"method"`
				Params struct {
					Name string `json:"name"`
					URI  string `json:"uri"`
				} `json:"params"`
			}
			if err := json.Unmarshal(body, &std); err == nil {
				c := m.Calls[0]
				if std.Method != c.Method {
					t.Fatalf("method: gateway %q, encoding/json %q", c.Method, std.Method)
				}
				if key, ok := namedMethods[c.Method]; ok {
					want := std.Params.Name
					if key == "uri" {
						want = std.Params.URI
					}
					if want != c.Name {
						t.Fatalf("name: gateway %q, encoding/json %q", c.Name, want)
					}
				}
			}
		}
	})
}

func FuzzFilterList(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name":"b"}],"nextCursor":"x"}}`), "a")
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","name":"b"}]}}`), "a")
	f.Add([]byte(`{"result":{"tools":[]}}`), "")
	f.Fuzz(func(t *testing.T, msg []byte, allowed string) {
		out, err := FilterList(msg, "tools/list", func(n string) bool { return n == allowed })
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("output %q is not valid JSON", out)
		}
		var res struct {
			Result struct {
				Tools []json.RawMessage `json:"tools"`
			} `json:"result"`
		}
		if json.Unmarshal(out, &res) != nil {
			return
		}
		for _, it := range res.Result.Tools {
			var tool struct {
				Name string `json:"name"`
			}
			if json.Unmarshal(it, &tool) == nil && tool.Name != allowed {
				t.Fatalf("item %s survived filtering for %q", it, allowed)
			}
		}
	})
}

func FuzzSSEFilter(f *testing.F) {
	f.Add([]byte("event: message\nid: 1\ndata: {\"a\":1}\n\n"), uint8(3))
	f.Add([]byte("data: a\r\n\r\ndata: b\r\rdata: c\n\n: ping\n\n"), uint8(1))
	f.Add([]byte("\xef\xbb\xbfdata: x\ndata: y\n\nid\n\ndata"), uint8(2))
	f.Add([]byte("data\n\n:\n\nretry: 5\n\n"), uint8(7))
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		size := int(chunk%16) + 1
		w, err := runFilter(t, stream, size, identity)
		if err != nil {
			t.Fatalf("identity filter failed: %v", err)
		}
		in, out := parseSSE(stream), parseSSE(w.buf.Bytes())
		if len(in) != len(out) {
			t.Fatalf("identity: %d events in, %d out\nin:  %q\nout: %q", len(in), len(out), stream, w.buf.Bytes())
		}
		for i := range in {
			if in[i] != out[i] {
				t.Fatalf("identity: event %d differs: %+v vs %+v", i, in[i], out[i])
			}
		}
		// A changing rewrite changes every event's data and nothing else.
		w, err = runFilter(t, stream, size, func(b []byte) []byte { return append([]byte("<"), b...) })
		if err != nil {
			t.Fatalf("rewriting filter failed: %v", err)
		}
		out = parseSSE(w.buf.Bytes())
		if len(in) != len(out) {
			t.Fatalf("rewrite: %d events in, %d out", len(in), len(out))
		}
		for i := range in {
			want := in[i]
			want.Data = "<" + strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(want.Data)
			if out[i] != want {
				t.Fatalf("rewrite: event %d = %+v, want %+v", i, out[i], want)
			}
		}
	})
}
