package mcp

import "bytes"

// One-pass indexing of list responses. The validator (scan.go) checks the
// whole body as validateJSON does and, in the same pass, records in a
// listIndex where each message, its id and result, the list members of the
// result, their items and the items' names are. Filtering then only decides
// names and copies spans: nothing is scanned twice.

// listShape says where the items of a list result live and which member
// names an item.
type listShape struct {
	method      string
	items, name []byte
}

const numShapes = 4

// shapes are the list methods, in a fixed order.
var shapes = [numShapes]listShape{
	{"tools/list", []byte("tools"), []byte("name")},
	{"prompts/list", []byte("prompts"), []byte("name")},
	{"resources/list", []byte("resources"), []byte("uri")},
	{"resources/templates/list", []byte("resourceTemplates"), []byte("uriTemplate")},
}

// shapeOf returns the index in shapes of a list method, or -1.
func shapeOf(method string) int {
	for k := range shapes {
		if shapes[k].method == method {
			return k
		}
	}
	return -1
}

var (
	memberResult = []byte("result")
	memberID     = []byte("id")
	memberMethod = []byte("method")
)

// scanCtx says what a value is to the list index.
type scanCtx uint8

const (
	inNone     scanCtx = iota // not recorded
	inID                      // a message's id (recorded, validated plainly)
	inMethod                  // a message's method
	inName                    // an item's name
	inTop                     // the body: a message or a batch
	inBatch                   // a batch array, and each of its elements
	inMessage                 // a message object
	inResult                  // a message's result
	inListSlot                // + shape: a list member of a result
)

const (
	// lastPlain is the last context whose value is validated as inNone.
	lastPlain  = inName
	inList     = inListSlot + numShapes // + shape: a list member's array
	inItemSlot = inList + numShapes     // + shape: an element of that array
	inItem     = inItemSlot + numShapes // + shape: such an element's object
)

// span is a [start, end) range of the scanned body.
type span struct{ start, end int }

func (s span) of(b []byte) []byte { return b[s.start:s.end] }

// msgIndex is one JSON-RPC message of a scanned body.
type msgIndex struct {
	span
	object       bool // a JSON object (else left alone)
	hasID        bool
	hasMethod    bool
	hasResult    bool
	resultObject bool
	id           span
	result       span
	resultDepth  int // nesting the result value uses
	lists        [numShapes]listIndexed
	hit          *listEntry // the result equals this cached input
}

// listIndexed is a list member of a result.
type listIndexed struct {
	span
	present   bool
	array     bool
	nonObject bool // an element is not an object
	lo, hi    int  // its items, in listIndex.items
}

// itemIndex is one element of a list.
type itemIndex struct {
	span
	name    span
	hasName bool
	keep    bool // decided by the filter
}

// listIndex is the result of one scan. It is reused: scan resets it.
type listIndex struct {
	batch bool
	msgs  []msgIndex
	items []itemIndex
	names [][]byte // the validator's name stack, kept for reuse
	// cache, when set, is asked at each result whether its bytes equal a
	// cached input under key; a match is not scanned again.
	cache *ListCache
	key   listKey
}

// scan validates b (as validateJSON with MaxDepth) and indexes it.
func (ix *listIndex) scan(b []byte) error {
	ix.batch = false
	ix.msgs = ix.msgs[:0]
	ix.items = ix.items[:0]
	v := validator{b: b, maxDepth: MaxDepth, ix: ix, names: ix.names[:0]}
	v.ws()
	err := v.value(inTop)
	if err == nil {
		v.ws()
		if v.i != len(b) {
			err = errTrailingData
		}
	}
	clear(v.names[:cap(v.names)]) // they alias b: do not keep it alive
	ix.names = v.names[:0]
	return err
}

func (ix *listIndex) cur() *msgIndex { return &ix.msgs[len(ix.msgs)-1] }

// elemCtx is the context of the elements of an array in context ctx.
func elemCtx(ctx scanCtx) scanCtx {
	switch {
	case ctx == inBatch:
		return inBatch
	case ctx >= inList && ctx < inItemSlot:
		return ctx - inList + inItemSlot
	}
	return inNone
}

// indexed validates a value whose place the index records.
func (v *validator) indexed(ctx scanCtx) error {
	ix := v.ix
	c := v.b[v.i]
	switch {
	case ctx == inTop && c == '[':
		ix.batch = true
		return v.array(inBatch)
	case ctx == inTop || ctx == inBatch:
		ix.msgs = append(ix.msgs, msgIndex{span: span{start: v.i}})
		var err error
		if c == '{' {
			ix.cur().object = true
			err = v.object(inMessage)
		} else {
			err = v.value(inNone)
		}
		ix.cur().end = v.i
		return err
	case ctx == inResult:
		if c != '{' {
			return v.value(inNone)
		}
		ix.cur().resultObject = true
		return v.object(inResult)
	case ctx >= inListSlot && ctx < inList:
		l := &ix.cur().lists[ctx-inListSlot]
		l.present, l.array = true, c == '['
		if c != '[' {
			return v.value(inNone)
		}
		l.lo = len(ix.items)
		err := v.array(ctx - inListSlot + inList)
		l = &ix.cur().lists[ctx-inListSlot]
		l.hi = len(ix.items)
		return err
	case ctx >= inItemSlot && ctx < inItem:
		k := ctx - inItemSlot
		ix.items = append(ix.items, itemIndex{span: span{start: v.i}})
		var err error
		if c == '{' {
			err = v.object(k + inItem)
		} else {
			ix.cur().lists[k].nonObject = true
			err = v.value(inNone)
		}
		ix.items[len(ix.items)-1].end = v.i
		return err
	}
	return v.value(inNone)
}

// member validates the value of the member name of an object in context
// ctx (not inNone), recording it if the index wants it. Names are matched
// under case folding, as lookupFold does: a case-insensitive client reads
// "Tools" as the tool list, so it must be filtered too.
func (v *validator) member(ctx scanCtx, name []byte) error {
	ix := v.ix
	child := inNone
	switch {
	case ctx == inMessage:
		switch {
		case bytes.EqualFold(name, memberResult):
			return v.result()
		case bytes.EqualFold(name, memberID):
			child = inID
		case bytes.EqualFold(name, memberMethod):
			child = inMethod
		}
	case ctx == inResult:
		for k := range shapes {
			if bytes.EqualFold(name, shapes[k].items) {
				child = inListSlot + scanCtx(k)
				break
			}
		}
	case ctx >= inItem:
		if bytes.EqualFold(name, shapes[ctx-inItem].name) {
			child = inName
		}
	}
	start := v.i
	if err := v.value(child); err != nil {
		return err
	}
	at := span{start, v.i}
	switch {
	case child == inID:
		m := ix.cur()
		m.hasID, m.id = true, at
	case child == inMethod:
		ix.cur().hasMethod = true
	case child == inName:
		it := &ix.items[len(ix.items)-1]
		it.hasName, it.name = true, at
	case child >= inListSlot && child < inList:
		ix.cur().lists[child-inListSlot].span = at
	}
	return nil
}

// result validates a message's result member, or matches it against the
// cache: bytes equal to an input that was validated and filtered before
// need neither again. The match is exact (a byte comparison, not a hash),
// and the only context a value's validity depends on, its depth, is
// checked.
func (v *validator) result() error {
	ix := v.ix
	start := v.i
	if ix.cache != nil {
		if e := ix.cache.match(&ix.key, v.b[v.i:]); e != nil && v.depth+e.depth <= v.maxDepth {
			v.i += len(e.input)
			v.peak = max(v.peak, v.depth+e.depth)
			m := ix.cur()
			m.hasResult, m.resultObject, m.result, m.hit, m.resultDepth = true, true, span{start, v.i}, e, e.depth
			return nil
		}
	}
	outer := v.peak
	v.peak = v.depth
	err := v.value(inResult)
	m := ix.cur()
	m.hasResult, m.result, m.resultDepth = true, span{start, v.i}, v.peak-v.depth
	v.peak = max(outer, v.peak)
	return err
}
