package server

import (
	"context"
	"fmt"
	"net/http"

	"github.com/mcpgate/mcpgate/internal/authserver"
	"github.com/mcpgate/mcpgate/internal/keys"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/backends"
)

// provisionAuthorizationServer opens the store, loads (or creates) the
// signing keys and mounts the built-in OAuth 2.1 server on mux.
func (s *Server) provisionAuthorizationServer(ctx context.Context, mux *http.ServeMux, e *edge) (*authserver.Server, error) {
	cfg := s.cfg
	rawKey, err := keys.ParseKey(cfg.EncryptionKey)
	if err != nil {
		return nil, fmt.Errorf("encryption_key: %w", err)
	}
	sealer, err := keys.NewSealer(rawKey)
	if err != nil {
		return nil, fmt.Errorf("encryption_key: %w", err)
	}
	st, err := backends.Open(ctx, cfg.Store, s.log)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s.closers = append(s.closers, st.Close)
	km, err := keys.NewManager(ctx, st, sealer, keys.Options{Algorithm: cfg.Auth.AuthorizationServer.SigningAlg})
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	// Ready once the signing keys load (the key manager re-reads the store).
	s.readies = append(s.readies, func(ctx context.Context) error { _, err := km.JWKS(ctx); return err })
	as, err := authserver.New(cfg.Auth.AuthorizationServer, authserver.Deps{
		Store: st, Signer: km, Sealer: sealer, Logger: s.log.With("component", "authserver"), ClientIP: e.clientIP,
	})
	if err != nil {
		return nil, err
	}
	sweepCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.closers = append(s.closers, func() error { stop(); return nil })
	go store.RunSweeper(sweepCtx, st, cfg.Store.SweepInterval, s.log)

	// The handler sets its own CORS headers on the credential-less endpoints
	// (metadata, jwks, token, register, revoke, introspect).
	h := as.Handler()
	for _, p := range as.Routes() {
		mux.Handle(p, h)
	}
	return as, nil
}
