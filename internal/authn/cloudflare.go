package authn

import (
	"context"
	"net/http"
	"strings"

	"github.com/mcpgate/mcpgate/internal/identity"
)

// CloudflareAssertionHeader carries the signed Cloudflare Access JWT.
const CloudflareAssertionHeader = "Cf-Access-Jwt-Assertion"

// cloudflareAuthenticator is the trusted_header mode. Cloudflare Access
// authenticates the user and adds a JWT signed with the team's keys; we
// verify it like any JWT (RS256, iss https://<team_domain>, aud = the
// application's AUD tag). Unsigned identity headers such as
// Cf-Access-Authenticated-User-Email are ignored: anyone who reaches the
// origin directly can set them.
type cloudflareAuthenticator struct {
	v      *Verifier
	issuer *trustedIssuer
}

func newCloudflareAuthenticator(cfg Config, opts Options) *cloudflareAuthenticator {
	tc := cfg.TrustedHeader
	certs := tc.CertsURL
	if certs == "" {
		certs = "https://" + tc.TeamDomain + "/cdn-cgi/access/certs"
	}
	ic := IssuerConfig{
		Issuer:     "https://" + tc.TeamDomain,
		JWKSURI:    certs,
		Audience:   StringList{tc.Audience},
		Algorithms: []string{"RS256"},
	}
	ic.SetDefaults()
	ti := newTrustedIssuer(ic, &cfg.Claims, opts)
	// Service-token assertions have an empty sub and name the token's
	// client id in common_name.
	ti.subjectFallback = "common_name"
	return &cloudflareAuthenticator{v: newJWTVerifier([]*trustedIssuer{ti}, cfg.CacheSize, opts.Now), issuer: ti}
}

// Authenticate verifies the Cf-Access-Jwt-Assertion header.
func (a *cloudflareAuthenticator) Authenticate(r *http.Request) (*identity.Principal, error) {
	vals := r.Header.Values(CloudflareAssertionHeader)
	switch len(vals) {
	case 0:
		return nil, ErrNoToken
	case 1:
	default:
		return nil, invalid("multiple %s headers", CloudflareAssertionHeader)
	}
	tok := strings.TrimSpace(vals[0])
	if tok == "" {
		return nil, ErrNoToken
	}
	return a.v.verify(r.Context(), tok)
}

// Ready reports whether the team's certs have been loaded at least once.
func (a *cloudflareAuthenticator) Ready(ctx context.Context) error {
	return a.issuer.keys.Ready(ctx)
}
