package authserver

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/telemetry"
)

// tracedStore puts a span around the store calls of the token endpoint's
// path (client lookup, code redemption, refresh-token rotation, grant
// reads and revocation) when tracing is on. Every other method passes
// through the embedded Store unchanged. Spans carry the operation's name
// and its outcome, never a key or a hash.
type tracedStore struct{ store.Store }

// storeSpan ends span with the outcome of a store call: ErrNotFound is an
// answer, not a failure.
func storeSpan(span trace.Span, err error) {
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		span.SetStatus(codes.Error, "store error")
	}
	span.End()
}

func (t tracedStore) GetClient(ctx context.Context, id string) (*store.Client, error) {
	ctx, span := telemetry.Start(ctx, "store.GetClient")
	c, err := t.Store.GetClient(ctx, id)
	storeSpan(span, err)
	return c, err
}

func (t tracedStore) RedeemAuthCode(ctx context.Context, hash string, issue store.IssueFunc) (*store.AuthCode, error) {
	ctx, span := telemetry.Start(ctx, "store.RedeemAuthCode")
	c, err := t.Store.RedeemAuthCode(ctx, hash, issue)
	storeSpan(span, err)
	return c, err
}

func (t tracedStore) GetGrant(ctx context.Context, id string) (*store.Grant, error) {
	ctx, span := telemetry.Start(ctx, "store.GetGrant")
	g, err := t.Store.GetGrant(ctx, id)
	storeSpan(span, err)
	return g, err
}

func (t tracedStore) GetRefreshToken(ctx context.Context, hash string) (*store.RefreshToken, error) {
	ctx, span := telemetry.Start(ctx, "store.GetRefreshToken")
	rt, err := t.Store.GetRefreshToken(ctx, hash)
	storeSpan(span, err)
	return rt, err
}

func (t tracedStore) GetRefreshTokenGrant(ctx context.Context, hash string) (*store.RefreshToken, *store.Grant, error) {
	ctx, span := telemetry.Start(ctx, "store.GetRefreshTokenGrant")
	rt, g, err := t.Store.GetRefreshTokenGrant(ctx, hash)
	storeSpan(span, err)
	return rt, g, err
}

func (t tracedStore) RotateRefreshToken(ctx context.Context, oldHash string, next *store.RefreshToken, now time.Time) error {
	ctx, span := telemetry.Start(ctx, "store.RotateRefreshToken")
	err := t.Store.RotateRefreshToken(ctx, oldHash, next, now)
	storeSpan(span, err)
	return err
}

func (t tracedStore) RevokeGrant(ctx context.Context, id string) error {
	ctx, span := telemetry.Start(ctx, "store.RevokeGrant")
	err := t.Store.RevokeGrant(ctx, id)
	storeSpan(span, err)
	return err
}
