package mcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func keepPrefix(prefix string) func(string) bool {
	return func(n string) bool { return strings.HasPrefix(n, prefix) }
}

func TestFilterList(t *testing.T) {
	tests := []struct {
		name   string
		method string
		msg    string
		keep   func(string) bool
		want   string
		err    error
	}{
		{
			name:   "tools keep cursor and meta",
			method: "tools/list",
			msg:    `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"list_vms","inputSchema":{"type":"object"}},{"name":"delete_vm"},{"name":"list_hosts","description":"x"}],"nextCursor":"c2","_meta":{"a":1}}}`,
			keep:   keepPrefix("list_"),
			want:   `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"list_vms","inputSchema":{"type":"object"}},{"name":"list_hosts","description":"x"}],"nextCursor":"c2","_meta":{"a":1}}}`,
		},
		{
			name:   "all removed",
			method: "tools/list",
			msg:    `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name":"b"}]}}`,
			keep:   func(string) bool { return false },
			want:   `{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`,
		},
		{
			name:   "nothing removed returns input",
			method: "tools/list",
			msg:    "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[ {\"name\":\"a\"} ,\n {\"name\":\"b\"} ]}}",
			keep:   func(string) bool { return true },
			want:   "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[ {\"name\":\"a\"} ,\n {\"name\":\"b\"} ]}}",
		},
		{
			name:   "pretty printed",
			method: "tools/list",
			msg:    "{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 1,\n  \"result\": {\n    \"tools\": [\n      {\"name\": \"a\"},\n      {\"name\": \"b\"}\n    ]\n  }\n}",
			keep:   func(n string) bool { return n == "b" },
			want:   "{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 1,\n  \"result\": {\n    \"tools\": [{\"name\": \"b\"}]\n  }\n}",
		},
		{
			name:   "escaped names are compared unescaped",
			method: "tools/list",
			msg:    `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"del\u0065te_vm"},{"name":"list_vms"}]}}`,
			keep:   func(n string) bool { return n != "delete_vm" },
			want:   `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"list_vms"}]}}`,
		},
		{
			name:   "item without name is removed",
			method: "tools/list",
			msg:    `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"title":"x"},{"name":7},{"name":"a"}]}}`,
			keep:   func(string) bool { return true },
			want:   `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}]}}`,
		},
		{
			name:   "prompts",
			method: "prompts/list",
			msg:    `{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"p1"},{"name":"p2"}]}}`,
			keep:   func(n string) bool { return n == "p2" },
			want:   `{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"p2"}]}}`,
		},
		{
			name:   "resources by uri not name",
			method: "resources/list",
			msg:    `{"jsonrpc":"2.0","id":1,"result":{"resources":[{"uri":"file:///a","name":"file:///b"},{"uri":"file:///b","name":"b"}]}}`,
			keep:   func(n string) bool { return n == "file:///b" },
			want:   `{"jsonrpc":"2.0","id":1,"result":{"resources":[{"uri":"file:///b","name":"b"}]}}`,
		},
		{
			name:   "templates by uriTemplate",
			method: "resources/templates/list",
			msg:    `{"jsonrpc":"2.0","id":1,"result":{"resourceTemplates":[{"uriTemplate":"file:///{p}","name":"f"},{"uriTemplate":"db://{t}","name":"d"}]}}`,
			keep:   func(n string) bool { return n == "db://{t}" },
			want:   `{"jsonrpc":"2.0","id":1,"result":{"resourceTemplates":[{"uriTemplate":"db://{t}","name":"d"}]}}`,
		},
		{
			name:   "error response untouched",
			method: "tools/list",
			msg:    `{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"nope"}}`,
			keep:   func(string) bool { return false },
			want:   `{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"nope"}}`,
		},
		{
			name:   "result without list member untouched",
			method: "tools/list",
			msg:    `{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"a"}]}}`,
			keep:   func(string) bool { return false },
			want:   `{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"a"}]}}`,
		},
		{
			name:   "case variant of tools is filtered too",
			method: "tools/list",
			msg:    `{"jsonrpc":"2.0","id":1,"Result":{"Tools":[{"Name":"delete_vm"},{"name":"list_vms"}]}}`,
			keep:   keepPrefix("list_"),
			want:   `{"jsonrpc":"2.0","id":1,"Result":{"Tools":[{"name":"list_vms"}]}}`,
		},
		{name: "duplicate tools member", method: "tools/list", msg: `{"jsonrpc":"2.0","id":1,"result":{"tools":[],"tools":[{"name":"delete_vm"}]}}`, keep: keepPrefix("list_"), err: ErrUnfilterable},
		{name: "case-folded duplicate tools member", method: "tools/list", msg: `{"jsonrpc":"2.0","id":1,"result":{"tools":[],"Tools":[{"name":"delete_vm"}]}}`, keep: keepPrefix("list_"), err: ErrUnfilterable},
		{name: "duplicate name in item", method: "tools/list", msg: `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"list_a","name":"delete_vm"}]}}`, keep: keepPrefix("list_"), err: ErrUnfilterable},
		{name: "tools not an array", method: "tools/list", msg: `{"jsonrpc":"2.0","id":1,"result":{"tools":{"name":"x"}}}`, keep: keepPrefix("list_"), err: ErrUnfilterable},
		{name: "item not an object", method: "tools/list", msg: `{"jsonrpc":"2.0","id":1,"result":{"tools":["delete_vm"]}}`, keep: keepPrefix("list_"), err: ErrUnfilterable},
		{name: "result not an object", method: "tools/list", msg: `{"jsonrpc":"2.0","id":1,"result":[]}`, keep: keepPrefix("list_"), err: ErrUnfilterable},
		{name: "invalid JSON", method: "tools/list", msg: `{"jsonrpc":"2.0","id":1,"result":{"tools":[`, keep: keepPrefix("list_"), err: ErrUnfilterable},
		{name: "not an object", method: "tools/list", msg: `[]`, keep: keepPrefix("list_"), err: ErrUnfilterable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FilterList([]byte(tt.msg), tt.method, tt.keep)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v (output %s)", err, tt.err, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("FilterList: %v", err)
			}
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if !json.Valid(got) {
				t.Errorf("output is not valid JSON: %s", got)
			}
		})
	}
}

func TestFilterListUnknownMethod(t *testing.T) {
	if _, err := FilterList([]byte(`{}`), "tools/call", nil); err == nil {
		t.Fatal("accepted a non-list method")
	}
}

// FilterList works on a message that is a subslice of a larger buffer.
func TestFilterListSubslice(t *testing.T) {
	buf := []byte(`xxx{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name":"b"}]}}yyy`)
	msg := buf[3 : len(buf)-3]
	got, err := FilterList(msg, "tools/list", func(n string) bool { return n == "b" })
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"b"}]}}`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestListFilterRewrite(t *testing.T) {
	req, err := Decode([]byte(`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":"p","method":"prompts/list"},{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"x"}}]`))
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	f := NewListFilter(req, func(method, name string) bool {
		seen = append(seen, method+" "+name)
		return name == "ok"
	})
	if f == nil {
		t.Fatal("NewListFilter returned nil for a message with list requests")
	}
	tests := []struct {
		name, in, want string
	}{
		{"tools response", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"ok"},{"name":"no"}]}}`, `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"ok"}]}}`},
		{"loosely matching id", `{"jsonrpc":"2.0","id":"1","result":{"tools":[{"name":"no"}]}}`, `{"jsonrpc":"2.0","id":"1","result":{"tools":[]}}`},
		{"prompts response", `{"jsonrpc":"2.0","id":"p","result":{"prompts":[{"name":"no"},{"name":"ok"}]}}`, `{"jsonrpc":"2.0","id":"p","result":{"prompts":[{"name":"ok"}]}}`},
		{"call response untouched", `{"jsonrpc":"2.0","id":3,"result":{"content":[]}}`, `{"jsonrpc":"2.0","id":3,"result":{"content":[]}}`},
		{"notification untouched", `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}`, `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}`},
		{"server request with same id untouched", `{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{}}`, `{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{}}`},
		{"batch response", `[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"no"}]}},{"jsonrpc":"2.0","id":3,"result":{}}]`, `[{"jsonrpc":"2.0","id":1,"result":{"tools":[]}},{"jsonrpc":"2.0","id":3,"result":{}}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := f.Rewrite([]byte(tt.in))
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if len(seen) == 0 || !strings.HasPrefix(seen[0], "tools/list ") {
		t.Errorf("keep saw %v, want tools/list calls", seen)
	}

	for _, bad := range []string{
		`not json`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"ok"}]},"id":2}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"no"}]}`,
	} {
		if got := f.Rewrite([]byte(bad)); got != nil {
			t.Errorf("Rewrite(%s) = %s, want nil (fail closed)", bad, got)
		}
	}
	if f.Refused() {
		t.Error("Refused() after only unparseable input, want false (the caller refuses those)")
	}
	// A list response that parses but cannot be filtered becomes an error
	// with its id, so the client's call fails instead of hanging.
	for _, tt := range []struct{ in, want string }{
		{`{"jsonrpc":"2.0","id":1,"result":{"tools":"all"}}`, `{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"backend list response could not be filtered"}}`},
		{`[{"jsonrpc":"2.0","id":3,"result":{}},{"jsonrpc":"2.0","id":1,"result":{"tools":7}}]`, `[{"jsonrpc":"2.0","id":3,"result":{}},{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"backend list response could not be filtered"}}]`},
		{`{"jsonrpc":"2.0","id":"p","result":{"prompts":["no"]}}`, `{"jsonrpc":"2.0","id":"p","error":{"code":-32603,"message":"backend list response could not be filtered"}}`},
		// A result next to a method is still a response to filter.
		{`{"jsonrpc":"2.0","id":1,"method":"x","result":{"tools":[{"name":"no"}]}}`, `{"jsonrpc":"2.0","id":1,"method":"x","result":{"tools":[]}}`},
	} {
		if got := string(f.Rewrite([]byte(tt.in))); got != tt.want {
			t.Errorf("Rewrite(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
	if !f.Refused() {
		t.Error("Refused() = false after a refused list response")
	}
}

// TestListFilterOneRequest: a message with one list request (the usual
// case, kept inline without a map) matches its response by id as a batch
// does, whatever the spelling of the id, and leaves other ids alone.
func TestListFilterOneRequest(t *testing.T) {
	for _, tt := range []struct{ req, in, want string }{
		{`{"jsonrpc":"2.0","id":7,"method":"resources/list"}`, `{"jsonrpc":"2.0","id":7,"result":{"resources":[{"uri":"ok"},{"uri":"no"}]}}`, `{"jsonrpc":"2.0","id":7,"result":{"resources":[{"uri":"ok"}]}}`},
		{`{"jsonrpc":"2.0","id":7,"method":"resources/list"}`, `{"jsonrpc":"2.0","id":7.0,"result":{"resources":[{"uri":"no"}]}}`, `{"jsonrpc":"2.0","id":7.0,"result":{"resources":[]}}`},
		{`{"jsonrpc":"2.0","id":7,"method":"resources/list"}`, `{"jsonrpc":"2.0","id":"7","result":{"resources":[{"uri":"no"}]}}`, `{"jsonrpc":"2.0","id":"7","result":{"resources":[]}}`},
		{`{"jsonrpc":"2.0","id":7,"method":"resources/list"}`, `{"jsonrpc":"2.0","id":70,"result":{"resources":[{"uri":"no"}]}}`, `{"jsonrpc":"2.0","id":70,"result":{"resources":[{"uri":"no"}]}}`},
		{`{"jsonrpc":"2.0","id":"a\u0062","method":"resources/templates/list"}`, `{"jsonrpc":"2.0","id":"ab","result":{"resourceTemplates":[{"uriTemplate":"no"},{"uriTemplate":"ok"}]}}`, `{"jsonrpc":"2.0","id":"ab","result":{"resourceTemplates":[{"uriTemplate":"ok"}]}}`},
		{`{"jsonrpc":"2.0","id":"ab","method":"resources/templates/list"}`, `{"jsonrpc":"2.0","id":"abc","result":{"resourceTemplates":[{"uriTemplate":"no"}]}}`, `{"jsonrpc":"2.0","id":"abc","result":{"resourceTemplates":[{"uriTemplate":"no"}]}}`},
		// The shape is the request's: a tools member in a prompts/list answer is not its list.
		{`{"jsonrpc":"2.0","id":1,"method":"prompts/list"}`, `{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"no"}],"tools":[{"name":"no"}]}}`, `{"jsonrpc":"2.0","id":1,"result":{"prompts":[],"tools":[{"name":"no"}]}}`},
	} {
		m, err := Decode([]byte(tt.req))
		if err != nil {
			t.Fatal(err)
		}
		f := NewListFilter(m, func(_, name string) bool { return name == "ok" })
		if got := string(f.Rewrite([]byte(tt.in))); got != tt.want {
			t.Errorf("%s answered by %s: got %s, want %s", tt.req, tt.in, got, tt.want)
		}
		f.Release()
	}
}

func TestListFilterRefusal(t *testing.T) {
	keep := func(string, string) bool { return true }
	for _, tt := range []struct{ req, want string }{
		{`{"jsonrpc":"2.0","id":7,"method":"tools/list"}`, `{"jsonrpc":"2.0","id":7,"error":{"code":-32603,"message":"backend list response could not be filtered"}}`},
		{`{"jsonrpc":"2.0","id":"a","method":"prompts/list"}`, `{"jsonrpc":"2.0","id":"a","error":{"code":-32603,"message":"backend list response could not be filtered"}}`},
		// A batch: one error per request (the call too, so it does not hang), none for the notification.
		{`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/x"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x"}}]`,
			`[{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"backend list response could not be filtered"}},{"jsonrpc":"2.0","id":2,"error":{"code":-32603,"message":"backend list response could not be filtered"}}]`},
	} {
		m, err := Decode([]byte(tt.req))
		if err != nil {
			t.Fatal(err)
		}
		f := NewListFilter(m, keep)
		if got := string(f.Refusal()); got != tt.want {
			t.Errorf("Refusal for %s = %s, want %s", tt.req, got, tt.want)
		}
		if !f.Refused() || f.IsStream() {
			t.Errorf("Refused() = %v, IsStream() = %v; want true, false", f.Refused(), f.IsStream())
		}
	}
	f := NewStreamListFilter(keep)
	if got, want := string(f.Refusal()), `{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"backend list response could not be filtered"}}`; got != want || !f.IsStream() {
		t.Errorf("stream Refusal = %s (IsStream %v), want %s", got, f.IsStream(), want)
	}
}

func TestNewListFilterNil(t *testing.T) {
	m, err := Decode([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if f := NewListFilter(m, nil); f != nil {
		t.Fatal("NewListFilter returned a filter for a message without list requests")
	}
}

func toolList(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"jsonrpc":"2.0","id":1,"result":{"tools":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		prefix := []string{"list_", "get_", "power_", "delete_"}[i%4]
		fmt.Fprintf(&b, `{"name":"%svm_%d","description":"Does thing %d to a virtual machine.","inputSchema":{"type":"object","properties":{"vm_name":{"type":"string","description":"VM name"},"force":{"type":"boolean"}},"required":["vm_name"]},"annotations":{"readOnlyHint":true}}`, prefix, i, i)
	}
	b.WriteString(`],"nextCursor":"abc"}}`)
	return []byte(b.String())
}

func TestStreamListFilter(t *testing.T) {
	f := NewStreamListFilter(func(method, name string) bool { return name == "ok" })
	tests := []struct{ name, in, want string }{
		{"replayed tools response", `{"jsonrpc":"2.0","id":9,"result":{"tools":[{"name":"ok"},{"name":"no"}]}}`, `{"jsonrpc":"2.0","id":9,"result":{"tools":[{"name":"ok"}]}}`},
		{"resources by uri", `{"jsonrpc":"2.0","id":9,"result":{"resources":[{"uri":"no"}],"nextCursor":"c"}}`, `{"jsonrpc":"2.0","id":9,"result":{"resources":[],"nextCursor":"c"}}`},
		{"templates", `{"jsonrpc":"2.0","id":9,"result":{"resourceTemplates":[{"uriTemplate":"ok"},{"uriTemplate":"no"}]}}`, `{"jsonrpc":"2.0","id":9,"result":{"resourceTemplates":[{"uriTemplate":"ok"}]}}`},
		{"other result untouched", `{"jsonrpc":"2.0","id":9,"result":{"content":[{"type":"text","text":"no"}]}}`, `{"jsonrpc":"2.0","id":9,"result":{"content":[{"type":"text","text":"no"}]}}`},
		{"server request untouched", `{"jsonrpc":"2.0","id":9,"method":"roots/list"}`, `{"jsonrpc":"2.0","id":9,"method":"roots/list"}`},
	}
	for _, tt := range tests {
		if got := string(f.Rewrite([]byte(tt.in))); got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, got, tt.want)
		}
	}
	if got, want := string(f.Rewrite([]byte(`{"jsonrpc":"2.0","id":9,"result":{"prompts":"all","tools":[{"name":"no"}]}}`))),
		`{"jsonrpc":"2.0","id":9,"error":{"code":-32603,"message":"backend list response could not be filtered"}}`; got != want {
		t.Errorf("malformed list: got %s, want %s", got, want)
	}
	if got := f.Rewrite([]byte(`{"jsonrpc":"2.0","id":9,"result":{"tools":[{"name":"no"}]}`)); got != nil {
		t.Errorf("malformed JSON passed: %s", got)
	}
}
