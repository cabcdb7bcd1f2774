package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mcpgate/mcpgate/internal/identity"
)

// Explanation says why a request was allowed or denied and what would
// change the outcome ("why can't alice call delete_vm?").
type Explanation struct {
	Request  Request  `json:"request"`
	Decision Decision `json:"decision"`
	// Principal is the caller's identity key (issuer#subject).
	Principal string   `json:"principal"`
	Groups    []string `json:"groups,omitempty"`
	// UnknownGroups are groups of the caller that confer no role.
	UnknownGroups []string `json:"unknown_groups,omitempty"`
	// Roles are the caller's roles and how each was obtained.
	Roles []RoleSource `json:"roles,omitempty"`
	// Matches are all role patterns that match the target.
	Matches []string `json:"matches,omitempty"`
	// RequiredScopes are the scopes the target needs (tools only);
	// Scopes are those available, from the token or the fallback.
	RequiredScopes []string `json:"required_scopes,omitempty"`
	Scopes         []string `json:"scopes"`
	ScopesFrom     string   `json:"scopes_from"` // "token" or "fallback_scopes"
	// Rules are the Cedar rules whose scope applies to the target.
	Rules []RuleResult `json:"rules,omitempty"`
	// Suggestions say what would change a denial.
	Suggestions []string `json:"suggestions,omitempty"`
	// Endpoint is the aggregated endpoint the request came through, and
	// Exposed the tool or prompt name a client sees there, when it differs
	// from Request.Name (set by the caller that resolved them).
	Endpoint string `json:"endpoint,omitempty"`
	Exposed  string `json:"exposed_name,omitempty"`
}

// RoleSource is one role of a principal and where it came from.
type RoleSource struct {
	Role string   `json:"role"`
	Via  []string `json:"via"`
}

// RuleResult is how one applicable Cedar rule evaluated.
type RuleResult struct {
	ID      string `json:"id"`
	Effect  string `json:"effect"` // permit | forbid
	Matched bool   `json:"matched"`
	Error   string `json:"error,omitempty"`
}

// Explain decides req like Decide and explains the decision.
func (e *Engine) Explain(p *identity.Principal, req Request) *Explanation {
	if p == nil {
		p = anonymous
	}
	x := &Explanation{Request: req, Principal: p.Key(), Groups: p.Groups}
	x.Decision = e.finish(e.decide(p, &req, x))
	r := e.resolve(p)
	x.UnknownGroups = r.unknown
	for _, role := range r.roles {
		x.Roles = append(x.Roles, RoleSource{Role: role, Via: r.via[role]})
	}
	x.Scopes = r.scopes
	x.ScopesFrom = "token"
	if r.fromFallback {
		x.ScopesFrom = "fallback_scopes"
	}
	k, named := namedMethods[req.Method]
	if named && k == kindTool {
		x.RequiredScopes, _ = e.requiredScopes(req.Backend, req.Name)
	}
	if named {
		x.Matches = e.allGrants(r, k, req.Backend, req.Name)
	}
	x.Suggestions = e.suggest(x, req)
	return x
}

// record collects the Cedar details of one named decision.
func (x *Explanation) record(sel policyIter, out cedarOutcome) {
	for _, c := range sel {
		res := RuleResult{ID: string(c.id), Effect: "permit"}
		if c.forbid {
			res.Effect = "forbid"
		}
		res.Matched = slices.Contains(out.matched, c)
		res.Error = out.errs[c]
		x.Rules = append(x.Rules, res)
	}
}

func (e *Engine) allGrants(r *resolved, k kind, backend, name string) []string {
	var out []string
	for _, role := range r.roles {
		cr := e.roles[role]
		pats := slices.Clone(cr.grants[k])
		if b := cr.backends[backend]; b != nil {
			pats = append(pats, b[k]...)
		}
		for _, pt := range pats {
			if pt.g.match(name) {
				out = append(out, "role:"+role+" "+pt.src)
			}
		}
	}
	return out
}

// suggest lists changes that would turn a denial into an allow.
func (e *Engine) suggest(x *Explanation, req Request) []string {
	d := x.Decision
	if d.Effect == EffectAllow {
		return nil
	}
	var out []string
	switch {
	case len(d.MissingScopes) > 0:
		out = append(out, fmt.Sprintf("add scope %s to the token (request it from the authorization server)", strings.Join(d.MissingScopes, " ")))
		if x.ScopesFrom == "fallback_scopes" {
			out = append(out, "or add it to policy.fallback_scopes (the token has no scope claim)")
		}
	case strings.HasPrefix(d.Rule, "cedar:"):
		out = append(out, fmt.Sprintf("rule %s forbids this call: change the call's arguments or the rule", strings.TrimPrefix(d.Rule, "cedar:")))
	case strings.HasPrefix(d.Rule, "methods.deny:"):
		out = append(out, fmt.Sprintf("remove %s from policy.methods.deny", strings.TrimPrefix(d.Rule, "methods.deny:")))
	case d.Rule == RuleDefaultDeny:
		k, named := namedMethods[req.Method]
		target := req.Name
		switch {
		case req.Method == "completion/complete" && req.RefKind == "prompt":
			k, named = kindPrompt, true
		case req.Method == "completion/complete" && req.RefKind == "resource":
			k, named = kindResource, true
		case req.Method == "subscriptions/listen":
			k, named = kindResource, true
			target = ""
		}
		if !named {
			out = append(out, fmt.Sprintf("add %q to policy.methods.allow", req.Method))
			break
		}
		if target == "" {
			out = append(out, "grant a role whose resources patterns match the subscribed URIs")
			break
		}
		for _, r := range x.Rules {
			if r.Effect == "permit" && !r.Matched {
				out = append(out, fmt.Sprintf("rule %s permits this call when its conditions hold (see the rule)", r.ID))
			}
		}
		out = append(out, e.grantSuggestions(k, req.Backend, target)...)
	}
	return out
}

// grantSuggestions names roles that would grant the target and the groups
// that confer them.
func (e *Engine) grantSuggestions(k kind, backend, name string) []string {
	// Least privilege first: roles that include fewer roles come first.
	roles := sortedKeys(e.roles)
	slices.SortStableFunc(roles, func(a, b string) int { return len(e.roles[a].closure) - len(e.roles[b].closure) })
	var out []string
	for _, role := range roles {
		grants := false
		for _, r := range e.roles[role].closure {
			cr := e.roles[r]
			for _, pt := range cr.grants[k] {
				grants = grants || pt.g.match(name)
			}
			if b := cr.backends[backend]; b != nil {
				for _, pt := range b[k] {
					grants = grants || pt.g.match(name)
				}
			}
		}
		if !grants {
			continue
		}
		var groups []string
		for _, g := range sortedKeys(e.groups) {
			for _, gr := range e.groups[g] {
				if cr, ok := e.roles[gr]; ok && slices.Contains(cr.closure, role) && !slices.Contains(groups, g) {
					groups = append(groups, g)
				}
			}
		}
		if len(groups) > 0 {
			out = append(out, fmt.Sprintf("grant role %s via group %s", role, strings.Join(groups, " or ")))
		} else {
			out = append(out, fmt.Sprintf("grant role %s (no group confers it; add it to policy.groups or policy.users)", role))
		}
		if len(out) == 3 {
			break
		}
	}
	if len(out) == 0 {
		if backend != "" && k != kindResource {
			out = append(out, fmt.Sprintf("no role grants %s %q: add %q (backend %s only) or a pattern matching it to a role's %s",
				kindNouns[k], name, escapeGlob(backend)+"/"+escapeGlob(name), backend, kindNames[k]))
		} else {
			out = append(out, fmt.Sprintf("no role grants %s %q: add a matching pattern to a role's %s", kindNouns[k], name, kindNames[k]))
		}
	}
	return out
}

// String renders the explanation for a terminal.
func (x *Explanation) String() string {
	var b strings.Builder
	d := x.Decision
	fmt.Fprintf(&b, "decision: %s\n", strings.ToUpper(d.Effect))
	fmt.Fprintf(&b, "rule:     %s\n", d.Rule)
	if d.Reason != "" {
		fmt.Fprintf(&b, "reason:   %s\n", d.Reason)
	}
	target := x.Request.Method
	if x.Request.Name != "" {
		target += " " + x.Request.Name
	}
	switch {
	case x.Exposed != "":
		target += fmt.Sprintf(" (backend %s; %s at endpoint %s)", x.Request.Backend, x.Exposed, x.Endpoint)
	case x.Endpoint != "" && x.Endpoint != x.Request.Backend:
		target += fmt.Sprintf(" (backend %s, at endpoint %s)", x.Request.Backend, x.Endpoint)
	case x.Request.Backend != "":
		target += " (backend " + x.Request.Backend + ")"
	}
	fmt.Fprintf(&b, "request:  %s\n", target)
	fmt.Fprintf(&b, "principal: %s groups=%s\n", x.Principal, listOrNone(x.Groups))
	if len(x.UnknownGroups) > 0 {
		fmt.Fprintf(&b, "  groups conferring no role: %s\n", strings.Join(x.UnknownGroups, ", "))
	}
	if len(x.Roles) == 0 {
		fmt.Fprintf(&b, "roles: none\n")
	} else {
		fmt.Fprintf(&b, "roles:\n")
		for _, r := range x.Roles {
			fmt.Fprintf(&b, "  %s  via %s\n", r.Role, strings.Join(r.Via, "; "))
		}
	}
	if _, named := namedMethods[x.Request.Method]; named {
		fmt.Fprintf(&b, "matching role patterns: %s\n", listOrNone(x.Matches))
	}
	if len(x.RequiredScopes) > 0 || len(d.MissingScopes) > 0 {
		fmt.Fprintf(&b, "scopes: required %s; available (%s) %s\n", listOrNone(x.RequiredScopes), x.ScopesFrom, listOrNone(x.Scopes))
	}
	for _, r := range x.Rules {
		state := "did not match"
		switch {
		case r.Error != "":
			state = "failed to evaluate (" + r.Error + "), counted as matching"
		case r.Matched:
			state = "matched"
		}
		fmt.Fprintf(&b, "cedar %s %s: %s\n", r.Effect, r.ID, state)
	}
	for _, s := range x.Suggestions {
		fmt.Fprintf(&b, "to allow: %s\n", s)
	}
	return b.String()
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
