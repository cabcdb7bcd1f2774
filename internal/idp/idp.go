// Package idp holds mcpgate's upstream identity connectors: the authorization
// server delegates user login to one of them. "oidc" federates to any OpenID
// Connect issuer (Keycloak, Okta, Entra, Dex, Google, ...); "static" checks
// users listed in the configuration against bcrypt hashes.
package idp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/mcpgate/mcpgate/internal/validate"
)

// staticIssuer is the issuer of built-in users' identities: mcpgate's own
// issuer, marked so that they never collide with an upstream IdP's.
func staticIssuer(asIssuer string) string { return asIssuer + "#static" }

// UserKey is Identity.Key of the user whose subject is sub under the
// connector cfg configures, for mcpgate's issuer asIssuer (a built-in
// user's subject is their username).
func UserKey(cfg *Config, asIssuer, sub string) string {
	iss := cfg.Issuer
	if cfg.Type == TypeStatic {
		iss = staticIssuer(asIssuer)
	}
	return (&Identity{Issuer: iss, Subject: sub}).Key()
}

// Connector types.
const (
	TypeOIDC   = "oidc"
	TypeStatic = "static"
)

var (
	// ErrInvalidCredentials is returned by PasswordConnector.Login for an
	// unknown user or a wrong password (deliberately not distinguished).
	ErrInvalidCredentials = errors.New("invalid username or password")
	// ErrNotAllowed is returned when a user authenticated but is not in
	// allowed_groups / allowed_email_domains.
	ErrNotAllowed = errors.New("user is not allowed to sign in")
	// ErrEmailNotVerified is the ErrNotAllowed of allowed_email_domains for
	// a user whose email is in an allowed domain but not verified by the IdP
	// (email_verified is not true): the user can fix it at the IdP.
	ErrEmailNotVerified = fmt.Errorf("%w: the identity provider has not verified the email address", ErrNotAllowed)
	// ErrRefreshRejected is returned by Refresh when the IdP refused the
	// refresh token (invalid_grant): the user must sign in again.
	ErrRefreshRejected = errors.New("upstream refresh token rejected")
	// ErrUserGone is returned by Reidentify when the user no longer exists
	// at the identity source (a built-in user removed from the
	// configuration, or an identity from another connector).
	ErrUserGone = errors.New("user no longer exists at the identity source")
	// ErrUnavailable: the upstream IdP cannot be reached (its discovery
	// document could not be read); sign-ins wait until it can.
	ErrUnavailable = errors.New("identity provider unavailable")
)

// Watcher is implemented by connectors that depend on a remote IdP.
type Watcher interface {
	// Ready is nil once the IdP has been reached.
	Ready() error
	// Discover reaches the IdP now if it has not been yet (one attempt at
	// a time; concurrent callers share its outcome).
	Discover(ctx context.Context) error
	// WatchDiscovery retries in the background, with backoff, until the IdP
	// is reached or ctx ends.
	WatchDiscovery(ctx context.Context)
}

// SessionEnded reports whether a Reidentify error means that the user's
// session is over (the caller ends the grant) rather than that the identity
// source could not be asked right now.
func SessionEnded(err error) bool {
	return errors.Is(err, ErrRefreshRejected) || errors.Is(err, ErrNotAllowed) || errors.Is(err, ErrUserGone)
}

// Identity is the user as the upstream IdP describes them. Issuer+Subject is
// the stable key; Username and Email are for display, audit and policy.
type Identity struct {
	Issuer        string   `json:"iss"`
	Subject       string   `json:"sub"`
	Username      string   `json:"preferred_username,omitempty"`
	Name          string   `json:"name,omitempty"`
	Email         string   `json:"email,omitempty"`
	EmailVerified bool     `json:"email_verified,omitempty"`
	Groups        []string `json:"groups,omitempty"`
}

// Equal reports whether i and o have the same fields (nil and empty groups
// alike, as their JSON is): whether o would be stored as it is.
func (i *Identity) Equal(o *Identity) bool {
	return i.Issuer == o.Issuer && i.Subject == o.Subject && i.Username == o.Username && i.Name == o.Name &&
		i.Email == o.Email && i.EmailVerified == o.EmailVerified && slices.Equal(i.Groups, o.Groups)
}

// Key is the stable identity key "issuer#subject".
func (i *Identity) Key() string { return i.Issuer + "#" + i.Subject }

// SessionEnd returns when the upstream session these tokens belong to is
// known to end if it cannot be refreshed: ok is false when there is a
// refresh token (the session lasts as long as the IdP honours it);
// otherwise end is the access token's expiry, else the id_token's exp, else
// zero (unknown).
func (t *Tokens) SessionEnd() (end time.Time, ok bool) {
	if t.RefreshToken != "" {
		return time.Time{}, false
	}
	if !t.Expiry.IsZero() {
		return t.Expiry, true
	}
	if exp, isNum := unverifiedJWTClaims(t.IDToken)["exp"].(float64); isNum && exp > 0 {
		return time.Unix(int64(exp), 0), true
	}
	return time.Time{}, true
}

// Tokens are the tokens the upstream IdP issued for a user. They are sealed
// before being stored and never leave the gateway except toward backends
// configured for credential passthrough.
type Tokens struct {
	AccessToken  string    `json:"access_token"`
	TokenType    string    `json:"token_type,omitempty"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	IDToken      string    `json:"id_token,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"` // zero: the IdP did not say
}

// Connector is an upstream identity source. A connector is either a
// CallbackConnector (browser redirect to the IdP) or a PasswordConnector
// (username/password form served by mcpgate).
type Connector interface {
	Type() string
	// Reidentify resolves a signed-in user again, as the authorization
	// server does on every refresh, so that a session never carries roles
	// the identity source no longer gives (dex's RefreshConnector). prev is
	// the identity from sign-in or from the last refresh, t the upstream
	// tokens kept for the session (nil for connectors without any). prev
	// is read only: the authorization server shares one decoded identity
	// among the sessions stored with the same one.
	//
	// The result has prev's Issuer and Subject and has passed allowed_groups
	// and allowed_email_domains. When the connector obtained new upstream
	// tokens it returns them, also together with an error, so that the
	// caller can store a rotated upstream refresh token whatever the
	// outcome; nil means t is unchanged. An error for which SessionEnded is
	// true means the user must sign in again; any other error is transient.
	Reidentify(ctx context.Context, prev *Identity, t *Tokens) (*Identity, *Tokens, error)
}

// CallbackConnector logs users in by redirecting them to an upstream IdP.
type CallbackConnector interface {
	Connector
	// AuthCodeURL returns the IdP authorization URL for one login attempt.
	// state, nonce and the PKCE verifier are single-use values the caller
	// keeps until the callback.
	AuthCodeURL(ctx context.Context, state, nonce, verifier string) (string, error)
	// HandleCallback redeems the code from the IdP's redirect (query q) and
	// returns the verified identity and the upstream tokens.
	HandleCallback(ctx context.Context, q url.Values, nonce, verifier string) (*Identity, *Tokens, error)
	// Refresh uses t.RefreshToken to obtain fresh tokens. The result keeps
	// t.RefreshToken when the IdP does not rotate it.
	Refresh(ctx context.Context, t *Tokens) (*Tokens, error)
}

// PasswordConnector checks a username and password.
type PasswordConnector interface {
	Connector
	Login(ctx context.Context, username, password string) (*Identity, error)
}

// CallbackError is an error the IdP reported on its redirect back to us
// (RFC 6749 §4.1.2.1), e.g. access_denied when the user cancelled.
type CallbackError struct {
	Code        string
	Description string
}

func (e *CallbackError) Error() string {
	return fmt.Sprintf("upstream authorization error %q: %s", e.Code, e.Description)
}

// User is a static user.
type User struct {
	// Username is what the user types to sign in, and their subject.
	Username     string `yaml:"username"`
	PasswordHash string `yaml:"password_hash" secret:"true"` // bcrypt, see `mcpgate users hash-password`
	// Email is the user's address (treated as verified).
	Email string `yaml:"email"`
	// Groups are matched by policy.groups and allowed_groups.
	Groups []string `yaml:"groups"`
}

// Config configures the upstream connector (`auth.authorization_server.upstream`).
type Config struct {
	Type string `yaml:"type"` // oidc | static (default oidc when preset is set)
	// Preset names the IdP: dex | keycloak | entra | okta | google | auth0 |
	// authentik. It sets the scopes and claim paths that IdP needs (see
	// docs/idp-guides.md); keys set here override it.
	Preset string `yaml:"preset"`

	// Issuer is the IdP's issuer URL (oidc), read by OIDC discovery.
	Issuer string `yaml:"issuer"`
	// ClientID is the gateway's client at the IdP (oidc).
	ClientID string `yaml:"client_id"`
	// ClientSecret is ClientID's secret (oidc).
	ClientSecret string   `yaml:"client_secret" secret:"true"`
	Scopes       []string `yaml:"scopes"` // sent to the IdP; MCP scopes are never forwarded
	// Claim paths, dotted for nested claims (e.g. "realm_access.roles").
	GroupsClaim string `yaml:"groups_claim"`
	// UsernameClaim is the claim path of the display name.
	UsernameClaim string `yaml:"username_claim"`
	// EmailClaim is the claim path of the email address.
	EmailClaim string `yaml:"email_claim"`
	// InsecureSkipEmailVerified treats emails as verified even without
	// email_verified=true (for IdPs such as Entra that never send it).
	InsecureSkipEmailVerified bool `yaml:"insecure_skip_email_verified"`
	// AllowPrivateIssuer permits an http:// issuer and issuers on loopback or
	// private addresses (a local Dex or Keycloak). Off, the connector only
	// talks to public https endpoints.
	AllowPrivateIssuer bool `yaml:"allow_private_issuer"`

	// Access gates, applied to every connector. Empty means no restriction.
	AllowedGroups       []string `yaml:"allowed_groups"`
	AllowedEmailDomains []string `yaml:"allowed_email_domains"` // requires a verified email

	// Users are the built-in users (static).
	Users []User `yaml:"users"`
}

// SetDefaults fills in unset fields.
func (c *Config) SetDefaults() {
	c.applyPreset()
	if c.Type == TypeOIDC && len(c.Scopes) == 0 {
		c.Scopes = []string{"openid", "profile", "email"}
		// Only ask for the non-standard "groups" scope when the operator named
		// the claim: providers such as Google reject unknown scopes.
		if c.GroupsClaim == "groups" {
			c.Scopes = append(c.Scopes, "groups")
		}
	}
	c.GroupsClaim = cmp.Or(c.GroupsClaim, "groups")
	c.UsernameClaim = cmp.Or(c.UsernameClaim, "preferred_username")
	c.EmailClaim = cmp.Or(c.EmailClaim, "email")
}

// Validate reports every problem under path.
func (c *Config) Validate(path string, p *validate.Problems) {
	if _, ok := presets[c.Preset]; c.Preset != "" && !ok {
		p.Add(validate.Join(path, "preset"), "unknown preset %q: choose one of %s", c.Preset, PresetNames())
	}
	if c.Preset != "" && c.Type != TypeOIDC {
		p.Add(validate.Join(path, "preset"), "is only valid for type oidc")
	}
	switch c.Type {
	case TypeOIDC:
		c.validateOIDC(path, p)
	case TypeStatic:
		c.validateStatic(path, p)
	case "":
		p.Add(validate.Join(path, "type"), "is required (oidc or static)")
	default:
		p.Add(validate.Join(path, "type"), "must be oidc or static, not %q", c.Type)
	}
	for i, d := range c.AllowedEmailDomains {
		if d == "" || strings.ContainsAny(d, "@/ ") {
			p.Add(validate.Index(validate.Join(path, "allowed_email_domains"), i), "must be a bare domain such as example.com")
		}
	}
}

func (c *Config) validateOIDC(path string, p *validate.Problems) {
	u, err := url.Parse(c.Issuer)
	switch {
	case c.Issuer == "":
		p.Add(validate.Join(path, "issuer"), "is required for type oidc")
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		p.Add(validate.Join(path, "issuer"), "must be an absolute https URL")
	case u.Scheme == "http" && !c.AllowPrivateIssuer:
		p.Add(validate.Join(path, "issuer"), "must use https (set allow_private_issuer for a local test IdP)")
	case u.Fragment != "" || u.RawQuery != "":
		p.Add(validate.Join(path, "issuer"), "must not have a query or fragment")
	}
	if c.ClientID == "" {
		p.Add(validate.Join(path, "client_id"), "is required for type oidc")
	}
	if c.ClientSecret == "" {
		p.Add(validate.Join(path, "client_secret"), "is required for type oidc")
	}
	if !slices.Contains(c.Scopes, "openid") {
		p.Add(validate.Join(path, "scopes"), "must include openid")
	}
	if len(c.Users) > 0 {
		p.Add(validate.Join(path, "users"), "is only valid for type static")
	}
}

func (c *Config) validateStatic(path string, p *validate.Problems) {
	if len(c.Users) == 0 {
		p.Add(validate.Join(path, "users"), "at least one user is required for type static")
	}
	seen := map[string]bool{}
	for i, u := range c.Users {
		up := validate.Index(validate.Join(path, "users"), i)
		switch {
		case u.Username == "":
			p.Add(validate.Join(up, "username"), "is required")
		case seen[u.Username]:
			p.Add(validate.Join(up, "username"), "duplicate username %q", u.Username)
		}
		seen[u.Username] = true
		if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
			p.Add(validate.Join(up, "password_hash"), "must be a bcrypt hash (mcpgate users hash-password)")
		}
	}
	if c.Issuer != "" || c.ClientID != "" || c.ClientSecret != "" {
		p.Add(path, "issuer, client_id and client_secret are only valid for type oidc")
	}
}

// Options are the runtime dependencies of a connector.
type Options struct {
	// Issuer is mcpgate's own issuer; static identities use Issuer+"#static".
	Issuer string
	// RedirectURL is mcpgate's /callback URL registered at the IdP.
	RedirectURL string
	// HTTPClient contributes TLS settings for calls to the IdP (optional).
	HTTPClient *http.Client
	Logger     *slog.Logger
	Now        func() time.Time
}

// New builds the connector cfg describes. cfg must have passed Validate.
func New(cfg Config, o Options) (Connector, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	switch cfg.Type {
	case TypeOIDC:
		return newOIDC(cfg, o)
	case TypeStatic:
		return newStatic(cfg, o)
	}
	return nil, fmt.Errorf("idp: unknown connector type %q", cfg.Type)
}

// checkAllowed applies the allowed_groups and allowed_email_domains gates.
func checkAllowed(cfg *Config, id *Identity) error {
	if len(cfg.AllowedGroups) > 0 && !slices.ContainsFunc(id.Groups, func(g string) bool {
		return slices.Contains(cfg.AllowedGroups, g)
	}) {
		return ErrNotAllowed
	}
	if len(cfg.AllowedEmailDomains) > 0 {
		_, domain, ok := strings.Cut(id.Email, "@")
		if !ok || !slices.ContainsFunc(cfg.AllowedEmailDomains, func(d string) bool {
			return strings.EqualFold(d, domain)
		}) {
			return ErrNotAllowed
		}
		if !id.EmailVerified {
			return ErrEmailNotVerified
		}
	}
	return nil
}
