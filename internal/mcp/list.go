package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
)

// IsListMethod reports whether method's result is a list that FilterList
// can filter.
func IsListMethod(method string) bool { return shapeOf(method) >= 0 }

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
// ErrUnfilterable. msg is read in one pass; the result is msg itself when
// nothing is removed, else a new slice.
func FilterList(msg []byte, method string, keep func(name string) bool) ([]byte, error) {
	k := shapeOf(method)
	if k < 0 {
		return nil, fmt.Errorf("%s is not a list method", method)
	}
	s := getFilterState()
	defer s.release()
	if err := s.ix.scan(msg); err != nil || s.ix.batch || !s.ix.msgs[0].object {
		return nil, ErrUnfilterable
	}
	w := rewriter{src: msg}
	if ok, _ := s.filterMessage(&w, &s.ix.msgs[0], 1<<k, func(_, name string) bool { return keep(name) }); !ok {
		return nil, ErrUnfilterable
	}
	return w.finish(), nil
}

// filterState is the reusable working memory of a filter: the index of the
// last scan and an output buffer.
type filterState struct {
	ix  listIndex
	out []byte
}

var filterStates = sync.Pool{New: func() any { return new(filterState) }}

// maxPooledState keeps an occasional huge list from pinning its memory.
const maxPooledState = 1 << 20

func getFilterState() *filterState { return filterStates.Get().(*filterState) }

func (s *filterState) release() {
	if cap(s.out) > maxPooledState || cap(s.ix.items) > maxPooledState/32 {
		return
	}
	s.out = s.out[:0]
	clear(s.ix.msgs[:cap(s.ix.msgs)]) // they point at cache entries, which may be evicted
	s.ix.cache = nil
	s.ix.key = listKey{}
	filterStates.Put(s)
}

// rewriter copies src to out with some spans replaced, in order. Nothing is
// copied until the first replacement.
type rewriter struct {
	src, out []byte
	pos      int
	changed  bool
}

// copyTo copies src up to i and marks the output changed.
func (w *rewriter) copyTo(i int) {
	if w.out == nil {
		w.out = make([]byte, 0, len(w.src)) // filtering mostly removes
	}
	w.out = append(w.out, w.src[w.pos:i]...)
	w.pos = i
	w.changed = true
}

// replace replaces src[a:b] (a ≥ the last end) by r.
func (w *rewriter) replace(a, b int, r []byte) {
	w.copyTo(a)
	w.out = append(w.out, r...)
	w.pos = b
}

func (w *rewriter) finish() []byte {
	if !w.changed {
		return w.src
	}
	w.out = append(w.out, w.src[w.pos:]...)
	w.pos = len(w.src)
	return w.out
}

// filterMessage filters the lists of the shapes in mask in the result of
// m. It reports false when they cannot be filtered (the result or a list
// has the wrong type). When items are removed it writes the message's new
// result through w and returns it (an alias of w.out, valid until w grows);
// otherwise w is left alone and filtered is nil.
func (s *filterState) filterMessage(w *rewriter, m *msgIndex, mask uint8, keep func(method, name string) bool) (ok bool, filtered []byte) {
	if !m.hasResult {
		return true, nil // an error response carries no items
	}
	if !m.resultObject {
		return false, nil
	}
	items := s.ix.items
	var removed [numShapes]int
	changed := false
	for k := range shapes {
		l := &m.lists[k]
		if mask&(1<<k) == 0 || !l.present {
			continue
		}
		if !l.array || l.nonObject {
			return false, nil
		}
		for i := l.lo; i < l.hi; i++ {
			it := &items[i]
			it.keep = false
			if it.hasName {
				if name, isString := unquote(it.name.of(w.src)); isString {
					it.keep = keep(shapes[k].method, name)
				}
			}
			if !it.keep {
				removed[k]++
				changed = true
			}
		}
	}
	if !changed {
		return true, nil
	}
	// Splice the kept items of each changed list, in order of position.
	w.copyTo(m.result.start)
	start := len(w.out)
	for {
		next := -1
		for k := range shapes {
			if removed[k] > 0 && (next < 0 || m.lists[k].start < m.lists[next].start) {
				next = k
			}
		}
		if next < 0 {
			break
		}
		removed[next] = 0
		l := &m.lists[next]
		w.copyTo(l.start + 1) // through '['
		first := true
		for _, it := range items[l.lo:l.hi] {
			if !it.keep {
				continue
			}
			if !first {
				w.out = append(w.out, ',')
			}
			w.out = append(w.out, it.of(w.src)...)
			first = false
		}
		w.pos = l.end - 1 // from ']'
	}
	w.copyTo(m.result.end)
	return true, w.out[start:]
}

// ListFilter filters the responses to the list requests of one client
// message, matching responses to requests by id (Decode guarantees that the
// requests of a batch have distinct ids), or every list-shaped response of a
// stream (NewStreamListFilter).
type ListFilter struct {
	// The list requests: the usual one inline (no key to compute, no map
	// to allocate), a batch's several in pending (IDKey → list method).
	oneID     []byte
	oneMethod string
	pending   map[string]string
	all       bool // filter every response by the shape of its result
	keep      func(method, name string) bool
	msg       *Message // the client's message (nil on a stream), for Refusal
	refused   bool     // a list response was replaced by an error
	// method is the one list method asked for ("" if several), the only
	// one whose results the cache may hold for this filter.
	method string
	cache  *ListCache
	key    listKey
	s      *filterState
}

// NewStreamListFilter returns a filter for a stream that answers no request
// of its own: the standalone GET stream and resumed streams of MCP
// 2025-03-26 to 2025-11-25, on which a response to an earlier request may be
// replayed. Since no request says which responses are lists, every response
// whose result holds "tools", "prompts", "resources" or
// "resourceTemplates" is filtered as the corresponding list.
func NewStreamListFilter(keep func(method, name string) bool) *ListFilter {
	return &ListFilter{all: true, keep: keep, method: streamMethod}
}

// streamMethod is the cache's method for a stream filter's results, which
// are filtered by every list shape at once.
const streamMethod = "*"

// NewListFilter returns a filter for the list requests in m, or nil when m
// has none. keep receives the list method and an item's name; it should be
// the policy's Visible decision for the caller.
func NewListFilter(m *Message, keep func(method, name string) bool) *ListFilter {
	var f *ListFilter
	for _, c := range m.Calls {
		if c.IsResponse || c.IsNotification || !IsListMethod(c.Method) {
			continue
		}
		switch {
		case f == nil:
			f = &ListFilter{oneID: c.ID, oneMethod: c.Method, keep: keep, msg: m, method: c.Method}
			continue
		case f.pending == nil:
			f.pending = map[string]string{IDKey(f.oneID): f.oneMethod}
		}
		if c.Method != f.method {
			f.method = ""
		}
		f.pending[IDKey(c.ID)] = c.Method
	}
	return f
}

// UseCache lets f share filtered results through c. generation and scope
// must identify f's keep function exactly: two filters whose keep may
// differ on some (method, name) must not share both (see
// policy.ListView). A result is then taken from the cache only when the
// backend's bytes equal, byte for byte, those it was computed from.
func (f *ListFilter) UseCache(c *ListCache, generation uint64, scope string) {
	if c == nil || f.method == "" {
		return // a batch of different lists: nothing to key the results by
	}
	f.cache = c
	f.key = listKey{gen: generation, scope: scope, method: f.method}
}

// Release returns f's working memory for reuse. The last result of Rewrite
// must not be used afterwards.
func (f *ListFilter) Release() {
	if f.s != nil {
		f.s.release()
		f.s = nil
	}
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
//
// msg is validated and indexed in one pass. The result is msg itself when
// nothing changed; otherwise it lives in f's memory and is valid until the
// next Rewrite or Release.
func (f *ListFilter) Rewrite(msg []byte) []byte {
	if f.s == nil {
		f.s = getFilterState()
	}
	s := f.s
	s.ix.cache, s.ix.key = f.cache, f.key
	if err := s.ix.scan(msg); err != nil {
		return nil
	}
	w := rewriter{src: msg, out: s.out[:0]}
	for i := range s.ix.msgs {
		f.rewriteOne(&w, &s.ix.msgs[i])
	}
	out := w.finish()
	s.out = w.out
	return out
}

func (f *ListFilter) rewriteOne(w *rewriter, m *msgIndex) {
	// A message with a result is filtered as a response even if it also
	// names a method: a lenient client could read it either way.
	if !m.object || m.hasMethod && !m.hasResult || !m.hasID {
		return
	}
	mask := uint8(1<<numShapes - 1)
	if !f.all {
		method, ok := f.methodFor(m.id.of(w.src))
		if !ok {
			return
		}
		mask = 1 << shapeOf(method)
	}
	if m.hit != nil {
		// The result equals an input filtered before under f.key (the
		// same keep, list method and policy generation).
		if m.hit.output != nil {
			w.replace(m.result.start, m.result.end, m.hit.output)
		}
		return
	}
	ok, filtered := f.s.filterMessage(w, m, mask, f.keep)
	if !ok {
		f.refused = true
		w.replace(m.start, m.end, ErrorResponse(m.id.of(w.src), CodeInternalError, refusalMessage, nil))
		return
	}
	if f.cache != nil && m.hasResult && m.hasList(mask) {
		f.cache.store(&f.key, m.result.of(w.src), filtered, m.resultDepth)
	}
}

// hasList reports whether m's result has a list member of a shape in mask:
// only those results are worth keeping (a stream also replays others).
func (m *msgIndex) hasList(mask uint8) bool {
	for k := range m.lists {
		if mask&(1<<k) != 0 && m.lists[k].present {
			return true
		}
	}
	return false
}

// methodFor returns the list method of the pending request with id, without
// allocating for the usual ids (integers, strings without escapes).
func (f *ListFilter) methodFor(id []byte) (string, bool) {
	if f.pending == nil {
		// One request: the same bytes are the same id; other spellings of
		// it (1.0 for 1, say) are compared as IDKey compares them.
		if bytes.Equal(id, f.oneID) || IDKey(id) == IDKey(f.oneID) {
			return f.oneMethod, true
		}
		return "", false
	}
	var m string
	var ok bool
	switch {
	case kindOf(id) == '"' && bytes.IndexByte(id, '\\') < 0:
		m, ok = f.pending[string(id[1:len(id)-1])]
	case isCanonicalInt(id):
		m, ok = f.pending[string(id)]
	default:
		m, ok = f.pending[IDKey(id)]
	}
	return m, ok
}

// isCanonicalInt reports whether a JSON number is an integer that IDKey
// keeps as it is: digits (JSON has no leading zeros) with an optional
// minus, not "-0", short enough for an int64.
func isCanonicalInt(v []byte) bool {
	if len(v) == 0 || len(v) > 18 {
		return false
	}
	d := v
	if d[0] == '-' {
		d = d[1:]
		if len(d) == 0 || d[0] == '0' {
			return false
		}
	}
	for _, c := range d {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(d) > 0
}
