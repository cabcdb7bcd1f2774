package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/aggregate"
	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/authserver"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/credential"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/metrics"
	"github.com/mcpgate/mcpgate/internal/policy"
	"github.com/mcpgate/mcpgate/internal/proxy"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/stdio"
	"github.com/mcpgate/mcpgate/internal/telemetry"
	"github.com/mcpgate/mcpgate/internal/tokenendpoint"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// New provisions every component from a validated configuration. It fails
// with a clear message rather than start half-configured.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Server, error) {
	return newServer(ctx, cfg, log)
}

// newServer is New with extra audit logger options (fault injection in tests).
func newServer(ctx context.Context, cfg *config.Config, log *slog.Logger, auditOpts ...audit.Option) (*Server, error) {
	s := &Server{cfg: cfg, log: log, registry: newRegistry()}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()

	if err := checkSecretFiles(cfg, log); err != nil {
		return nil, err
	}
	auditor, err := audit.New(cfg.Audit, append([]audit.Option{audit.WithSlog(log)}, auditOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	s.closers = append(s.closers, auditor.Close)
	s.registry.MustRegister(auditor.Collectors()...)

	engine, err := policy.Compile(cfg.Policy)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	s.policy = policy.NewHolder(engine)

	mux := http.NewServeMux()
	s.routes(mux)
	e := newEdge(cfg)

	var upstream credential.UpstreamTokens
	var linked credential.LinkedTokens
	var authenticator Authenticator
	switch cfg.Auth.Mode {
	case config.ModeAuthorizationServer:
		as, err := s.provisionAuthorizationServer(ctx, mux, e, auditor)
		if err != nil {
			return nil, err
		}
		authenticator, upstream, linked = as, as, as
		if cfg.InternalEndpoint.Enabled() {
			if s.internal, err = s.provisionInternalEndpoint(as, auditor); err != nil {
				return nil, err
			}
		}
	case config.ModeNone:
		authenticator = anonymous{}
	default:
		a, err := authn.New(ctx, cfg.Auth.Config, authn.Options{Logger: log})
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		authenticator = a
		if r, ok := a.(authn.Readier); ok {
			s.readies = append(s.readies, r.Ready)
		}
	}

	m := metrics.NewGateway(s.registry)
	lists := mcp.NewListCache(mcp.DefaultListCacheEntries, mcp.DefaultListCacheBytes)
	s.registry.MustRegister(listCacheCollectors(lists)...)
	limits, err := ratelimit.NewSet(ctx, cfg.RateLimit, ratelimit.SharedOptions{DSN: cfg.Store.DSN, Log: log})
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() error { limits.Close(); return nil })
	s.registry.MustRegister(limits.Collectors()...)
	// Session ids are sealed under a key every replica derives from the
	// encryption key (sessions.go).
	sessionSealer, err := newSessionSealer(cfg.EncryptionKey, cfg.EncryptionKeyPrevious)
	if err != nil {
		return nil, fmt.Errorf("encryption_key: %w", err)
	}
	s.inFlightIP = ratelimit.NewInFlight(cfg.Security.MaxInFlightPerIP, inFlightKeys)
	inFlightUser := ratelimit.NewInFlight(cfg.Security.MaxInFlightPerUser, inFlightKeys)
	s.bodyLimits = newBodyLimits(cfg.Security)
	servers := authorizationServers(cfg)
	credMetrics := credential.NewMetrics()
	s.registry.MustRegister(credMetrics.Collectors()...)
	mcpPaths := map[string]bool{}
	resources := map[string]bool{}
	for _, r := range cfg.ResourceURLs() {
		resources[strings.ToLower(r)] = true
	}
	gw := func(name, path string) *gateway {
		return &gateway{
			name: name, resource: cfg.PublicURL + path, resources: resources, metadataURL: prmURL(cfg.PublicURL, path), scopes: cfg.Auth.ScopesSupported,
			authn: authenticator, policy: s.policy, audit: auditor,
			ipLimiter: limits.PerIP, userLimiter: limits.PerUser, toolLimits: limits.PerTool, edge: e, maxBody: cfg.Security.MaxBodyBytes,
			inFlightIP: s.inFlightIP, inFlightUser: inFlightUser, bodyLimits: s.bodyLimits, writeTimeout: cfg.Security.WriteTimeout,
			sessions: newSessionCodec(sessionSealer, name), log: log.With("backend", name), metrics: m, lists: lists,
		}
	}
	first := true
	mount := func(g *gateway, path, name string) {
		mux.Handle(path, g)
		mcpPaths[path] = true
		doc := prmHandler(oauthex.ProtectedResourceMetadata{
			Resource: g.resource, AuthorizationServers: servers, ScopesSupported: cfg.Auth.ScopesSupported,
			BearerMethodsSupported: []string{"header"}, ResourceName: "mcpgate: " + name,
		})
		mux.Handle("/.well-known/oauth-protected-resource"+path, publicCORS(doc))
		if first {
			mux.Handle("/.well-known/oauth-protected-resource", publicCORS(doc))
			first = false
		}
	}
	byName := map[string]*proxy.Backend{}
	for _, bc := range cfg.Backends {
		if bc.IsStdio() {
			if bc, err = s.startStdio(bc); err != nil {
				return nil, fmt.Errorf("backend %s: %w", bc.Name, err)
			}
		}
		cred, err := credential.New(bc.Credential, credential.Options{Backend: bc.Name, Subject: subjectSource(cfg.Auth.Mode),
			Upstream: upstream, Linked: linked, Auditor: auditor, Metrics: credMetrics, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("backend %s: %w", bc.Name, err)
		}
		b, err := proxy.NewBackend(bc, proxy.Options{Logger: log, Credential: cred})
		if err != nil {
			return nil, err
		}
		byName[bc.Name] = b
		if bc.Path == "" {
			continue // served only through an aggregated endpoint
		}
		g := gw(bc.Name, bc.Path)
		g.backend, g.sessionGate = b, bc.IsStdio()
		mount(g, bc.Path, bc.Name)
	}
	for _, ec := range cfg.Endpoints {
		members := make([]*proxy.Backend, len(ec.Backends))
		for i, name := range ec.Backends {
			members[i] = byName[name]
		}
		a, err := aggregate.New(ec, members, aggregate.Options{Policy: s.policy, Logger: log, SessionTimeout: ec.IdleTimeout})
		if err != nil {
			return nil, err
		}
		s.closers = append(s.closers, a.Close)
		g := gw(ec.Name, ec.Path)
		g.agg = a
		mount(g, ec.Path, ec.Name)
	}
	if !mcpPaths["/"] { // a backend at "/" owns GET / (its SSE stream)
		home, err := homePage(cfg)
		if err != nil {
			return nil, err
		}
		mux.Handle("GET /{$}", home)
	}
	// The server span of every request when tracing is on (telemetry);
	// probes and scrapes, every few seconds, would only be noise.
	s.handler = telemetry.Handler(s.outer(e, mux, mcpPaths), "/healthz", "/readyz", "/metrics")
	ok = true
	return s, nil
}

// provisionInternalEndpoint builds the internal token endpoint (its own
// listener, opened by Run; never a route of the public mux). It fails when
// its certificate files do not load.
func (s *Server) provisionInternalEndpoint(as *authserver.Server, auditor *audit.Logger) (*tokenendpoint.Endpoint, error) {
	backends := make(map[string]string, len(s.cfg.Backends))
	// A backend served only through an aggregated endpoint has no resource
	// of its own: its users' tokens are issued for the (first) endpoint.
	endpointOf := map[string]string{}
	for _, e := range s.cfg.Endpoints {
		for _, b := range e.Backends {
			if endpointOf[b] == "" {
				endpointOf[b] = e.Path
			}
		}
	}
	for _, b := range s.cfg.Backends {
		path := b.Path
		if path == "" {
			path = endpointOf[b.Name]
		}
		res, err := authserver.CanonicalResource(s.cfg.PublicURL + path)
		if err != nil {
			return nil, fmt.Errorf("backend %s: %w", b.Name, err)
		}
		backends[b.Name] = res
	}
	ep, err := tokenendpoint.New(s.cfg.InternalEndpoint, tokenendpoint.Deps{
		AuthServer: as, Auditor: auditor, Logger: s.log.With("component", "internal_endpoint"),
		Registry: s.registry, Backends: backends,
		// The policy in force now (it may be reloaded), as for initialize.
		Permits: func(p *identity.Principal, backend string) bool {
			return s.policy.Load().DecideSession(p, backend).Allow
		},
	})
	if err != nil {
		return nil, fmt.Errorf("internal_endpoint: %w", err)
	}
	return ep, nil
}

// startStdio serves a stdio backend on an internal loopback listener and
// returns the config to proxy to it. The listener requires a random bearer
// token, so other local processes cannot reach the child through it.
func (s *Server) startStdio(bc proxy.BackendConfig) (proxy.BackendConfig, error) {
	bridge, err := stdio.New(bc.Stdio, s.log.With("backend", bc.Name))
	if err != nil {
		return bc, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		bridge.Close()
		return bc, err
	}
	srv := &http.Server{Handler: bridge, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	s.closers = append(s.closers, func() error {
		err := bridge.Close() // ends the open streams and reaps the children
		srv.Close()
		return err
	})
	bc.URL = "http://" + ln.Addr().String() + "/mcp"
	bc.Credential = proxy.CredentialConfig{Type: "static", Header: "Authorization", Value: "Bearer " + bridge.Token()}
	return bc, nil
}

// inFlightKeys bounds the in-flight counters (client addresses or users
// with a request open at once); past it new keys are refused.
const inFlightKeys = 100_000

// outer applies the checks every endpoint gets: Host allow-list, security
// headers, no protocol upgrades, the per-IP in-flight bound and the body
// read limits. The probes are exempt (orchestrators send the pod IP as
// Host), and so are the MCP endpoints, whose gateway makes the same checks
// itself so that each rejection is audited.
func (s *Server) outer(e *edge, next http.Handler, mcpPaths map[string]bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.securityHeaders(w.Header())
		p := r.URL.Path
		if p == "/healthz" || p == "/readyz" || mcpPaths[p] {
			next.ServeHTTP(w, r)
			return
		}
		if !e.allowedHost(r) {
			closeIfBodyUnread(w, r)
			http.Error(w, "forbidden: host not allowed", http.StatusForbidden)
			return
		}
		if _, ok := r.Header["Upgrade"]; ok {
			closeIfBodyUnread(w, r)
			http.Error(w, "protocol upgrades are not supported", http.StatusBadRequest)
			return
		}
		slot, ok := s.inFlightIP.Acquire(e.ipKey(r))
		if !ok {
			closeIfBodyUnread(w, r)
			w.Header().Set("Retry-After", "1")
			http.Error(w, "too many requests in flight", http.StatusTooManyRequests)
			return
		}
		defer slot.Release()
		if r.ContentLength != 0 {
			rateLimitedBody(w, r, s.bodyLimits)
		}
		next.ServeHTTP(w, r)
	})
}

// ReloadPolicy compiles cfg and swaps it in atomically; in-flight requests
// finish under the policy they started with. On error the old policy stays.
func (s *Server) ReloadPolicy(cfg policy.Config) error {
	engine, err := policy.Compile(cfg)
	if err != nil {
		return err
	}
	s.policy.Store(engine)
	s.log.Info("policy reloaded")
	return nil
}

// subjectSource is where a token exchange finds the user's token: the
// upstream token stored with the grant when mcpgate issued the client's
// token, the client's token when an external issuer did.
func subjectSource(mode authn.Mode) credential.SubjectSource {
	switch mode {
	case config.ModeAuthorizationServer:
		return credential.SubjectUpstream
	case config.ModeJWT, config.ModeIntrospection:
		return credential.SubjectIncoming
	}
	return credential.SubjectNone
}

// anonymous is the principal for auth.mode none (loopback only).
type anonymous struct{}

var anonymousPrincipal = &identity.Principal{Issuer: "mcpgate:none", Subject: "anonymous", Username: "anonymous"}

func (anonymous) Authenticate(*http.Request) (*identity.Principal, error) {
	return anonymousPrincipal, nil
}
