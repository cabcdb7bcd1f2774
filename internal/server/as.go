package server

import (
	"context"
	"fmt"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/authserver"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/keys"
	"github.com/mcpgate/mcpgate/internal/metrics"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/backends"
)

// provisionAuthorizationServer opens the store, loads (or creates) the
// signing keys and mounts the built-in OAuth 2.1 server on mux.
// The authorization server writes to auditor, the logger of the MCP
// endpoints: one hash chain for the whole gateway.
func (s *Server) provisionAuthorizationServer(ctx context.Context, mux *http.ServeMux, e *edge, auditor authserver.Auditor) (*authserver.Server, error) {
	cfg := s.cfg
	sealer, err := keys.NewSealerFromBase64(cfg.EncryptionKey, cfg.EncryptionKeyPrevious)
	if err != nil {
		return nil, fmt.Errorf("encryption_key: %w", err)
	}
	st, err := backends.Open(ctx, cfg.Store, s.log)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s.closers = append(s.closers, st.Close)
	var as *authserver.Server // set below, before any request can rotate or reload keys
	km, err := keys.NewManager(ctx, st, sealer, keys.Options{
		Algorithm:   cfg.Auth.AuthorizationServer.SigningAlg,
		Overlap:     cfg.Keys.RetiredKeyOverlap,
		RotateEvery: cfg.Keys.RotateEvery,
		Logger:      s.log,
		OnRotate: func(ctx context.Context, previous, active string) {
			if as != nil {
				as.SigningKeyRotated(ctx, previous, active)
			}
		},
		OnRevoke: func(ctx context.Context, kid string) {
			if as != nil {
				as.SigningKeyRevoked(ctx, kid)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	s.reloadKeys = km.Reload
	// Ready once the signing keys load (the key manager re-reads the store).
	s.readies = append(s.readies, func(ctx context.Context) error { _, err := km.JWKS(ctx); return err })
	as, err = authserver.New(cfg.Auth.AuthorizationServer, authserver.Deps{
		Store: st, Signer: km, Sealer: sealer, Logger: s.log.With("component", "authserver"), ClientIP: e.clientIP,
		Auditor: auditor, ResourceNames: resourceNames(cfg),
		// The policy in force at sign-in (it may be reloaded meanwhile).
		GrantsNothing: func(p *identity.Principal) bool { return s.policy.Load().GrantsNothing(p) },
	})
	if err != nil {
		return nil, err
	}
	sweepCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.closers = append(s.closers, func() error { stop(); return nil })
	go store.RunSweeper(sweepCtx, st, cfg.Store.SweepInterval, s.log)
	// Re-read the keys every reload interval even when idle, so a key
	// revoked elsewhere (`mcpgate keys revoke`) stops verifying here within
	// that interval, not only once something signs or fetches the JWKS.
	go func() {
		t := time.NewTicker(keys.DefaultReloadInterval)
		defer t.Stop()
		for {
			select {
			case <-sweepCtx.Done():
				return
			case <-t.C:
				if err := km.Reload(sweepCtx); err != nil && sweepCtx.Err() == nil {
					s.log.Warn("reloading signing keys failed; using the loaded keys", "err", err)
				}
			}
		}
	}()
	go s.followChanges(sweepCtx, st, as, km)
	// Not ready until the upstream IdP answers; sign-ins get 503 meanwhile.
	go as.WatchUpstream(sweepCtx)
	s.readies = append(s.readies, as.Ready)

	// The handler sets its own CORS headers on the credential-less endpoints
	// (metadata, jwks, token, register, revoke, introspect).
	h := as.Handler()
	timed := metrics.NewAuthServer(s.registry)
	for _, p := range as.Routes() {
		mux.Handle(p, timed.Instrument(asEndpoint(p), h))
	}
	return as, nil
}

// followChanges applies what other processes sharing the store changed
// (store.Changes: LISTEN/NOTIFY on PostgreSQL) to this replica's caches
// until ctx ends: a revoked grant is re-read at its next use, rotated or
// revoked signing keys are reloaded, a policy reload request re-reads this
// replica's policy files.
func (s *Server) followChanges(ctx context.Context, st store.Changes, as *authserver.Server, km *keys.Manager) {
	reloadKeys := func() {
		if err := km.Reload(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("reloading signing keys after a change failed; using the loaded keys", "err", err)
		}
		as.KeysChanged()
	}
	for c := range st.Subscribe(ctx) {
		switch c.Kind {
		case store.ChangeGrant:
			as.ForgetGrant(c.ID)
		case store.ChangeKeys:
			reloadKeys()
		case store.ChangePolicy:
			s.requestPolicyReload()
		case store.ChangeAll:
			as.ForgetAll()
			reloadKeys()
		}
	}
}

// OnPolicyReloadRequest sets what a policy reload request from another
// process (`mcpgate policy reload`, delivered through the store) runs: the
// same as SIGHUP. Without it such requests are logged and ignored.
func (s *Server) OnPolicyReloadRequest(f func()) { s.policyReload.Store(&f) }

func (s *Server) requestPolicyReload() {
	if f := s.policyReload.Load(); f != nil {
		s.log.Info("policy reload requested through the store")
		(*f)()
		return
	}
	s.log.Info("policy reload requested through the store; not served by this process")
}

// resourceNames maps each backend's resource URI to its name, for the
// authorization server's consent page.
func resourceNames(cfg *config.Config) map[string]string {
	m := make(map[string]string, len(cfg.Backends))
	for _, b := range cfg.Backends {
		m[cfg.PublicURL+b.Path] = b.Name
	}
	return m
}

// asEndpoint names a route of the authorization server for the endpoint
// label of its latency metric: "metadata" for the well-known documents, else
// the last path segment (token, authorize, ...).
func asEndpoint(route string) string {
	if strings.Contains(route, "/.well-known/") {
		return "metadata"
	}
	return path.Base(route)
}

// ReloadKeys re-reads the authorization server's signing keys from the store
// at once (SIGHUP), e.g. right after `mcpgate keys rotate`, instead of within
// the reload interval; the rotation is then audited. A no-op in other modes.
func (s *Server) ReloadKeys(ctx context.Context) error {
	if s.reloadKeys == nil {
		return nil
	}
	return s.reloadKeys(ctx)
}
