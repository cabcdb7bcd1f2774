package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/telemetry"
)

// trustedIssuer is one issuer's verification settings and keys.
type trustedIssuer struct {
	cfg    IssuerConfig
	algs   []jose.SignatureAlgorithm
	claims *ClaimsConfig
	keys   *keySet
	// subjectFallback names a claim used as the subject when sub is empty
	// (Cloudflare service tokens carry common_name instead).
	subjectFallback string
	// iatLeeway tolerates iat in the future (default: cfg.Leeway).
	iatLeeway time.Duration
	// required claims must be non-empty strings.
	required []string
	// exactUsername: Username is UsernameClaim alone, with no fallback.
	exactUsername bool
}

// Verifier verifies JWT access tokens (RFC 9068, RFC 7519 §7.2) from a
// fixed set of issuers and caches the resulting Principals in one bounded
// cache until exp (or maxAge, if set, whichever is first). It serves the
// jwt and trusted_header modes and the built-in authorization server's own
// tokens (NewLocalVerifier).
type Verifier struct {
	issuers map[string]*trustedIssuer
	algs    []jose.SignatureAlgorithm // union of the issuers' allow-lists
	cache   *tokenCache
	maxAge  time.Duration // 0: until exp
	now     func() time.Time
}

func newTrustedIssuer(ic IssuerConfig, shared *ClaimsConfig, opts Options) *trustedIssuer {
	ti := &trustedIssuer{cfg: ic, claims: shared, iatLeeway: ic.Leeway}
	if ic.Claims != nil {
		ti.claims = ic.Claims
	}
	for _, a := range ic.Algorithms {
		ti.algs = append(ti.algs, jose.SignatureAlgorithm(a))
	}
	jwksURL := func(context.Context) (string, error) { return ic.JWKSURI, nil }
	if ic.JWKSURI == "" {
		d := &discoverer{
			issuer: ic.Issuer, allowPrivate: ic.AllowPrivateIssuer, client: opts.HTTPClient,
			now: opts.Now, minInterval: ic.JWKSRefreshMinInterval,
		}
		jwksURL = func(ctx context.Context) (string, error) {
			md, err := d.get(ctx)
			if err != nil {
				return "", err
			}
			if md.JWKSURI == "" {
				return "", fmt.Errorf("discovery document of %s has no jwks_uri", ic.Issuer)
			}
			if err := checkEndpoint(md.JWKSURI, ic.AllowPrivateIssuer); err != nil {
				return "", fmt.Errorf("discovered jwks_uri: %w", err)
			}
			return md.JWKSURI, nil
		}
	}
	ti.keys = &keySet{
		issuer: ic.Issuer, jwksURL: jwksURL, client: opts.HTTPClient, log: opts.Logger,
		now: opts.Now, ttl: ic.JWKSCacheTTL, minInterval: ic.JWKSRefreshMinInterval,
	}
	ti.keys.flight.Timeout = fetchTimeout
	return ti
}

func newJWTVerifier(issuers []*trustedIssuer, cacheSize int, now func() time.Time) *Verifier {
	v := &Verifier{issuers: map[string]*trustedIssuer{}, cache: newTokenCache(cacheSize), now: now}
	for _, ti := range issuers {
		v.issuers[ti.cfg.Issuer] = ti
		for _, a := range ti.algs {
			if !slices.Contains(v.algs, a) {
				v.algs = append(v.algs, a)
			}
		}
	}
	return v
}

// LocalIssuer describes an issuer whose key set is read in process: the
// built-in authorization server verifying the access tokens it signed.
type LocalIssuer struct {
	Issuer     string
	Audience   []string                  // a token must name one of these
	Algorithms []jose.SignatureAlgorithm // allow-list, enforced while parsing
	RequireTyp string                    // exact JOSE typ, e.g. at+jwt (RFC 9068 §2.1)
	// Required claims must be non-empty strings (beyond sub and aud).
	Required []string
	// Keys yields the public signing keys. The set is read again when older
	// than KeysTTL, and on an unknown kid at most once a second.
	Keys    func(ctx context.Context) ([]jose.JSONWebKey, error)
	KeysTTL time.Duration
	// IATLeeway tolerates iat in the future (other replicas' clocks); exp
	// has no leeway.
	IATLeeway time.Duration
	// Claims maps the principal; Username is UsernameClaim alone.
	Claims    ClaimsConfig
	CacheSize int
	Now       func() time.Time
	Logger    *slog.Logger
}

// NewLocalVerifier returns the verifier of a LocalIssuer's tokens. Verified
// tokens are cached no longer than KeysTTL, so a key that left the set stops
// being honoured within it (Forget: at once).
func NewLocalVerifier(li LocalIssuer) *Verifier {
	li.Claims.SetDefaults()
	o := Options{Logger: li.Logger, Now: li.Now}
	o.fill()
	ic := IssuerConfig{Issuer: li.Issuer, Audience: li.Audience, RequireTyp: li.RequireTyp}
	for _, a := range li.Algorithms {
		ic.Algorithms = append(ic.Algorithms, string(a))
	}
	ti := &trustedIssuer{cfg: ic, algs: li.Algorithms, claims: &li.Claims, iatLeeway: li.IATLeeway,
		required: li.Required, exactUsername: true}
	ti.keys = &keySet{
		issuer: li.Issuer, source: li.Keys, log: o.Logger, now: o.Now,
		ttl: li.KeysTTL, minInterval: time.Second,
	}
	ti.keys.flight.Timeout = fetchTimeout
	v := newJWTVerifier([]*trustedIssuer{ti}, li.CacheSize, o.Now)
	v.maxAge = li.KeysTTL
	return v
}

// Verify returns the Principal for a valid token.
func (v *Verifier) Verify(ctx context.Context, token string) (*identity.Principal, error) {
	return v.verify(ctx, token)
}

// Forget drops every cached key and verified token: a signing key was
// revoked, and tokens it signed must stop verifying at once.
func (v *Verifier) Forget() {
	v.ForgetKeys()
	v.cache.clear()
}

// ForgetKeys drops the cached keys, so the next verification reads them
// again at once (the keys changed elsewhere); verified tokens stay.
func (v *Verifier) ForgetKeys() {
	for _, ti := range v.issuers {
		ti.keys.forget()
	}
}

// SignedClaims returns the claims of a token signed by one of the issuers'
// keys (the JOSE header checks and the signature), without the checks of
// lifetime, audience and required claims: for revoking a token that may
// have expired (RFC 7009).
func (v *Verifier) SignedClaims(ctx context.Context, token string) (map[string]any, error) {
	if len(token) > maxTokenBytes {
		return nil, invalid("token longer than %d bytes", maxTokenBytes)
	}
	claims, _, err := v.signedClaims(ctx, token)
	return claims, err
}

// verify returns the Principal for a valid token, from the cache when this
// exact token was verified before and has not expired.
func (v *Verifier) verify(ctx context.Context, token string) (*identity.Principal, error) {
	if len(token) > maxTokenBytes {
		return nil, invalid("token longer than %d bytes", maxTokenBytes)
	}
	now := v.now()
	var key tokenKey
	if v.cache != nil {
		key = keyOf(token)
		e, ok := v.cache.get(key, now)
		telemetry.Set(ctx, cacheHit(ok))
		if ok {
			return e.p, nil
		}
	}
	p, err := v.verifyUncached(ctx, token, now)
	if err != nil {
		return nil, err
	}
	if v.cache != nil {
		until := p.ExpiresAt
		if v.maxAge > 0 && now.Add(v.maxAge).Before(until) {
			until = now.Add(v.maxAge)
		}
		v.cache.put(key, p, until, now)
	}
	return p, nil
}

func (v *Verifier) verifyUncached(ctx context.Context, token string, now time.Time) (*identity.Principal, error) {
	claims, ti, err := v.signedClaims(ctx, token)
	if err != nil {
		return nil, err
	}
	return ti.checkClaims(claims, now)
}

// signedClaims checks the JOSE header and the signature, and returns the
// claims and their issuer.
func (v *Verifier) signedClaims(ctx context.Context, token string) (map[string]any, *trustedIssuer, error) {
	// The allow-list is enforced while parsing: none, HS* and anything not
	// configured never reach key selection.
	jws, err := jose.ParseSignedCompact(token, v.algs)
	if err != nil {
		return nil, nil, invalid("malformed JWS: %v", err)
	}
	hdr := jws.Signatures[0].Header
	for _, h := range []jose.HeaderKey{"crit", "b64"} {
		if _, ok := hdr.ExtraHeaders[h]; ok {
			return nil, nil, invalid("header %q is not accepted in access tokens", h)
		}
	}
	alg := jose.SignatureAlgorithm(hdr.Algorithm)

	// The issuer is read before the signature is checked only to choose
	// whose keys verify it; a forged iss then fails with those keys.
	var claims map[string]any
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &claims); err != nil || claims == nil {
		return nil, nil, invalid("claims are not a JSON object")
	}
	iss, _ := claims["iss"].(string)
	ti := v.issuers[iss]
	if ti == nil {
		return nil, nil, invalid("untrusted issuer %q", clip(iss))
	}
	if !slices.Contains(ti.algs, alg) {
		return nil, nil, invalid("alg %s not allowed for issuer %s", alg, iss)
	}
	if err := ti.checkTyp(hdr.ExtraHeaders); err != nil {
		return nil, nil, err
	}
	if err := ti.verifySignature(ctx, jws, hdr.KeyID, alg); err != nil {
		return nil, nil, err
	}
	return claims, ti, nil
}

// verifySignature finds the key and checks the signature. An unknown kid
// (or, without kid, no key that verifies) triggers one rate-limited JWKS
// refetch, so keys rotated in at the IdP are picked up (RFC 7517 §5). If
// the IdP cannot be reached for that refetch the answer is ErrUnavailable
// (503), not invalid: the token may well carry a newly rotated key.
func (ti *trustedIssuer) verifySignature(ctx context.Context, jws *jose.JSONWebSignature, kid string, alg jose.SignatureAlgorithm) error {
	keys, err := ti.keys.get(ctx, kid, alg)
	if err != nil {
		return err
	}
	if verifyWithAny(jws, keys) {
		return nil
	}
	if len(keys) == 0 || kid == "" {
		switch err := ti.keys.refresh(ctx); {
		case err == nil:
			if keys, err = ti.keys.get(ctx, kid, alg); err != nil {
				return err
			}
			if verifyWithAny(jws, keys) {
				return nil
			}
		case !errors.Is(err, errRefreshLimited):
			return err
		}
	}
	if len(keys) == 0 {
		return invalid("no %s key with kid %q at issuer %s", alg, clip(kid), ti.cfg.Issuer)
	}
	return invalid("signature verification failed")
}

func verifyWithAny(jws *jose.JSONWebSignature, keys []jose.JSONWebKey) bool {
	for i := range keys {
		// Pass the bare public key, never the JWK: go-jose then checks the
		// alg against the key type and ignores any key embedded in the header.
		if _, err := jws.Verify(keys[i].Key); err == nil {
			return true
		}
	}
	return false
}

// checkClaims applies RFC 7519 §4.1 and RFC 9068 §4 to verified claims.
func (ti *trustedIssuer) checkClaims(claims map[string]any, now time.Time) (*identity.Principal, error) {
	leeway := ti.cfg.Leeway
	exp, ok, bad := numericDate(claims, "exp")
	switch {
	case !ok:
		return nil, invalid("missing exp")
	case bad:
		return nil, invalid("malformed exp")
	case now.After(exp.Add(leeway)):
		return nil, invalid("token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if nbf, ok, bad := numericDate(claims, "nbf"); ok {
		if bad {
			return nil, invalid("malformed nbf")
		}
		if nbf.After(now.Add(leeway)) {
			return nil, invalid("token not valid before %s", nbf.UTC().Format(time.RFC3339))
		}
	}
	if iat, ok, bad := numericDate(claims, "iat"); ok {
		if bad {
			return nil, invalid("malformed iat")
		}
		if iat.After(now.Add(ti.iatLeeway)) {
			return nil, invalid("token issued in the future (%s)", iat.UTC().Format(time.RFC3339))
		}
	}
	aud := audienceClaim(claims)
	if len(aud) == 0 {
		return nil, invalid("missing aud")
	}
	if !intersects(aud, ti.cfg.Audience) {
		return nil, invalid("audience %q is not accepted", clip(strings.Join(aud, " ")))
	}
	for _, name := range ti.required {
		if stringClaim(claims, name) == "" {
			return nil, invalid("missing %s", name)
		}
	}
	p := principalFromClaims(claims, ti.claims)
	if ti.exactUsername {
		p.Username = stringClaim(claims, ti.claims.UsernameClaim)
	}
	if p.Subject == "" && ti.subjectFallback != "" {
		p.Subject = stringClaim(claims, ti.subjectFallback)
		if p.ClientID == "" {
			p.ClientID = p.Subject
		}
	}
	if p.Subject == "" {
		return nil, invalid("missing sub")
	}
	return p, nil
}

// accessTokenTyps are the typ values accepted when require_typ is unset:
// RFC 9068 access tokens and generic JWTs. Any other typ marks a JWT made
// for something else (logout+jwt, secevent+jwt, dpop+jwt, an ID token's
// id_token+jwt …) that must never be mistaken for an access token
// (RFC 8725 §3.11 explicit typing; RFC 9068 §4). A missing typ is accepted:
// many IdPs send none.
var accessTokenTyps = []string{"at+jwt", "JWT"}

// checkTyp applies require_typ, or by default the accessTokenTyps allow-list.
func (ti *trustedIssuer) checkTyp(hdr map[jose.HeaderKey]any) error {
	raw, present := hdr[jose.HeaderType]
	typ, isString := raw.(string)
	if want := ti.cfg.RequireTyp; want != "" {
		if !typMatches(typ, want) {
			return invalid("typ %q, want %q", clip(typ), want)
		}
		return nil
	}
	if !present {
		return nil
	}
	if isString {
		for _, ok := range accessTokenTyps {
			if typMatches(typ, ok) {
				return nil
			}
		}
	}
	return invalid("typ %q is not an access token type (at+jwt or JWT)", clip(fmt.Sprint(raw)))
}

// typMatches compares typ values case-insensitively, with the
// "application/" prefix optional (RFC 7515 §4.1.9).
func typMatches(got, want string) bool {
	trim := func(s string) string {
		if len(s) > 12 && strings.EqualFold(s[:12], "application/") {
			return s[12:]
		}
		return s
	}
	return got != "" && strings.EqualFold(trim(got), trim(want))
}

// jwtAuthenticator is the jwt mode: bearer JWTs from trusted issuers.
type jwtAuthenticator struct {
	v       *Verifier
	issuers []*trustedIssuer
}

func newJWTAuthenticator(cfg Config, opts Options) *jwtAuthenticator {
	a := &jwtAuthenticator{}
	for _, ic := range cfg.JWT.Issuers {
		if ic.AllowPrivateIssuer {
			opts.Logger.Warn("authn: allow_private_issuer is set: the issuer may use plain http or a private/loopback address", "issuer", ic.Issuer)
		}
		a.issuers = append(a.issuers, newTrustedIssuer(ic, &cfg.Claims, opts))
	}
	a.v = newJWTVerifier(a.issuers, cfg.CacheSize, opts.Now)
	return a
}

// Authenticate verifies the request's bearer JWT.
func (a *jwtAuthenticator) Authenticate(r *http.Request) (*identity.Principal, error) {
	tok, err := BearerToken(r)
	if err != nil {
		return nil, err
	}
	return a.v.verify(r.Context(), tok)
}

// Verify verifies a bearer JWT.
func (a *jwtAuthenticator) Verify(ctx context.Context, token string) (*identity.Principal, error) {
	return a.v.verify(ctx, token)
}

// Ready reports whether every issuer's keys have been loaded at least once.
func (a *jwtAuthenticator) Ready(ctx context.Context) error {
	var errs []error
	for _, ti := range a.issuers {
		if err := ti.keys.Ready(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
