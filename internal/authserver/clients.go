package authserver

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

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
// documents (https URLs), then dynamically registered clients.
func (s *Server) getClient(ctx context.Context, id string) (*store.Client, bool, error) {
	if id == "" || len(id) > 2048 {
		return nil, false, errUnknownClient
	}
	if sc, ok := s.static[id]; ok {
		c := sc.Client
		return &c, sc.skipConsent, nil
	}
	if isURLClientID(id) {
		if s.cimd == nil {
			return nil, false, errUnknownClient
		}
		c, err := s.cimd.get(ctx, id)
		if err != nil {
			s.log.InfoContext(ctx, "client ID metadata document rejected", "client_id", id, "err", err)
			return nil, false, errUnknownClient
		}
		return c, false, nil
	}
	c, err := s.st.GetClient(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, errUnknownClient
	}
	if err != nil {
		return nil, false, err
	}
	return c, false, nil
}

func confidential(c *store.Client) bool { return c.SecretHash != "" }

// checkSecret compares a presented secret with its stored hash: SHA-256 for
// generated high-entropy secrets, bcrypt for operator-supplied hashes.
func checkSecret(hash, secret string) bool {
	switch {
	case strings.HasPrefix(hash, secretSHA):
		want := strings.TrimPrefix(hash, secretSHA)
		return subtle.ConstantTimeCompare([]byte(store.HashKey(secret)), []byte(want)) == 1
	case isBcrypt(hash):
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(secret)) == nil
	}
	return false
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
			return nil, &oauthError{Code: errInvalidClient, Description: "client authentication failed", Status: http.StatusUnauthorized, basicChallenge: true}
		}
		id, secret = basicID, basicSecret
	}
	fail := &oauthError{Code: errInvalidClient, Description: "client authentication failed", Status: http.StatusUnauthorized, basicChallenge: hasBasic}
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
		if secret == "" || !checkSecret(c.SecretHash, secret) {
			return nil, fail
		}
	case secret != "":
		// A public client must not present a secret it was never issued
		// (Basic with an empty password is tolerated: x/oauth2 sends it).
		return nil, fail
	}
	return c, nil
}

func allowsGrant(c *store.Client, grant string) bool { return slices.Contains(c.GrantTypes, grant) }
