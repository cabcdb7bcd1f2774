// Package authserver is mcpgate's built-in OAuth 2.1 authorization server
// for MCP clients: RFC 8414/OIDC discovery, dynamic client registration
// (RFC 7591) and client ID metadata documents, authorization code with PKCE
// (S256 only), resource indicators (RFC 8707), RFC 9207 `iss`, refresh token
// rotation with reuse detection, revocation (RFC 7009), introspection
// (RFC 7662) and JWT access tokens (RFC 9068). User login is delegated to
// an upstream connector (internal/idp); upstream tokens are kept sealed and
// bound to the grant by its token session id (tsid).
package authserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/idp"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/telemetry"
	"github.com/mcpgate/mcpgate/internal/validate"
	"github.com/mcpgate/mcpgate/web"
)

// Signer signs access tokens and publishes the verification keys.
// *keys.Manager implements it.
type Signer interface {
	// SignJWT returns a compact JWS of claims with the given "typ" header,
	// signed with the active key (its "kid" in the header). The access
	// token's claims are a keys.JSONAppender: a signer may encode them with
	// AppendJSON or with encoding/json, the bytes are the same.
	SignJWT(ctx context.Context, typ string, claims any) (string, error)
	// JWKS returns the public keys currently published (active, next and
	// recently retired).
	JWKS(ctx context.Context) (*jose.JSONWebKeySet, error)
}

// Sealer encrypts secrets at rest (AES-256-GCM in internal/keys). aad binds
// a ciphertext to its context so it cannot be moved to another record.
type Sealer interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(ciphertext, aad []byte) ([]byte, error)
}

// Deps are the server's runtime dependencies.
type Deps struct {
	Store  store.Store
	Signer Signer
	Sealer Sealer
	Logger *slog.Logger
	// HTTPClient contributes TLS settings to outbound calls (IdP, CIMD); the
	// SSRF guard and timeouts are added on top. Optional.
	HTTPClient *http.Client
	// Clock is the time source (tests). Optional.
	Clock func() time.Time
	// ClientIP returns the caller's address for per-IP registration limits.
	// Optional: the default is the host of r.RemoteAddr. Behind a proxy, pass
	// the gateway's trusted-proxy-aware function.
	ClientIP func(*http.Request) string
	// Connector overrides the connector built from Config.Upstream (tests).
	Connector idp.Connector
	// ResourceNames names the backend behind each resource URI, for the
	// consent page (the gateway passes its backend names). Optional.
	ResourceNames map[string]string
	// Auditor records logins, consents, codes, tokens, registrations,
	// revocations and introspections (see audit.go). Optional: nil records
	// nothing; the gateway always passes its audit logger.
	Auditor Auditor
	// GrantsNothing reports whether the policy certainly gives a signed-in
	// user no tool, prompt or resource at all: such a sign-in ends on a page
	// that says so instead of in an empty tool list. Optional.
	GrantsNothing func(*identity.Principal) bool
}

// Server is the authorization server.
type Server struct {
	cfg       Config
	issuer    string
	basePath  string // path of the issuer URL, "" or "/prefix"
	resources []string
	resNames  map[string]string // canonical resource → backend name
	secure    bool              // issuer is https: Secure and __Host- cookies

	st       store.Store
	signer   Signer
	sealer   Sealer
	log      *slog.Logger
	now      func() time.Time
	clientIP func(*http.Request) string
	conn     idp.Connector
	pages    *web.Renderer
	auditor  Auditor
	// grantsNothing is Deps.GrantsNothing (nil: not checked).
	grantsNothing func(*identity.Principal) bool

	static   map[string]*staticClient
	cimd     *cimdFetcher
	verifier *authn.Verifier
	grants   *ttlCache[grantCacheEntry]
	clients  *ttlCache[*store.Client] // dynamically registered clients (clientCache)
	bcryptOK bcryptCache
	idents   identityCache // decoded stored identities (exchange, refresh)
	upLocks  keyedMutex
	linked   map[string]*linkedProvider
	pending  pendingLinks
	limits   *limits
	handler  http.Handler
}

// Ready reports whether the upstream identity provider has been reached
// (always, for connectors without a remote IdP); /readyz uses it.
func (s *Server) Ready(context.Context) error {
	if wt, ok := s.conn.(idp.Watcher); ok {
		if err := wt.Ready(); err != nil {
			return fmt.Errorf("upstream identity provider %s: %w", s.cfg.Upstream.Issuer, err)
		}
	}
	return nil
}

// WatchUpstream reaches the upstream identity provider in the background,
// retrying with backoff until it answers or ctx ends, so that mcpgate
// starts while its IdP is down and the first sign-in after the IdP comes
// back works.
func (s *Server) WatchUpstream(ctx context.Context) {
	if wt, ok := s.conn.(idp.Watcher); ok {
		wt.WatchDiscovery(ctx)
	}
}

type staticClient struct {
	store.Client
	skipConsent bool
}

// New builds the server. cfg must have had SetDefaults applied; New
// validates it again and refuses to start on any problem.
func New(cfg Config, deps Deps) (*Server, error) {
	var p validate.Problems
	cfg.Validate("auth.authorization_server", &p)
	if err := p.Err(); err != nil {
		return nil, err
	}
	if deps.Store == nil || deps.Signer == nil || deps.Sealer == nil {
		return nil, errors.New("authserver: Store, Signer and Sealer are required")
	}
	if telemetry.On() {
		deps.Store = tracedStore{deps.Store}
	}
	s := &Server{
		cfg:           cfg,
		issuer:        cfg.PublicURL,
		st:            deps.Store,
		signer:        deps.Signer,
		sealer:        deps.Sealer,
		log:           deps.Logger,
		now:           deps.Clock,
		clientIP:      deps.ClientIP,
		conn:          deps.Connector,
		auditor:       deps.Auditor,
		grantsNothing: deps.GrantsNothing,
		static:        map[string]*staticClient{},
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.clientIP == nil {
		s.clientIP = remoteIP
	}
	u, err := url.Parse(s.issuer)
	if err != nil {
		return nil, fmt.Errorf("authserver: public_url: %w", err)
	}
	s.basePath = strings.TrimSuffix(u.EscapedPath(), "/")
	s.secure = u.Scheme == "https"
	for _, r := range cfg.Resources {
		c, err := canonicalResource(r)
		if err != nil {
			return nil, err
		}
		s.resources = append(s.resources, c)
	}
	s.resNames = map[string]string{}
	for r, name := range deps.ResourceNames {
		if c, err := canonicalResource(r); err == nil {
			s.resNames[c] = cleanName(name)
		}
	}
	if s.conn == nil {
		s.conn, err = idp.New(cfg.Upstream, idp.Options{
			Issuer:      s.issuer,
			RedirectURL: s.issuer + "/callback",
			HTTPClient:  deps.HTTPClient,
			Logger:      s.log,
			Now:         s.now,
		})
		if err != nil {
			return nil, err
		}
	}
	if s.pages, err = web.NewRenderer(cfg.Branding); err != nil {
		return nil, err
	}
	for _, sc := range cfg.StaticClients {
		c, err := newStaticClient(sc)
		if err != nil {
			return nil, err
		}
		s.static[sc.ClientID] = c
	}
	if cfg.CIMD.enabled() {
		if s.cimd, err = newCIMDFetcher(cfg.CIMD, cfg.Registration.TrustedSchemes, deps.HTTPClient, s.now); err != nil {
			return nil, err
		}
		s.cimd.observe = s.auditCIMD
		if cfg.CIMD.AllowPrivate {
			// Loud on purpose: any client can now make the gateway fetch any
			// internal URL (SSRF). cimd.allowed_hosts is the production switch.
			s.log.Error("INSECURE: cimd.allow_private is set: client ID metadata documents are fetched from ANY private or loopback address, so any client can make this server request internal URLs (SSRF). For tests only; use cimd.allowed_hosts in production")
		} else if len(cfg.CIMD.AllowedHosts) > 0 {
			s.log.Info("client ID metadata documents may come from private addresses of these hosts", "cimd.allowed_hosts", cfg.CIMD.AllowedHosts)
		}
	}
	s.linked = map[string]*linkedProvider{}
	for _, l := range cfg.LinkedProviders {
		s.linked[l.Name] = newLinkedProvider(l, s.issuer, deps.HTTPClient)
	}
	s.verifier = s.newVerifier()
	s.limits = newLimits(cfg)
	s.grants = newTTLCache[grantCacheEntry](cfg.RevocationCacheTTL, maxGrantCacheEntries, s.now)
	s.clients = newTTLCache[*store.Client](cfg.RevocationCacheTTL, maxClientCacheEntries, s.now)
	s.routes()
	return s, nil
}

// Issuer is the issuer identifier (RFC 8414 §2), equal to the public URL.
func (s *Server) Issuer() string { return s.issuer }

// Resources are the canonical resource URIs tokens may be issued for.
func (s *Server) Resources() []string { return append([]string(nil), s.resources...) }

// Scopes are the scopes advertised to clients.
func (s *Server) Scopes() []string { return append([]string(nil), s.cfg.Scopes...) }

// Handler serves every authorization-server endpoint; see Routes.
func (s *Server) Handler() http.Handler { return s.handler }

// Routes lists the URL paths Handler serves, for the caller's mux: the
// well-known documents (RFC 8414 §3.3 path-suffixed when the issuer has a
// path) and the endpoints under the issuer's path.
func (s *Server) Routes() []string {
	var out []string
	for _, p := range s.wellKnownPaths() {
		out = append(out, p)
	}
	for _, e := range []string{"/authorize", "/callback", "/login", "/consent", "/token", "/register", "/revoke", "/introspect", "/jwks"} {
		out = append(out, s.basePath+e)
	}
	if len(s.linked) > 0 {
		out = append(out, s.basePath+"/link/")
	}
	return out
}

func (s *Server) wellKnownPaths() []string {
	paths := []string{
		"/.well-known/oauth-authorization-server" + s.basePath,
		"/.well-known/openid-configuration" + s.basePath,
	}
	if s.basePath != "" {
		// OIDC Discovery §4 appends to the issuer instead of inserting.
		paths = append(paths, s.basePath+"/.well-known/openid-configuration", s.basePath+"/.well-known/oauth-authorization-server")
	}
	return paths
}

func (s *Server) routes() {
	mux := http.NewServeMux()
	b := s.basePath
	meta := func(h http.HandlerFunc) http.Handler { return s.limited(routeMetadata, cors(h)) }
	api := func(h http.HandlerFunc) http.Handler { return s.limited(routeJSON, cors(h)) }
	page := func(h http.HandlerFunc) http.Handler { return s.limited(routePage, h) }
	noContent := func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }
	for _, p := range s.wellKnownPaths() {
		mux.Handle("GET "+p, meta(s.handleMetadata))
		mux.Handle("OPTIONS "+p, meta(noContent))
	}
	mux.Handle("GET "+b+"/jwks", meta(s.handleJWKS))
	mux.Handle("OPTIONS "+b+"/jwks", meta(noContent))
	mux.Handle("GET "+b+"/authorize", page(s.handleAuthorize))
	mux.Handle("POST "+b+"/authorize", page(s.handleAuthorize))
	mux.Handle("GET "+b+"/login", page(s.handleLoginPage))
	mux.Handle("POST "+b+"/login", page(s.handleLogin))
	mux.Handle("GET "+b+"/consent", page(s.handleConsentPage))
	mux.Handle("POST "+b+"/consent", page(s.handleConsent))
	mux.Handle("GET "+b+"/callback", page(s.handleCallback))
	mux.Handle("GET "+b+"/link/{provider}", page(s.handleLinkPage))
	mux.Handle("POST "+b+"/link/{provider}", page(s.handleLinkConfirm))
	mux.Handle("POST "+b+"/link/{provider}/login", page(s.handleLinkLogin))
	mux.Handle("GET "+b+"/link/{provider}/callback", page(s.handleLinkCallback))
	mux.Handle("POST "+b+"/token", api(s.handleToken))
	mux.Handle("POST "+b+"/register", api(s.handleRegister))
	mux.Handle("POST "+b+"/revoke", api(s.handleRevoke))
	mux.Handle("POST "+b+"/introspect", api(s.handleIntrospect))
	// CORS preflights are cheap: the generous budget, so a browser client's
	// preflights do not halve its calls.
	for _, p := range []string{b + "/token", b + "/register", b + "/revoke", b + "/introspect"} {
		mux.Handle("OPTIONS "+p, meta(noContent))
	}
	s.handler = s.withRequestMeta(mux)
}

// cors lets browser-based MCP clients (e.g. the Inspector) call the
// endpoints that take no cookies. Credentials are never allowed, so a
// wildcard origin exposes nothing a non-browser client could not fetch.
func cors(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd["Access-Control-Allow-Origin"] = headerAnyOrigin
		if r.Method == http.MethodOptions {
			hd.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			hd.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, MCP-Protocol-Version")
			hd.Set("Access-Control-Max-Age", "600")
		}
		h.ServeHTTP(w, r)
	})
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// randomToken returns 256 bits from the CSPRNG, base64url-encoded.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// newToken returns a code or refresh token issued at now: 256 bits from
// the CSPRNG behind a time prefix (store.OrderedToken), so that the keys of
// tokens issued together sit together in the store's index.
func newToken(now time.Time) string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return store.OrderedToken(now.UnixMicro(), &b)
}

// newGrantID returns a grant ID (tsid) that orders by issue time
// (store.OrderedID: 128 random bits after the time), so the store inserts
// new grants at the right edge of its key index instead of at a random
// leaf each.
func newGrantID(now time.Time) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return store.OrderedID(now.UnixMicro(), &b)
}

// newID returns a 128-bit+ random identifier.
func newID() string { return rand.Text() }

// pkceS256 is BASE64URL(SHA256(verifier)) (RFC 7636 §4.2).
func pkceS256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// keyedMutex serialises work per key without a global lock: an upstream
// refresh and a re-identification of the same grant both rotate its
// upstream refresh token, so they exclude each other (mutual exclusion of
// two operations, not a shared result: not a single-flight).
//
// It also tells whether a key's lock was released since a mark, so that a
// caller who read what the lock guards before taking it can tell whether
// another holder may have written it meanwhile (see refresh). Releases
// are counted per shard of keys: a release of another key of the same
// shard is a false alarm (a needless re-read), never a miss.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry

	seq      atomic.Uint64              // releases so far
	released [keyedShards]atomic.Uint64 // seq of the last release in each shard
}

const keyedShards = 1024

// keyedShard is FNV-1a of key, modulo keyedShards.
func keyedShard(key string) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	return int(h % keyedShards)
}

// mark returns the point to give releasedSince: take it before reading.
func (k *keyedMutex) mark() uint64 { return k.seq.Load() }

// releasedSince reports whether the lock of key (or of a key sharing its
// shard) was released after mark was taken.
func (k *keyedMutex) releasedSince(key string, mark uint64) bool {
	return k.released[keyedShard(key)].Load() > mark
}

type keyedEntry struct {
	mu sync.Mutex
	n  int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.n++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		// Counted while still held: whoever takes the lock next sees it.
		n, last := k.seq.Add(1), &k.released[keyedShard(key)]
		for old := last.Load(); old < n && !last.CompareAndSwap(old, n); old = last.Load() {
		}
		e.mu.Unlock()
		k.mu.Lock()
		if e.n--; e.n == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// singleValue returns the single value of a form or query parameter;
// RFC 6749 §3.1/§3.2: parameters must not be repeated.
func singleValue(v url.Values, key string) (string, *oauthError) {
	switch vals := v[key]; len(vals) {
	case 0:
		return "", nil
	case 1:
		return vals[0], nil
	}
	return "", invalidRequest("parameter %s is repeated", key)
}
