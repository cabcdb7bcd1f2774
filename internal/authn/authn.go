// Package authn turns a request's credential into a Principal: bearer JWTs
// verified against an issuer's JWKS, opaque tokens by RFC 7662 introspection,
// or a Cloudflare Access assertion header.
package authn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/validate"
)

// Errors returned by Authenticate. Failures other than ErrNoToken and
// ErrTokenInQuery wrap ErrInvalidToken or ErrUnavailable with a detail meant
// for the log; clients only ever see the fixed text from Describe.
var (
	// ErrNoToken: the request carries no credential we support. Answer 401
	// with a bare challenge and no error code (RFC 6750 §3.1).
	ErrNoToken = errors.New("authn: no credential")
	// ErrTokenInQuery: an access_token query parameter. Answer 400
	// invalid_request; MCP forbids tokens in URLs.
	ErrTokenInQuery = errors.New("authn: access token in query string")
	// ErrInvalidToken: the credential is malformed, expired, not for us, or
	// fails verification. Answer 401 invalid_token.
	ErrInvalidToken = errors.New("authn: invalid token")
	// ErrUnavailable: the token could not be checked because the issuer's
	// keys or the introspection endpoint are unreachable. Answer 503.
	ErrUnavailable = errors.New("authn: token verification unavailable")
)

// Authenticator turns a request's credential into a Principal.
//
// The returned Principal may be shared with other requests carrying the same
// token (it is cached); callers must treat it as read-only.
type Authenticator interface {
	Authenticate(r *http.Request) (*identity.Principal, error)
}

// Readier is implemented by every Authenticator from New. Ready reports
// whether the issuer's keys or the introspection endpoint have been reached
// successfully at least once; until then it retries (rate-limited).
type Readier interface {
	Ready(ctx context.Context) error
}

// TokenVerifier verifies a bearer token that did not arrive in a request's
// Authorization header (for example a token-exchange subject token).
// Implemented by the jwt and introspection authenticators.
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (*identity.Principal, error)
}

// Options are runtime dependencies; zero values are safe defaults.
type Options struct {
	// HTTPClient fetches discovery documents, JWKS and introspection. Nil
	// means a client with a 10s timeout that does not follow redirects.
	HTTPClient *http.Client
	// Logger receives operational events (key refreshes, failures); never tokens.
	Logger *slog.Logger
	// Now is the clock (tests). Nil means time.Now.
	Now func() time.Time
}

const (
	fetchTimeout  = 10 * time.Second
	maxTokenBytes = 32 << 10 // far above real tokens; bounds parsing work
	maxBodyBytes  = 1 << 20
)

func (o *Options) fill() {
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{
			Timeout: fetchTimeout,
			// A redirect could lead a key fetch to a host the config never named.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// New validates cfg (after SetDefaults) and builds the Authenticator for
// cfg.Mode. It tries once, bounded by ctx and 10s, to reach the issuers'
// keys or the introspection endpoint; failure is logged, not returned, so the
// gateway starts while the IdP is down (Ready reports it).
func New(ctx context.Context, cfg Config, opts Options) (Authenticator, error) {
	cfg.SetDefaults()
	var p validate.Problems
	cfg.Validate("auth", &p)
	if err := p.Err(); err != nil {
		return nil, err
	}
	opts.fill()
	var a interface {
		Authenticator
		Readier
	}
	switch cfg.Mode {
	case ModeJWT:
		a = newJWTAuthenticator(cfg, opts)
	case ModeIntrospection:
		a = newIntrospector(cfg, opts)
	case ModeTrustedHeader:
		a = newCloudflareAuthenticator(cfg, opts)
	default:
		return nil, fmt.Errorf("authn: unsupported mode %q", cfg.Mode)
	}
	wctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	if err := a.Ready(wctx); err != nil {
		opts.Logger.Warn("authn: token verification backend not reachable yet", "mode", cfg.Mode, "error", err)
	}
	return a, nil
}

// Describe maps an Authenticate error to the HTTP status, the RFC 6750 §3.1
// error code ("" for none) and a fixed description that is safe to send to
// the client. Unknown errors map to invalid_token: fail closed.
func Describe(err error) (status int, code, description string) {
	switch {
	case errors.Is(err, ErrNoToken):
		return http.StatusUnauthorized, "", ""
	case errors.Is(err, ErrTokenInQuery):
		return http.StatusBadRequest, "invalid_request", "access token must be sent in the Authorization header"
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable, "", "token verification temporarily unavailable"
	default:
		return http.StatusUnauthorized, "invalid_token", "the access token is invalid or expired"
	}
}

// BearerToken extracts the token from "Authorization: Bearer <token>"
// (RFC 6750 §2.1; scheme case-insensitive, RFC 7235 §2.1). A token in the
// access_token query parameter (RFC 6750 §2.3) is refused with
// ErrTokenInQuery; form-encoded body tokens (§2.2) are not read. Another
// scheme (e.g. Basic) counts as no credential.
func BearerToken(r *http.Request) (string, error) {
	if r.URL != nil && r.URL.RawQuery != "" {
		// ParseQuery keeps going past a malformed pair, so Has is reliable.
		q, _ := url.ParseQuery(r.URL.RawQuery)
		if q.Has("access_token") {
			return "", ErrTokenInQuery
		}
	}
	vals := r.Header.Values("Authorization")
	switch len(vals) {
	case 0:
		return "", ErrNoToken
	case 1:
	default:
		return "", fmt.Errorf("%w: multiple Authorization headers", ErrInvalidToken)
	}
	scheme, tok, _ := strings.Cut(vals[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", ErrNoToken
	}
	tok = strings.TrimLeft(tok, " ")
	if tok == "" {
		return "", fmt.Errorf("%w: empty bearer token", ErrInvalidToken)
	}
	if !IsB64Token(tok) {
		return "", fmt.Errorf("%w: bearer token has characters outside the b64token syntax", ErrInvalidToken)
	}
	return tok, nil
}

// b64tokenChar marks the characters RFC 6750 §2.1 allows before padding:
// ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/". A table keeps the
// per-request scan as cheap as the token hash.
var b64tokenChar = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/", byte(c)) >= 0
	}
	return t
}()

// IsB64Token checks RFC 6750 §2.1: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
// Inbound bearer tokens and tokens the gateway sends on (backend
// credentials) both pass it, so none can break or inject a header.
func IsB64Token(s string) bool {
	i := 0
	for i < len(s) && b64tokenChar[s[i]] {
		i++
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// invalid wraps ErrInvalidToken with a detail for the log.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidToken, fmt.Sprintf(format, args...))
}

// clip shortens attacker-supplied text before it goes into an error detail.
func clip(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
