package policy

import (
	"fmt"
	"iter"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"

	"github.com/mcpgate/mcpgate/internal/identity"
)

// RuleSession is the rule of a DecideSession that found a grant.
const RuleSession = "session:grants-something"

// DecideSession decides whether p may open an MCP session (initialize) on
// backend: only if the policy could allow p some tool, prompt or resource
// there. The gateway asks it for backends whose sessions cost a process
// (stdio), so that a caller to whom the policy grants nothing cannot hold
// them.
//
// It over-approximates, so it never refuses someone who could be allowed
// something: a role pattern for any tool, prompt or resource (everywhere or
// on backend) counts, and so does a Cedar permit whose conditions on the
// principal, context.backend and context.scopes hold, whatever it says
// about the action, the resource or the arguments. Forbid rules, scopes
// required by tool_scopes, and methods.deny are not considered. Results
// are cached per principal and backend.
func (e *Engine) DecideSession(p *identity.Principal, backend string) Decision {
	r := e.resolve(p)
	if v, ok := r.session.Load(backend); ok {
		return e.finish(v.(Decision))
	}
	d := e.decideSession(r, backend)
	r.session.Store(backend, d)
	return e.finish(d)
}

func (e *Engine) decideSession(r *resolved, backend string) Decision {
	for _, role := range r.roles {
		cr := e.roles[role]
		b := cr.backends[backend]
		for k := range numKinds {
			if len(cr.grants[k]) > 0 || b != nil && len(b[k]) > 0 {
				return allowed(RuleSession)
			}
		}
	}
	if e.anyPermit(r, backend) {
		return allowed(RuleSession)
	}
	return denied(RuleDefaultDeny, fmt.Sprintf(
		"permission denied: the policy grants no tool, prompt or resource on backend %q%s, so no session is opened", backend, rolesNote(r)))
}

// anyPermit evaluates the permits' anyTarget variants for r on backend.
func (e *Engine) anyPermit(r *resolved, backend string) bool {
	var permits anyTargetIter
	for i := range e.cedar {
		if e.cedar[i].anyTarget != nil {
			permits = append(permits, &e.cedar[i])
		}
	}
	if len(permits) == 0 {
		return false
	}
	req := cedar.Request{
		Principal: r.uid,
		// Any action and resource: the variants' scopes match all, and
		// their conditions no longer read them.
		Action:   cedar.NewEntityUID(TypeAction, "tools/call"),
		Resource: cedar.NewEntityUID(TypeTool, ""),
		Context:  r.anyArgsContext(backend),
	}
	d, _ := cedar.Authorize(permits, r.entities, req)
	return d == types.Allow
}

// anyTargetIter presents the anyTarget variants to cedar.Authorize.
type anyTargetIter []*cedarPolicy

func (s anyTargetIter) All() iter.Seq2[cedar.PolicyID, *cedar.Policy] {
	return func(yield func(cedar.PolicyID, *cedar.Policy) bool) {
		for _, c := range s {
			if !yield(c.id, c.anyTarget) {
				return
			}
		}
	}
}
