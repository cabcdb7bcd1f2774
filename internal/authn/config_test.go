package authn

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/mcpgate/mcpgate/internal/validate"
)

func problems(c Config) []string {
	c.SetDefaults()
	var p validate.Problems
	c.Validate("auth", &p)
	return p.List()
}

func TestConfigValidate(t *testing.T) {
	okIssuer := IssuerConfig{Issuer: "https://auth.example.com/realms/mcp", Audience: StringList{"https://mcp.example.com/mcp"}}
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"valid jwt", Config{Mode: ModeJWT, JWT: JWTConfig{Issuers: []IssuerConfig{okIssuer}}}, nil},
		{"no mode", Config{}, []string{"auth.mode: is required (one of jwt, introspection, trusted_header)"}},
		{"unknown mode", Config{Mode: "magic"}, []string{`auth.mode: unsupported mode "magic" (want jwt, introspection or trusted_header)`}},
		{"no issuers", Config{Mode: ModeJWT}, []string{"auth.jwt.issuers: at least one issuer is required"}},
		{"issuer problems", Config{Mode: ModeJWT, JWT: JWTConfig{Issuers: []IssuerConfig{{
			Algorithms: []string{"RS256", "none", "HS256", "XY1"},
			Leeway:     -time.Second,
		}}}}, []string{
			"auth.jwt.issuers[0].issuer: is required",
			"auth.jwt.issuers[0].audience: is required: tokens are accepted only when issued for this resource",
			"auth.jwt.issuers[0].algorithms[1]: alg none is never allowed",
			"auth.jwt.issuers[0].algorithms[2]: HMAC algorithm HS256 is not allowed: tokens must be verified with the issuer's public keys",
			`auth.jwt.issuers[0].algorithms[3]: unsupported algorithm "XY1" (supported: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA)`,
			"auth.jwt.issuers[0].leeway: must be between 0 and 5m",
		}},
		{"private and http issuer", Config{Mode: ModeJWT, JWT: JWTConfig{Issuers: []IssuerConfig{
			{Issuer: "https://127.0.0.1:8443", Audience: StringList{"a"}},
			{Issuer: "http://auth.example.com", Audience: StringList{"a"}, JWKSURI: "https://10.1.1.1/jwks"},
		}}}, []string{
			`auth.jwt.issuers[0].issuer: host 127.0.0.1 of "https://127.0.0.1:8443" is private or loopback; set allow_private_issuer: true to use it`,
			`auth.jwt.issuers[1].issuer: "http://auth.example.com" uses plain http; use https or set allow_private_issuer: true`,
			`auth.jwt.issuers[1].jwks_uri: host 10.1.1.1 of "https://10.1.1.1/jwks" is private or loopback; set allow_private_issuer: true to use it`,
		}},
		{"private issuer allowed", Config{Mode: ModeJWT, JWT: JWTConfig{Issuers: []IssuerConfig{
			{Issuer: "http://localhost:8080/realms/x", Audience: StringList{"a"}, AllowPrivateIssuer: true},
		}}}, nil},
		{"duplicate issuer and empty audience", Config{Mode: ModeJWT, JWT: JWTConfig{Issuers: []IssuerConfig{
			okIssuer, {Issuer: okIssuer.Issuer, Audience: StringList{""}},
		}}}, []string{
			"auth.jwt.issuers[1].audience[0]: must not be empty",
			`auth.jwt.issuers[1].issuer: duplicate issuer "https://auth.example.com/realms/mcp"`,
		}},
		{"refresh interval above ttl", Config{Mode: ModeJWT, JWT: JWTConfig{Issuers: []IssuerConfig{{
			Issuer: okIssuer.Issuer, Audience: okIssuer.Audience, JWKSCacheTTL: time.Minute, JWKSRefreshMinInterval: 2 * time.Minute,
		}}}}, []string{"auth.jwt.issuers[0].jwks_refresh_min_interval: must not exceed jwks_cache_ttl (1m0s)"}},
		{"claims paths", Config{Mode: ModeJWT, JWT: JWTConfig{Issuers: []IssuerConfig{okIssuer}},
			Claims: ClaimsConfig{GroupsClaim: "realm_access..roles", ScopeClaim: ".scp"}, CacheSize: -2,
		}, []string{
			"auth.cache_size: must be -1 (disabled), 0 (default 10000) or positive",
			`auth.claims.groups_claim: claim path "realm_access..roles" has an empty segment`,
			`auth.claims.scope_claim: claim path ".scp" has an empty segment`,
		}},
		{"introspection missing everything", Config{Mode: ModeIntrospection, Introspection: IntrospectionConfig{AuthMethod: "jwt", CacheTTL: -1}}, []string{
			"auth.introspection.endpoint: endpoint or issuer (for discovery) is required",
			"auth.introspection.client_id: is required (RFC 7662 requires the caller to authenticate)",
			"auth.introspection.client_secret: is required",
			`auth.introspection.auth_method: must be basic or post, got "jwt"`,
			"auth.introspection.audience: is required: tokens are accepted only when issued for this resource",
			"auth.introspection.cache_ttl: must not be negative",
		}},
		{"introspection valid", Config{Mode: ModeIntrospection, Introspection: IntrospectionConfig{
			Endpoint: "https://auth.example.com/introspect", ClientID: "gw", ClientSecret: "s", Audience: StringList{"mcp"},
		}}, nil},
		{"introspection private endpoint", Config{Mode: ModeIntrospection, Introspection: IntrospectionConfig{
			Endpoint: "https://192.168.0.10/introspect", ClientID: "gw", ClientSecret: "s", Audience: StringList{"mcp"},
		}}, []string{`auth.introspection.endpoint: host 192.168.0.10 of "https://192.168.0.10/introspect" is private or loopback; set allow_private_issuer: true to use it`}},
		{"trusted header missing", Config{Mode: ModeTrustedHeader}, []string{
			"auth.trusted_header.team_domain: is required (e.g. myteam.cloudflareaccess.com; env CLOUDFLARE_TEAM_DOMAIN)",
			"auth.trusted_header.audience: is required: the Access application AUD tag (env CLOUDFLARE_APPLICATION_AUDIENCE)",
		}},
		{"trusted header bad values", Config{Mode: ModeTrustedHeader, TrustedHeader: TrustedHeaderConfig{
			TeamDomain: "myteam.cloudflareaccess.com/x", Audience: "aud", CertsURL: "http://certs.example.com/certs",
		}}, []string{
			`auth.trusted_header.team_domain: must be a host name like myteam.cloudflareaccess.com, got "myteam.cloudflareaccess.com/x"`,
			"auth.trusted_header.certs_url: plain http is only allowed for a loopback host",
		}},
		{"trusted header URL pasted", Config{Mode: ModeTrustedHeader, TrustedHeader: TrustedHeaderConfig{
			TeamDomain: "https://myteam.cloudflareaccess.com/", Audience: "aud",
		}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, problems(tc.cfg)); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConfigYAML(t *testing.T) {
	const doc = `
mode: jwt
cache_size: 500
claims:
  groups_claim: realm_access.roles
jwt:
  issuers:
    - issuer: https://auth.example.com/realms/mcp
      audience: https://mcp.example.com/mcp
      leeway: 30s
      require_typ: at+jwt
    - issuer: https://cognito-idp.eu-west-1.amazonaws.com/pool
      audience: [a, b]
      algorithms: [RS256]
      claims:
        groups_claim: "cognito:groups"
`
	var c Config
	if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	if p := problems(c); len(p) != 0 {
		t.Fatalf("problems: %v", p)
	}
	want := Config{
		Mode:      ModeJWT,
		CacheSize: 500,
		Claims:    ClaimsConfig{GroupsClaim: "realm_access.roles", UsernameClaim: "preferred_username", ScopeClaim: "scope"},
		JWT: JWTConfig{Issuers: []IssuerConfig{{
			Issuer: "https://auth.example.com/realms/mcp", Audience: StringList{"https://mcp.example.com/mcp"},
			Algorithms: DefaultAlgorithms, Leeway: 30 * time.Second, RequireTyp: "at+jwt",
			JWKSCacheTTL: time.Hour, JWKSRefreshMinInterval: 30 * time.Second,
		}, {
			Issuer: "https://cognito-idp.eu-west-1.amazonaws.com/pool", Audience: StringList{"a", "b"},
			Algorithms: []string{"RS256"}, Leeway: time.Minute, JWKSCacheTTL: time.Hour, JWKSRefreshMinInterval: 30 * time.Second,
			Claims: &ClaimsConfig{GroupsClaim: "cognito:groups", UsernameClaim: "preferred_username", ScopeClaim: "scope"},
		}}},
	}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}

	var bad Config
	if err := yaml.Unmarshal([]byte("jwt: {issuers: [{leeway: 60}]}"), &bad); err == nil {
		t.Error("integer leeway accepted (would mean 60ns)")
	}
}
