package authserver

import (
	"context"
	"errors"
	"fmt"

	"github.com/mcpgate/mcpgate/internal/keys"
	"github.com/mcpgate/mcpgate/internal/store"
)

// ResealReport counts what ResealGrants did.
type ResealReport struct {
	Grants   int // unexpired grants with sealed upstream tokens
	Resealed int // sealed again under the current key
	Changed  int // rewritten meanwhile by a refresh (which sealed them under the current key)
}

// ResealGrants seals the upstream tokens of every unexpired grant again
// under the sealer's current key, where a previous key sealed them, so that
// the previous key can be dropped (`mcpgate keys reseal`). Grants that a
// concurrent refresh rewrites are left alone: that write used the current
// key. A grant that opens under no key is an error: dropping the previous
// key would lose it.
func ResealGrants(ctx context.Context, st store.Store, sealer *keys.Sealer) (ResealReport, error) {
	var rep ResealReport
	grants, err := st.ListGrants(ctx, store.GrantFilter{})
	if err != nil {
		return rep, fmt.Errorf("list grants: %w", err)
	}
	var errs []error
	for _, g := range grants {
		if len(g.UpstreamTokens) == 0 {
			continue
		}
		rep.Grants++
		ad := aad("grant", g.ID)
		pt, stale, err := sealer.OpenStale(g.UpstreamTokens, ad)
		if err != nil {
			errs = append(errs, fmt.Errorf("grant %s: upstream tokens open under no configured key", g.ID))
			continue
		}
		if !stale {
			continue
		}
		sealed, err := sealer.Seal(pt, ad)
		if err != nil {
			return rep, err
		}
		switch err := st.UpdateGrantUpstream(ctx, g.ID, nil, sealed, g.UpstreamExpiry, g.Version); {
		case err == nil:
			rep.Resealed++
		case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNotFound):
			rep.Changed++ // refreshed, revoked or expired meanwhile
		default:
			return rep, fmt.Errorf("grant %s: %w", g.ID, err)
		}
	}
	return rep, errors.Join(errs...)
}
