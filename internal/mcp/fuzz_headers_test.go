package mcp

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

// headerNameOracle decodes an Mcp-Name value as the MCP value-encoding rules
// state it, independently of decodeHeaderValue.
func headerNameOracle(v string) (string, bool) {
	if len(v) >= len("=?base64??=") && strings.HasPrefix(v, "=?base64?") && strings.HasSuffix(v, "?=") {
		raw, err := base64.StdEncoding.DecodeString(v[len("=?base64?") : len(v)-len("?=")])
		return string(raw), err == nil && utf8.Valid(raw)
	}
	for _, c := range []byte(v) {
		if (c < ' ' && c != '\t') || c > '~' {
			return "", false
		}
	}
	return v, true
}

// FuzzCheckHeaders: for any body the decoder accepts and any Mcp-Method,
// Mcp-Name and MCP-Protocol-Version headers, CheckHeaders either refuses
// with a bounded JSON-RPC error, or the headers that are present describe
// exactly the body's call and the ones the protocol version requires are
// there. Headers built from the body by a conforming client (Mcp-Name in
// either encoding) are always accepted.
func FuzzCheckHeaders(f *testing.F) {
	type seed struct {
		body                   string
		method, name, version  string
		haveM, haveN, haveV, d bool
	}
	for _, s := range []seed{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"power_on"}}`, "tools/call", "power_on", "2026-07-28", true, true, true, false},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"power_on"}}`, "tools/call", "delete_vm", "2026-07-28", true, true, true, false},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"power_on"}}`, "tools/call", "=?base64?cG93ZXJfb24=?=", "2026-07-28", true, true, true, false},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"power_on"}}`, "tools/call", "=?BASE64?cG93ZXJfb24=?=", "2026-07-28", true, true, true, false},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"caf\u00e9"}}`, "tools/call", "café", "2026-07-28", true, true, true, false},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"power_on"}}`, "tools/call", "power_on", "2026-07-28", true, true, true, true},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"power_on"}}`, "", "", "2026-07-28", false, false, true, false},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"power_on"}}`, "Tools/Call", "", "2025-06-18", true, false, true, false},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"protocolVersion":"2026-07-28"}}}`, "tools/call", "x", "", true, true, false, false},
		{`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a b"}}`, "resources/read", "file:///a b", "2099-01-01", true, true, true, false},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, "tools/list", "x", "2026-07-28", true, true, true, false},
		{`{"jsonrpc":"2.0","method":"notifications/initialized"}`, "", "", "2026-07-28", false, false, true, false},
		{`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]`, "ping", "", "2026-07-28", true, false, true, false},
		{`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, "", "", "2025-03-26", false, false, true, false},
		{`{"jsonrpc":"2.0","id":1,"result":{}}`, "ping", "", "", true, false, false, false},
		{`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p"}}`, "prompts/get", "p\x00", "2026-7-28", true, true, true, false},
		{`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p"}}`, "prompts/get", strings.Repeat("A", 5000), "2026-07-28", true, true, true, false},
	} {
		f.Add([]byte(s.body), s.method, s.name, s.version, s.haveM, s.haveN, s.haveV, s.d)
	}
	f.Fuzz(func(t *testing.T, body []byte, method, name, version string, haveM, haveN, haveV, dup bool) {
		m, err := Decode(body)
		if err != nil {
			return
		}
		h := http.Header{}
		if haveM {
			h.Add(HeaderMethod, method)
		}
		if haveN {
			h.Add(HeaderName, name)
		}
		if haveV {
			h.Add(HeaderProtocolVersion, version)
		}
		if dup {
			for k, v := range h {
				h[k] = append(v, v...)
				break
			}
		}
		err = CheckHeaders(h, m)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || (e.Code != CodeHeaderMismatch && e.Code != CodeInvalidRequest) {
				t.Fatalf("error %v is not a header-mismatch or invalid-request JSON-RPC error", err)
			}
			if len(e.Message) > 400 {
				t.Fatalf("error message of %d bytes reflects the input", len(e.Message))
			}
		}
		checkAccepted(t, h, m, err)

		// A conforming client's headers are accepted, in both encodings.
		if m.Batch || len(m.Calls) != 1 || m.Calls[0].IsResponse {
			return
		}
		c := m.Calls[0]
		good := http.Header{HeaderMethod: {c.Method}}
		if c.ProtocolVersion != "" {
			good.Set(HeaderProtocolVersion, c.ProtocolVersion)
		}
		if _, named := namedMethods[c.Method]; named {
			good.Set(HeaderName, "=?base64?"+base64.StdEncoding.EncodeToString([]byte(c.Name))+"?=")
			if err := CheckHeaders(good, m); err != nil {
				t.Fatalf("conforming base64 headers %v refused: %v", good, err)
			}
			if _, plain := headerNameOracle(c.Name); plain && !strings.HasPrefix(c.Name, "=?base64?") {
				good.Set(HeaderName, c.Name)
			}
		}
		if err := CheckHeaders(good, m); err != nil {
			t.Fatalf("conforming headers %v refused: %v", good, err)
		}
	})
}

// checkAccepted states what an accepted set of headers means.
func checkAccepted(t *testing.T, h http.Header, m *Message, err error) {
	t.Helper()
	methods, names, versions := h.Values(HeaderMethod), h.Values(HeaderName), h.Values(HeaderProtocolVersion)
	if len(methods) > 1 || len(names) > 1 || len(versions) > 1 {
		if err == nil {
			t.Fatalf("repeated header accepted: %v", h)
		}
		return
	}
	if err != nil {
		return
	}
	if m.Batch || len(m.Calls) != 1 {
		if len(methods)+len(names) > 0 {
			t.Fatalf("Mcp-Method/Mcp-Name accepted on a batch: %v", h)
		}
		for _, c := range m.Calls {
			if requiresHeaders(c.ProtocolVersion) {
				t.Fatalf("batch accepted under version %q", c.ProtocolVersion)
			}
		}
		if len(versions) == 1 && requiresHeaders(versions[0]) {
			t.Fatalf("batch accepted under version %q", versions[0])
		}
		return
	}
	c := m.Calls[0]
	if c.IsResponse {
		if len(methods)+len(names) > 0 {
			t.Fatalf("Mcp-Method/Mcp-Name accepted on a response: %v", h)
		}
		return
	}
	version := c.ProtocolVersion
	if len(versions) == 1 {
		if c.ProtocolVersion != "" && versions[0] != c.ProtocolVersion {
			t.Fatalf("version header %q accepted with body version %q", versions[0], c.ProtocolVersion)
		}
		version = versions[0]
	} else if requiresHeaders(c.ProtocolVersion) {
		t.Fatalf("missing MCP-Protocol-Version accepted with body version %q", c.ProtocolVersion)
	}
	if len(methods) == 1 && methods[0] != c.Method {
		t.Fatalf("Mcp-Method %q accepted for method %q", methods[0], c.Method)
	}
	if len(names) == 1 {
		if _, named := namedMethods[c.Method]; !named {
			t.Fatalf("Mcp-Name accepted for method %q", c.Method)
		}
		if got, ok := headerNameOracle(names[0]); !ok || got != c.Name {
			t.Fatalf("Mcp-Name %q accepted for name %q", names[0], c.Name)
		}
	}
	dated := len(version) == 10 && version >= "2026-07-28" && version[4] == '-' && version[7] == '-' &&
		strings.Trim(version[:4]+version[5:7]+version[8:], "0123456789") == ""
	if dated && !c.IsNotification {
		if len(methods) == 0 {
			t.Fatalf("missing Mcp-Method accepted under %q", version)
		}
		if len(names) == 0 && (c.Method == "tools/call" || c.Method == "prompts/get" || c.Method == "resources/read") {
			t.Fatalf("missing Mcp-Name accepted for %s under %q", c.Method, version)
		}
	}
}
