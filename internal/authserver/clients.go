package authserver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"

	"github.com/mcpgate/mcpgate/internal/store"
)

// Token endpoint authentication methods (RFC 7591 §2).
const (
	authNone   = "none"
	authBasic  = "client_secret_basic"
	authPost   = "client_secret_post"
	grantCode  = "authorization_code"
	grantRT    = "refresh_token"
	secretSHA  = "sha256:"
	kindStatic = store.ClientKindStatic
)

func newStaticClient(sc StaticClient) (*staticClient, error) {
	c := &staticClient{
		Client: store.Client{
			ID:                      sc.ClientID,
			Name:                    sc.Name,
			RedirectURIs:            sc.RedirectURIs,
			GrantTypes:              []string{grantCode, grantRT},
			ResponseTypes:           []string{"code"},
			TokenEndpointAuthMethod: authNone,
			Kind:                    kindStatic,
		},
		skipConsent: sc.SkipConsent,
	}
	switch {
	case sc.ClientSecretHash != "":
		c.SecretHash = sc.ClientSecretHash
	case sc.ClientSecret != "":
		c.SecretHash = secretSHA + store.HashKey(sc.ClientSecret)
	}
	if c.SecretHash != "" {
		c.TokenEndpointAuthMethod = authBasic
	}
	if c.Name == "" {
		c.Name = sc.ClientID
	}
	return c, nil
}

// errUnknownClient is returned by getClient for any client that does not
// exist or whose metadata document could not be used.
var errUnknownClient = errors.New("unknown client")

// getClient resolves a client_id: static clients, then client ID metadata
// documents (https URLs), then dynamically registered clients. The client
// may be shared with other requests (static and cached clients): callers
// only read it.
func (s *Server) getClient(ctx context.Context, id string) (*store.Client, bool, error) {
	if id == "" || len(id) > 2048 {
		return nil, false, errUnknownClient
	}
	if sc, ok := s.static[id]; ok {
		return &sc.Client, sc.skipConsent, nil
	}
	if isURLClientID(id) {
		if s.cimd == nil {
			return nil, false, errUnknownClient
		}
		c, err := s.cimd.get(ctx, id)
		if errors.Is(err, errCIMDBusy) {
			return nil, false, err
		}
		if err != nil {
			s.log.InfoContext(ctx, "client ID metadata document rejected", "client_id", id, "err", err)
			// Still errUnknownClient to every caller; /authorize also tells
			// the user whether the document could not be fetched or was invalid.
			kind := errCIMDInvalid
			if errors.Is(err, errCIMDUnreachable) {
				kind = errCIMDUnreachable
			}
			return nil, false, fmt.Errorf("%w: %w", errUnknownClient, kind)
		}
		return c, false, nil
	}
	if c, ok := s.clients.get(id); ok {
		return c, false, nil
	}
	c, err := s.st.GetClient(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, errUnknownClient
	}
	if err != nil {
		return nil, false, err
	}
	s.clients.put(id, c, c.ExpiresAt)
	return c, false, nil
}

// maxClientCacheEntries bounds s.clients. A dynamic client never changes
// once registered and ends by expiring (the cache keeps an entry no longer
// than the client's ExpiresAt) or by a failed registration, which evicts
// it: caching it for revocation_cache_ttl spares the token endpoint a
// store read per request. Only clients that exist are cached.
const maxClientCacheEntries = 10000

func confidential(c *store.Client) bool { return c.SecretHash != "" }

// checkSecret compares a presented secret with its stored hash: SHA-256 for
// generated high-entropy secrets (registration, client_secret in the
// config), bcrypt for operator-supplied hashes (client_secret_hash), whose
// secrets may be weak.
func (s *Server) checkSecret(hash, secret string) bool {
	switch {
	case strings.HasPrefix(hash, secretSHA):
		want := strings.TrimPrefix(hash, secretSHA)
		return subtle.ConstantTimeCompare([]byte(store.HashKey(secret)), []byte(want)) == 1
	case isBcrypt(hash):
		return s.bcryptOK.check(hash, secret)
	}
	return false
}

// bcryptCache remembers secrets that matched a bcrypt hash. bcrypt is slow
// on purpose (tens of milliseconds at the default cost), which would hold a
// static confidential client to a few dozen token requests per second per
// core; with the cache each (hash, secret) pair pays it once per process.
// Only matches are kept, by the SHA-256 of hash and secret, so a wrong
// secret always pays the full bcrypt cost.
type bcryptCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]struct{}
}

// Matches are few (one per static client) unless a client presents
// variants of its own secret beyond bcrypt's 72 bytes: bound the map anyway.
const maxBcryptCacheEntries = 1024

func (c *bcryptCache) check(hash, secret string) bool {
	h := sha256.New()
	h.Write([]byte(hash)) // a bcrypt hash has no NUL: the separator is unambiguous
	h.Write([]byte{0})
	h.Write([]byte(secret))
	var k [sha256.Size]byte
	h.Sum(k[:0])
	c.mu.Lock()
	_, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return true
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(secret)) != nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxBcryptCacheEntries {
		c.m = make(map[[sha256.Size]byte]struct{})
	}
	c.m[k] = struct{}{}
	return true
}

// authenticateClient implements client authentication at the token,
// revocation and introspection endpoints (OAuth 2.1 §2.4): HTTP Basic or
// form secrets for confidential clients, client_id alone for public ones.
// The form must already be parsed.
func (s *Server) authenticateClient(r *http.Request) (*store.Client, error) {
	form := r.PostForm
	id, oe := singleValue(form, "client_id")
	if oe != nil {
		return nil, oe
	}
	secret, oe := singleValue(form, "client_secret")
	if oe != nil {
		return nil, oe
	}
	basicID, basicSecret, hasBasic := r.BasicAuth()
	if hasBasic {
		if secret != "" {
			return nil, invalidRequest("use one client authentication method")
		}
		// RFC 6749 §2.3.1: both parts are form-urlencoded inside Basic.
		var err1, err2 error
		basicID, err1 = url.QueryUnescape(basicID)
		basicSecret, err2 = url.QueryUnescape(basicSecret)
		if err1 != nil || err2 != nil || (id != "" && id != basicID) {
			return nil, errClientAuthBasic
		}
		id, secret = basicID, basicSecret
	}
	fail := errClientAuth
	if hasBasic {
		fail = errClientAuthBasic
	}
	if id == "" {
		return nil, fail
	}
	c, _, err := s.getClient(r.Context(), id)
	if errors.Is(err, errUnknownClient) {
		return nil, fail
	}
	if err != nil {
		return nil, err
	}
	switch {
	case confidential(c):
		if secret == "" || !s.checkSecret(c.SecretHash, secret) {
			return nil, fail
		}
	case secret != "":
		// A public client must not present a secret it was never issued
		// (Basic with an empty password is tolerated: x/oauth2 sends it).
		return nil, fail
	}
	return c, nil
}

// The invalid_client refusals of authenticateClient (RFC 6749 §5.2), with
// a Basic challenge when the client tried Basic authentication. Shared
// values: nothing modifies an *oauthError after it is made.
var (
	errClientAuth      = &oauthError{Code: errInvalidClient, Description: "client authentication failed", Status: http.StatusUnauthorized}
	errClientAuthBasic = &oauthError{Code: errInvalidClient, Description: "client authentication failed", Status: http.StatusUnauthorized, basicChallenge: true}
)

func allowsGrant(c *store.Client, grant string) bool { return slices.Contains(c.GrantTypes, grant) }
