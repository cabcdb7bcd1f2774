// Package store defines mcpgate's durable state: OAuth clients, pending
// authorization requests, authorization codes, grants (token sessions),
// refresh tokens, consents and signing keys.
//
// Backends (memory, sqlite, postgres) all pass the suite in
// internal/store/conformance, so callers can rely on the semantics written
// here rather than on a particular backend.
//
// Conventions shared by every backend:
//   - Secrets never reach the store in clear. Codes and refresh tokens are
//     keyed by the caller's SHA-256 hash of the token; upstream tokens, PKCE
//     verifiers and private keys arrive sealed (internal/keys). The store
//     treats them as opaque bytes.
//   - SQL backends additionally hash every caller-supplied key (client IDs,
//     user keys, ...) before using it as a primary key, so arbitrarily long
//     identifiers such as CIMD URLs or subjects cannot break writes.
//   - Times are stored in UTC with microsecond precision; a zero time means
//     "unset" (for ExpiresAt: never expires).
//   - An object whose non-zero ExpiresAt is not after the current time is
//     treated as absent: getters return ErrNotFound for it even before
//     DeleteExpired has removed it.
//   - Returned objects are copies; mutating them does not change the store.
//   - Create* on an existing key returns ErrConflict.
package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"
)

var (
	// ErrNotFound is returned when an object does not exist or has expired.
	ErrNotFound = errors.New("store: not found")
	// ErrAlreadyUsed is returned (together with the code) when an
	// authorization code is redeemed a second time. RFC 6749 §4.1.2 says the
	// authorization server SHOULD then revoke the tokens issued from it, so
	// the caller gets the code back to find its grant.
	ErrAlreadyUsed = errors.New("store: already used")
	// ErrConflict is returned when a create hits an existing key, or when an
	// optimistic or single-use update lost a race (already rotated, version
	// moved).
	ErrConflict = errors.New("store: conflict")
)

// Client kinds.
const (
	ClientKindDynamic = "dynamic" // RFC 7591 dynamic client registration
	ClientKindStatic  = "static"  // configured by the operator
	ClientKindCIMD    = "cimd"    // client ID metadata document (the ID is a URL)
)

// Signing key statuses.
const (
	KeyActive  = "active"  // signs new tokens; published
	KeyNext    = "next"    // published ahead of activation so caches pick it up
	KeyRetired = "retired" // no longer signs; published until RetireAt + overlap
)

// Client is a registered OAuth client.
type Client struct {
	ID                      string
	SecretHash              string // empty for public clients
	Name                    string
	RedirectURIs            []string
	GrantTypes              []string
	ResponseTypes           []string
	TokenEndpointAuthMethod string // none | client_secret_basic | client_secret_post
	Scope                   string
	ApplicationType         string // web | native
	Kind                    string // ClientKindDynamic | ClientKindStatic | ClientKindCIMD
	RegisteredIP            string // source of a dynamic registration, for CountClientsByIP: the IPv4 address or IPv6 /64
	Metadata                []byte // raw JSON of the registration/CIMD document (for echoing back)
	CreatedAt               time.Time
	ExpiresAt               time.Time // zero = never
}

// AuthRequest is a pending /authorize awaiting upstream login and consent.
type AuthRequest struct {
	ID                  string // random, from a CSPRNG
	ClientID            string
	RedirectURI         string
	State               string
	Resource            string
	Scopes              []string
	CodeChallenge       string
	CodeChallengeMethod string
	UpstreamStateHash   string // hash of the state sent to the upstream IdP (single use, see TakeAuthRequestByUpstreamState)
	UpstreamNonce       string
	UpstreamVerifier    []byte // sealed PKCE verifier toward the IdP
	UserKey             string // set after login: issuer#subject
	Identity            []byte // JSON of the logged-in user's identity (groups, email, ...)
	UpstreamTokens      []byte // sealed, set after the upstream callback
	ConsentCSRF         string
	ExpiresAt           time.Time
}

// AuthCode is an issued authorization code, keyed by the hash of the code.
type AuthCode struct {
	Hash           string
	ClientID       string
	RedirectURI    string
	Resource       string
	UserKey        string
	Scopes         []string
	CodeChallenge  string
	GrantID        string // the grant (tsid) the code creates when redeemed
	Identity       []byte
	UpstreamTokens []byte // sealed
	ExpiresAt      time.Time
}

// Grant is a token session (tsid): what refresh tokens and access tokens hang off.
type Grant struct {
	ID             string // tsid
	ClientID       string
	UserKey        string
	Resource       string
	Scopes         []string
	Identity       []byte
	UpstreamTokens []byte // sealed upstream access/refresh/id token blob
	UpstreamExpiry time.Time
	Version        int64 // optimistic concurrency for upstream refresh; RedeemAuthCode stores it as given, UpdateGrantUpstream increments it
	CreatedAt      time.Time
	ExpiresAt      time.Time
	Revoked        bool
}

// GrantFilter selects grants for ListGrants; empty fields match any grant.
type GrantFilter struct {
	UserKey  string
	ClientID string
}

// RefreshToken is an issued refresh token, keyed by the hash of the token.
type RefreshToken struct {
	Hash       string
	GrantID    string
	ClientID   string
	CreatedAt  time.Time
	ExpiresAt  time.Time
	RotatedAt  time.Time // zero while current; set when replaced (a reuse grace window is measured from here)
	ReplacedBy string    // hash of the successor
}

// Consent records that a user approved scopes for a client.
type Consent struct {
	UserKey   string
	ClientID  string
	Scopes    []string
	CreatedAt time.Time
}

// SigningKey is a key the authorization server signs its tokens with.
type SigningKey struct {
	ID        string // kid
	Algorithm string // ES256 | RS256
	Private   []byte // sealed private key (PKCS#8 DER before sealing)
	Public    []byte // public JWK JSON
	Status    string // KeyActive | KeyNext | KeyRetired
	CreatedAt time.Time
	RetireAt  time.Time // when it stopped (or will stop) signing; zero while active
}

// IssueFunc builds what redeeming code c creates: the grant, and the
// grant's first refresh token or nil (its GrantID must be the grant's ID).
// It runs inside the store's write transaction, holding its lock: it must
// be quick and must not call the store. Returning an error refuses the
// redemption (see RedeemAuthCode).
type IssueFunc func(c *AuthCode) (*Grant, *RefreshToken, error)

// CheckIssued validates what an IssueFunc returned; backends call it before
// writing anything.
func CheckIssued(g *Grant, t *RefreshToken) error {
	switch {
	case g == nil:
		return errors.New("store: redeem: no grant to create")
	case t != nil && t.GrantID != g.ID:
		return errors.New("store: redeem: the refresh token belongs to another grant")
	}
	return nil
}

// Store is mcpgate's persistent state. All methods are safe for concurrent
// use, also from several processes sharing one database (SQL backends).
type Store interface {
	// Changes tells every process sharing the store what it may have
	// cached that changed (see Changes).
	Changes

	// CreateClient stores a new client; ErrConflict if the ID exists.
	CreateClient(ctx context.Context, c *Client) error
	// GetClient returns ErrNotFound for unknown or expired clients.
	GetClient(ctx context.Context, id string) (*Client, error)
	// DeleteClient returns ErrNotFound for unknown clients.
	DeleteClient(ctx context.Context, id string) error
	// CountClientsByIP counts clients registered from ip with CreatedAt >= since
	// (rate limiting of dynamic registration).
	CountClientsByIP(ctx context.Context, ip string, since time.Time) (int, error)
	// NthClientTimeByIP returns the CreatedAt of the n-th oldest (from 0)
	// client registered from ip with CreatedAt >= since, or ErrNotFound if
	// there are n or fewer: when a registration slot frees (Retry-After).
	NthClientTimeByIP(ctx context.Context, ip string, since time.Time, n int) (time.Time, error)

	// CreateAuthRequest stores a pending request; ErrConflict if the ID exists.
	CreateAuthRequest(ctx context.Context, r *AuthRequest) error
	// GetAuthRequest returns ErrNotFound for unknown or expired requests.
	GetAuthRequest(ctx context.Context, id string) (*AuthRequest, error)
	// UpdateAuthRequest overwrites every field of the request with ID r.ID;
	// ErrNotFound if it does not exist or has expired.
	UpdateAuthRequest(ctx context.Context, r *AuthRequest) error
	// DeleteAuthRequest returns ErrNotFound for unknown requests.
	DeleteAuthRequest(ctx context.Context, id string) error
	// TakeAuthRequestByUpstreamState atomically finds the unexpired request
	// whose UpstreamStateHash equals stateHash and clears that hash, so an
	// upstream callback can be processed once. The returned request has
	// UpstreamStateHash == "" (an UpdateAuthRequest with it does not re-arm
	// the state). A second call, an empty stateHash or an expired request
	// gives ErrNotFound.
	TakeAuthRequestByUpstreamState(ctx context.Context, stateHash string) (*AuthRequest, error)

	// CreateAuthCode stores a code; ErrConflict if the hash exists.
	CreateAuthCode(ctx context.Context, c *AuthCode) error
	// RedeemAuthCode redeems a code once and, in the same transaction,
	// creates the grant (and its first refresh token) that issue builds
	// from it, so a used code always has its grant in place for a replay
	// to revoke.
	//   - First call: issue is called with the code; on success the code is
	//     marked used, the grant and refresh token are stored, and the code
	//     is returned.
	//   - issue fails: the code is marked used anyway (a rejected redemption
	//     still spends it, RFC 6749 §4.1.2), nothing else is stored, and
	//     the code and issue's error are returned unchanged.
	//   - Later calls: the code and ErrAlreadyUsed, so the caller can revoke
	//     the grant it created (RFC 6749 §4.1.2); issue is not called.
	//   - Unknown or expired code: ErrNotFound; issue is not called.
	//   - The grant ID or refresh token hash exists: ErrConflict, and nothing
	//     changes (the code stays unused).
	// Concurrent calls for one code are serialized: once one has spent it,
	// the others get ErrAlreadyUsed, so at most one calls issue and stores
	// a grant.
	RedeemAuthCode(ctx context.Context, hash string, issue IssueFunc) (*AuthCode, error)

	// GetGrant returns ErrNotFound for unknown or expired grants. Revoked
	// grants are returned with Revoked set; the caller must check it.
	GetGrant(ctx context.Context, id string) (*Grant, error)
	// RevokeGrant marks the grant revoked (idempotent); ErrNotFound if unknown.
	// It does not touch refresh tokens: see RevokeRefreshTokensForGrant.
	RevokeGrant(ctx context.Context, id string) error
	// UpdateGrantUpstream replaces the sealed upstream tokens and their
	// expiry, and the identity unless identity is nil, if the grant's
	// Version still equals expectedVersion, and then increments Version (the
	// new version is expectedVersion+1). ErrConflict if the version moved
	// (another refresh won), ErrNotFound if the grant is unknown, expired or
	// revoked.
	UpdateGrantUpstream(ctx context.Context, id string, identity, sealed []byte, expiry time.Time, expectedVersion int64) error
	// ListGrants returns the unexpired grants that match every non-empty
	// field of f, revoked ones included (Revoked set), oldest CreatedAt first
	// (ties by ID).
	ListGrants(ctx context.Context, f GrantFilter) ([]*Grant, error)

	// GetRefreshToken returns ErrNotFound for unknown, revoked or expired
	// tokens. Rotated tokens are returned with RotatedAt/ReplacedBy set so
	// the caller can apply a grace window or detect reuse.
	GetRefreshToken(ctx context.Context, hash string) (*RefreshToken, error)
	// GetRefreshTokenGrant returns the refresh token and its grant in one
	// read, as a refresh needs both: ErrNotFound when GetRefreshToken would
	// give it for the token, or GetGrant for its grant (unknown or expired).
	// A rotated token and a revoked grant are returned as those methods
	// return them (RotatedAt/ReplacedBy, Revoked set); the caller checks.
	// The answer may come from a cache of this process's reads and writes
	// (SQLite), so a change made by another process can show late: only
	// RotateRefreshToken's answer is authoritative.
	GetRefreshTokenGrant(ctx context.Context, hash string) (*RefreshToken, *Grant, error)
	// RotateRefreshToken atomically marks oldHash as replaced by next.Hash at
	// now and inserts next. Exactly one of several concurrent rotations of
	// the same token succeeds; the others (and any rotation of an already
	// rotated token) get ErrConflict. ErrNotFound if oldHash is unknown or
	// expired or its grant revoked (whatever the caller read before), or if
	// next's grant does not exist.
	RotateRefreshToken(ctx context.Context, oldHash string, next *RefreshToken, now time.Time) error
	// RevokeRefreshTokensForGrant deletes every refresh token of the grant
	// (idempotent; no error if there are none).
	RevokeRefreshTokensForGrant(ctx context.Context, grantID string) error

	// GetConsent returns ErrNotFound if the user never consented to the client.
	GetConsent(ctx context.Context, userKey, clientID string) (*Consent, error)
	// SaveConsent inserts or replaces the consent for (UserKey, ClientID).
	SaveConsent(ctx context.Context, c *Consent) error
	// DeleteConsent removes a consent; ErrNotFound if there is none.
	DeleteConsent(ctx context.Context, userKey, clientID string) error

	// ListSigningKeys returns every stored key, oldest CreatedAt first.
	ListSigningKeys(ctx context.Context) ([]*SigningKey, error)
	// CreateSigningKey stores a key; ErrConflict if the kid exists.
	CreateSigningKey(ctx context.Context, k *SigningKey) error
	// UpdateSigningKey updates Status and RetireAt of the key k.ID, and its
	// sealed private key when k.Private is set (the same key sealed again
	// under a new encryption key; the key material itself never changes);
	// ErrNotFound if unknown.
	UpdateSigningKey(ctx context.Context, k *SigningKey) error
	// DeleteSigningKey removes a key; ErrNotFound if unknown.
	DeleteSigningKey(ctx context.Context, id string) error

	// DeleteExpired removes clients, auth requests, codes, grants and refresh
	// tokens whose non-zero ExpiresAt is not after now (refresh tokens of a
	// removed grant go with it) and returns how many objects were removed.
	DeleteExpired(ctx context.Context, now time.Time) (int64, error)
	// Close releases the backend's resources.
	Close() error
}

// HashKey returns the hex SHA-256 of s. SQL backends key rows on it, and
// callers may use it to hash codes and refresh tokens before storing them.
func HashKey(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// Expired reports whether an object with the given ExpiresAt is expired at now.
func Expired(expiresAt, now time.Time) bool {
	return !expiresAt.IsZero() && !expiresAt.After(now)
}

// NormTime converts t to the precision and zone every backend stores: UTC,
// truncated to microseconds. The zero time stays zero.
func NormTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// NilIfEmpty maps an empty value to SQL NULL, for "keep the stored value"
// updates (coalesce($n, column)).
func NilIfEmpty(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}
