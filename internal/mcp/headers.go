package mcp

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"
)

// Request metadata headers of the Streamable HTTP transport (MCP 2026-07-28,
// basic/transports/streamable-http, "Request Metadata"). Header names are
// case-insensitive; net/http canonicalizes them.
const (
	HeaderProtocolVersion = "Mcp-Protocol-Version"
	HeaderMethod          = "Mcp-Method"
	HeaderName            = "Mcp-Name"
)

// headerValidationVersion is the first protocol version whose clients must
// send Mcp-Method and Mcp-Name, and must not send batches.
const headerValidationVersion = "2026-07-28"

// nameHeaderMethods are the methods for which Mcp-Name is required and is
// compared with params.name or params.uri.
var nameHeaderMethods = map[string]bool{"tools/call": true, "prompts/get": true, "resources/read": true}

// CheckHeaders validates the Mcp-Method and Mcp-Name headers against the
// decoded body, so that an intermediary routing on headers and a backend
// executing the body see the same call (MCP 2026-07-28 streamable-http,
// "Server Validation"). Failures are *Error with CodeHeaderMismatch (HTTP
// 400), except a batch under a protocol version that forbids batches
// (CodeInvalidRequest).
//
// Rules:
//   - a header that is present must match the body exactly (values are
//     case-sensitive); an Mcp-Name value in the "=?base64?…?=" sentinel form
//     is decoded first; a header may appear only once;
//   - the protocol version is the MCP-Protocol-Version header, else the
//     body's _meta protocolVersion; if both are present they must match;
//   - for version 2026-07-28 and later, requests must carry Mcp-Method, and
//     tools/call, prompts/get and resources/read must carry Mcp-Name; the
//     body must not be a batch;
//   - Mcp-Name on a method that names nothing is a mismatch, and headers on
//     a batch or a client response are mismatches: they describe no single
//     request.
//
// Mcp-Param-{Name} headers are not checked: validating them needs the tool's
// inputSchema. The gateway authorizes on the body, never on those headers,
// and forwards them untouched as the specification requires of
// intermediaries that do not recognize them.
func CheckHeaders(h http.Header, m *Message) error {
	methods, names, versions := h.Values(HeaderMethod), h.Values(HeaderName), h.Values(HeaderProtocolVersion)
	for _, vs := range []struct {
		name string
		v    []string
	}{{HeaderMethod, methods}, {HeaderName, names}, {HeaderProtocolVersion, versions}} {
		if len(vs.v) > 1 {
			return mismatch(nil, "%s header appears more than once", vs.name)
		}
	}
	version := first(versions)
	if m.Batch || len(m.Calls) != 1 {
		if len(methods) > 0 || len(names) > 0 {
			return mismatch(nil, "Mcp-Method and Mcp-Name describe a single message, but the body is a batch")
		}
		if requiresHeaders(version) {
			return &Error{Code: CodeInvalidRequest, Message: "batches are not allowed in protocol version " + quoteShort(version)}
		}
		for _, c := range m.Calls {
			if requiresHeaders(c.ProtocolVersion) {
				return &Error{Code: CodeInvalidRequest, Message: "batches are not allowed in protocol version " + quoteShort(c.ProtocolVersion)}
			}
		}
		return nil
	}
	c := &m.Calls[0]
	if c.IsResponse {
		if len(methods) > 0 || len(names) > 0 {
			return mismatch(c.ID, "Mcp-Method and Mcp-Name must not accompany a response")
		}
		return nil
	}
	if version != "" && c.ProtocolVersion != "" && version != c.ProtocolVersion {
		return mismatch(c.ID, "MCP-Protocol-Version header %s does not match the body's protocol version %s",
			quoteShort(version), quoteShort(c.ProtocolVersion))
	}
	if version == "" && requiresHeaders(c.ProtocolVersion) {
		return mismatch(c.ID, "MCP-Protocol-Version header is required")
	}
	if version == "" {
		version = c.ProtocolVersion
	}
	required := requiresHeaders(version) && !c.IsNotification

	if len(methods) == 0 {
		if required {
			return mismatch(c.ID, "Mcp-Method header is required")
		}
	} else if methods[0] != c.Method {
		return mismatch(c.ID, "Mcp-Method header %s does not match body method %s", quoteShort(methods[0]), quoteShort(c.Method))
	}

	_, named := namedMethods[c.Method]
	if len(names) == 0 {
		if required && nameHeaderMethods[c.Method] {
			return mismatch(c.ID, "Mcp-Name header is required for %s", c.Method)
		}
		return nil
	}
	if !named {
		return mismatch(c.ID, "Mcp-Name header is not expected for method %s", quoteShort(c.Method))
	}
	name, err := decodeHeaderValue(names[0])
	if err != nil {
		return mismatch(c.ID, "Mcp-Name header: %v", err)
	}
	if name != c.Name {
		return mismatch(c.ID, "Mcp-Name header %s does not match body value %s", quoteShort(name), quoteShort(c.Name))
	}
	return nil
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// requiresHeaders reports whether version is a dated protocol version at or
// after 2026-07-28. Dated versions compare correctly as strings.
func requiresHeaders(version string) bool {
	if len(version) != len("2006-01-02") || version[4] != '-' || version[7] != '-' {
		return false
	}
	for i := 0; i < len(version); i++ {
		if i != 4 && i != 7 && (version[i] < '0' || version[i] > '9') {
			return false
		}
	}
	return version >= headerValidationVersion
}

func mismatch(id []byte, format string, args ...any) *Error {
	return &Error{Code: CodeHeaderMismatch, Message: "Header mismatch: " + fmt.Sprintf(format, args...), ID: id}
}

const (
	b64Prefix = "=?base64?"
	b64Suffix = "?="
)

// decodeHeaderValue decodes the Base64 sentinel form ("=?base64?…?=", markers
// case-sensitive) and checks that a plain value holds only visible ASCII,
// space and tab (RFC 9110 §5.5, as the MCP value-encoding rules require).
func decodeHeaderValue(v string) (string, error) {
	if strings.HasPrefix(v, b64Prefix) && strings.HasSuffix(v, b64Suffix) && len(v) >= len(b64Prefix)+len(b64Suffix) {
		raw, err := base64.StdEncoding.DecodeString(v[len(b64Prefix) : len(v)-len(b64Suffix)])
		if err != nil {
			return "", fmt.Errorf("invalid base64 value")
		}
		if !utf8.Valid(raw) {
			return "", fmt.Errorf("base64 value is not UTF-8")
		}
		return string(raw), nil
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c > 0x7e {
			return "", fmt.Errorf("invalid characters (use the =?base64?…?= form)")
		}
	}
	return v, nil
}

// quoteShort quotes s for an error message, truncated so that a client
// cannot make the gateway reflect large amounts of its own input.
func quoteShort(s string) string {
	const max = 64
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return fmt.Sprintf("%q…", s[:cut])
	}
	return fmt.Sprintf("%q", s)
}
