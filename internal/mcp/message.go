// Package mcp decodes and rewrites the JSON-RPC 2.0 messages of the Model
// Context Protocol, independently of the transport, so that the gateway can
// authorize every message and filter list responses.
//
// Decoding is deliberately stricter than JSON-RPC 2.0 requires, because the
// gateway and the backend must never read two different messages out of the
// same bytes (request smuggling):
//
//   - the body must be valid UTF-8 JSON (RFC 8259 §8.1), one value, no
//     trailing data, nested at most [MaxDepth] deep;
//   - no object anywhere in the message may repeat a member name, and names
//     that differ only in letter case ("name"/"Name", also after \u escapes)
//     count as repeats: parsers disagree on which duplicate wins and Go's
//     encoding/json matches names case-insensitively;
//   - member names and method names are otherwise case-sensitive (JSON-RPC
//     2.0 §4): "Tools/Call" is simply an unknown method;
//   - a batch (JSON-RPC 2.0 §6) must not be empty and holds at most
//     [MaxBatch] messages; one invalid element rejects the whole batch;
//   - "id" must be a string or a number (MCP forbids null ids), "params" an
//     object, and the name or URI of tools/call, prompts/get and resources/*
//     a string without control characters;
//   - methods, names and URIs are bounded ([MaxMethodBytes], [MaxNameBytes],
//     [MaxURIBytes]): they become audit fields and policy inputs, and no
//     real one comes near the limits;
//   - resource URIs must be in RFC 3986 normal form ([NormalizeURI]), so
//     that the gateway authorizes exactly the URI the backend resolves:
//     "demo://public/../inventory" or "%2e%2e" never reach a backend.
package mcp

import (
	"encoding/json"
	"errors"
	"fmt"
)

// JSON-RPC 2.0 error codes (§5.1) and the MCP 2026-07-28 HeaderMismatch code
// (basic/transports/streamable-http, "Server Validation").
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
	CodeHeaderMismatch = -32020
)

// Limits applied by Decode.
const (
	MaxDepth = 64
	MaxBatch = 256
	// MaxMethodBytes bounds the method; the longest MCP method is 40 bytes.
	MaxMethodBytes = 128
	// MaxNameBytes bounds tool and prompt names (MCP recommends 1–128
	// characters for tool names).
	MaxNameBytes = 256
	// MaxURIBytes bounds resource URIs and URI templates: room for long
	// file paths and query strings, the customary limit of URLs.
	MaxURIBytes = 2048
	// maxVersionBytes bounds _meta's protocolVersion (dates are 10 bytes).
	maxVersionBytes = 64
)

// Error is a JSON-RPC error found while decoding or checking a message. The
// gateway answers it with HTTP 400 and ErrorResponse(ID, Code, Message, nil).
// Message never contains request content beyond short, quoted names.
type Error struct {
	Code    int
	Message string
	// ID is the id of the offending message when the body held a single
	// message whose id could be read; nil otherwise.
	ID json.RawMessage
}

func (e *Error) Error() string { return fmt.Sprintf("jsonrpc error %d: %s", e.Code, e.Message) }

func errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Message is a decoded HTTP body: one JSON-RPC message or a batch.
type Message struct {
	Batch bool
	Calls []Call
}

// Call is one JSON-RPC message of a body. Its raw fields alias the decoded
// body, which must not be modified while they are in use.
type Call struct {
	// ID is the raw JSON id (a string or a number); nil for notifications.
	ID json.RawMessage
	// Method is the JSON-RPC method, exactly as sent (case-sensitive).
	Method string
	// Name is what the call acts on: the tool name (tools/call), prompt name
	// (prompts/get), resource URI (resources/read, resources/subscribe,
	// resources/unsubscribe), or the referenced prompt name or resource
	// template URI (completion/complete, see RefKind).
	Name string
	// Arguments is params.arguments of tools/call and prompts/get (always a
	// JSON object when set), nil when absent or null.
	Arguments json.RawMessage
	// RefKind is "prompt" or "resource" for completion/complete.
	RefKind string
	// Subscriptions lists params.notifications.resourceSubscriptions of a
	// subscriptions/listen request (MCP 2026-07-28): resource URIs.
	Subscriptions []string
	// ProtocolVersion is params._meta["io.modelcontextprotocol/protocolVersion"]
	// (MCP 2026-07-28 per-request metadata), "" when absent.
	ProtocolVersion string
	// IsNotification is set for a request without id (JSON-RPC 2.0 §4.1).
	IsNotification bool
	// IsResponse is set for a response sent by the client (to a server
	// request such as sampling/createMessage in MCP up to 2025-11-25).
	IsResponse bool
}

// Kinds of names a call can act on.
const (
	RefPrompt   = "prompt"
	RefResource = "resource"
)

// Decode parses an HTTP request body holding one JSON-RPC message or a batch.
// It returns an *Error with CodeParseError for bodies that are not valid JSON
// under the rules in the package documentation, and CodeInvalidRequest or
// CodeInvalidParams for valid JSON that is not an acceptable message.
func Decode(body []byte) (*Message, error) {
	if err := validateJSON(body, MaxDepth); err != nil {
		return nil, errorf(CodeParseError, "parse error: %s", shortJSONError(err))
	}
	v := trimSpace(body)
	switch kindOf(v) {
	case '{':
		c, err := decodeCall(v)
		if err != nil {
			return nil, err
		}
		return &Message{Calls: []Call{c}}, nil
	case '[':
		elems, err := arrayElements(v)
		if err != nil {
			return nil, errorf(CodeParseError, "parse error")
		}
		if len(elems) == 0 {
			return nil, errorf(CodeInvalidRequest, "empty batch")
		}
		if len(elems) > MaxBatch {
			return nil, errorf(CodeInvalidRequest, "batch has %d messages, more than %d", len(elems), MaxBatch)
		}
		m := &Message{Batch: true, Calls: make([]Call, len(elems))}
		ids := make(map[string]bool, len(elems))
		for i, e := range elems {
			c, err := decodeCall(e)
			if err != nil {
				err.ID = nil // per-element ids cannot label a whole-body error
				err.Message = fmt.Sprintf("batch element %d: %s", i, err.Message)
				return nil, err
			}
			// Responses are matched to requests by id: two requests sharing
			// an id (even loosely, 1 and "1") would make a filtered list
			// response ambiguous.
			if c.ID != nil && !c.IsResponse {
				k := IDKey(c.ID)
				if ids[k] {
					return nil, errorf(CodeInvalidRequest, "batch element %d: duplicate request id", i)
				}
				ids[k] = true
			}
			m.Calls[i] = c
		}
		return m, nil
	}
	return nil, errorf(CodeInvalidRequest, "message must be a JSON object or array")
}

// shortJSONError describes a validation failure without echoing request
// content.
func shortJSONError(err error) string {
	if err == errTooDeep {
		return fmt.Sprintf("nesting deeper than %d", MaxDepth)
	}
	if err == errFoldDuplicate {
		return "duplicate object member name (names are compared case-insensitively)"
	}
	return err.Error()
}

// namedMethods maps the methods that act on one named thing to the params
// member holding the name.
var namedMethods = map[string]string{
	"tools/call":            "name",
	"prompts/get":           "name",
	"resources/read":        "uri",
	"resources/subscribe":   "uri",
	"resources/unsubscribe": "uri",
}

// envelopeMembers and paramsMembers are the member names Decode interprets.
// A member spelled with different case is rejected: a case-insensitive
// backend parser would read it while the gateway would not.
var (
	envelopeMembers = []string{"jsonrpc", "id", "method", "params", "result", "error"}
	paramsMembers   = []string{"name", "uri", "arguments", "ref", "notifications", "_meta"}
)

func decodeCall(raw []byte) (Call, *Error) {
	var c Call
	var buf [8]member
	ms, err := objectMembers(raw, buf[:0])
	if err != nil {
		return c, errorf(CodeInvalidRequest, "message must be a JSON object")
	}
	if n, ok := caseVariant(ms, envelopeMembers...); ok {
		return c, errorf(CodeInvalidRequest, "member names are case-sensitive: expected %q", n)
	}
	if v, ok := lookup(ms, "id"); ok {
		if k := kindOf(v); k != '"' && k != '0' {
			return c, errorf(CodeInvalidRequest, "id must be a string or a number")
		}
		c.ID = json.RawMessage(v)
	}
	fail := func(code int, format string, args ...any) (Call, *Error) {
		e := errorf(code, format, args...)
		e.ID = c.ID
		return c, e
	}
	if v, ok := lookup(ms, "jsonrpc"); !ok || string(v) != `"2.0"` {
		return fail(CodeInvalidRequest, `"jsonrpc" must be "2.0"`)
	}
	_, hasResult := lookup(ms, "result")
	_, hasError := lookup(ms, "error")
	mv, hasMethod := lookup(ms, "method")
	if !hasMethod {
		if c.ID == nil || hasResult == hasError {
			return fail(CodeInvalidRequest, "message is neither a request nor a response")
		}
		c.IsResponse = true
		return c, nil
	}
	if hasResult || hasError {
		return fail(CodeInvalidRequest, "request must not carry result or error")
	}
	method, e := boundedString(mv, MaxMethodBytes)
	switch e {
	case errNotString:
		return fail(CodeInvalidRequest, "method must be a string")
	case errTooLong:
		return fail(CodeInvalidRequest, "method is longer than %d bytes", MaxMethodBytes)
	}
	if hasControl(method) {
		return fail(CodeInvalidRequest, "method contains control characters")
	}
	c.Method = method
	c.IsNotification = c.ID == nil

	var params []member
	var pbuf [8]member
	if pv, ok := lookup(ms, "params"); ok && kindOf(pv) != 'n' {
		if kindOf(pv) != '{' {
			return fail(CodeInvalidParams, "params must be an object")
		}
		params, err = objectMembers(pv, pbuf[:0])
		if err != nil {
			return fail(CodeInvalidParams, "params must be an object")
		}
	}
	if n, ok := caseVariant(params, paramsMembers...); ok {
		return fail(CodeInvalidParams, "member names are case-sensitive: expected %q", n)
	}
	if meta, ok := lookup(params, "_meta"); ok && kindOf(meta) == '{' {
		var mbuf [8]member
		mm, err := objectMembers(meta, mbuf[:0])
		if err == nil {
			if v, ok := lookup(mm, "io.modelcontextprotocol/protocolVersion"); ok {
				var e error
				if c.ProtocolVersion, e = boundedString(v, maxVersionBytes); e == errTooLong {
					return fail(CodeInvalidParams, "protocolVersion is longer than %d bytes", maxVersionBytes)
				}
			}
		}
	}
	if e := c.decodeParams(params); e != nil {
		e.ID = c.ID
		return c, e
	}
	return c, nil
}

func (c *Call) decodeParams(params []member) *Error {
	if key, ok := namedMethods[c.Method]; ok {
		name, e := requiredName(params, key)
		if e != nil {
			return e
		}
		c.Name = name
		if c.Method == "tools/call" || c.Method == "prompts/get" {
			if v, ok := lookup(params, "arguments"); ok && kindOf(v) != 'n' {
				if kindOf(v) != '{' {
					return errorf(CodeInvalidParams, "params.arguments must be an object")
				}
				c.Arguments = json.RawMessage(v)
			}
		}
		return nil
	}
	switch c.Method {
	case "completion/complete":
		rv, ok := lookup(params, "ref")
		if !ok || kindOf(rv) != '{' {
			return errorf(CodeInvalidParams, "params.ref must be an object")
		}
		var rbuf [4]member
		ref, err := objectMembers(rv, rbuf[:0])
		if err != nil {
			return errorf(CodeInvalidParams, "params.ref must be an object")
		}
		if n, ok := caseVariant(ref, "type", "name", "uri"); ok {
			return errorf(CodeInvalidParams, "member names are case-sensitive: expected %q", n)
		}
		tv, _ := lookup(ref, "type")
		var e *Error
		switch t, _ := unquote(tv); t {
		case "ref/prompt":
			c.RefKind = RefPrompt
			c.Name, e = requiredName(ref, "name")
		case "ref/resource":
			c.RefKind = RefResource
			c.Name, e = requiredName(ref, "uri")
		default:
			return errorf(CodeInvalidParams, `params.ref.type must be "ref/prompt" or "ref/resource"`)
		}
		if e != nil {
			return e
		}
	case "subscriptions/listen":
		nv, ok := lookup(params, "notifications")
		if !ok {
			return nil
		}
		if kindOf(nv) != '{' {
			return errorf(CodeInvalidParams, "params.notifications must be an object")
		}
		var nbuf [8]member
		nm, err := objectMembers(nv, nbuf[:0])
		if err != nil {
			return errorf(CodeInvalidParams, "params.notifications must be an object")
		}
		if n, ok := caseVariant(nm, "resourceSubscriptions"); ok {
			return errorf(CodeInvalidParams, "member names are case-sensitive: expected %q", n)
		}
		sv, ok := lookup(nm, "resourceSubscriptions")
		if !ok || kindOf(sv) == 'n' {
			return nil
		}
		elems, err := arrayElements(sv)
		if err != nil {
			return errorf(CodeInvalidParams, "resourceSubscriptions must be an array of strings")
		}
		if len(elems) > MaxBatch {
			return errorf(CodeInvalidParams, "resourceSubscriptions has more than %d URIs", MaxBatch)
		}
		for _, e := range elems {
			s, err := boundedString(e, MaxURIBytes)
			if err != nil || s == "" || hasControl(s) {
				return errorf(CodeInvalidParams, "resourceSubscriptions must be an array of URIs of at most %d bytes", MaxURIBytes)
			}
			if e := checkNormalURI("resourceSubscriptions", s); e != nil {
				return e
			}
			c.Subscriptions = append(c.Subscriptions, s)
		}
	}
	return nil
}

// requiredName reads a tool or prompt name (key "name") or a resource URI
// (key "uri").
func requiredName(ms []member, key string) (string, *Error) {
	v, ok := lookup(ms, key)
	if !ok {
		return "", errorf(CodeInvalidParams, "params.%s is required", key)
	}
	limit := MaxNameBytes
	if key == "uri" {
		limit = MaxURIBytes
	}
	s, err := boundedString(v, limit)
	if err == errTooLong {
		return "", errorf(CodeInvalidParams, "params.%s is longer than %d bytes", key, limit)
	}
	if err != nil || s == "" {
		return "", errorf(CodeInvalidParams, "params.%s must be a non-empty string", key)
	}
	if hasControl(s) {
		return "", errorf(CodeInvalidParams, "params.%s contains control characters", key)
	}
	if key == "uri" {
		if e := checkNormalURI("params.uri", s); e != nil {
			return "", e
		}
	}
	return s, nil
}

// checkNormalURI refuses a URI that is not in RFC 3986 normal form. The
// gateway forwards the client's bytes unchanged, so rather than authorize
// the normal form and forward another spelling (which a backend might
// resolve differently), it refuses; the error names the normal form to send.
func checkNormalURI(what, uri string) *Error {
	n, err := NormalizeURI(uri)
	if err != nil {
		return errorf(CodeInvalidParams, "%s: %v", what, err)
	}
	if n != uri {
		return errorf(CodeInvalidParams, "%s is not in normal form (RFC 3986 §6.2.2): use %s", what, quoteShort(n))
	}
	return nil
}

var (
	errNotString = errors.New("not a string")
	errTooLong   = errors.New("too long")
)

// boundedString unquotes the JSON string v if its content is at most max
// bytes. Obviously oversized strings are refused before unescaping (an
// escape is at most 6 bytes), so a huge value costs no allocation.
func boundedString(v []byte, max int) (string, error) {
	if kindOf(v) != '"' {
		return "", errNotString
	}
	if len(v) > 6*max+2 {
		return "", errTooLong
	}
	s, ok := unquote(v)
	if !ok {
		return "", errNotString
	}
	if len(s) > max {
		return "", errTooLong
	}
	return s, nil
}

// hasControl reports C0 controls and DEL; they have no place in method names,
// tool names or URIs and are a classic source of parser disagreement.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// IDKey returns a key under which a request id and the id of its response
// compare equal. It is deliberately loose: the string "1" and the number 1
// (or 1.0) share a key, because some clients match ids loosely, and a list
// response must be filtered if any client could take it for the answer to a
// list request.
func IDKey(id json.RawMessage) string {
	v := trimSpace(id)
	switch kindOf(v) {
	case '"':
		s, _ := unquote(v)
		return s
	case '0':
		return canonicalNumber(string(v))
	}
	return string(v)
}

func canonicalNumber(s string) string {
	var f json.Number = json.Number(s)
	if i, err := f.Int64(); err == nil {
		return fmt.Sprint(i)
	}
	if x, err := f.Float64(); err == nil {
		if x == float64(int64(x)) && x > -1e18 && x < 1e18 {
			return fmt.Sprint(int64(x))
		}
		return fmt.Sprint(x)
	}
	return s
}

// ErrorResponse builds a JSON-RPC error response (JSON-RPC 2.0 §5). With an
// empty id the "id" member is omitted, as MCP allows for errors that answer
// no identifiable request. data is marshalled when non-nil.
func ErrorResponse(id json.RawMessage, code int, message string, data any) []byte {
	type errObj struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    any    `json:"data,omitempty"`
	}
	resp := struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id,omitempty"`
		Error   errObj          `json:"error"`
	}{JSONRPC: "2.0", Error: errObj{Code: code, Message: message, Data: data}}
	if len(id) > 0 && json.Valid(id) {
		resp.ID = id
	}
	b, err := json.Marshal(resp)
	if err != nil {
		// Only data can fail to marshal; answer without it.
		resp.Error.Data = nil
		b, _ = json.Marshal(resp)
	}
	return b
}
