package policy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"

	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/validate"
)

// Effects of a decision.
const (
	EffectAllow     = "allow"
	EffectDeny      = "deny"
	EffectWouldDeny = "would_deny"
)

// RuleDefaultDeny is the rule of a decision that nothing granted.
const RuleDefaultDeny = "default-deny"

// Request is one JSON-RPC message to authorize. Build it with RequestFor.
type Request struct {
	// Method is the JSON-RPC method; "" only for a client response.
	Method string `json:"method,omitempty"`
	// Backend is the name of the backend the message goes to.
	Backend string `json:"backend,omitempty"`
	// Name is the tool name, prompt name or resource URI the method acts on
	// (for completion/complete: the referenced prompt or resource template).
	Name string `json:"name,omitempty"`
	// Arguments are the call's arguments (a JSON object) or nil.
	Arguments json.RawMessage `json:"arguments,omitempty"`
	// RefKind is mcp.RefPrompt or mcp.RefResource for completion/complete.
	RefKind string `json:"ref,omitempty"`
	// Subscriptions are the resource URIs of a subscriptions/listen request.
	Subscriptions []string `json:"subscriptions,omitempty"`
	// Response marks a JSON-RPC response sent by the client (to a server
	// request such as sampling/createMessage); it carries no method.
	Response bool `json:"response,omitempty"`
}

// RequestFor builds the Request for a decoded message bound for backend.
func RequestFor(backend string, c *mcp.Call) Request {
	return Request{
		Method:        c.Method,
		Backend:       backend,
		Name:          c.Name,
		Arguments:     c.Arguments,
		RefKind:       c.RefKind,
		Subscriptions: c.Subscriptions,
		Response:      c.IsResponse,
	}
}

// Decision is the outcome of Decide.
type Decision struct {
	// Allow says whether to let the message through. In shadow mode it is
	// true even when the policy denies (then Effect is "would_deny").
	Allow bool `json:"allow"`
	// Effect is "allow", "deny" or "would_deny".
	Effect string `json:"effect"`
	// Rule names what decided, e.g. "role:operator tools:power_*",
	// "cedar:protect-prod", "tool_scopes:delete_*", "methods.allow:ping",
	// "default-deny".
	Rule string `json:"rule"`
	// Reason is a human-readable explanation that names what was asked for
	// and what is missing. It is safe to show to the caller.
	Reason string `json:"reason,omitempty"`
	// MissingScopes lists the scopes that would make a scope-denied call
	// succeed (then the gateway answers 403 insufficient_scope).
	MissingScopes []string `json:"missing_scopes,omitempty"`
}

// kinds of named targets.
type kind int

const (
	kindTool kind = iota
	kindPrompt
	kindResource
	numKinds
)

var kindNames = [numKinds]string{"tools", "prompts", "resources"}
var kindNouns = [numKinds]string{"tool", "prompt", "resource"}
var kindTypes = [numKinds]string{TypeTool, TypePrompt, TypeResource}

// namedMethods are the methods that act on one named thing.
var namedMethods = map[string]kind{
	"tools/call":            kindTool,
	"prompts/get":           kindPrompt,
	"resources/read":        kindResource,
	"resources/subscribe":   kindResource,
	"resources/unsubscribe": kindResource,
}

// listMethods maps each list method to the method whose decision decides
// whether an item is listed.
var listMethods = map[string]string{
	"tools/list":               "tools/call",
	"prompts/list":             "prompts/get",
	"resources/list":           "resources/read",
	"resources/templates/list": "resources/read",
}

type pattern struct {
	g   glob
	src string // how the rule is named: "tools:power_*", "backends.vsphere.tools:x"
}

type compiledRole struct {
	name     string
	grants   [numKinds][]pattern
	backends map[string]*[numKinds][]pattern
	closure  []string // this role and every role it inherits, sorted
}

type userGrant struct {
	raw   string
	key   userKey
	roles []string
}

type scopeRule struct {
	backend string // "" for every backend
	g       glob
	src     string // the tool_scopes key as written
	scopes  []string
}

// applies reports whether the rule covers tool on backend.
func (s *scopeRule) applies(backend, tool string) bool {
	return (s.backend == "" || s.backend == backend) && s.g.match(tool)
}

type methodRule struct {
	g   glob
	src string
}

// Engine is a compiled policy. It is immutable and safe for concurrent use.
type Engine struct {
	mode       string
	shadow     bool
	roles      map[string]*compiledRole
	groups     map[string][]string
	users      []userGrant
	toolScopes []scopeRule
	fallback   []string
	allow      []methodRule
	deny       []methodRule
	cedar      []cedarPolicy
	cache      principalCache
	// version tells engines apart: every compiled engine gets a new one,
	// so a reload changes it (ListView.Generation).
	version uint64
}

// versions numbers compiled engines.
var versions atomic.Uint64

// Compile validates cfg and compiles it. A cfg naming a File is loaded from
// that file. Compile reports every problem at once (a *validate.Error).
func Compile(cfg Config) (*Engine, error) {
	if cfg.File != "" {
		if !cfg.isInlineEmpty() {
			return nil, fmt.Errorf("policy.file cannot be combined with an inline policy")
		}
		loaded, err := LoadFile(cfg.path(cfg.File))
		if err != nil {
			return nil, err
		}
		cfg = *loaded
	}
	cfg.SetDefaults()
	var p validate.Problems
	e := compileConfig(&cfg, "policy", &p)
	if err := p.Err(); err != nil {
		return nil, err
	}
	return e, nil
}

// compileConfig builds the engine, reporting problems under path.
func compileConfig(c *Config, path string, p *validate.Problems) *Engine {
	e := &Engine{
		mode:     c.Mode,
		shadow:   c.Mode == ModeShadow,
		roles:    make(map[string]*compiledRole, len(c.Roles)),
		groups:   make(map[string][]string, len(c.Groups)),
		fallback: slices.Clone(c.FallbackScopes),
		version:  versions.Add(1),
	}
	switch c.Mode {
	case ModeEnforce, ModeShadow:
	default:
		p.Add(validate.Join(path, "mode"), "must be %q or %q, not %q", ModeEnforce, ModeShadow, c.Mode)
	}
	if c.Default != "deny" {
		p.Add(validate.Join(path, "default"), "only \"deny\" is supported: whatever no role or rule grants is denied")
	}
	for _, name := range sortedKeys(c.Roles) {
		e.roles[name] = compileRole(name, c.Roles[name], validate.Join(path, "roles", name), p)
	}
	for _, name := range sortedKeys(c.Roles) {
		e.roles[name].closure = roleClosure(name, c.Roles, validate.Join(path, "roles", name, "inherits"), p)
	}
	checkRoleRefs := func(at string, roles []string) {
		for i, r := range roles {
			if _, ok := c.Roles[r]; !ok {
				p.Add(validate.Index(at, i), "unknown role %q", r)
			}
		}
	}
	for _, g := range sortedKeys(c.Groups) {
		checkRoleRefs(validate.Join(path, "groups", g), c.Groups[g])
		e.groups[g] = slices.Clone(c.Groups[g]) // the engine must not change with its config
	}
	for _, u := range sortedKeys(c.Users) {
		at := validate.Join(path, "users", u)
		k, err := parseUserKey(u)
		if err != nil {
			p.Add(at, "%v", err)
			continue
		}
		checkRoleRefs(at, c.Users[u])
		e.users = append(e.users, userGrant{raw: u, key: k, roles: slices.Clone(c.Users[u])})
	}
	for _, pat := range sortedKeys(c.ToolScopes) {
		at := validate.Join(path, "tool_scopes", pat)
		backend, name, err := splitBackend(pat)
		if err != nil {
			p.Add(at, "%v", err)
			continue
		}
		g, err := compileGlob(name)
		if err != nil {
			p.Add(at, "%v", err)
			continue
		}
		scopes := c.ToolScopes[pat]
		if len(scopes) == 0 {
			p.Add(at, "lists no scopes")
		}
		validate.Scopes(at, scopes, p)
		e.toolScopes = append(e.toolScopes, scopeRule{backend: backend, g: g, src: pat, scopes: scopes})
	}
	validate.Scopes(validate.Join(path, "fallback_scopes"), c.FallbackScopes, p)
	e.allow = compileMethods(validate.Join(path, "methods", "allow"), "methods.allow", c.Methods.Allow, true, p)
	e.deny = compileMethods(validate.Join(path, "methods", "deny"), "methods.deny", c.Methods.Deny, false, p)
	e.cedar = loadCedar(c, path, p)
	return e
}

func compileRole(name string, r Role, at string, p *validate.Problems) *compiledRole {
	cr := &compiledRole{name: name, backends: map[string]*[numKinds][]pattern{}}
	if name == "" || strings.ContainsAny(name, " \t") {
		p.Add(at, "invalid role name %q", name)
	}
	on := func(backend string) *[numKinds][]pattern {
		if backend == "" {
			return &cr.grants
		}
		if cr.backends[backend] == nil {
			cr.backends[backend] = &[numKinds][]pattern{}
		}
		return cr.backends[backend]
	}
	// add compiles pats of kind k; scoped is the backend of a
	// backends.<name> list, "" for the role's own lists, where a tool or
	// prompt pattern may name its backend itself ("vsphere/*").
	add := func(scoped string, k kind, pats []string) {
		prefix := ""
		if scoped != "" {
			prefix = "backends." + scoped
		}
		for i, s := range pats {
			at := validate.Index(validate.Join(at, prefix, kindNames[k]), i)
			backend, glob := scoped, s
			if k != kindResource { // URIs have slashes of their own
				b, rest, err := splitBackend(s)
				switch {
				case err != nil:
					p.Add(at, "%v", err)
					continue
				case b != "" && scoped != "":
					p.Add(at, "pattern %q names backend %q inside backends.%s: write the name alone (or `\\/` for a literal slash)", s, b, scoped)
					continue
				case b != "":
					backend, glob = b, rest
				}
			}
			g, err := compileGlob(glob)
			if err != nil {
				p.Add(at, "%v", err)
				continue
			}
			if k == kindResource {
				// URIs are matched in normal form: a pattern in another
				// form would silently never match.
				n, err := mcp.NormalizeURI(s)
				if err != nil {
					p.Add(at, "resource pattern %q: %v", s, err)
					continue
				}
				if n != s {
					p.Add(at, "resource pattern %q would never match: URIs are matched in RFC 3986 normal form; write %q", s, n)
					continue
				}
			}
			src := kindNames[k] + ":" + s
			if prefix != "" {
				src = prefix + "." + src
			}
			dst := on(backend)
			dst[k] = append(dst[k], pattern{g: g, src: src})
		}
	}
	add("", kindTool, r.Tools)
	add("", kindPrompt, r.Prompts)
	add("", kindResource, r.Resources)
	for _, b := range sortedKeys(r.Backends) {
		g := r.Backends[b]
		on(b) // a backends entry, even an empty one, is the role's on that backend
		add(b, kindTool, g.Tools)
		add(b, kindPrompt, g.Prompts)
		add(b, kindResource, g.Resources)
	}
	return cr
}

// roleClosure returns name and every role it inherits, sorted, and reports
// unknown roles and inheritance cycles (with the cycle's path).
func roleClosure(name string, roles map[string]Role, at string, p *validate.Problems) []string {
	seen := map[string]bool{}
	var visit func(r string, stack []string)
	visit = func(r string, stack []string) {
		for i, parent := range roles[r].Inherits {
			if _, ok := roles[parent]; !ok {
				if r == name {
					p.Add(validate.Index(at, i), "unknown role %q", parent)
				}
				continue
			}
			if j := slices.Index(stack, parent); j >= 0 {
				if parent == name {
					p.Add(at, "inheritance cycle: %s", strings.Join(append(stack[j:], parent), " -> "))
				}
				continue
			}
			if !seen[parent] {
				seen[parent] = true
				visit(parent, append(stack, parent))
			}
		}
	}
	seen[name] = true
	visit(name, []string{name})
	return sortedKeys(seen)
}

// nonGrantable are the methods whose access only roles and rules decide.
func nonGrantable(m string) bool {
	_, named := namedMethods[m]
	_, list := listMethods[m]
	return named || list
}

func compileMethods(at, src string, pats []string, allow bool, p *validate.Problems) []methodRule {
	var out []methodRule
	for i, s := range pats {
		g, err := compileGlob(s)
		if err != nil {
			p.Add(validate.Index(at, i), "%v", err)
			continue
		}
		if allow && g.isLit && nonGrantable(s) {
			p.Add(validate.Index(at, i), "%s is decided by roles, rules and scopes; methods.allow cannot grant it", s)
			continue
		}
		out = append(out, methodRule{g: g, src: src + ":" + s})
	}
	return out
}

// Mode returns "enforce" or "shadow".
func (e *Engine) Mode() string { return e.mode }

// resolved is a principal's roles and Cedar entity, cached per identity.
type resolved struct {
	roles    []string            // sorted, inheritance included
	via      map[string][]string // role → how it was obtained
	unknown  []string            // groups that confer no role
	uid      types.EntityUID
	entities types.EntityMap
	// Scopes available to the principal: the token's, or the fallback when
	// the token has no scope claim.
	scopes       []string
	scopeSet     types.Set
	fromFallback bool
	// anyArgsCtx caches, per backend, the Cedar context of list filtering.
	anyArgsCtx sync.Map
	// session caches DecideSession per backend (before shadow mode).
	session sync.Map
	// id is the principal's cache key; listKeys caches ListView.Key per
	// backend.
	id       string
	listKeys sync.Map
}

// principalCache memoizes role resolution. It is cleared when it grows past
// maxCached entries, which bounds memory without bookkeeping per hit.
type principalCache struct {
	m sync.Map
	n atomic.Int64
}

const maxCached = 10000

var anonymous = &identity.Principal{}

func (e *Engine) resolve(p *identity.Principal) *resolved {
	if p == nil {
		p = anonymous
	}
	// Every field is length-prefixed, so no choice of claim values (a
	// group containing a separator, say) can make two principals share a key.
	var kb strings.Builder
	kb.Grow(len(p.Issuer) + len(p.Subject) + len(p.Email) + 16*(len(p.Groups)+len(p.Scopes)) + 64)
	field := func(s string) {
		kb.WriteString(strconv.Itoa(len(s)))
		kb.WriteByte(':')
		kb.WriteString(s)
	}
	field(p.Issuer)
	field(p.Subject)
	if p.EmailVerified {
		field(p.Email)
	} else {
		field("")
	}
	field(p.Username)
	field(p.ClientID)
	kb.WriteString(strconv.Itoa(len(p.Groups)))
	kb.WriteByte('g')
	for _, g := range p.Groups {
		field(g)
	}
	// Scopes are part of the key: nil (no scope claim) differs from empty.
	if p.Scopes == nil {
		kb.WriteByte('-')
	} else {
		kb.WriteString(strconv.Itoa(len(p.Scopes)))
		kb.WriteByte('s')
		for _, sc := range p.Scopes {
			field(sc)
		}
	}
	key := kb.String()
	if r, ok := e.cache.m.Load(key); ok {
		return r.(*resolved)
	}
	r := e.resolveUncached(p)
	r.id = key
	if e.cache.n.Add(1) > maxCached {
		e.cache.m.Clear()
		e.cache.n.Store(0)
	}
	e.cache.m.Store(key, r)
	return r
}

func (e *Engine) resolveUncached(p *identity.Principal) *resolved {
	r := &resolved{via: map[string][]string{}}
	direct := func(role, how string) {
		cr, ok := e.roles[role]
		if !ok {
			return
		}
		for _, x := range cr.closure {
			reason := how
			if x != role {
				reason = fmt.Sprintf("inherited from %s (%s)", role, how)
			}
			if !slices.Contains(r.via[x], reason) {
				r.via[x] = append(r.via[x], reason)
			}
		}
	}
	for _, g := range p.Groups {
		roles, ok := e.groups[g]
		if !ok {
			r.unknown = append(r.unknown, g)
			continue
		}
		for _, role := range roles {
			direct(role, "group "+g)
		}
	}
	for _, u := range e.users {
		if u.matches(p) {
			for _, role := range u.roles {
				direct(role, "users["+u.raw+"]")
			}
		}
	}
	r.roles = sortedKeys(r.via)
	r.uid, r.entities = principalEntity(p, r.roles)
	r.scopes, r.fromFallback = e.availableScopes(p)
	r.scopeSet = scopeSet(r.scopes)
	return r
}

// anyArgsContext is the Cedar context for list filtering on backend.
func (r *resolved) anyArgsContext(backend string) types.Record {
	if c, ok := r.anyArgsCtx.Load(backend); ok {
		return c.(types.Record)
	}
	c := cedar.NewRecord(cedar.RecordMap{"backend": cedar.String(backend), "scopes": r.scopeSet})
	r.anyArgsCtx.Store(backend, c)
	return c
}

func (u *userGrant) matches(p *identity.Principal) bool {
	switch {
	case u.key.email != "":
		return p.EmailVerified && p.Email != "" && strings.EqualFold(p.Email, u.key.email)
	case u.key.anyIssuer:
		return p.Subject != "" && p.Subject == u.key.subject
	}
	return p.Subject != "" && p.Issuer == u.key.issuer && p.Subject == u.key.subject
}

// availableScopes are the token's scopes, or the fallback scopes when the
// token has no scope claim (authn leaves Scopes nil then).
func (e *Engine) availableScopes(p *identity.Principal) ([]string, bool) {
	if p == nil {
		return e.fallback, true
	}
	if p.Scopes == nil {
		return e.fallback, true
	}
	return p.Scopes, false
}

// Decide authorizes one message. It is the single decision used for calls
// and (through Visible) for list filtering.
func (e *Engine) Decide(p *identity.Principal, req Request) Decision {
	return e.finish(e.decide(p, &req, nil))
}

// Visible reports whether an item of a list response is shown: whether a
// call of it could be allowed with some arguments. method is the list
// method (tools/list, prompts/list, resources/list,
// resources/templates/list) or the corresponding call method.
func (e *Engine) Visible(p *identity.Principal, method, backend, name string) bool {
	return e.visible(e.resolve(p), method, backend, name)
}

func (e *Engine) visible(r *resolved, method, backend, name string) bool {
	if m, ok := listMethods[method]; ok {
		method = m
	}
	k, ok := namedMethods[method]
	if !ok {
		return e.shadow
	}
	if d := e.methodDenied(method); d != nil {
		return e.finish(*d).Allow
	}
	if e.shadow {
		return true
	}
	// A tool the caller's roles grant but whose scopes the token lacks is
	// listed: calling it answers 403 insufficient_scope, which is how MCP
	// clients learn to step up. Hiding it would make step-up unreachable.
	return e.evalNamed(r, method, k, backend, name, nil, true, nil).listable()
}

// finish applies shadow mode.
func (e *Engine) finish(d Decision) Decision {
	if d.Effect == EffectDeny && e.shadow {
		d.Allow, d.Effect = true, EffectWouldDeny
	}
	return d
}

func allowed(rule string) Decision { return Decision{Allow: true, Effect: EffectAllow, Rule: rule} }

func denied(rule, reason string) Decision {
	return Decision{Effect: EffectDeny, Rule: rule, Reason: reason}
}

func (e *Engine) methodDenied(method string) *Decision {
	for _, m := range e.deny {
		if m.g.match(method) {
			d := denied(m.src, fmt.Sprintf("permission denied: method %q is not allowed", method))
			return &d
		}
	}
	return nil
}

// decide is Decide before shadow mode; x, when set, collects details.
func (e *Engine) decide(p *identity.Principal, req *Request, x *Explanation) Decision {
	if req.Response {
		return allowed("client-response")
	}
	m := req.Method
	if m == "" {
		return denied(RuleDefaultDeny, "permission denied: message has no method")
	}
	if d := e.methodDenied(m); d != nil {
		return *d
	}
	if k, ok := namedMethods[m]; ok {
		return e.decideNamed(p, m, k, req.Backend, req.Name, req.Arguments, false, x)
	}
	if _, ok := listMethods[m]; ok {
		return allowed("list:" + m) // items are filtered with Visible
	}
	var rule string
	for _, a := range e.allow {
		if a.g.match(m) {
			rule = a.src
			break
		}
	}
	if rule == "" {
		return denied(RuleDefaultDeny, fmt.Sprintf("permission denied: method %q is not allowed", m))
	}
	switch m {
	case "completion/complete":
		// Completing a prompt's or template's arguments reveals it: the
		// reference must be visible.
		var method string
		var k kind
		switch req.RefKind {
		case mcp.RefPrompt:
			method, k = "prompts/get", kindPrompt
		case mcp.RefResource:
			method, k = "resources/read", kindResource
		default:
			return denied(RuleDefaultDeny, "permission denied: completion/complete without a prompt or resource reference")
		}
		if d := e.methodDenied(method); d != nil {
			return *d
		}
		if d := e.decideNamed(p, method, k, req.Backend, req.Name, nil, true, x); !d.Allow {
			return d
		}
	case "subscriptions/listen":
		for _, uri := range req.Subscriptions {
			if d := e.methodDenied("resources/subscribe"); d != nil {
				return *d
			}
			if d := e.decideNamed(p, "resources/subscribe", kindResource, req.Backend, uri, nil, false, x); !d.Allow {
				return d
			}
		}
	}
	return allowed(rule)
}

// verdict is the outcome of evalNamed, without the texts of a Decision.
type verdict struct {
	r          *resolved
	grantRole  string   // the role whose pattern granted, or ""
	grantPat   *pattern // that pattern
	permit     *cedarPolicy
	forbid     *cedarPolicy
	hasPermits bool     // a permit rule applied (for the denial text)
	missing    []string // scopes lacking for a granted tool
	scopePat   string   // the tool_scopes pattern that required them
}

func (v verdict) granted() bool { return v.grantPat != nil || v.permit != nil }
func (v verdict) allowed() bool { return v.listable() && len(v.missing) == 0 }

// listable: granted and not forbidden, whatever the token's scopes.
func (v verdict) listable() bool { return v.forbid == nil && v.granted() }

// evalNamed is the decision for a call of a tool, prompt or resource, the
// one code path behind Decide, Visible and Explain. anyArgs asks whether
// some arguments could be allowed (list filtering) instead of deciding for
// args.
func (e *Engine) evalNamed(r *resolved, method string, k kind, backend, name string, args json.RawMessage, anyArgs bool, x *Explanation) verdict {
	v := verdict{r: r}
	if k == kindResource {
		// Grants are matched against what the URI resolves to (RFC 3986
		// §6.2.2), so "public/../secret" and "%2e%2e" cannot leave a granted
		// prefix; a URI that cannot be normalized is granted nothing.
		n, err := mcp.NormalizeURI(name)
		if err != nil {
			return v
		}
		name = n
	}
	v.grantRole, v.grantPat = e.roleGrant(r, k, backend, name)
	var sel policyIter
	for i := range e.cedar {
		if e.cedar[i].applies(method, kindTypes[k], name) {
			sel = append(sel, &e.cedar[i])
			v.hasPermits = v.hasPermits || !e.cedar[i].forbid
		}
	}
	if len(sel) > 0 {
		var out cedarOutcome
		if anyArgs {
			out = evalCedarAnyArgs(sel, r, method, kindTypes[k], name, backend)
		} else {
			out = evalCedar(sel, r, method, kindTypes[k], name, backend, args)
		}
		v.forbid, v.permit = out.forbid, out.permit
		if x != nil {
			x.record(sel, out)
		}
	}
	if v.forbid == nil && v.granted() && k == kindTool {
		for i := range e.toolScopes {
			s := &e.toolScopes[i]
			if !s.applies(backend, name) {
				continue
			}
			for _, sc := range s.scopes {
				if !slices.Contains(r.scopes, sc) && !slices.Contains(v.missing, sc) {
					if v.scopePat == "" {
						v.scopePat = s.src
					}
					v.missing = append(v.missing, sc)
				}
			}
		}
		slices.Sort(v.missing)
	}
	return v
}

// decideNamed is evalNamed turned into a Decision.
func (e *Engine) decideNamed(p *identity.Principal, method string, k kind, backend, name string, args json.RawMessage, anyArgs bool, x *Explanation) Decision {
	noun := kindNouns[k]
	if name == "" {
		return denied(RuleDefaultDeny, fmt.Sprintf("permission denied: %s without a %s name", method, noun))
	}
	v := e.evalNamed(e.resolve(p), method, k, backend, name, args, anyArgs, x)
	switch {
	case v.forbid != nil:
		return denied("cedar:"+string(v.forbid.id),
			fmt.Sprintf("permission denied: %s %q is forbidden by rule %s", noun, name, v.forbid.id))
	case !v.granted():
		also := ""
		if v.hasPermits {
			also = " and no rule permits it with these arguments"
		}
		return denied(RuleDefaultDeny, fmt.Sprintf("permission denied: no role grants %s %q%s%s", noun, name, rolesNote(v.r), also))
	case len(v.missing) > 0:
		d := denied("tool_scopes:"+v.scopePat,
			fmt.Sprintf("insufficient scope: tool %q requires scope %s", name, strings.Join(v.missing, " ")))
		d.MissingScopes = v.missing
		return d
	case v.grantPat != nil:
		return allowed("role:" + v.grantRole + " " + v.grantPat.src)
	}
	return allowed("cedar:" + string(v.permit.id))
}

func rolesNote(r *resolved) string {
	if len(r.roles) == 0 {
		return " (the caller has no roles)"
	}
	return " (the caller's roles: " + strings.Join(r.roles, ", ") + ")"
}

// roleGrant returns the first role pattern, in role order, that matches.
func (e *Engine) roleGrant(r *resolved, k kind, backend, name string) (string, *pattern) {
	for _, role := range r.roles {
		cr := e.roles[role]
		for i := range cr.grants[k] {
			if cr.grants[k][i].g.match(name) {
				return role, &cr.grants[k][i]
			}
		}
		if b := cr.backends[backend]; b != nil {
			for i := range b[k] {
				if b[k][i].g.match(name) {
					return role, &b[k][i]
				}
			}
		}
	}
	return "", nil
}

// requiredScopes returns the union, sorted, of the scopes of every
// tool_scopes pattern matching tool on backend, and the first such pattern.
func (e *Engine) requiredScopes(backend, tool string) ([]string, string) {
	var out []string
	first := ""
	for i := range e.toolScopes {
		s := &e.toolScopes[i]
		if !s.applies(backend, tool) {
			continue
		}
		if first == "" {
			first = s.src
		}
		for _, sc := range s.scopes {
			if !slices.Contains(out, sc) {
				out = append(out, sc)
			}
		}
	}
	slices.Sort(out)
	return out, first
}

// GrantsNothing reports whether p certainly may use nothing: enforced
// policy, no role from a group or users entry, and no Cedar permit rule
// that might grant without a role. The authorization server uses it to tell
// a user so at sign-in instead of showing an empty tool list.
func (e *Engine) GrantsNothing(p *identity.Principal) bool {
	if e.shadow || len(e.resolve(p).roles) > 0 {
		return false
	}
	for _, c := range e.cedar {
		if !c.forbid {
			return false
		}
	}
	return true
}
