package aggregate

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/credential"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/policy"
	"github.com/mcpgate/mcpgate/internal/proxy"
)

// cursor is the position of a merged list walk: one position per backend,
// so that each page asks every unfinished backend for its next page.
type cursor struct {
	N    int      `json:"n"` // the endpoint's backend count, to refuse a cursor of another shape
	Pos  []string `json:"p"` // each backend's own cursor
	Done uint64   `json:"d"` // backends finished (or left out) in this walk
}

// maxCursor bounds a client's cursor.
const maxCursor = 16 << 10

func (s *session) decodeCursor(c string) (*cursor, error) {
	n := len(s.conns)
	if c == "" {
		return &cursor{N: n, Pos: make([]string, n)}, nil
	}
	bad := &jsonrpc.Error{Code: codeInvalidParams, Message: "invalid cursor"}
	if len(c) > maxCursor {
		return nil, bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return nil, bad
	}
	var cur cursor
	if json.Unmarshal(raw, &cur) != nil || cur.N != n || len(cur.Pos) != n {
		return nil, bad
	}
	return &cur, nil
}

func (c *cursor) encode() string {
	if c.Done == 1<<c.N-1 || c.N == 64 && c.Done == ^uint64(0) {
		return ""
	}
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

// list merges one page of every unfinished backend, in backend order.
// fetch asks backend i for the page at its cursor; keep filters and
// renames an item (false drops it).
//
// A backend page kept by the backend session (pageCache) is not asked for
// again; when every page is kept, the merged page the session made of them
// for the same views (mergedCache) is answered as it is.
func list[T any](l *listing, ctx context.Context, rq *caller, k listKind, c string, fetch func(context.Context, *sdk.ClientSession, string) ([]T, string, error), keep func(int, T) (T, bool)) ([]T, string, error) {
	cur, err := l.s.decodeCursor(c)
	if err != nil {
		return nil, "", err
	}
	s, engine, p := l.s, l.engine, l.p
	n := len(s.conns)
	pages := make([][]T, n)
	next := make([]string, n)
	answered := make([]bool, n)
	stamps := make([]uint64, n)
	var allowed, kept uint64
	for i := range n {
		if cur.Done&(1<<i) != 0 || !s.mayUse(engine, p, i) {
			continue
		}
		allowed |= 1 << i
		if pg, ok := s.conns[i].pages.get(s.conns[i].cs.Load(), k, cur.Pos[i]); ok {
			pages[i], next[i], answered[i], stamps[i] = pg.items.([]T), pg.next, true, pg.stamp
			kept |= 1 << i
		}
	}
	var keys []string
	var gen uint64
	if kept == allowed {
		gen, keys = s.viewKeys(engine, p, allowed)
		if m, ok := s.merged.get(k, gen, c, allowed, keys, stamps); ok {
			return m.result.([]T), m.next, nil
		}
	}
	if kept != allowed {
		s.each(ctx, rq, kindMethods[k], ^allowed|kept, func(ctx context.Context, i int, cs *sdk.ClientSession) error {
			gen := s.conns[i].pages.begin(k)
			items, nc, err := fetch(ctx, cs, cur.Pos[i])
			if err != nil {
				return err
			}
			if declaresListChanged(cs, k) {
				stamps[i] = s.conns[i].pages.store(cs, k, gen, cur.Pos[i], items, len(items), nc)
			}
			pages[i], next[i], answered[i] = items, nc, true
			return nil
		}, nil)
	}
	out := []T{}
	for i := range n {
		if cur.Done&(1<<i) != 0 {
			continue
		}
		if !answered[i] || next[i] == "" {
			cur.Done |= 1 << i // finished, or down: left out of this walk
		}
		cur.Pos[i] = next[i]
		for _, it := range pages[i] {
			if v, ok := keep(i, it); ok {
				out = append(out, v)
			}
		}
	}
	nc := cur.encode()
	if keys != nil || allStamped(allowed, stamps) {
		if keys == nil {
			gen, keys = s.viewKeys(engine, p, allowed)
		}
		s.merged.put(k, &mergedEntry{gen: gen, cursor: c, allowed: allowed, keys: keys, stamps: stamps, result: out, n: len(out), next: nc})
	}
	return out, nc, nil
}

// viewKeys returns the policy generation and p's view key at every backend
// in allowed: what a merged page's filtering depends on.
func (s *session) viewKeys(engine *policy.Engine, p *identity.Principal, allowed uint64) (uint64, []string) {
	var gen uint64
	keys := make([]string, len(s.conns))
	for i, b := range s.e.cfg.Backends {
		if allowed&(1<<i) != 0 {
			v := engine.ListView(p, b)
			gen, keys[i] = v.Generation(), v.Key()
		}
	}
	return gen, keys
}

// allStamped reports whether every backend in allowed answered a page that
// is kept.
func allStamped(allowed uint64, stamps []uint64) bool {
	for i, st := range stamps {
		if allowed&(1<<i) != 0 && st == 0 {
			return false
		}
	}
	return true
}

// listing is one merged list's policy: one engine and caller for the whole
// list, the caller's views of the backends resolved on the first decision
// (a merged page answered from the session's cache needs none), once per
// backend and not per item.
type listing struct {
	s      *session
	engine *policy.Engine
	p      *identity.Principal
	views  []policy.ListView
}

func (s *session) listing() *listing {
	return &listing{s: s, engine: s.e.policy.Load(), p: s.principal()}
}

// visible is the policy's list decision for backend i's item name.
func (l *listing) visible(method string, i int, name string) bool {
	if l.views == nil {
		l.views = make([]policy.ListView, len(l.s.e.cfg.Backends))
		for j, b := range l.s.e.cfg.Backends {
			l.views[j] = l.engine.ListView(l.p, b)
		}
	}
	return l.views[i].Visible(method, name)
}

func (s *session) listTools(ctx context.Context, rq *caller, p *sdk.ListToolsParams) (sdk.Result, error) {
	l := s.listing()
	seen := map[string]bool{}
	tools, next, err := list(l, ctx, rq, kindTools, cursorOf(p), func(ctx context.Context, cs *sdk.ClientSession, c string) ([]*sdk.Tool, string, error) {
		r, err := cs.ListTools(ctx, &sdk.ListToolsParams{Cursor: c})
		if err != nil {
			return nil, "", err
		}
		rawSchemas(r.Tools)
		return r.Tools, r.NextCursor, nil
	}, func(i int, t *sdk.Tool) (*sdk.Tool, bool) {
		if t == nil || !l.visible("tools/list", i, t.Name) {
			return nil, false
		}
		out := *t
		name, ok := s.e.names.exposeChecked(i, t.Name)
		if !ok || seen[name] {
			s.e.log.Warn("tool name collision: left out", "backend", s.e.cfg.Backends[i], "tool", t.Name, "exposed", name)
			return nil, false
		}
		out.Name = name
		seen[out.Name] = true
		return &out, true
	})
	if err != nil {
		return nil, err
	}
	if tools == nil {
		tools = []*sdk.Tool{}
	}
	return &sdk.ListToolsResult{Tools: tools, NextCursor: next}, nil
}

func (s *session) listPrompts(ctx context.Context, rq *caller, p *sdk.ListPromptsParams) (sdk.Result, error) {
	l := s.listing()
	prompts, next, err := list(l, ctx, rq, kindPrompts, cursorOf(p), func(ctx context.Context, cs *sdk.ClientSession, c string) ([]*sdk.Prompt, string, error) {
		r, err := cs.ListPrompts(ctx, &sdk.ListPromptsParams{Cursor: c})
		if err != nil {
			return nil, "", err
		}
		return r.Prompts, r.NextCursor, nil
	}, func(i int, t *sdk.Prompt) (*sdk.Prompt, bool) {
		if t == nil || !l.visible("prompts/list", i, t.Name) {
			return nil, false
		}
		out := *t
		name, ok := s.e.names.exposeChecked(i, t.Name)
		if !ok {
			s.e.log.Warn("prompt name collision: left out", "backend", s.e.cfg.Backends[i], "prompt", t.Name, "exposed", name)
			return nil, false
		}
		out.Name = name
		return &out, true
	})
	if err != nil {
		return nil, err
	}
	if prompts == nil {
		prompts = []*sdk.Prompt{}
	}
	return &sdk.ListPromptsResult{Prompts: prompts, NextCursor: next}, nil
}

func (s *session) listResources(ctx context.Context, rq *caller, p *sdk.ListResourcesParams) (sdk.Result, error) {
	l := s.listing()
	res, next, err := list(l, ctx, rq, kindResources, cursorOf(p), func(ctx context.Context, cs *sdk.ClientSession, c string) ([]*sdk.Resource, string, error) {
		r, err := cs.ListResources(ctx, &sdk.ListResourcesParams{Cursor: c})
		if err != nil {
			return nil, "", err
		}
		return r.Resources, r.NextCursor, nil
	}, func(i int, r *sdk.Resource) (*sdk.Resource, bool) {
		if r == nil || !l.visible("resources/list", i, r.URI) || !s.learn(r.URI, i) {
			return nil, false
		}
		return r, true
	})
	if err != nil {
		return nil, err
	}
	if res == nil {
		res = []*sdk.Resource{}
	}
	return &sdk.ListResourcesResult{Resources: res, NextCursor: next}, nil
}

func (s *session) listTemplates(ctx context.Context, rq *caller, p *sdk.ListResourceTemplatesParams) (sdk.Result, error) {
	l := s.listing()
	res, next, err := list(l, ctx, rq, kindTemplates, cursorOf(p), func(ctx context.Context, cs *sdk.ClientSession, c string) ([]*sdk.ResourceTemplate, string, error) {
		r, err := cs.ListResourceTemplates(ctx, &sdk.ListResourceTemplatesParams{Cursor: c})
		if err != nil {
			return nil, "", err
		}
		return r.ResourceTemplates, r.NextCursor, nil
	}, func(i int, r *sdk.ResourceTemplate) (*sdk.ResourceTemplate, bool) {
		if r == nil || !l.visible("resources/templates/list", i, r.URITemplate) || !s.learnTemplate(r.URITemplate, i) {
			return nil, false
		}
		return r, true
	})
	if err != nil {
		return nil, err
	}
	if res == nil {
		res = []*sdk.ResourceTemplate{}
	}
	return &sdk.ListResourceTemplatesResult{ResourceTemplates: res, NextCursor: next}, nil
}

// cursorOf returns the cursor of a list request's params (nil params: none).
func cursorOf[P interface {
	*sdk.ListToolsParams | *sdk.ListPromptsParams | *sdk.ListResourcesParams | *sdk.ListResourceTemplatesParams
}](p P) string {
	switch v := any(p).(type) {
	case *sdk.ListToolsParams:
		if v != nil {
			return v.Cursor
		}
	case *sdk.ListPromptsParams:
		if v != nil {
			return v.Cursor
		}
	case *sdk.ListResourcesParams:
		if v != nil {
			return v.Cursor
		}
	case *sdk.ListResourceTemplatesParams:
		if v != nil {
			return v.Cursor
		}
	}
	return ""
}

// learn records that backend i serves uri. A URI two backends list is a
// collision: the first keeps it, and the other's copy is left out.
func (s *session) learn(uri string, i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j, ok := s.resources[uri]; ok {
		if j != i {
			s.e.log.Warn("resource URI listed by two backends; the first keeps it", "uri", uri,
				"backend", s.e.cfg.Backends[j], "other", s.e.cfg.Backends[i])
		}
		return j == i
	}
	if len(s.resources) < maxTracked {
		s.resources[uri] = i
	}
	return true
}

func (s *session) learnTemplate(tmpl string, i int) bool {
	prefix, _, _ := strings.Cut(tmpl, "{")
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.templates {
		if t.prefix == prefix {
			return t.backend == i
		}
	}
	if len(s.templates) < maxTracked && prefix != "" {
		s.templates = append(s.templates, uriTemplate{prefix, i})
	}
	return true
}

// resourceBackend routes a resource URI: a URI this session listed, else
// the longest matching template prefix, else the endpoint's default
// backend.
func (s *session) resourceBackend(uri string) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.resources[uri]; ok {
		return i, true
	}
	best, bi := -1, 0
	for _, t := range s.templates {
		if strings.HasPrefix(uri, t.prefix) && len(t.prefix) > best {
			best, bi = len(t.prefix), t.backend
		}
	}
	if best >= 0 {
		return bi, true
	}
	return s.e.defaultResourceBackend()
}

// defaultResourceBackend is where a URI no list named goes: the only
// backend, or the unprefixed one; otherwise nowhere.
func (e *Endpoint) defaultResourceBackend() (int, bool) {
	if len(e.backends) == 1 {
		return 0, true
	}
	return e.names.unprefixed, e.names.unprefixed >= 0
}

// call runs f on backend i for a client request of rq, bounded by
// call_timeout, in a span of its own; a transport failure drops the backend
// session and answers a JSON-RPC error that names the backend. A failure or
// timeout is recorded for the request's audit record.
func call[R any](s *session, ctx context.Context, rq *caller, method string, i int, token any, f func(context.Context, *sdk.ClientSession) (R, error)) (R, error) {
	var zero R
	ctx, span := s.e.startSpan(ctx, rq, i, method)
	defer span.End()
	ctx, cancel := context.WithTimeout(ctx, s.e.cfg.CallTimeout)
	defer cancel()
	if actsForUser[method] && s.e.backends[i].NeedsLink() {
		var link *jsonrpc.Error
		var err error
		ctx, link, err = s.linkedCredential(ctx, rq, i)
		if link != nil {
			return zero, link // the user's answer to give, not a backend failure
		}
		if err != nil {
			s.e.log.Warn("backend credential unavailable", "backend", s.e.cfg.Backends[i], "err", err)
			return zero, s.e.failed(rq, span, i, fmt.Errorf("%w: %w", errCredential, err), true)
		}
	}
	octx, ocancel := context.WithTimeout(ctx, s.e.cfg.Timeout)
	cs, err := s.conn(octx, i)
	ocancel()
	if err != nil {
		s.e.log.Warn("backend unavailable", "backend", s.e.cfg.Backends[i], "err", err)
		return zero, s.e.failed(rq, span, i, err, true)
	}
	defer s.track(i, ctx, token)()
	r, err := f(ctx, cs)
	s.conns[i].settle()
	if err != nil && !isRPCError(err) {
		s.e.log.Warn("backend call failed", "backend", s.e.cfg.Backends[i], "err", err)
		if cerr := ctx.Err(); cerr != nil {
			return zero, s.e.failed(rq, span, i, cerr, true) // slow, or the client cancelled: the session stays
		}
		s.drop(i, cs)
		if cerr := s.credentialFailure(ctx, i); cerr != nil {
			err = cerr
		}
		return zero, s.e.failed(rq, span, i, err, true)
	}
	return r, err
}

// actsForUser are the requests that act for the user at a backend, as on
// a backend's own path (proxy.Hop.ActsForUser).
var actsForUser = map[string]bool{"tools/call": true, "prompts/get": true, "resources/read": true}

// linkedCredential obtains linked_token backend i's credential for a
// request of rq that acts for the user, before the backend is called (the
// backend session's own requests, initialize and lists, go without it
// until the account is linked). Without a linked account the answer is
// link, the URL elicitation required error with the link URL, the same as
// on the backend's own path; the returned context carries the token to
// the backend session's transport.
func (s *session) linkedCredential(ctx context.Context, rq *caller, i int) (_ context.Context, link *jsonrpc.Error, _ error) {
	p, tok := s.caller()
	if rq != nil {
		p, tok = rq.p, rq.token
	}
	b := s.e.backends[i]
	h, err := b.ActingCredential(ctx, p, tok)
	var lr *credential.LinkRequiredError
	if errors.As(err, &lr) {
		msg, data := proxy.LinkRequired(s.e.cfg.Backends[i], lr)
		raw, err := json.Marshal(data)
		if err != nil {
			return ctx, nil, err
		}
		return ctx, &jsonrpc.Error{Code: proxy.CodeURLElicitationRequired, Message: msg, Data: raw}, nil
	}
	if err != nil {
		return ctx, nil, err
	}
	return proxy.WithCredential(ctx, b, h), nil, nil
}

func (s *session) callTool(ctx context.Context, rq *caller, p *sdk.CallToolParamsRaw) (sdk.Result, error) {
	t, ok := s.e.names.resolve(p.Name)
	if !ok {
		return nil, &jsonrpc.Error{Code: codeInvalidParams, Message: "unknown tool " + p.Name}
	}
	return call(s, ctx, rq, "tools/call", t.backend, progressKey(p.GetProgressToken()), func(ctx context.Context, cs *sdk.ClientSession) (*sdk.CallToolResult, error) {
		return cs.CallTool(ctx, &sdk.CallToolParams{Meta: p.Meta, Name: t.name, Arguments: p.Arguments})
	})
}

func (s *session) getPrompt(ctx context.Context, rq *caller, p *sdk.GetPromptParams) (sdk.Result, error) {
	t, ok := s.e.names.resolve(p.Name)
	if !ok {
		return nil, &jsonrpc.Error{Code: codeInvalidParams, Message: "unknown prompt " + p.Name}
	}
	return call(s, ctx, rq, "prompts/get", t.backend, progressKey(p.GetProgressToken()), func(ctx context.Context, cs *sdk.ClientSession) (*sdk.GetPromptResult, error) {
		return cs.GetPrompt(ctx, &sdk.GetPromptParams{Meta: p.Meta, Name: t.name, Arguments: p.Arguments})
	})
}

func (s *session) readResource(ctx context.Context, rq *caller, p *sdk.ReadResourceParams) (sdk.Result, error) {
	i, ok := s.resourceBackend(p.URI)
	if !ok {
		return nil, &jsonrpc.Error{Code: codeInvalidParams, Message: "unknown resource (list resources first)"}
	}
	return call(s, ctx, rq, "resources/read", i, progressKey(p.GetProgressToken()), func(ctx context.Context, cs *sdk.ClientSession) (*sdk.ReadResourceResult, error) {
		return cs.ReadResource(ctx, p)
	})
}

func (s *session) subscribe(ctx context.Context, r *sdk.SubscribeRequest) error {
	i, ok := s.resourceBackend(r.Params.URI)
	if !ok {
		return &jsonrpc.Error{Code: codeInvalidParams, Message: "unknown resource (list resources first)"}
	}
	_, err := call(s, ctx, callerOf(r), "resources/subscribe", i, nil, func(ctx context.Context, cs *sdk.ClientSession) (struct{}, error) {
		return struct{}{}, cs.Subscribe(ctx, r.Params)
	})
	return err
}

func (s *session) unsubscribe(ctx context.Context, r *sdk.UnsubscribeRequest) error {
	i, ok := s.resourceBackend(r.Params.URI)
	if !ok {
		return &jsonrpc.Error{Code: codeInvalidParams, Message: "unknown resource"}
	}
	_, err := call(s, ctx, callerOf(r), "resources/unsubscribe", i, nil, func(ctx context.Context, cs *sdk.ClientSession) (struct{}, error) {
		return struct{}{}, cs.Unsubscribe(ctx, r.Params)
	})
	return err
}

func (s *session) complete(ctx context.Context, r *sdk.CompleteRequest) (*sdk.CompleteResult, error) {
	p := *r.Params
	if p.Ref == nil {
		return nil, &jsonrpc.Error{Code: codeInvalidParams, Message: "missing ref"}
	}
	ref := *p.Ref
	var i int
	switch ref.Type {
	case "ref/prompt":
		t, ok := s.e.names.resolve(ref.Name)
		if !ok {
			return nil, &jsonrpc.Error{Code: codeInvalidParams, Message: "unknown prompt " + ref.Name}
		}
		i, ref.Name = t.backend, t.name
	default:
		var ok bool
		if i, ok = s.resourceBackend(ref.URI); !ok {
			return nil, &jsonrpc.Error{Code: codeInvalidParams, Message: "unknown resource template (list templates first)"}
		}
	}
	p.Ref = &ref
	return call(s, ctx, callerOf(r), "completion/complete", i, nil, func(ctx context.Context, cs *sdk.ClientSession) (*sdk.CompleteResult, error) {
		return cs.Complete(ctx, &p)
	})
}

// setLevel passes the client's logging level to the open backend sessions
// (those opened later start at the backend's default).
func (s *session) setLevel(ctx context.Context, p *sdk.SetLoggingLevelParams) {
	for i, c := range s.conns {
		if cs := c.cs.Load(); cs != nil {
			if err := cs.SetLoggingLevel(ctx, p); err != nil {
				s.e.log.Debug("backend refused logging/setLevel", "backend", s.e.cfg.Backends[i], "err", err)
			}
		}
	}
}
