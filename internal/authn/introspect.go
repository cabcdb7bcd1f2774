package authn

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/internal/flight"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/telemetry"
)

const (
	// negativeCacheTTL: an inactive token is remembered briefly so a client
	// retrying in a loop does not turn into a flood at the IdP.
	negativeCacheTTL = 5 * time.Second
	// readyProbeInterval limits Ready's probes while the endpoint is unreached.
	readyProbeInterval = 5 * time.Second
	// readyProbeToken is introspected by Ready: any well-formed answer
	// (normally active:false) proves the endpoint and our credentials work.
	readyProbeToken = "mcpgate-readiness-probe"
)

// rejectedCacheSize is a tenth of the cache size: rejected tokens are
// remembered only for negativeCacheTTL.
func rejectedCacheSize(size int) int {
	if size < 0 {
		return size
	}
	return max(1, size/10)
}

// introspector is the introspection mode: opaque bearer tokens checked with
// OAuth 2.0 Token Introspection (RFC 7662).
type introspector struct {
	cfg    IntrospectionConfig
	claims *ClaimsConfig
	client *http.Client
	log    *slog.Logger
	now    func() time.Time
	cache  *tokenCache
	// rejected holds negative results apart: they are keyed by whatever an
	// unauthenticated client sends, and a flood of them must not evict the
	// cached results of valid tokens.
	rejected *tokenCache
	disc     *discoverer // nil when the endpoint is configured
	flight   flight.Group[*identity.Principal]

	ready     atomic.Bool
	probeMu   sync.Mutex
	lastProbe time.Time
	probeErr  error
}

func newIntrospector(cfg Config, opts Options) *introspector {
	ic := cfg.Introspection
	if ic.AllowPrivateIssuer {
		opts.Logger.Warn("authn: allow_private_issuer is set: the introspection endpoint may use plain http or a private/loopback address",
			"endpoint", ic.Endpoint, "issuer", ic.Issuer)
	}
	i := &introspector{
		cfg: ic, claims: &cfg.Claims, client: opts.HTTPClient, log: opts.Logger, now: opts.Now,
		cache: newTokenCache(cfg.CacheSize), rejected: newTokenCache(rejectedCacheSize(cfg.CacheSize)),
	}
	i.flight.Timeout = fetchTimeout
	if ic.Endpoint == "" {
		i.disc = &discoverer{
			issuer: ic.Issuer, allowPrivate: ic.AllowPrivateIssuer, client: opts.HTTPClient,
			now: opts.Now, minInterval: DefaultJWKSRefreshMinInterval,
		}
	}
	return i
}

// Authenticate introspects the request's bearer token.
func (i *introspector) Authenticate(r *http.Request) (*identity.Principal, error) {
	tok, err := BearerToken(r)
	if err != nil {
		return nil, err
	}
	return i.Verify(r.Context(), tok)
}

// Verify introspects a token. Results are cached by the token's SHA-256:
// active ones until min(exp, cache_ttl), rejected ones for 5s; concurrent
// requests with the same new token share one introspection call.
func (i *introspector) Verify(ctx context.Context, token string) (*identity.Principal, error) {
	if len(token) > maxTokenBytes {
		return nil, invalid("token longer than %d bytes", maxTokenBytes)
	}
	key := keyOf(token)
	e, ok := i.cache.get(key, i.now())
	telemetry.Set(ctx, cacheHit(ok))
	if ok {
		return e.p, nil
	}
	if _, ok := i.rejected.get(key, i.now()); ok {
		return nil, invalid("token rejected by introspection (cached)")
	}
	return i.flight.Do(ctx, string(key[:]), func(ctx context.Context) (*identity.Principal, error) {
		return i.introspect(ctx, key, token)
	})
}

func (i *introspector) introspect(ctx context.Context, key tokenKey, token string) (*identity.Principal, error) {
	resp, err := i.call(ctx, token)
	if err != nil {
		i.log.Warn("authn: introspection failed", "error", err)
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	now := i.now()
	p, expires, err := i.evaluate(resp, now)
	if err != nil {
		i.rejected.put(key, nil, now.Add(min(negativeCacheTTL, i.cfg.CacheTTL)), now)
		return nil, err
	}
	i.cache.put(key, p, expires, now)
	return p, nil
}

// evaluate applies our acceptance rules to an introspection response and
// returns the Principal and how long it may be cached.
func (i *introspector) evaluate(resp map[string]any, now time.Time) (*identity.Principal, time.Time, error) {
	if active, _ := resp["active"].(bool); !active {
		return nil, time.Time{}, invalid("token is not active")
	}
	// A refresh token is "active" too (RFC 7662 §2.2) but is no access token.
	if tt := stringClaim(resp, "token_type"); tt == "refresh_token" || strings.EqualFold(stringClaim(resp, "typ"), "refresh") {
		return nil, time.Time{}, invalid("token is a refresh token")
	}
	// The endpoint answers for every token its server issued, to any
	// client: only the audience shows the token was meant for us.
	aud := audienceClaim(resp)
	if len(aud) == 0 {
		return nil, time.Time{}, invalid("introspection response has no aud")
	}
	if !intersects(aud, i.cfg.Audience) {
		return nil, time.Time{}, invalid("audience %q is not accepted", clip(strings.Join(aud, " ")))
	}
	if v, ok := resp["iss"]; ok {
		// A present iss that is no string is malformed, not absent (RFC 7662 §2.2).
		iss, isStr := v.(string)
		if !isStr {
			return nil, time.Time{}, invalid("malformed iss")
		}
		if i.cfg.Issuer != "" && iss != "" && iss != i.cfg.Issuer {
			return nil, time.Time{}, invalid("issuer %q, want %q", clip(iss), i.cfg.Issuer)
		}
	}
	expires := now.Add(i.cfg.CacheTTL)
	exp, ok, bad := numericDate(resp, "exp")
	switch {
	case bad:
		return nil, time.Time{}, invalid("malformed exp")
	case ok && now.After(exp.Add(DefaultLeeway)):
		return nil, time.Time{}, invalid("token expired at %s", exp.UTC().Format(time.RFC3339))
	case ok && exp.Before(expires):
		expires = exp
	}
	if nbf, ok, bad := numericDate(resp, "nbf"); ok && (bad || nbf.After(now.Add(DefaultLeeway))) {
		return nil, time.Time{}, invalid("token not yet valid")
	}
	p := principalFromClaims(resp, i.claims)
	if p.Subject == "" {
		return nil, time.Time{}, invalid("introspection response has no sub")
	}
	if p.Issuer == "" {
		// Identity is keyed on issuer+subject; without iss the configured
		// issuer, else the endpoint, names the namespace of sub.
		p.Issuer = i.cfg.Issuer
		if p.Issuer == "" {
			p.Issuer = i.cfg.Endpoint
		}
	}
	return p, expires, nil
}

// call POSTs the token to the introspection endpoint (RFC 7662 §2.1),
// authenticating as our client (RFC 6749 §2.3.1).
func (i *introspector) call(ctx context.Context, token string) (map[string]any, error) {
	endpoint, err := i.endpoint(ctx)
	if err != nil {
		return nil, err
	}
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	post := i.cfg.AuthMethod == "post" || i.cfg.AuthMethod == "client_secret_post"
	if post {
		form.Set("client_id", i.cfg.ClientID)
		form.Set("client_secret", i.cfg.ClientSecret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if !post {
		// RFC 6749 §2.3.1: form-urlencode the id and secret before Basic encoding.
		req.SetBasicAuth(url.QueryEscape(i.cfg.ClientID), url.QueryEscape(i.cfg.ClientSecret))
	}
	resp, err := i.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := decodeJSONResponse(resp, &body); err != nil {
		return nil, err
	}
	if _, ok := body["active"].(bool); !ok {
		return nil, fmt.Errorf("POST %s: response has no boolean active member", endpoint)
	}
	i.ready.Store(true)
	return body, nil
}

func (i *introspector) endpoint(ctx context.Context) (string, error) {
	if i.disc == nil {
		return i.cfg.Endpoint, nil
	}
	md, err := i.disc.get(ctx)
	if err != nil {
		return "", err
	}
	if md.IntrospectionEndpoint == "" {
		return "", fmt.Errorf("discovery document of %s has no introspection_endpoint", i.cfg.Issuer)
	}
	if err := checkEndpoint(md.IntrospectionEndpoint, i.cfg.AllowPrivateIssuer); err != nil {
		return "", fmt.Errorf("discovered introspection_endpoint: %w", err)
	}
	return md.IntrospectionEndpoint, nil
}

// Ready reports whether the endpoint has answered a well-formed response at
// least once; until then it probes, at most every 5s.
func (i *introspector) Ready(ctx context.Context) error {
	if i.ready.Load() {
		return nil
	}
	i.probeMu.Lock()
	defer i.probeMu.Unlock()
	if i.ready.Load() {
		return nil
	}
	if now := i.now(); i.lastProbe.IsZero() || now.Sub(i.lastProbe) >= readyProbeInterval {
		i.lastProbe = now
		_, i.probeErr = i.call(ctx, readyProbeToken)
	}
	if i.probeErr != nil {
		return fmt.Errorf("introspection endpoint not reachable: %w", i.probeErr)
	}
	return nil
}
