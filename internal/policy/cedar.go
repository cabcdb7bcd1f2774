package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	"github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/validate"
)

// Cedar entity types. Rules may name only these.
const (
	TypeUser     = "User"
	TypeGroup    = "Group"
	TypeRole     = "Role"
	TypeTool     = "Tool"
	TypePrompt   = "Prompt"
	TypeResource = "Resource"
	TypeAction   = "Action"
)

// cedarActions maps each Cedar action (the MCP method) to the entity type
// of its resource.
var cedarActions = map[string]string{
	"tools/call":            TypeTool,
	"prompts/get":           TypePrompt,
	"resources/read":        TypeResource,
	"resources/subscribe":   TypeResource,
	"resources/unsubscribe": TypeResource,
}

var (
	principalAttrs = []string{"sub", "iss", "email", "username", "client_id", "groups", "roles"}
	contextAttrs   = []string{"arguments", "backend", "scopes"}
)

// cedarPolicy is one compiled Cedar policy with what its scope selects, so
// that only policies that can apply to a request are evaluated.
type cedarPolicy struct {
	id      cedar.PolicyID
	forbid  bool
	policy  *cedar.Policy
	actions []string // nil: any action
	resType string   // "": any type
	resID   string   // "": any resource of resType
	// anyArgs is the policy for calls whose arguments are unknown (list
	// filtering); nil when it is dropped. See withoutArguments.
	anyArgs *cedar.Policy
	// anyTarget is a permit for any action and resource with any arguments
	// (see forAnyTarget); nil for forbids.
	anyTarget *cedar.Policy
}

func (c *cedarPolicy) applies(action, resType, name string) bool {
	if c.actions != nil && !slices.Contains(c.actions, action) {
		return false
	}
	return (c.resType == "" || c.resType == resType) && (c.resID == "" || c.resID == name)
}

// parseCedar parses one Cedar document and checks that it uses only the
// entity types, actions and attributes that the gateway produces, so that a
// misspelt action ("tool/call") is a configuration error instead of a rule
// that silently never matches.
func parseCedar(src, text string, seen map[cedar.PolicyID]string, path string, p *validate.Problems) []cedarPolicy {
	list, err := cedar.NewPolicyListFromBytes(src, []byte(text))
	if err != nil {
		p.Add(path, "cedar: %v", err)
		return nil
	}
	var out []cedarPolicy
	for i, pol := range list {
		id := cedar.PolicyID(src)
		if len(list) > 1 {
			id = cedar.PolicyID(fmt.Sprintf("%s:%d", src, pol.Position().Line))
		}
		if v, ok := pol.Annotations()["id"]; ok && v != "" {
			id = cedar.PolicyID(v)
		}
		where := fmt.Sprintf("%s: policy %d (line %d)", path, i, pol.Position().Line)
		if prev, dup := seen[id]; dup {
			p.Add(path, "policy id %q is used twice (also %s)", id, prev)
			continue
		}
		seen[id] = where
		cp, errs := checkCedarPolicy(pol)
		for _, e := range errs {
			p.Add(path, "policy %q (line %d): %v", id, pol.Position().Line, e)
		}
		if len(errs) > 0 {
			continue
		}
		cp.id = id
		cp.anyArgs = withoutArguments(pol)
		if !cp.forbid {
			cp.anyTarget = forAnyTarget(pol)
		}
		out = append(out, cp)
	}
	return out
}

func checkCedarPolicy(pol *cedar.Policy) (cedarPolicy, []error) {
	a := pol.AST()
	cp := cedarPolicy{policy: pol, forbid: pol.Effect() == cedar.Forbid}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	principalType := func(t types.EntityType) {
		if t != TypeUser && t != TypeGroup && t != TypeRole {
			bad("principal entity type %s is not one of User, Group, Role", t)
		}
	}
	switch s := a.Principal.(type) {
	case ast.ScopeTypeEq:
		principalType(s.Entity.Type)
	case ast.ScopeTypeIn:
		principalType(s.Entity.Type)
	case ast.ScopeTypeIs:
		if s.Type != TypeUser {
			bad("principal is always a User, not %s", s.Type)
		}
	case ast.ScopeTypeIsIn:
		if s.Type != TypeUser {
			bad("principal is always a User, not %s", s.Type)
		}
		principalType(s.Entity.Type)
	}
	addAction := func(uid types.EntityUID) {
		if uid.Type != TypeAction {
			bad("action %s is not an Action entity", uid)
			return
		}
		if _, ok := cedarActions[string(uid.ID)]; !ok {
			bad("action %q does not exist; actions are %s", uid.ID, strings.Join(sortedKeys(cedarActions), ", "))
			return
		}
		cp.actions = append(cp.actions, string(uid.ID))
	}
	switch s := a.Action.(type) {
	case ast.ScopeTypeEq:
		addAction(s.Entity)
	case ast.ScopeTypeIn:
		addAction(s.Entity)
	case ast.ScopeTypeInSet:
		for _, e := range s.Entities {
			addAction(e)
		}
	}
	resourceType := func(t types.EntityType) string {
		if t != TypeTool && t != TypePrompt && t != TypeResource {
			bad("resource entity type %s is not one of Tool, Prompt, Resource", t)
		}
		return string(t)
	}
	switch s := a.Resource.(type) {
	case ast.ScopeTypeEq:
		cp.resType, cp.resID = resourceType(s.Entity.Type), string(s.Entity.ID)
	case ast.ScopeTypeIn: // resources have no parents: "in" is equality
		cp.resType, cp.resID = resourceType(s.Entity.Type), string(s.Entity.ID)
	case ast.ScopeTypeIs:
		cp.resType = resourceType(s.Type)
	case ast.ScopeTypeIsIn:
		cp.resType, cp.resID = resourceType(s.Type), string(s.Entity.ID)
		if s.Entity.Type != s.Type {
			bad("resource scope %s in %s never matches", s.Type, s.Entity)
		}
	}
	if cp.resType != "" && cp.actions != nil {
		ok := false
		for _, act := range cp.actions {
			ok = ok || cedarActions[act] == cp.resType
		}
		if !ok {
			bad("resource type %s never occurs with action(s) %s", cp.resType, strings.Join(cp.actions, ", "))
		}
	}
	for _, c := range a.Conditions {
		ast.Inspect(ast.NewNode(c.Body), func(n ast.IsNode) bool {
			switch n := n.(type) {
			case ast.NodeValue:
				if uid, ok := n.Value.(types.EntityUID); ok {
					checkEntityLiteral(uid, bad)
				}
			case ast.NodeTypeIs:
				checkEntityType(n.EntityType, bad)
			case ast.NodeTypeIsIn:
				checkEntityType(n.EntityType, bad)
			case ast.NodeTypeAccess:
				checkAttr(n.Arg, n.Value, bad)
			case ast.NodeTypeHas:
				checkAttr(n.Arg, n.Value, bad)
			}
			return true
		})
	}
	return cp, errs
}

func checkEntityType(t types.EntityType, bad func(string, ...any)) {
	switch t {
	case TypeUser, TypeGroup, TypeRole, TypeTool, TypePrompt, TypeResource, TypeAction:
	default:
		bad("unknown entity type %s", t)
	}
}

func checkEntityLiteral(uid types.EntityUID, bad func(string, ...any)) {
	checkEntityType(uid.Type, bad)
	if uid.Type == TypeAction {
		if _, ok := cedarActions[string(uid.ID)]; !ok {
			bad("action %q does not exist", uid.ID)
		}
	}
}

// checkAttr catches misspelt attributes of principal and context, which
// would otherwise only fail at evaluation time.
func checkAttr(arg ast.IsNode, attr types.String, bad func(string, ...any)) {
	v, ok := arg.(ast.NodeTypeVariable)
	if !ok {
		return
	}
	switch v.Name {
	case "principal":
		if !slices.Contains(principalAttrs, string(attr)) {
			bad("principal has no attribute %q (it has %s)", attr, strings.Join(principalAttrs, ", "))
		}
	case "context":
		if !slices.Contains(contextAttrs, string(attr)) {
			bad("context has no attribute %q (it has %s)", attr, strings.Join(contextAttrs, ", "))
		}
	case "resource", "action":
		bad("%s has no attributes (use context.backend and context.arguments)", v.Name)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// loadCedar compiles Rules and CedarFile.
func loadCedar(c *Config, path string, p *validate.Problems) []cedarPolicy {
	seen := map[cedar.PolicyID]string{}
	var out []cedarPolicy
	for i, text := range c.Rules {
		src := fmt.Sprintf("rules[%d]", i)
		out = append(out, parseCedar(src, text, seen, validate.Index(validate.Join(path, "rules"), i), p)...)
	}
	if c.CedarFile != "" {
		f := c.path(c.CedarFile)
		text, err := os.ReadFile(f)
		if err != nil {
			p.Add(validate.Join(path, "cedar_file"), "%v", err)
		} else {
			out = append(out, parseCedar(filepath.Base(f), string(text), seen, validate.Join(path, "cedar_file"), p)...)
		}
	}
	return out
}

// policyIter presents selected policies to cedar.Authorize.
type policyIter []*cedarPolicy

func (s policyIter) All() iter.Seq2[cedar.PolicyID, *cedar.Policy] {
	return func(yield func(cedar.PolicyID, *cedar.Policy) bool) {
		for _, c := range s {
			if !yield(c.id, c.policy) {
				return
			}
		}
	}
}

// cedarOutcome is the result of evaluating the applicable rules.
type cedarOutcome struct {
	forbid   *cedarPolicy // a forbid that matched or failed to evaluate
	forbidEr string       // its evaluation error, if it failed
	permit   *cedarPolicy // a permit that matched
	// For explanations: the policies Cedar reports as deciding, and
	// evaluation errors.
	matched []*cedarPolicy
	errs    map[*cedarPolicy]string
}

func (s policyIter) find(id cedar.PolicyID) *cedarPolicy {
	for _, c := range s {
		if c.id == id {
			return c
		}
	}
	return nil
}

// outcome interprets a Cedar diagnostic with the gateway's fail-closed rule:
// a forbid policy whose evaluation errors counts as matching, so a caller
// cannot dodge a forbid by sending an argument of an unexpected type.
func (s policyIter) outcome(diag types.Diagnostic) cedarOutcome {
	var o cedarOutcome
	for _, e := range diag.Errors {
		c := s.find(e.PolicyID)
		if c == nil {
			continue
		}
		if o.errs == nil {
			o.errs = map[*cedarPolicy]string{}
		}
		o.errs[c] = e.Message
		if c.forbid && o.forbid == nil {
			o.forbid, o.forbidEr = c, e.Message
		}
	}
	for _, r := range diag.Reasons {
		c := s.find(r.PolicyID)
		if c == nil {
			continue
		}
		o.matched = append(o.matched, c)
		switch {
		case c.forbid && (o.forbid == nil || o.forbidEr != ""):
			o.forbid, o.forbidEr = c, ""
		case !c.forbid && o.permit == nil:
			o.permit = c
		}
	}
	return o
}

// evalCedar evaluates the selected policies for a call with known
// arguments.
//
// Arguments holding a null or a number Cedar cannot represent are evaluated
// twice when no forbid matched: with those values unreadable (so `has`
// sees them) and with them left out (so == does not simply compare false).
// A forbid that matches or fails either way denies: the rule cannot be
// evaluated on the arguments the backend will see, so it is not skipped.
func evalCedar(sel policyIter, r *resolved, action, resType, name, backend string, args json.RawMessage) cedarOutcome {
	argRec, lossy, err := convertArguments(args, true)
	if err != nil {
		// Unreachable for decoded messages; fail closed on anything else.
		for _, c := range sel {
			if c.forbid {
				return cedarOutcome{forbid: c, forbidEr: "arguments: " + err.Error()}
			}
		}
		return cedarOutcome{}
	}
	req := cedar.Request{
		Principal: r.uid,
		Action:    cedar.NewEntityUID(TypeAction, cedar.String(action)),
		Resource:  cedar.NewEntityUID(types.EntityType(resType), cedar.String(name)),
		Context: cedar.NewRecord(cedar.RecordMap{
			"arguments": argRec,
			"backend":   cedar.String(backend),
			"scopes":    r.scopeSet,
		}),
	}
	_, diag := cedar.Authorize(sel, r.entities, req)
	o := sel.outcome(diag)
	if lossy && o.forbid == nil {
		dropped, _, _ := convertArguments(args, false)
		req.Context = cedar.NewRecord(cedar.RecordMap{"arguments": dropped, "backend": cedar.String(backend), "scopes": r.scopeSet})
		_, diag := cedar.Authorize(sel, r.entities, req)
		if o2 := sel.outcome(diag); o2.forbid != nil {
			o.forbid, o.forbidEr = o2.forbid, "arguments hold a null or a number Cedar cannot represent"
			o.matched = append(o.matched, o2.forbid)
		}
	}
	return o
}

// withoutArguments returns the policy to use when the call's arguments are
// unknown, as when deciding whether to list a tool: a condition (when or
// unless clause) that reads context.arguments is assumed to go the caller's
// way. So a permit rule loses those clauses (some arguments could satisfy
// them) and a forbid rule with such a clause is dropped, nil (some
// arguments could avoid it). Every other condition is kept and evaluated.
// This is the "ignore" semantics of cedar-go's batch evaluation, computed
// once per policy instead of per request.
func withoutArguments(pol *cedar.Policy) *cedar.Policy {
	a := pol.AST()
	var keep []ast.ConditionType
	for _, c := range a.Conditions {
		if readsArguments(c.Body) {
			if pol.Effect() == cedar.Forbid {
				return nil
			}
			continue
		}
		keep = append(keep, c)
	}
	if len(keep) == len(a.Conditions) {
		return pol
	}
	cp := *a
	cp.Conditions = keep
	return cedar.NewPolicyFromAST(&cp)
}

// forAnyTarget returns a permit's variant that asks "could this permit p
// something on some backend": its action and resource scopes are widened to
// all, and what reads the arguments, the action or the resource is assumed
// to go the caller's way: a when clause's conjuncts (a && b) that read them
// are dropped, as are unless clauses that do. What remains are the
// conditions on the principal, context.backend and context.scopes.
func forAnyTarget(pol *cedar.Policy) *cedar.Policy {
	a := *pol.AST()
	a.Action, a.Resource = ast.ScopeTypeAll{}, ast.ScopeTypeAll{}
	a.Conditions = nil
	known := func(n ast.IsNode) bool { return !readsArguments(n) && !readsVariable(n, "action", "resource") }
	for _, c := range pol.AST().Conditions {
		if c.Condition == ast.ConditionUnless {
			if known(c.Body) {
				a.Conditions = append(a.Conditions, c)
			}
			continue
		}
		for _, term := range conjuncts(c.Body) {
			if known(term) {
				a.Conditions = append(a.Conditions, ast.ConditionType{Condition: ast.ConditionWhen, Body: term})
			}
		}
	}
	return cedar.NewPolicyFromAST(&a)
}

// conjuncts splits a && b && … into its terms.
func conjuncts(n ast.IsNode) []ast.IsNode {
	if and, ok := n.(ast.NodeTypeAnd); ok {
		return append(conjuncts(and.Left), conjuncts(and.Right)...)
	}
	return []ast.IsNode{n}
}

// readsVariable reports whether an expression uses any of the variables.
func readsVariable(n ast.IsNode, names ...types.String) bool {
	found := false
	ast.Inspect(ast.NewNode(n), func(n ast.IsNode) bool {
		if v, ok := n.(ast.NodeTypeVariable); ok && slices.Contains(names, v.Name) {
			found = true
		}
		return !found
	})
	return found
}

// readsArguments reports whether an expression may read context.arguments:
// any use of context other than context.backend or context.scopes counts.
func readsArguments(n ast.IsNode) bool {
	uses, safe := 0, 0
	ast.Inspect(ast.NewNode(n), func(n ast.IsNode) bool {
		switch n := n.(type) {
		case ast.NodeTypeVariable:
			if n.Name == "context" {
				uses++
			}
		case ast.NodeTypeAccess:
			safe += safeContextUse(n.StrOpNode)
		case ast.NodeTypeHas:
			safe += safeContextUse(n.StrOpNode)
		}
		return true
	})
	return uses > safe
}

func safeContextUse(n ast.StrOpNode) int {
	if v, ok := n.Arg.(ast.NodeTypeVariable); ok && v.Name == "context" && (n.Value == "backend" || n.Value == "scopes") {
		return 1
	}
	return 0
}

// anyArgsIter presents the arguments-unknown variants to cedar.Authorize.
type anyArgsIter []*cedarPolicy

func (s anyArgsIter) All() iter.Seq2[cedar.PolicyID, *cedar.Policy] {
	return func(yield func(cedar.PolicyID, *cedar.Policy) bool) {
		for _, c := range s {
			if c.anyArgs != nil && !yield(c.id, c.anyArgs) {
				return
			}
		}
	}
}

// evalCedarAnyArgs evaluates the selected policies for a call whose
// arguments are unknown (list filtering), with their withoutArguments
// variants: the item is listed when some arguments could be allowed.
func evalCedarAnyArgs(sel policyIter, r *resolved, action, resType, name, backend string) cedarOutcome {
	if !slices.ContainsFunc(sel, func(c *cedarPolicy) bool { return c.anyArgs != nil }) {
		return cedarOutcome{} // every applicable rule is an argument forbid
	}
	req := cedar.Request{
		Principal: r.uid,
		Action:    cedar.NewEntityUID(TypeAction, cedar.String(action)),
		Resource:  cedar.NewEntityUID(types.EntityType(resType), cedar.String(name)),
		Context:   r.anyArgsContext(backend),
	}
	_, diag := cedar.Authorize(anyArgsIter(sel), r.entities, req)
	return sel.outcome(diag)
}

// principalEntity builds the Cedar entity of a principal: User::"<iss>#<sub>"
// whose parents are its Group and Role entities (roles after inheritance),
// so `principal in Role::"operator"` and `principal in Group::"g"` work. The
// email attribute is present only when the token says it is verified.
func principalEntity(p *identity.Principal, roles []string) (types.EntityUID, types.EntityMap) {
	uid := cedar.NewEntityUID(TypeUser, cedar.String(p.Key()))
	var parents []types.EntityUID
	groups := make([]types.Value, 0, len(p.Groups))
	for _, g := range p.Groups {
		parents = append(parents, cedar.NewEntityUID(TypeGroup, cedar.String(g)))
		groups = append(groups, cedar.String(g))
	}
	roleVals := make([]types.Value, 0, len(roles))
	for _, r := range roles {
		parents = append(parents, cedar.NewEntityUID(TypeRole, cedar.String(r)))
		roleVals = append(roleVals, cedar.String(r))
	}
	attrs := cedar.RecordMap{
		"sub":       cedar.String(p.Subject),
		"iss":       cedar.String(p.Issuer),
		"username":  cedar.String(p.Username),
		"client_id": cedar.String(p.ClientID),
		"groups":    cedar.NewSet(groups...),
		"roles":     cedar.NewSet(roleVals...),
	}
	if p.Email != "" && p.EmailVerified {
		attrs["email"] = cedar.String(p.Email)
	}
	ent := types.Entity{UID: uid, Parents: cedar.NewEntityUIDSet(parents...), Attributes: cedar.NewRecord(attrs)}
	return uid, types.EntityMap{uid: ent}
}

func scopeSet(scopes []string) types.Set {
	vs := make([]types.Value, len(scopes))
	for i, s := range scopes {
		vs[i] = cedar.String(s)
	}
	return cedar.NewSet(vs...)
}

// argumentsRecord converts call arguments (a JSON object, or empty) to a
// Cedar record. JSON strings, booleans, arrays and objects become Cedar
// strings, booleans, sets and records. A number becomes a Long when it is an
// integer in range (1.0 included), else a decimal when it has at most four
// fractional digits (Cedar's decimal). Nulls and numbers Cedar cannot
// represent become unrepresentable, so a rule cannot skip them with `has`.
func argumentsRecord(raw json.RawMessage) (types.Record, error) {
	rec, _, err := convertArguments(raw, true)
	return rec, err
}

// convertArguments is argumentsRecord; with keep false, nulls and numbers
// Cedar cannot represent are left out instead. lossy reports whether there
// were any.
func convertArguments(raw json.RawMessage, keep bool) (rec types.Record, lossy bool, err error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return cedar.NewRecord(nil), false, nil
	}
	pd := decoderPool.Get().(*pooledDecoder)
	defer func() {
		pd.rd.Reset(nil) // do not keep the caller's bytes alive in the pool
		pd.dec.Reset(&pd.rd)
		decoderPool.Put(pd)
	}()
	pd.rd.Reset(raw)
	pd.dec.Reset(&pd.rd)
	c := converter{dec: pd.dec, keep: keep}
	v, ok, err := c.value()
	if err != nil {
		return types.Record{}, false, err
	}
	rec, isRec := v.(types.Record)
	if !ok || !isRec {
		return types.Record{}, false, errors.New("arguments must be a JSON object")
	}
	if _, err := c.dec.ReadToken(); err == nil {
		return types.Record{}, false, errors.New("trailing data after arguments")
	}
	return rec, c.lossy, nil
}

// converter reads JSON values into Cedar values.
type converter struct {
	dec   *jsontext.Decoder
	keep  bool // unrepresentable values: true = as unrepresentable, false = left out
	lossy bool // some value was unrepresentable
}

// lost handles a value Cedar cannot represent; ok is false to leave it out.
func (c *converter) lost() (types.Value, bool, error) {
	c.lossy = true
	return unrepresentable, c.keep, nil
}

// unrepresentable stands for a JSON null or a number Cedar cannot hold. It
// is an entity of a type no rule may name (parseCedar allows only the
// gateway's types), so `has` sees the attribute and any comparison, `like`,
// arithmetic or attribute access on it is an evaluation error: a forbid rule
// then denies (see outcome) and a permit rule does not match. Leaving such
// values out instead let `has x && x > 16` skip a forbid with x = 1e300 or
// null. Equality with it is false, as Cedar's == is across types.
var unrepresentable types.Value = cedar.NewEntityUID("Unrepresentable", "value")

// pooledDecoder is reused: a jsontext.Decoder is large to allocate.
type pooledDecoder struct {
	dec *jsontext.Decoder
	rd  bytes.Reader
}

var decoderPool = sync.Pool{New: func() any {
	pd := &pooledDecoder{}
	pd.dec = jsontext.NewDecoder(&pd.rd)
	return pd
}}

// value reads one JSON value; ok is false for values to leave out.
func (c *converter) value() (types.Value, bool, error) {
	dec := c.dec
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, false, err
	}
	switch tok.Kind() {
	case 'n':
		return c.lost()
	case 't', 'f':
		return cedar.Boolean(tok.Bool()), true, nil
	case '"':
		return cedar.String(tok.String()), true, nil
	case '0':
		if v, ok := jsonNumber(tok.String()); ok {
			return v, true, nil
		}
		return c.lost()
	case '[':
		var vs []types.Value
		for dec.PeekKind() != ']' {
			v, ok, err := c.value()
			if err != nil {
				return nil, false, err
			}
			if ok {
				vs = append(vs, v)
			}
		}
		if _, err := dec.ReadToken(); err != nil {
			return nil, false, err
		}
		return cedar.NewSet(vs...), true, nil
	case '{':
		m := cedar.RecordMap{}
		for dec.PeekKind() != '}' {
			tok, err := dec.ReadToken()
			if err != nil {
				return nil, false, err
			}
			name := tok.String() // before the next read voids the token
			v, ok, err := c.value()
			if err != nil {
				return nil, false, err
			}
			if ok {
				m[cedar.String(name)] = v
			}
		}
		if _, err := dec.ReadToken(); err != nil {
			return nil, false, err
		}
		return cedar.NewRecord(m), true, nil
	}
	return nil, false, fmt.Errorf("unexpected JSON token %v", tok.Kind())
}

var decimalScale = big.NewRat(10000, 1)

func jsonNumber(s string) (types.Value, bool) {
	if !strings.ContainsAny(s, ".eE") {
		i, err := strconv.ParseInt(s, 10, 64)
		return cedar.Long(i), err == nil
	}
	// Bound the work: big.Rat would expand 1e999999999 in full.
	if len(s) > 64 {
		return nil, false
	}
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		if exp, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+")); err != nil || exp > 40 || exp < -40 {
			return nil, false
		}
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return nil, false
	}
	if r.IsInt() && r.Num().IsInt64() {
		return cedar.Long(r.Num().Int64()), true
	}
	scaled := new(big.Rat).Mul(r, decimalScale)
	if !scaled.IsInt() || !scaled.Num().IsInt64() {
		return nil, false
	}
	d, err := cedar.NewDecimal(scaled.Num().Int64(), -4)
	return d, err == nil
}
