package policy

import (
	"strconv"
	"strings"

	"github.com/mcpgate/mcpgate/internal/identity"
)

// ListView is Visible for one caller on one backend, with the caller's
// roles resolved once, and a key that says which other callers see exactly
// the same items, so that a filtered list can be shared between them.
type ListView struct {
	e       *Engine
	r       *resolved
	backend string
}

// ListView returns the list-filtering view of p on backend.
func (e *Engine) ListView(p *identity.Principal, backend string) ListView {
	return ListView{e: e, r: e.resolve(p), backend: backend}
}

// Visible is Engine.Visible for the view's caller and backend.
func (v ListView) Visible(method, name string) bool {
	return v.e.visible(v.r, method, v.backend, name)
}

// Generation identifies the engine: a policy reload compiles a new engine
// with another generation, so results kept under the old one no longer
// apply.
func (v ListView) Generation() uint64 { return v.e.version }

// Key identifies, within one Generation, the inputs of the view's Visible
// decisions exactly: two views with the same generation and key decide
// every (method, name) alike. Without Cedar rules a decision depends only
// on the backend and the caller's effective roles (inheritance included;
// scopes do not hide an item, see Visible), so callers with the same roles
// share a key. Cedar rules may read any attribute of the caller and the
// token's scopes, so with rules the key is the caller's whole identity: it
// is shared by nobody else, which is exact though it saves less. In shadow
// mode everything is visible. Every part is length-prefixed, so no choice
// of role or backend names makes two different inputs share a key.
func (v ListView) Key() string {
	if k, ok := v.r.listKeys.Load(v.backend); ok {
		return k.(string)
	}
	var b strings.Builder
	field := func(s string) {
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	field(v.backend)
	switch {
	case v.e.shadow:
		b.WriteByte('*')
	case len(v.e.cedar) == 0:
		b.WriteByte('r')
		for _, role := range v.r.roles {
			field(role)
		}
	default:
		b.WriteByte('p')
		b.WriteString(v.r.id)
	}
	k := b.String()
	v.r.listKeys.Store(v.backend, k)
	return k
}
