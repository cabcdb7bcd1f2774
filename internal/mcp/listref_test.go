package mcp

// The single-message list filter as it was before the one-pass scanner
// (validate, then navigate with objectMembers/arrayElements), kept as the
// oracle of FuzzFilterListDifferential and as the "before" of the
// benchmarks in list_bench_test.go.

import (
	"bytes"
	"fmt"
)

// refShape says where the items of a list result live and which member
// names an item.
type refShape struct{ items, name string }

var refShapes = map[string]refShape{
	"tools/list":               {"tools", "name"},
	"prompts/list":             {"prompts", "name"},
	"resources/list":           {"resources", "uri"},
	"resources/templates/list": {"resourceTemplates", "uriTemplate"},
}

// refFilterList is FilterList as it was.
func refFilterList(msg []byte, method string, keep func(name string) bool) ([]byte, error) {
	if err := validateJSON(msg, MaxDepth); err != nil {
		return nil, ErrUnfilterable
	}
	return refFilterValidList(msg, method, keep)
}

// filterValidList is FilterList for a message already checked by
// validateJSON (ListFilter.Rewrite validates each message once).
func refFilterValidList(msg []byte, method string, keep func(name string) bool) ([]byte, error) {
	shape, ok := refShapes[method]
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
	start := refOffsetIn(msg, arr)
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
func refOffsetIn(b, sub []byte) int {
	return cap(b) - cap(sub)
}

// refListFilter is ListFilter.Rewrite as it was.
type refListFilter struct {
	pending map[string]string
	all     bool
	keep    func(method, name string) bool
	refused bool
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
func (f *refListFilter) Rewrite(msg []byte) []byte {
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

func (f *refListFilter) rewriteOne(msg []byte) []byte {
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
		for _, method := range refMethodOrder {
			out, err := refFilterValidList(msg, method, func(name string) bool { return f.keep(method, name) })
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
	out, err := refFilterValidList(msg, method, func(name string) bool { return f.keep(method, name) })
	if err != nil {
		return f.refuse(id)
	}
	return out
}

// refuse replaces an unfilterable list response by an error with its id.
func (f *refListFilter) refuse(id []byte) []byte {
	f.refused = true
	return ErrorResponse(id, CodeInternalError, refusalMessage, nil)
}

var refMethodOrder = []string{"tools/list", "prompts/list", "resources/list", "resources/templates/list"}
