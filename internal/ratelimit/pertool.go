package ratelimit

import (
	"context"
	"slices"
	"time"

	"github.com/mcpgate/mcpgate/internal/policy"
)

// ToolLimits are the `rate_limit.per_tool` rules. Each rule has one bucket
// per (user, backend, tool), so throttling delete_vm for one user leaves
// another user, and the same user's other tools, untouched.
type ToolLimits struct {
	rules []toolRule
}

type toolRule struct {
	tools    []policy.Glob
	backends []string // empty: every backend
	limit    Taker
}

func (t *ToolLimits) add(c ToolLimit, limit Taker) error {
	r := toolRule{backends: c.Backends, limit: limit}
	for _, p := range c.Tools {
		g, err := policy.CompileGlob(p)
		if err != nil {
			return err
		}
		r.tools = append(r.tools, g)
	}
	t.rules = append(t.rules, r)
	return nil
}

// Take takes one token from every rule that matches the tool; a call must
// pass them all. The caller has authorized the call already, so the key
// space is bounded by what the policy lets each user call (and by max_keys).
// A nil *ToolLimits allows everything.
func (t *ToolLimits) Take(ctx context.Context, userKey, backend, tool string) (bool, time.Duration) {
	if t == nil {
		return true, 0
	}
	var key string
	for i := range t.rules {
		r := &t.rules[i]
		if !r.matches(backend, tool) {
			continue
		}
		if key == "" {
			// NUL cannot occur in a principal key, backend name or tool name
			// that reached here, so the parts cannot run into each other.
			key = userKey + "\x00" + backend + "\x00" + tool
		}
		if ok, retry := r.limit.Take(ctx, key); !ok {
			return false, retry
		}
	}
	return true, 0
}

func (r *toolRule) matches(backend, tool string) bool {
	if len(r.backends) > 0 && !slices.Contains(r.backends, backend) {
		return false
	}
	for i := range r.tools {
		if r.tools[i].Match(tool) {
			return true
		}
	}
	return false
}
