package mcp

import (
	"encoding/base64"
	"errors"
	"net/http"
	"testing"
)

func TestCheckHeaders(t *testing.T) {
	const (
		call     = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather"}}`
		call2026 = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`
		unicode  = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"météo"}}`
		read     = `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a b"}}`
		list     = `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
		note     = `{"jsonrpc":"2.0","method":"notifications/initialized"}`
		resp     = `{"jsonrpc":"2.0","id":1,"result":{}}`
		batch    = `[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"ping"}]`
	)
	b64 := func(s string) string { return "=?base64?" + base64.StdEncoding.EncodeToString([]byte(s)) + "?=" }
	tests := []struct {
		name    string
		body    string
		headers map[string][]string
		code    int // 0: accepted
	}{
		{"no headers, old client", call, nil, 0},
		{"matching headers", call, map[string][]string{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"get_weather"}}, 0},
		{"header names are case-insensitive", call, map[string][]string{"mcp-method": {"tools/call"}, "MCP-NAME": {"get_weather"}}, 0},
		{"method mismatch", call, map[string][]string{"Mcp-Method": {"tools/list"}}, CodeHeaderMismatch},
		{"method values are case-sensitive", call, map[string][]string{"Mcp-Method": {"Tools/Call"}}, CodeHeaderMismatch},
		{"name mismatch", call, map[string][]string{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"read_weather"}}, CodeHeaderMismatch},
		{"name header twice", call, map[string][]string{"Mcp-Name": {"get_weather", "delete_vm"}}, CodeHeaderMismatch},
		{"method header twice", call, map[string][]string{"Mcp-Method": {"tools/call", "tools/call"}}, CodeHeaderMismatch},
		{"base64 name", unicode, map[string][]string{"Mcp-Method": {"tools/call"}, "Mcp-Name": {b64("météo")}}, 0},
		{"base64 name mismatch", unicode, map[string][]string{"Mcp-Name": {b64("meteo")}}, CodeHeaderMismatch},
		{"invalid base64", unicode, map[string][]string{"Mcp-Name": {"=?base64?!!!?="}}, CodeHeaderMismatch},
		{"base64 of invalid UTF-8", unicode, map[string][]string{"Mcp-Name": {"=?base64?" + base64.StdEncoding.EncodeToString([]byte{0xff}) + "?="}}, CodeHeaderMismatch},
		{"raw non-ASCII name", unicode, map[string][]string{"Mcp-Name": {"météo"}}, CodeHeaderMismatch},
		{"sentinel markers are case-sensitive", call, map[string][]string{"Mcp-Name": {"=?BASE64?Z2V0X3dlYXRoZXI=?="}}, CodeHeaderMismatch},
		{"resource uri", read, map[string][]string{"Mcp-Method": {"resources/read"}, "Mcp-Name": {"file:///a b"}}, 0},
		{"name on a method without a name", list, map[string][]string{"Mcp-Method": {"tools/list"}, "Mcp-Name": {"x"}}, CodeHeaderMismatch},
		{"2026 request without Mcp-Method", call2026, map[string][]string{"Mcp-Protocol-Version": {"2026-07-28"}, "Mcp-Name": {"get_weather"}}, CodeHeaderMismatch},
		{"2026 tools/call without Mcp-Name", call2026, map[string][]string{"Mcp-Protocol-Version": {"2026-07-28"}, "Mcp-Method": {"tools/call"}}, CodeHeaderMismatch},
		{"2026 complete", call2026, map[string][]string{"Mcp-Protocol-Version": {"2026-07-28"}, "Mcp-Method": {"tools/call"}, "Mcp-Name": {"get_weather"}}, 0},
		{"later version also requires headers", call, map[string][]string{"Mcp-Protocol-Version": {"2027-01-01"}, "Mcp-Method": {"tools/call"}}, CodeHeaderMismatch},
		{"2025-11-25 needs no headers", call, map[string][]string{"Mcp-Protocol-Version": {"2025-11-25"}}, 0},
		{"version header differs from body", call2026, map[string][]string{"Mcp-Protocol-Version": {"2025-11-25"}, "Mcp-Method": {"tools/call"}, "Mcp-Name": {"get_weather"}}, CodeHeaderMismatch},
		{"2026 body without version header", call2026, map[string][]string{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"get_weather"}}, CodeHeaderMismatch},
		{"2026 list without name is fine", list, map[string][]string{"Mcp-Protocol-Version": {"2026-07-28"}, "Mcp-Method": {"tools/list"}}, 0},
		{"2026 notification needs no headers", note, map[string][]string{"Mcp-Protocol-Version": {"2026-07-28"}}, 0},
		{"notification method mismatch", note, map[string][]string{"Mcp-Method": {"ping"}}, CodeHeaderMismatch},
		{"headers on a response", resp, map[string][]string{"Mcp-Method": {"tools/call"}}, CodeHeaderMismatch},
		{"response without headers", resp, nil, 0},
		{"headers on a batch", batch, map[string][]string{"Mcp-Method": {"tools/list"}}, CodeHeaderMismatch},
		{"batch under 2026", batch, map[string][]string{"Mcp-Protocol-Version": {"2026-07-28"}}, CodeInvalidRequest},
		{"batch under 2025-03-26", batch, map[string][]string{"Mcp-Protocol-Version": {"2025-03-26"}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode([]byte(tt.body))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			h := http.Header{}
			for k, vs := range tt.headers {
				for _, v := range vs {
					h.Add(k, v)
				}
			}
			err = CheckHeaders(h, m)
			if tt.code == 0 {
				if err != nil {
					t.Fatalf("CheckHeaders: %v", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("CheckHeaders = %v, want *Error with code %d", err, tt.code)
			}
			if e.Code != tt.code {
				t.Errorf("code = %d (%s), want %d", e.Code, e.Message, tt.code)
			}
		})
	}
}

func TestRequiresHeaders(t *testing.T) {
	for v, want := range map[string]bool{
		"2026-07-28": true, "2026-12-01": true, "2025-11-25": false, "": false, "draft": false, "2026-7-28": false, "2026x07-28": false,
	} {
		if got := requiresHeaders(v); got != want {
			t.Errorf("requiresHeaders(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestQuoteShortTruncates(t *testing.T) {
	long := string(make([]byte, 1000))
	if got := quoteShort(long); len(got) > 300 {
		t.Errorf("quoteShort returned %d bytes", len(got))
	}
}
