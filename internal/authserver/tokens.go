package authserver

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.opentelemetry.io/otel/attribute"

	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/idp"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/telemetry"
)

// grantSecrets is the sealed per-grant blob kept in Grant.UpstreamTokens:
// the upstream IdP tokens and the key that derives refresh-token successors.
type grantSecrets struct {
	RefreshKey string      `json:"rk"`
	Upstream   *idp.Tokens `json:"up,omitempty"`
	// Linked are the tokens of linked accounts by provider (linked.go).
	Linked map[string]*idp.Tokens `json:"ln,omitempty"`
}

// accessClaims are the claims of our JWT access tokens (RFC 9068 §2.2).
type accessClaims struct {
	Issuer        string   `json:"iss"`
	Subject       string   `json:"sub"`
	Audience      string   `json:"aud"`
	ClientID      string   `json:"client_id"`
	Scope         string   `json:"scope,omitempty"`
	Groups        []string `json:"groups,omitempty"`
	JTI           string   `json:"jti"`
	TSID          string   `json:"tsid"`
	IssuedAt      int64    `json:"iat"`
	Expiry        int64    `json:"exp"`
	Email         string   `json:"email,omitempty"`
	EmailVerified bool     `json:"email_verified,omitempty"`
	Username      string   `json:"preferred_username,omitempty"`
	Name          string   `json:"name,omitempty"`
}

// tokenTyp is the RFC 9068 §2.1 media type of JWT access tokens.
const tokenTyp = "at+jwt"

// mintAccessToken signs an access token for a grant. aud is always set
// (to the grant's resource), so a token is never valid everywhere.
func (s *Server) mintAccessToken(ctx context.Context, g *store.Grant, id *idp.Identity, scopes []string) (string, time.Time, error) {
	now := s.now()
	exp := now.Add(s.cfg.AccessTokenLifetime)
	if !g.ExpiresAt.IsZero() && g.ExpiresAt.Before(exp) {
		exp = g.ExpiresAt
	}
	c := &accessClaims{
		Issuer:   s.issuer,
		Subject:  id.Subject,
		Audience: g.Resource,
		ClientID: g.ClientID,
		Scope:    strings.Join(scopes, " "),
		Groups:   id.Groups,
		JTI:      newID(),
		TSID:     g.ID,
		IssuedAt: now.Unix(),
		Expiry:   exp.Unix(),
		Email:    id.Email,
		Username: id.Username,
		Name:     id.Name,
	}
	c.EmailVerified = id.EmailVerified && id.Email != ""
	tok, err := s.signer.SignJWT(ctx, tokenTyp, c)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign access token: %w", err)
	}
	return tok, exp, nil
}

// deriveRefresh computes the successor of a refresh token. Successors are
// deterministic under the grant's secret key so that concurrent refreshes
// with the same token inside the grace window all receive the same
// successor (and the client keeps a working token whichever response it
// stores last), while nobody without the key can predict them.
func deriveRefresh(key, token string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte("mcpgate refresh successor\x00"))
	m.Write([]byte(token))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// keyCache holds the public keys for verifying our own tokens in process.
type keyCache struct {
	signer Signer
	now    func() time.Time

	mu      sync.RWMutex
	keys    map[string]jose.JSONWebKey
	fetched time.Time
}

var errUnknownKey = errors.New("unknown signing key")

// keyCacheTTL bounds how long a key stays trusted after it left the key
// set (e.g. retired after a compromise).
const keyCacheTTL = time.Minute

// key returns the public key with id kid. The set is reloaded when it is
// older than keyCacheTTL, and on an unknown kid (at most once a second),
// e.g. right after a rotation.
func (k *keyCache) key(ctx context.Context, kid string) (*jose.JSONWebKey, error) {
	now := k.now()
	k.mu.RLock()
	key, ok := k.keys[kid]
	fresh := k.keys != nil && now.Sub(k.fetched) < keyCacheTTL
	k.mu.RUnlock()
	if ok && fresh {
		return &key, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys != nil && now.Sub(k.fetched) < keyCacheTTL {
		if key, ok := k.keys[kid]; ok {
			return &key, nil
		}
		if now.Sub(k.fetched) < time.Second {
			return nil, errUnknownKey
		}
	}
	if k.keys != nil && !ok {
		// A kid we do not know may be the key another replica rotated to
		// a moment ago: read the store now (at most once a second, above),
		// not within the Signer's reload interval. On failure the loaded
		// keys stay.
		if r, canReload := k.signer.(interface{ Reload(context.Context) error }); canReload {
			_ = r.Reload(ctx)
		}
	}
	set, err := k.signer.JWKS(ctx)
	if err != nil {
		return nil, err
	}
	k.keys = make(map[string]jose.JSONWebKey, len(set.Keys))
	for _, jk := range set.Keys {
		if jk.Use == "enc" {
			continue
		}
		k.keys[jk.KeyID] = jk.Public()
	}
	k.fetched = now
	if key, ok := k.keys[kid]; ok {
		return &key, nil
	}
	return nil, errUnknownKey
}

// forget drops the cached key set, so the next verification reloads it.
func (k *keyCache) forget() {
	k.mu.Lock()
	k.keys = nil
	k.mu.Unlock()
}

// grantCacheEntry is what the grant cache (s.grants) remembers of a grant
// so Authenticate does not hit the store on every request: local
// revocations evict at once; revocations on other replicas take effect
// within revocation_cache_ttl.
type grantCacheEntry struct {
	active   bool
	clientID string
}

const maxGrantCacheEntries = 100000

// ForgetGrant drops what this server cached about grant tsid, which
// another replica revoked (store.ChangeGrant): the next request re-reads it.
func (s *Server) ForgetGrant(tsid string) { s.grants.evict(tsid) }

// ForgetAll drops every cache fed by the store (grants, clients, the key
// set), after changes may have been missed (store.ChangeAll).
func (s *Server) ForgetAll() {
	s.grants.clear()
	s.clients.clear()
	s.keys.forget()
}

// KeysChanged drops the cached key set after the signing keys changed
// elsewhere (store.ChangeKeys), once the Signer has reloaded them.
func (s *Server) KeysChanged() { s.keys.forget() }

func (s *Server) grantActive(ctx context.Context, tsid, clientID string) (bool, error) {
	if e, ok := s.grants.get(tsid); ok {
		return e.active && e.clientID == clientID, nil
	}
	g, err := s.st.GetGrant(ctx, tsid)
	e := grantCacheEntry{}
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return false, err
	default:
		e.active, e.clientID = !g.Revoked, g.ClientID
	}
	s.grants.put(tsid, e, time.Time{})
	return e.active && e.clientID == clientID, nil
}

// revokeGrant ends a token session: the grant, its refresh tokens, and (via
// the grant check in Authenticate) its access tokens.
func (s *Server) revokeGrant(ctx context.Context, tsid, reason string) error {
	s.grants.evict(tsid)
	if err := endGrant(ctx, s.st, tsid); err != nil {
		return err
	}
	s.grants.evict(tsid)
	s.log.WarnContext(ctx, "grant revoked", "tsid", tsid, "reason", reason)
	return nil
}

// Authenticate validates an access token this server issued, taken from the
// request's Authorization header, for the resource the request path
// belongs to. Errors wrap the authn sentinels (authn.Describe maps them).
func (s *Server) Authenticate(r *http.Request) (*authn.Principal, error) {
	tok, err := authn.BearerToken(r)
	if err != nil {
		return nil, err
	}
	return s.verify(r.Context(), tok, s.resourceFor(r.URL.Path))
}

// Verify validates an access token issued by this server for any of its
// resources (authn.TokenVerifier).
func (s *Server) Verify(ctx context.Context, token string) (*authn.Principal, error) {
	return s.verify(ctx, token, "")
}

// resourceFor picks the configured resource whose path is the longest
// prefix of the request path; the default resource otherwise.
func (s *Server) resourceFor(path string) string {
	best, bestLen := s.resources[0], -1
	for _, res := range s.resources {
		i := strings.Index(res, "://")
		p := "/"
		if j := strings.IndexByte(res[i+3:], '/'); j >= 0 {
			p = res[i+3+j:]
		}
		if (path == p || strings.HasPrefix(path, strings.TrimSuffix(p, "/")+"/")) && len(p) > bestLen {
			best, bestLen = res, len(p)
		}
	}
	return best
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", authn.ErrInvalidToken, fmt.Sprintf(format, args...))
}

// verify checks a token (see verifyJWT; results cached briefly by token
// hash), then the audience against resource ("" = any of ours) and that the
// grant is still active.
func (s *Server) verify(ctx context.Context, token, resource string) (*authn.Principal, error) {
	if len(token) > 16<<10 {
		return nil, invalid("token too large")
	}
	now := s.now()
	sum := sha256.Sum256([]byte(token))
	p, ok := s.verified.get(sum, now)
	telemetry.Set(ctx, attribute.Bool("mcpgate.authn.cache_hit", ok))
	if !ok {
		var err error
		if p, err = s.verifyJWT(ctx, token, now); err != nil {
			return nil, err
		}
		s.verified.put(sum, p, now)
	}
	switch {
	case resource != "" && p.Audience[0] != resource:
		return nil, invalid("audience is not this resource")
	case resource == "" && !slices.Contains(s.resources, p.Audience[0]):
		return nil, invalid("audience is not one of our resources")
	}
	active, err := s.grantActive(ctx, p.SessionID, p.ClientID)
	if err != nil {
		return nil, fmt.Errorf("%w: grant lookup: %v", authn.ErrUnavailable, err)
	}
	if !active {
		return nil, invalid("grant revoked or expired")
	}
	return p, nil
}

// verifyJWT checks the signature (explicit algorithm allow-list, key from
// our own key set by kid), typ, issuer, lifetime and required claims.
func (s *Server) verifyJWT(ctx context.Context, token string, now time.Time) (*authn.Principal, error) {
	jws, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
	if err != nil {
		return nil, invalid("parse: %v", err)
	}
	if len(jws.Headers) != 1 {
		return nil, invalid("expected one signature")
	}
	h := jws.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !strings.EqualFold(typ, tokenTyp) && !strings.EqualFold(typ, "application/"+tokenTyp) {
		return nil, invalid("typ is not at+jwt")
	}
	key, err := s.keys.key(ctx, h.KeyID)
	if errors.Is(err, errUnknownKey) {
		return nil, invalid("unknown kid")
	}
	if err != nil {
		return nil, fmt.Errorf("%w: key set: %v", authn.ErrUnavailable, err)
	}
	if key.Algorithm != "" && key.Algorithm != h.Algorithm {
		return nil, invalid("algorithm does not match the key")
	}
	var c accessClaims
	var raw map[string]any
	if err := jws.Claims(key.Key, &c, &raw); err != nil {
		return nil, invalid("signature: %v", err)
	}
	switch {
	case c.Issuer != s.issuer:
		return nil, invalid("wrong issuer")
	case now.Unix() >= c.Expiry:
		return nil, invalid("expired")
	case c.IssuedAt > now.Add(time.Minute).Unix():
		return nil, invalid("issued in the future")
	case c.TSID == "" || c.ClientID == "" || c.Subject == "" || c.Audience == "":
		return nil, invalid("missing tsid, client_id, sub or aud")
	}
	return &authn.Principal{
		Issuer:        s.issuer,
		Subject:       c.Subject,
		Username:      c.Username,
		Email:         c.Email,
		EmailVerified: c.EmailVerified,
		Groups:        c.Groups,
		Scopes:        strings.Fields(c.Scope),
		ClientID:      c.ClientID,
		TokenID:       c.JTI,
		SessionID:     c.TSID,
		Audience:      []string{c.Audience},
		ExpiresAt:     time.Unix(c.Expiry, 0),
		Claims:        raw,
	}, nil
}

// verifiedCache maps token hashes to verified principals so the signature
// is checked once per token and minute, not per request. Entries live until
// the token expires or keyCacheTTL passes (so a key removed from the set
// stops being honoured), whichever is first.
type verifiedCache struct {
	mu sync.RWMutex
	m  map[[32]byte]verifiedEntry
}

type verifiedEntry struct {
	p     *authn.Principal
	until time.Time
}

const maxVerifiedCacheEntries = 10000

func (c *verifiedCache) get(sum [32]byte, now time.Time) (*authn.Principal, bool) {
	c.mu.RLock()
	e, ok := c.m[sum]
	c.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return nil, false
	}
	return e.p, true
}

// clear forgets every verified token (a signing key was revoked).
func (c *verifiedCache) clear() {
	c.mu.Lock()
	c.m = nil
	c.mu.Unlock()
}

func (c *verifiedCache) put(sum [32]byte, p *authn.Principal, now time.Time) {
	until := now.Add(keyCacheTTL)
	if p.ExpiresAt.Before(until) {
		until = p.ExpiresAt
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxVerifiedCacheEntries {
		c.m = make(map[[32]byte]verifiedEntry)
	}
	c.m[sum] = verifiedEntry{p: p, until: until}
}
