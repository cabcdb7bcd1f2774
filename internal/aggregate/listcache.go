package aggregate

import (
	"encoding/json"
	"slices"
	"sync"
	"sync/atomic"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// listKind is one of the lists a backend offers.
type listKind int

const (
	kindTools listKind = iota
	kindPrompts
	kindResources
	kindTemplates
	numKinds
)

var kindMethods = [numKinds]string{"tools/list", "prompts/list", "resources/list", "resources/templates/list"}

// Bounds of the per-session list caches.
const (
	// maxCachedPages bounds the pages of one list kept per backend session
	// (one per backend cursor).
	maxCachedPages = 64
	// maxCachedItems bounds the items of one list kept per backend session;
	// a longer list is asked for on every client list.
	maxCachedItems = maxTracked
	// maxMerged bounds the merged pages kept per list kind and client
	// session (first pages and later ones, and the views of a caller whose
	// roles changed).
	maxMerged = 8
	// maxKeptItems bounds the items kept by all the sessions of an
	// endpoint, backend pages and merged pages together (about 1000 client
	// sessions of two 100-tool backends): past it, lists are asked for and
	// merged as without a cache until sessions end or lists change.
	maxKeptItems = 400_000
)

// stamps numbers every page stored, so that a merged page names exactly
// the backend pages it was made of.
var stamps atomic.Uint64

// pageCache keeps one backend session's list pages as the backend answered
// them (unfiltered), by list kind and backend cursor, so that a client's
// list does not ask and decode every backend's list again: the SDK's
// ClientSession decodes each tool and re-encodes its input schema to check
// its x-mcp-header annotations, the bulk of an uncached merged list.
//
// A list is kept only if the backend declared listChanged for it in its
// initialize answer (MCP 2025-11-25, server/tools "Capabilities"): then its
// notifications/…/list_changed drops it (invalidate). A backend that did
// not declare it sends no such notification, so nothing would tell the
// cache that its list changed: its lists are asked for every time.
type pageCache struct {
	budget *atomic.Int64 // the endpoint's items kept (maxKeptItems)

	mu    sync.Mutex
	cs    *sdk.ClientSession // the backend session the pages come from
	gen   [numKinds]uint64   // bumped by list_changed: a fetch begun before is not kept
	pages [numKinds]map[string]cachedPage
	items [numKinds]int
	ended bool // the session ended: nothing more is kept
}

type cachedPage struct {
	items any // []T of the kind
	next  string
	stamp uint64
}

// get returns the page of kind at cursor of backend session cs, if kept.
func (c *pageCache) get(cs *sdk.ClientSession, k listKind, cursor string) (cachedPage, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cs == nil || c.cs != cs {
		return cachedPage{}, false
	}
	p, ok := c.pages[k][cursor]
	return p, ok
}

// begin returns the generation a fetch of kind starts under, for store.
func (c *pageCache) begin(k listKind) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen[k]
}

// store keeps a page of n items fetched from cs under generation gen, and
// returns its stamp, or 0 when it is not kept: the list changed since the
// fetch began, or a bound is reached. The caller checks that the backend
// declared listChanged for the list.
func (c *pageCache) store(cs *sdk.ClientSession, k listKind, gen uint64, cursor string, items any, n int, next string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return 0
	}
	if c.cs != cs { // a new backend session: what was kept came from another
		c.dropLocked(kindTools, kindPrompts, kindResources, kindTemplates)
		c.cs = cs
	}
	if gen != c.gen[k] || len(c.pages[k]) >= maxCachedPages || c.items[k]+n > maxCachedItems {
		return 0
	}
	if c.budget.Add(int64(n)) > maxKeptItems {
		c.budget.Add(-int64(n))
		return 0
	}
	if c.pages[k] == nil {
		c.pages[k] = map[string]cachedPage{}
	}
	if old, ok := c.pages[k][cursor]; ok {
		return old.stamp // stored meanwhile by a concurrent list
	}
	p := cachedPage{items: items, next: next, stamp: stamps.Add(1)}
	c.pages[k][cursor] = p
	c.items[k] += n
	return p.stamp
}

// invalidate drops the kept pages of kind, on the backend's list_changed.
func (c *pageCache) invalidate(kinds ...listKind) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range kinds {
		c.gen[k]++
	}
	c.dropLocked(kinds...)
}

// clear drops every kept page (the session ended).
func (c *pageCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(kindTools, kindPrompts, kindResources, kindTemplates)
	c.cs, c.ended = nil, true
}

// dropLocked drops the pages of kinds and gives their items back to the
// endpoint's budget; c.mu is held.
func (c *pageCache) dropLocked(kinds ...listKind) {
	for _, k := range kinds {
		c.budget.Add(-int64(c.items[k]))
		c.pages[k], c.items[k] = nil, 0
	}
}

// declaresListChanged reports whether the backend of cs promised
// list_changed notifications for kind.
func declaresListChanged(cs *sdk.ClientSession, k listKind) bool {
	ir := cs.InitializeResult()
	if ir == nil || ir.Capabilities == nil {
		return false
	}
	c := ir.Capabilities
	switch k {
	case kindTools:
		return c.Tools != nil && c.Tools.ListChanged
	case kindPrompts:
		return c.Prompts != nil && c.Prompts.ListChanged
	default:
		return c.Resources != nil && c.Resources.ListChanged
	}
}

// mergedCache keeps a client session's merged pages: filtered for the
// caller and renamed, so that a list whose backend pages are all kept (and
// whose caller's views are unchanged) is answered without filtering again.
// An entry names everything its result depends on: the policy generation,
// the caller's view key at every backend (policy.ListView.Key, which
// changes with the caller's roles), the backends the caller may use, the
// client's cursor and the stamps of the backend pages.
type mergedCache struct {
	budget *atomic.Int64 // the endpoint's items kept (maxKeptItems)

	mu      sync.Mutex
	entries [numKinds][]*mergedEntry // newest last
	ended   bool                     // the session ended: nothing more is kept
}

type mergedEntry struct {
	gen     uint64
	cursor  string
	allowed uint64
	keys    []string
	stamps  []uint64
	result  any // []T of the kind
	n       int // items in result
	next    string
}

func (e *mergedEntry) is(gen uint64, cursor string, allowed uint64, keys []string, stamps []uint64) bool {
	return e.gen == gen && e.cursor == cursor && e.allowed == allowed && slices.Equal(e.keys, keys) && slices.Equal(e.stamps, stamps)
}

func (m *mergedCache) get(k listKind, gen uint64, cursor string, allowed uint64, keys []string, stamps []uint64) (*mergedEntry, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.entries[k] {
		if e.is(gen, cursor, allowed, keys, stamps) {
			return e, true
		}
	}
	return nil, false
}

func (m *mergedCache) put(k listKind, e *mergedEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ended {
		return
	}
	es := m.entries[k]
	for _, o := range es {
		if o.is(e.gen, e.cursor, e.allowed, e.keys, e.stamps) {
			return
		}
	}
	if len(es) >= maxMerged {
		m.budget.Add(-int64(es[0].n))
		es = slices.Delete(es, 0, 1)
	}
	if m.budget.Add(int64(e.n)) > maxKeptItems {
		m.budget.Add(-int64(e.n))
		m.entries[k] = es
		return
	}
	m.entries[k] = append(es, e)
}

// clear drops every merged page (the session ended).
func (m *mergedCache) clear() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, es := range m.entries {
		for _, e := range es {
			m.budget.Add(-int64(e.n))
		}
		m.entries[k] = nil
	}
	m.ended = true
}

// rawSchemas encodes the tools' schemas once, as the client session
// decoded them (maps), so that every answer that lists them copies the
// bytes instead of encoding the maps again (sorting their keys).
func rawSchemas(tools []*sdk.Tool) {
	for i, t := range tools {
		if t == nil {
			continue
		}
		in, iok := raw(t.InputSchema)
		out, ook := raw(t.OutputSchema)
		if iok && ook {
			continue
		}
		c := *t
		c.InputSchema, c.OutputSchema = in, out
		tools[i] = &c
	}
}

// raw returns v encoded (ok: v needed no encoding, or failed to encode and
// is left as it is, for the SDK to report as before).
func raw(v any) (any, bool) {
	switch v.(type) {
	case nil, json.RawMessage:
		return v, true
	}
	b, err := json.Marshal(v)
	if err != nil {
		return v, true
	}
	return json.RawMessage(b), false
}
