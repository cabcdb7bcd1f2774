package mcp

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDecodeValid(t *testing.T) {
	tests := []struct {
		name string
		body string
		want *Message
	}{
		{
			name: "tools/call with arguments",
			body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"power_on","arguments":{"vm_name":"web-1"}}}`,
			want: &Message{Calls: []Call{{ID: raw(`1`), Method: "tools/call", Name: "power_on", Arguments: raw(`{"vm_name":"web-1"}`)}}},
		},
		{
			name: "whitespace around and inside",
			body: " \n{ \"jsonrpc\" : \"2.0\", \"id\" : \"a\" , \"method\":\"tools/call\",\"params\":{\"name\":\"x\",\"arguments\": { } } }\r\n",
			want: &Message{Calls: []Call{{ID: raw(`"a"`), Method: "tools/call", Name: "x", Arguments: raw(`{ }`)}}},
		},
		{
			name: "null arguments are absent",
			body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":null}}`,
			want: &Message{Calls: []Call{{ID: raw(`1`), Method: "tools/call", Name: "x"}}},
		},
		{
			name: "escaped name is unescaped",
			body: `{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"del\u0065te_vm"}}`,
			want: &Message{Calls: []Call{{ID: raw(`1`), Method: "tools/call", Name: "delete_vm"}}},
		},
		{
			name: "prompts/get",
			body: `{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"summarize","arguments":{"topic":"x"}}}`,
			want: &Message{Calls: []Call{{ID: raw(`2`), Method: "prompts/get", Name: "summarize", Arguments: raw(`{"topic":"x"}`)}}},
		},
		{
			name: "resources/read",
			body: `{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///etc/hosts"}}`,
			want: &Message{Calls: []Call{{ID: raw(`3`), Method: "resources/read", Name: "file:///etc/hosts"}}},
		},
		{
			name: "resources/subscribe",
			body: `{"jsonrpc":"2.0","id":3,"method":"resources/subscribe","params":{"uri":"file:///a"}}`,
			want: &Message{Calls: []Call{{ID: raw(`3`), Method: "resources/subscribe", Name: "file:///a"}}},
		},
		{
			name: "completion/complete prompt ref",
			body: `{"jsonrpc":"2.0","id":4,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"code_review"},"argument":{"name":"language","value":"py"}}}`,
			want: &Message{Calls: []Call{{ID: raw(`4`), Method: "completion/complete", Name: "code_review", RefKind: RefPrompt}}},
		},
		{
			name: "completion/complete resource ref",
			body: `{"jsonrpc":"2.0","id":4,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///{path}"},"argument":{"name":"path","value":"a"}}}`,
			want: &Message{Calls: []Call{{ID: raw(`4`), Method: "completion/complete", Name: "file:///{path}", RefKind: RefResource}}},
		},
		{
			name: "subscriptions/listen with resource subscriptions",
			body: `{"jsonrpc":"2.0","id":5,"method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true,"resourceSubscriptions":["file:///a","file:///b"]}}}`,
			want: &Message{Calls: []Call{{ID: raw(`5`), Method: "subscriptions/listen", Subscriptions: []string{"file:///a", "file:///b"}}}},
		},
		{
			name: "protocol version from _meta",
			body: `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
			want: &Message{Calls: []Call{{ID: raw(`1`), Method: "tools/list", ProtocolVersion: "2026-07-28"}}},
		},
		{
			name: "notification",
			body: `{"jsonrpc":"2.0","method":"notifications/initialized"}`,
			want: &Message{Calls: []Call{{Method: "notifications/initialized", IsNotification: true}}},
		},
		{
			name: "client response",
			body: `{"jsonrpc":"2.0","id":"s-1","result":{"model":"m"}}`,
			want: &Message{Calls: []Call{{ID: raw(`"s-1"`), IsResponse: true}}},
		},
		{
			name: "client error response",
			body: `{"jsonrpc":"2.0","id":7,"error":{"code":-1,"message":"no"}}`,
			want: &Message{Calls: []Call{{ID: raw(`7`), IsResponse: true}}},
		},
		{
			name: "case-different method is just another method",
			body: `{"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{"name":"x"}}`,
			want: &Message{Calls: []Call{{ID: raw(`1`), Method: "Tools/Call"}}},
		},
		{
			name: "unknown members are ignored",
			body: `{"jsonrpc":"2.0","id":1,"method":"ping","extra":{"a":[1,2]}}`,
			want: &Message{Calls: []Call{{ID: raw(`1`), Method: "ping"}}},
		},
		{
			name: "null params",
			body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":null}`,
			want: &Message{Calls: []Call{{ID: raw(`1`), Method: "ping"}}},
		},
		{
			name: "batch carrying a tools/call",
			body: `[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_vm"}},{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}]`,
			want: &Message{Batch: true, Calls: []Call{
				{ID: raw(`1`), Method: "tools/list"},
				{ID: raw(`2`), Method: "tools/call", Name: "delete_vm"},
				{Method: "notifications/cancelled", IsNotification: true},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.body))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Decode mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func TestDecodeRejects(t *testing.T) {
	deep := strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1)
	deepArgs := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":` +
		strings.Repeat(`{"a":`, MaxDepth) + `1` + strings.Repeat("}", MaxDepth) + `}}}`
	var bigBatch strings.Builder
	bigBatch.WriteString("[")
	for i := 0; i <= MaxBatch; i++ {
		if i > 0 {
			bigBatch.WriteString(",")
		}
		bigBatch.WriteString(`{"jsonrpc":"2.0","method":"notifications/x"}`)
	}
	bigBatch.WriteString("]")

	tests := []struct {
		name   string
		body   string
		code   int
		wantID json.RawMessage
	}{
		{"empty body", ``, CodeParseError, nil},
		{"invalid JSON", `{"jsonrpc":"2.0",`, CodeParseError, nil},
		{"trailing data", `{"jsonrpc":"2.0","method":"ping"} {"jsonrpc":"2.0","method":"ping"}`, CodeParseError, nil},
		{"trailing garbage", `{"jsonrpc":"2.0","method":"ping"}x`, CodeParseError, nil},
		{"invalid UTF-8 in string", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\xff\"}}", CodeParseError, nil},
		{"invalid UTF-8 in name", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"\xc3\":1}", CodeParseError, nil},
		{"lone surrogate escape", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\ud800"}}`, CodeParseError, nil},
		{"too deep", deep, CodeParseError, nil},
		{"too deep inside arguments", deepArgs, CodeParseError, nil},
		{"duplicate params.name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read","name":"delete"}}`, CodeParseError, nil},
		{"duplicate method", `{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}`, CodeParseError, nil},
		{"case-folded duplicate method", `{"jsonrpc":"2.0","id":1,"method":"tools/list","Method":"tools/call"}`, CodeParseError, nil},
		{"escaped duplicate name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read","n\u0061me":"delete"}}`, CodeParseError, nil},
		{"case-folded duplicate name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read","NAME":"delete"}}`, CodeParseError, nil},
		{"kelvin sign folds to k", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"k":1,"\u212a":2}}}`, CodeParseError, nil},
		{"duplicate argument", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"vm":"dev-1","vm":"prod-1"}}}`, CodeParseError, nil},
		{"duplicate params", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"},"params":{"name":"b"}}`, CodeParseError, nil},
		{"case variant of method alone", `{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"x"},"result":{}}`, CodeInvalidRequest, nil},
		{"case variant of params", `{"jsonrpc":"2.0","id":1,"method":"tools/list","Params":{"name":"x"}}`, CodeInvalidRequest, nil},
		{"case variant of arguments", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","Arguments":{"vm":"prod"}}}`, CodeInvalidParams, raw(`1`)},
		{"case variant of name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"x"}}`, CodeInvalidParams, raw(`1`)},
		{"case variant in ref", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"a","NAME":"b"}}}`, CodeParseError, nil},
		{"case variant of ref name", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"Type":"ref/prompt","name":"a"}}}`, CodeInvalidParams, raw(`1`)},
		{"top-level string", `"tools/call"`, CodeInvalidRequest, nil},
		{"top-level number", `1`, CodeInvalidRequest, nil},
		{"empty batch", `[]`, CodeInvalidRequest, nil},
		{"batch too large", bigBatch.String(), CodeInvalidRequest, nil},
		{"batch element not an object", `[{"jsonrpc":"2.0","method":"ping","id":1},2]`, CodeInvalidRequest, nil},
		{"batch element invalid", `[{"jsonrpc":"2.0","method":"ping","id":1},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{}}]`, CodeInvalidParams, nil},
		{"duplicate request ids in a batch", `[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":"1","method":"prompts/list"}]`, CodeInvalidRequest, nil},
		{"nested batch", `[[{"jsonrpc":"2.0","method":"ping","id":1}]]`, CodeInvalidRequest, nil},
		{"missing jsonrpc", `{"id":1,"method":"ping"}`, CodeInvalidRequest, raw(`1`)},
		{"wrong jsonrpc", `{"jsonrpc":"1.0","id":1,"method":"ping"}`, CodeInvalidRequest, raw(`1`)},
		{"non-string method", `{"jsonrpc":"2.0","id":1,"method":7}`, CodeInvalidRequest, raw(`1`)},
		{"method with control char", `{"jsonrpc":"2.0","id":1,"method":"tools/call\u0000"}`, CodeInvalidRequest, raw(`1`)},
		{"null id", `{"jsonrpc":"2.0","id":null,"method":"ping"}`, CodeInvalidRequest, nil},
		{"object id", `{"jsonrpc":"2.0","id":{},"method":"ping"}`, CodeInvalidRequest, nil},
		{"request with result", `{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}`, CodeInvalidRequest, raw(`1`)},
		{"neither request nor response", `{"jsonrpc":"2.0","id":1}`, CodeInvalidRequest, raw(`1`)},
		{"response with result and error", `{"jsonrpc":"2.0","id":1,"result":{},"error":{}}`, CodeInvalidRequest, raw(`1`)},
		{"response without id", `{"jsonrpc":"2.0","result":{}}`, CodeInvalidRequest, nil},
		{"array params", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["x"]}`, CodeInvalidParams, raw(`1`)},
		{"tools/call without name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}`, CodeInvalidParams, raw(`1`)},
		{"tools/call without params", `{"jsonrpc":"2.0","id":1,"method":"tools/call"}`, CodeInvalidParams, raw(`1`)},
		{"tools/call non-string name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["a"]}}`, CodeInvalidParams, raw(`1`)},
		{"tools/call empty name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":""}}`, CodeInvalidParams, raw(`1`)},
		{"tools/call name with NUL", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_vm\u0000"}}`, CodeInvalidParams, raw(`1`)},
		{"tools/call array arguments", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":[1]}}`, CodeInvalidParams, raw(`1`)},
		{"resources/read without uri", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"x"}}`, CodeInvalidParams, raw(`1`)},
		{"completion unknown ref type", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/tool","name":"x"}}}`, CodeInvalidParams, raw(`1`)},
		{"completion without ref", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{}}`, CodeInvalidParams, raw(`1`)},
		{"completion prompt ref without name", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt"}}}`, CodeInvalidParams, raw(`1`)},
		{"listen with non-string subscription", `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":[1]}}}`, CodeInvalidParams, raw(`1`)},
		// Bounds (issue 11.3): every name becomes an audit field and a policy input.
		{"method too long", `{"jsonrpc":"2.0","id":1,"method":"` + strings.Repeat("m", MaxMethodBytes+1) + `"}`, CodeInvalidRequest, raw(`1`)},
		{"2 MB method", `{"jsonrpc":"2.0","id":1,"method":"` + strings.Repeat("m", 2<<20) + `"}`, CodeInvalidRequest, raw(`1`)},
		{"escaped method too long", `{"jsonrpc":"2.0","id":1,"method":"` + strings.Repeat(`\u0061`, MaxMethodBytes+1) + `"}`, CodeInvalidRequest, raw(`1`)},
		{"tool name too long", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + strings.Repeat("t", MaxNameBytes+1) + `"}}`, CodeInvalidParams, raw(`1`)},
		{"prompt name too long", `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"` + strings.Repeat("p", MaxNameBytes+1) + `"}}`, CodeInvalidParams, raw(`1`)},
		{"completion prompt name too long", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"` + strings.Repeat("p", MaxNameBytes+1) + `"}}}`, CodeInvalidParams, raw(`1`)},
		{"URI too long", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"demo://` + strings.Repeat("u", MaxURIBytes) + `"}}`, CodeInvalidParams, raw(`1`)},
		{"subscription URI too long", `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":["demo://` + strings.Repeat("u", MaxURIBytes) + `"]}}}`, CodeInvalidParams, raw(`1`)},
		{"protocolVersion too long", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"` + strings.Repeat("9", 65) + `"}}}`, CodeInvalidParams, raw(`1`)},
		// Resource URIs must be in normal form (issue 11.8).
		{"URI with dot segment", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"demo://public/../inventory"}}`, CodeInvalidParams, raw(`1`)},
		{"URI with encoded dot segment", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"demo://public/%2e%2e/inventory"}}`, CodeInvalidParams, raw(`1`)},
		{"URI with upper-case encoded dots", `{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"file:///srv/public/%2E%2E/secret"}}`, CodeInvalidParams, raw(`1`)},
		{"URI with single dot segment", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///srv/./secret"}}`, CodeInvalidParams, raw(`1`)},
		{"URI with encoded unreserved letter", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"demo://%69nventory"}}`, CodeInvalidParams, raw(`1`)},
		{"URI with malformed percent", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"demo://x/%zz"}}`, CodeInvalidParams, raw(`1`)},
		{"URI with upper-case scheme", `{"jsonrpc":"2.0","id":1,"method":"resources/unsubscribe","params":{"uri":"DEMO://inventory"}}`, CodeInvalidParams, raw(`1`)},
		{"completion template with dot segment", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///a/../{path}"}}}`, CodeInvalidParams, raw(`1`)},
		{"subscription with dot segment", `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":["demo://public/../inventory"]}}}`, CodeInvalidParams, raw(`1`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode([]byte(tt.body))
			if err == nil {
				t.Fatalf("Decode accepted it: %+v", m)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *Error", err)
			}
			if e.Code != tt.code {
				t.Errorf("code = %d (%s), want %d", e.Code, e.Message, tt.code)
			}
			if diff := cmp.Diff(tt.wantID, e.ID); diff != "" {
				t.Errorf("error id (-want +got):\n%s", diff)
			}
		})
	}
}

// The error text sent to clients must not echo request content.
// Names at the limits are accepted: the bounds refuse only what no real
// client sends.
func TestDecodeAtLimits(t *testing.T) {
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"` + strings.Repeat("m", MaxMethodBytes) + `"}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + strings.Repeat("t", MaxNameBytes) + `"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"demo://` + strings.Repeat("u", MaxURIBytes-len("demo://")) + `"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///My%20Files/a%2Fb?q=%C3%A9#x"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"demo://public/.well-known/x..y"}}`,
	} {
		if _, err := Decode([]byte(body)); err != nil {
			t.Errorf("Decode(%.80s…): %v", body, err)
		}
	}
}

// The error for a non-normal URI names the form to send instead.
func TestDecodeNamesNormalURI(t *testing.T) {
	_, err := Decode([]byte(`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"demo://public/%2e%2e/inventory"}}`))
	if err == nil || !strings.Contains(err.Error(), `"demo://public/inventory"`) {
		t.Fatalf("err = %v, want it to name the normal form", err)
	}
}

func TestDecodeErrorDoesNotEchoBody(t *testing.T) {
	secret := "Bearer-sk-live-0123456789"
	bodies := []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + secret + `","name":"x"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":"` + secret + `"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"` + secret,
	}
	for _, b := range bodies {
		_, err := Decode([]byte(b))
		if err == nil {
			t.Fatalf("Decode(%q) accepted", b)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q echoes request content", err)
		}
	}
}

func TestFoldKeyAgreesWithEqualFold(t *testing.T) {
	pairs := [][2]string{
		{"name", "NAME"}, {"k", "\u212a"}, {"s", "\u017f"}, {"straße", "STRASSE"}, {"Σ", "ς"}, {"a", "b"}, {"ǅ", "ǆ"},
	}
	for _, p := range pairs {
		if got, want := foldKey(p[0]) == foldKey(p[1]), strings.EqualFold(p[0], p[1]); got != want {
			t.Errorf("foldKey(%q)==foldKey(%q) is %v, EqualFold says %v", p[0], p[1], got, want)
		}
	}
}

// Objects with many members switch to a map; duplicates must still be found.
func TestManyMembersDuplicate(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{`)
	for i := 0; i < 100; i++ {
		b.WriteString(`"k` + strings.Repeat("x", i) + `":1,`)
	}
	b.WriteString(`"KXX":2}}}`)
	if _, err := Decode([]byte(b.String())); err == nil {
		t.Fatal("duplicate among 100 members accepted")
	}
	ok := strings.Replace(b.String(), `"KXX":2`, `"other":2`, 1)
	if _, err := Decode([]byte(ok)); err != nil {
		t.Fatalf("distinct members rejected: %v", err)
	}
}

func TestIDKey(t *testing.T) {
	same := [][2]string{{`1`, `1`}, {`1`, `1.0`}, {`1`, `"1"`}, {`"a\u0062"`, `"ab"`}, {`10`, `1e1`}}
	for _, p := range same {
		if IDKey(raw(p[0])) != IDKey(raw(p[1])) {
			t.Errorf("IDKey(%s) != IDKey(%s)", p[0], p[1])
		}
	}
	differ := [][2]string{{`1`, `2`}, {`"a"`, `"b"`}, {`1`, `1.5`}}
	for _, p := range differ {
		if IDKey(raw(p[0])) == IDKey(raw(p[1])) {
			t.Errorf("IDKey(%s) == IDKey(%s)", p[0], p[1])
		}
	}
}

func TestErrorResponse(t *testing.T) {
	tests := []struct {
		name string
		id   json.RawMessage
		data any
		want string
	}{
		{"with id", raw(`7`), nil, `{"jsonrpc":"2.0","id":7,"error":{"code":-32600,"message":"bad"}}`},
		{"string id", raw(`"x"`), nil, `{"jsonrpc":"2.0","id":"x","error":{"code":-32600,"message":"bad"}}`},
		{"no id", nil, nil, `{"jsonrpc":"2.0","error":{"code":-32600,"message":"bad"}}`},
		{"invalid id dropped", raw(`{`), nil, `{"jsonrpc":"2.0","error":{"code":-32600,"message":"bad"}}`},
		{"data", raw(`1`), map[string]string{"tool": "x"}, `{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"bad","data":{"tool":"x"}}}`},
		{"unmarshalable data dropped", raw(`1`), func() {}, `{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"bad"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(ErrorResponse(tt.id, CodeInvalidRequest, "bad", tt.data))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func BenchmarkDecodeToolsCall(b *testing.B) {
	body := []byte(`{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"power_on","arguments":{"vm_name":"web-1","force":false,"timeout":30},"_meta":{"progressToken":"p1"}}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(body); err != nil {
			b.Fatal(err)
		}
	}
}
