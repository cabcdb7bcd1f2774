package authserver

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/idp"
	"github.com/mcpgate/mcpgate/internal/jsonenc"
	"github.com/mcpgate/mcpgate/internal/store"
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

// AppendJSON appends c as encoding/json writes it (field order, omitempty,
// escaping; TestAccessClaimsJSON holds it to that), without reflection: the
// claims are encoded once per token issued (keys.JSONAppender).
func (c *accessClaims) AppendJSON(b []byte) []byte {
	b = append(b, '{')
	b = jsonenc.AppendStringField(b, "iss", c.Issuer, false)
	b = jsonenc.AppendStringField(b, "sub", c.Subject, false)
	b = jsonenc.AppendStringField(b, "aud", c.Audience, false)
	b = jsonenc.AppendStringField(b, "client_id", c.ClientID, false)
	b = jsonenc.AppendStringField(b, "scope", c.Scope, true)
	b = jsonenc.AppendStringsField(b, "groups", c.Groups, true)
	b = jsonenc.AppendStringField(b, "jti", c.JTI, false)
	b = jsonenc.AppendStringField(b, "tsid", c.TSID, false)
	b = jsonenc.AppendIntField(b, "iat", c.IssuedAt, false)
	b = jsonenc.AppendIntField(b, "exp", c.Expiry, false)
	b = jsonenc.AppendStringField(b, "email", c.Email, true)
	if c.EmailVerified {
		b = append(jsonenc.AppendKey(b, "email_verified"), "true"...)
	}
	b = jsonenc.AppendStringField(b, "preferred_username", c.Username, true)
	b = jsonenc.AppendStringField(b, "name", c.Name, true)
	return append(b, '}')
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

// deriveRefresh computes the successor of the presented refresh token,
// whose stored record is rt. Successors are deterministic under the grant's secret key so that concurrent refreshes
// with the same token inside the grace window all receive the same
// successor (and the client keeps a working token whichever response it
// stores last), while nobody without the key can predict them. A current
// token's successor is time-ordered at now; a rotated token's successor is
// the one recorded in rt.ReplacedBy: its time prefix, or the unprefixed
// form for a token rotated before successors were time-ordered.
func deriveRefresh(key, presented string, rt *store.RefreshToken, now time.Time) string {
	var mac [32]byte
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte("mcpgate refresh successor\x00"))
	m.Write([]byte(presented))
	m.Sum(mac[:0])
	at := now.UnixMicro()
	if !rt.RotatedAt.IsZero() {
		var ok bool
		if at, ok = store.TokenTime(rt.ReplacedBy); !ok {
			return base64.RawURLEncoding.EncodeToString(mac[:])
		}
	}
	return store.OrderedToken(at, &mac)
}

// keyCacheTTL bounds how long a key stays trusted after it left the key
// set (e.g. retired after a compromise): the verifier reads the set again
// after it, and caches a verified token no longer.
const keyCacheTTL = time.Minute

// maxVerifiedCacheEntries bounds the verified-token cache.
const maxVerifiedCacheEntries = 10000

// newVerifier builds the verifier of our own access tokens (authn's JWT
// verifier, keys read from the signer): signature with an explicit algorithm
// allow-list and the key chosen by kid, typ at+jwt (RFC 9068 §2.1), issuer,
// one of our resources as audience, lifetime (iat may be a minute ahead, for
// other replicas' clocks) and the claims a grant needs.
func (s *Server) newVerifier() *authn.Verifier {
	return authn.NewLocalVerifier(authn.LocalIssuer{
		Issuer:     s.issuer,
		Audience:   s.resources,
		Algorithms: []jose.SignatureAlgorithm{jose.ES256, jose.RS256},
		RequireTyp: tokenTyp,
		Required:   []string{"tsid", "client_id"},
		Keys:       s.publicKeys,
		KeysTTL:    keyCacheTTL,
		IATLeeway:  time.Minute,
		CacheSize:  maxVerifiedCacheEntries,
		Now:        s.now,
		Logger:     s.log,
	})
}

// publicKeys is the signer's key set, signing keys only, public parts only.
// The verifier asks for it when its copy is a minute old or a token names a
// kid it does not know (at most once a second): that may be the key another
// replica rotated to a moment ago, so the store is read now, not within the
// Signer's reload interval. On failure the loaded keys stay.
func (s *Server) publicKeys(ctx context.Context) ([]jose.JSONWebKey, error) {
	if r, canReload := s.signer.(interface{ Reload(context.Context) error }); canReload {
		_ = r.Reload(ctx)
	}
	set, err := s.signer.JWKS(ctx)
	if err != nil {
		return nil, err
	}
	keys := make([]jose.JSONWebKey, 0, len(set.Keys))
	for _, jk := range set.Keys {
		if jk.Use != "enc" {
			keys = append(keys, jk.Public())
		}
	}
	return keys, nil
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
	s.verifier.ForgetKeys()
}

// KeysChanged drops the cached key set after the signing keys changed
// elsewhere (store.ChangeKeys), once the Signer has reloaded them.
func (s *Server) KeysChanged() { s.verifier.ForgetKeys() }

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
func (s *Server) Authenticate(r *http.Request) (*identity.Principal, error) {
	tok, err := authn.BearerToken(r)
	if err != nil {
		return nil, err
	}
	return s.verify(r.Context(), tok, s.resourceFor(r.URL.Path))
}

// Verify validates an access token issued by this server for any of its
// resources (authn.TokenVerifier).
func (s *Server) Verify(ctx context.Context, token string) (*identity.Principal, error) {
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

// verify checks a token (s.verifier: signature, typ, issuer, lifetime,
// audience among our resources; results cached by token hash), then the
// audience against resource ("" = any of ours) and that the grant is still
// active.
func (s *Server) verify(ctx context.Context, token, resource string) (*identity.Principal, error) {
	if len(token) > 16<<10 {
		return nil, invalid("token too large")
	}
	p, err := s.verifier.Verify(ctx, token)
	if err != nil {
		return nil, err
	}
	if resource != "" && p.Audience[0] != resource {
		return nil, invalid("audience is not this resource")
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
