// Package credential obtains the credential the gateway presents to a
// backend on a user's behalf: a configured secret, the user's upstream IdP
// token, a token exchanged for the backend at a security token service
// (RFC 8693, or Entra's on-behalf-of flow) or a service account's token
// (RFC 6749 §4.4). The client's own token is never one of them.
//
// Exchanged and service tokens are cached per backend and user session
// until shortly before they expire, with one request to the security token
// service in flight per key (golang.org/x/sync/singleflight); each request
// is audited and counted, never with a token value.
package credential

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/identity"
)

// Header is a request header field to set on the backend request.
type Header struct{ Name, Value string }

// Subject is the caller a credential is obtained for.
type Subject struct {
	Principal *identity.Principal
	// Token is the bearer token the client presented to the gateway. It is
	// the subject token of an exchange only when the gateway validates
	// tokens of an external issuer (SubjectIncoming); the gateway's own
	// tokens are never sent anywhere.
	Token string
	// ActsForUser: the request calls a tool, gets a prompt or reads a
	// resource. A linked_token credential that is not linked yet starts a
	// link only for such a request (LinkRequiredError); for the rest it
	// answers ErrNotLinked and the request goes without a credential.
	ActsForUser bool
}

// Provider yields the credential for one backend. Implementations are safe
// for concurrent use.
type Provider interface {
	Get(ctx context.Context, s Subject) (Header, error)
}

// Static is the Provider of a configured header: the proxy sets it without
// a per-request lookup.
type Static Header

// Get implements Provider.
func (s Static) Get(context.Context, Subject) (Header, error) { return Header(s), nil }

// UpstreamTokens yields the caller's upstream IdP access token for a token
// session (tsid). The built-in authorization server implements it.
type UpstreamTokens interface {
	UpstreamToken(ctx context.Context, tsid string) (string, error)
}

// Auditor records one audit record; an error means it was not written.
type Auditor interface {
	Log(ctx context.Context, rec *audit.Record) error
}

// SubjectSource says where the subject token of an exchange comes from.
type SubjectSource int

const (
	// SubjectNone: the gateway has no user token (trusted_header, none);
	// token_exchange is refused.
	SubjectNone SubjectSource = iota
	// SubjectUpstream: the user's upstream access token stored with the
	// grant (authorization_server mode).
	SubjectUpstream
	// SubjectIncoming: the token the client presented (jwt, introspection).
	SubjectIncoming
)

// Options are a provider's dependencies.
type Options struct {
	// Backend names the backend, in errors, audit records and metrics.
	Backend  string
	Subject  SubjectSource
	Upstream UpstreamTokens // SubjectUpstream and upstream_token
	Linked   LinkedTokens   // linked_token
	Auditor  Auditor        // required for token_exchange and client_credentials
	Metrics  *Metrics       // nil: not counted
	Logger   *slog.Logger
	// HTTPClient, when set, contributes its TLS settings to the client that
	// reaches the security token service (tests trust an httptest
	// certificate with it); the SSRF guard, timeout and body bound apply
	// regardless.
	HTTPClient *http.Client
	Now        func() time.Time // tests
}

// New returns the provider for cfg (validated), or nil for type none.
func New(cfg Config, o Options) (Provider, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	switch cfg.Type {
	case TypeNone, "":
		return nil, nil
	case TypeStatic:
		return Static{Name: cfg.Header, Value: cfg.Value}, nil
	case TypeUpstreamToken:
		if o.Upstream == nil {
			return nil, errors.New("credential upstream_token needs the built-in authorization server (auth.mode: authorization_server)")
		}
		return upstream{o.Upstream}, nil
	case TypeTokenExchange, TypeClientCredentials:
		return newExchanger(cfg, o)
	case TypeLinkedToken:
		if o.Linked == nil {
			return nil, errors.New("credential linked_token needs the built-in authorization server (auth.mode: authorization_server)")
		}
		return linked{l: o.Linked, provider: cfg.Provider}, nil
	}
	return nil, fmt.Errorf("unknown credential type %q", cfg.Type)
}

// upstream passes the user's upstream IdP token through.
type upstream struct{ u UpstreamTokens }

func (u upstream) Get(ctx context.Context, s Subject) (Header, error) {
	if s.Principal == nil || s.Principal.SessionID == "" {
		return Header{}, ErrNoSubject
	}
	tok, err := u.u.UpstreamToken(ctx, s.Principal.SessionID)
	if err != nil {
		return Header{}, fmt.Errorf("%w: %w", ErrNoSubject, err)
	}
	return Header{Name: "Authorization", Value: "Bearer " + tok}, nil
}

// Failure kinds. Errors from Get wrap one of them; Describe turns them into
// what the client is told.
var (
	// ErrNoSubject: the user has no token to exchange or pass on (no
	// upstream token, a session ended, the IdP would not refresh it).
	ErrNoSubject = errors.New("no user token to obtain the backend credential with")
	// ErrRefused: the security token service answered with an OAuth error
	// about the request or the user (invalid_grant, invalid_target,
	// access_denied, interaction_required, …).
	ErrRefused = errors.New("the security token service refused the request")
	// ErrUnavailable: the security token service could not be reached,
	// failed, or answered something unusable.
	ErrUnavailable = errors.New("the security token service is unavailable")
	// ErrTimeout: the security token service did not answer in time.
	ErrTimeout = errors.New("the security token service timed out")
)

// Describe maps an error from Get to the HTTP status and the message of the
// JSON-RPC error the client receives: it names the backend and the kind of
// failure, never the security token service's own words or a token.
func Describe(backend string, err error) (status int, message string) {
	switch {
	case errors.Is(err, ErrRefused):
		return http.StatusForbidden, fmt.Sprintf("backend %s: could not get a credential: the security token service refused it for this user", backend)
	case errors.Is(err, ErrTimeout):
		return http.StatusGatewayTimeout, fmt.Sprintf("backend %s: could not get a credential: the security token service timed out", backend)
	case errors.Is(err, ErrNoSubject):
		return http.StatusBadGateway, fmt.Sprintf("backend %s: could not get a credential: sign in again", backend)
	}
	return http.StatusBadGateway, fmt.Sprintf("backend %s: could not get a credential: the security token service is unavailable", backend)
}
