package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// listShape says where the items of a list result live and which member
// names an item.
type listShape struct{ items, name string }

var listShapes = map[string]listShape{
	"tools/list":               {"tools", "name"},
	"prompts/list":             {"prompts", "name"},
	"resources/list":           {"resources", "uri"},
	"resources/templates/list": {"resourceTemplates", "uriTemplate"},
}

// IsListMethod reports whether method's result is a list that FilterList
// can filter.
func IsListMethod(method string) bool {
	_, ok := listShapes[method]
	return ok
}

// ErrUnfilterable means a list response could not be parsed well enough to
// filter it. Fail closed: the response must not reach the client.
var ErrUnfilterable = errors.New("list response cannot be filtered")

// FilterList removes the items of a list response that keep rejects. msg is
// one JSON-RPC response message; method is the list method of the request it
// answers (tools/list, prompts/list, resources/list, resources/templates/list).
// Items are named by "name" (tools, prompts), "uri" (resources) or
// "uriTemplate" (resource templates); an item without a string name is
// removed. Everything else, including nextCursor and _meta, is copied byte
// for byte. An error response, or a result without the list member, is
// returned unchanged. A response that is not valid JSON, repeats a member
// name, or whose list member is not an array of objects yields
// ErrUnfilterable.
func FilterList(msg []byte, method string, keep func(name string) bool) ([]byte, error) {
	if err := validateJSON(msg, MaxDepth); err != nil {
		return nil, ErrUnfilterable
	}
	return filterValidList(msg, method, keep)
}

// filterValidList is FilterList for a message already checked by
// validateJSON (ListFilter.Rewrite validates each message once).
func filterValidList(msg []byte, method string, keep func(name string) bool) ([]byte, error) {
	shape, ok := listShapes[method]
	if !ok {
		return nil, fmt.Errorf("%s is not a list method", method)
	}
	var buf [8]member
	ms, err := objectMembers(trimSpace(msg), buf[:0])
	if err != nil {
		return nil, ErrUnfilterable
	}
	// Members are found case-insensitively: a client using a case-insensitive
	// parser would read "Tools" as the tool list, so it must be filtered too.
	result, ok := lookupFold(ms, "result")
	if !ok {
		return msg, nil // an error response carries no items
	}
	if kindOf(result) != '{' {
		return nil, ErrUnfilterable
	}
	var rbuf [8]member
	rms, err := objectMembers(result, rbuf[:0])
	if err != nil {
		return nil, ErrUnfilterable
	}
	arr, ok := lookupFold(rms, shape.items)
	if !ok {
		return msg, nil
	}
	if kindOf(arr) != '[' {
		return nil, ErrUnfilterable
	}
	items, err := arrayElements(arr)
	if err != nil {
		return nil, ErrUnfilterable
	}
	kept := make([][]byte, 0, len(items))
	for _, it := range items {
		if kindOf(it) != '{' {
			return nil, ErrUnfilterable
		}
		var ibuf [16]member
		ims, err := objectMembers(it, ibuf[:0])
		if err != nil {
			return nil, ErrUnfilterable
		}
		nv, _ := lookupFold(ims, shape.name)
		if name, ok := unquote(nv); ok && keep(name) {
			kept = append(kept, it)
		}
	}
	if len(kept) == len(items) {
		return msg, nil
	}
	// arr aliases msg: splice the kept items between its brackets.
	start := offsetIn(msg, arr)
	out := make([]byte, 0, len(msg))
	out = append(out, msg[:start+1]...)
	for i, it := range kept {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, it...)
	}
	out = append(out, msg[start+len(arr)-1:]...)
	return out, nil
}

// offsetIn returns the offset of sub, a subslice of b, within b.
func offsetIn(b, sub []byte) int {
	return cap(b) - cap(sub)
}

// ListFilter filters the responses to the list requests of one client
// message, matching responses to requests by id (Decode guarantees that the
// requests of a batch have distinct ids), or every list-shaped response of a
// stream (NewStreamListFilter).
type ListFilter struct {
	pending map[string]string // IDKey → list method
	all     bool              // filter every response by the shape of its result
	keep    func(method, name string) bool
	msg     *Message // the client's message (nil on a stream), for Refusal
	refused bool     // a list response was replaced by an error
}

// NewStreamListFilter returns a filter for a stream that answers no request
// of its own: the standalone GET stream and resumed streams of MCP
// 2025-03-26 to 2025-11-25, on which a response to an earlier request may be
// replayed. Since no request says which responses are lists, every response
// whose result holds "tools", "prompts", "resources" or
// "resourceTemplates" is filtered as the corresponding list.
func NewStreamListFilter(keep func(method, name string) bool) *ListFilter {
	return &ListFilter{all: true, keep: keep}
}

// NewListFilter returns a filter for the list requests in m, or nil when m
// has none. keep receives the list method and an item's name; it should be
// the policy's Visible decision for the caller.
func NewListFilter(m *Message, keep func(method, name string) bool) *ListFilter {
	var pending map[string]string
	for _, c := range m.Calls {
		if c.IsResponse || c.IsNotification || !IsListMethod(c.Method) {
			continue
		}
		if pending == nil {
			pending = make(map[string]string)
		}
		pending[IDKey(c.ID)] = c.Method
	}
	if pending == nil {
		return nil
	}
	return &ListFilter{pending: pending, keep: keep, msg: m}
}

// refusalMessage is the error text of a list response that was refused.
const refusalMessage = "backend list response could not be filtered"

// IsStream reports whether f filters a stream that answers no request of
// its own (NewStreamListFilter).
func (f *ListFilter) IsStream() bool { return f.all }

// Refused reports whether Rewrite replaced a list response by an error.
func (f *ListFilter) Refused() bool { return f.refused }

// Refusal returns the JSON-RPC error that replaces a backend answer the
// caller cannot parse and filter: an internal error for each request of the
// client's message, with its id (an array for a batch, JSON-RPC 2.0 §6), so
// the client's calls fail instead of hanging; on a stream, one error with a
// null id. The original answer must never be forwarded.
func (f *ListFilter) Refusal() []byte {
	f.refused = true
	if f.msg == nil {
		return ErrorResponse(json.RawMessage("null"), CodeInternalError, refusalMessage, nil)
	}
	var errs [][]byte
	for _, c := range f.msg.Calls {
		if !c.IsResponse && !c.IsNotification {
			errs = append(errs, ErrorResponse(c.ID, CodeInternalError, refusalMessage, nil))
		}
	}
	if !f.msg.Batch && len(errs) == 1 {
		return errs[0]
	}
	return append(append([]byte{'['}, bytes.Join(errs, []byte{','})...), ']')
}

// Rewrite filters one server message (a JSON body, or the data of one SSE
// event): a single JSON-RPC message or a batch. Responses to pending list
// requests (on a stream: every response whose result has a list member) are
// filtered; other messages are returned unchanged. A list response that
// parses as JSON but cannot be filtered (its list is not an array of
// objects, say) is replaced by an internal error carrying its id. Rewrite
// returns nil when the message is not valid JSON: the caller must then drop
// the event or answer with Refusal (fail closed), never forward the
// original.
func (f *ListFilter) Rewrite(msg []byte) []byte {
	if err := validateJSON(msg, MaxDepth); err != nil {
		return nil
	}
	v := trimSpace(msg)
	if kindOf(v) == '[' {
		elems, err := arrayElements(v)
		if err != nil {
			return nil
		}
		var out bytes.Buffer
		out.WriteByte('[')
		for i, e := range elems {
			r := f.rewriteOne(e)
			if r == nil {
				return nil
			}
			if i > 0 {
				out.WriteByte(',')
			}
			out.Write(r)
		}
		out.WriteByte(']')
		return out.Bytes()
	}
	return f.rewriteOne(v)
}

func (f *ListFilter) rewriteOne(msg []byte) []byte {
	if kindOf(msg) != '{' {
		return msg
	}
	var buf [8]member
	ms, err := objectMembers(msg, buf[:0])
	if err != nil {
		return nil
	}
	// A message with a result is filtered as a response even if it also
	// names a method: a lenient client could read it either way.
	_, hasResult := lookupFold(ms, "result")
	if _, isRequest := lookupFold(ms, "method"); isRequest && !hasResult {
		return msg
	}
	id, ok := lookupFold(ms, "id")
	if !ok {
		return msg
	}
	if f.all {
		for _, method := range listMethodOrder {
			out, err := filterValidList(msg, method, func(name string) bool { return f.keep(method, name) })
			if err != nil {
				return f.refuse(id)
			}
			msg = out
		}
		return msg
	}
	method, ok := f.pending[IDKey(id)]
	if !ok {
		return msg
	}
	out, err := filterValidList(msg, method, func(name string) bool { return f.keep(method, name) })
	if err != nil {
		return f.refuse(id)
	}
	return out
}

// refuse replaces an unfilterable list response by an error with its id.
func (f *ListFilter) refuse(id []byte) []byte {
	f.refused = true
	return ErrorResponse(id, CodeInternalError, refusalMessage, nil)
}

// listMethodOrder is the list methods in a fixed order.
var listMethodOrder = []string{"tools/list", "prompts/list", "resources/list", "resources/templates/list"}
