package credential

import (
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/validate"
)

// TestConfigValidate: each credential type takes its own keys only, and
// every problem is reported at its key.
func TestConfigValidate(t *testing.T) {
	te := func(mod func(*Config)) Config {
		c := Config{Type: TypeTokenExchange, TokenEndpoint: "https://sts.example/token", ClientID: "gw", ClientSecret: "s", Audience: "db"}
		mod(&c)
		return c
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string // substrings of the problems, in order; none: valid
	}{
		{"none", Config{}, nil},
		{"static", Config{Type: TypeStatic, Value: "Bearer x"}, nil},
		{"static without value", Config{Type: TypeStatic}, []string{"c.value: is required"}},
		{"unknown type", Config{Type: "oauth"}, []string{"c.type: must be one of none, static, upstream_token, token_exchange, client_credentials"}},
		{"token_exchange", te(func(*Config) {}), nil},
		{"token_exchange by issuer", te(func(c *Config) { c.TokenEndpoint, c.Issuer = "", "https://idp.example" }), nil},
		{"on_behalf_of", te(func(c *Config) {
			c.Protocol, c.Audience, c.Scopes = ProtocolOnBehalfOf, "", []string{"api://db/.default"}
		}), nil},
		{"client_credentials", Config{Type: TypeClientCredentials, TokenEndpoint: "https://sts.example/token", ClientID: "gw", ClientSecret: "s"}, nil},
		{"private_key_jwt", te(func(c *Config) { c.ClientSecret, c.ClientAuth, c.PrivateKeyFile = "", AuthPrivateKeyJWT, "/k.pem" }), nil},
		{"http endpoint", te(func(c *Config) { c.TokenEndpoint = "http://sts.example/token" }), []string{"c.token_endpoint: must be https"}},
		{"http endpoint allowed", te(func(c *Config) { c.TokenEndpoint, c.AllowPrivateNetwork = "http://127.0.0.1/token", true }), nil},
		{"both endpoint and issuer", te(func(c *Config) { c.Issuer = "https://idp.example" }), []string{"c.token_endpoint: set exactly one"}},
		{"neither endpoint nor issuer", te(func(c *Config) { c.TokenEndpoint = "" }), []string{"c.token_endpoint: set exactly one"}},
		{"endpoint with user info", te(func(c *Config) { c.TokenEndpoint = "https://u:p@sts.example/token" }), []string{"c.token_endpoint: must be an absolute URL"}},
		{"no client", te(func(c *Config) { c.ClientID, c.ClientSecret = "", "" }), []string{"c.client_id: is required", "c.client_secret: is required"}},
		{"unknown client_auth", te(func(c *Config) { c.ClientAuth = "tls_client_auth" }), []string{"c.client_auth: must be one of"}},
		{"private_key_jwt without key, with secret", te(func(c *Config) { c.ClientAuth = AuthPrivateKeyJWT }),
			[]string{"c.private_key_file: is required", "c.client_secret: is only valid with client_auth client_secret_basic"}},
		{"relative resource", te(func(c *Config) { c.Resource = "/db" }), []string{"c.resource: must be an absolute URI"}},
		{"resource with fragment", te(func(c *Config) { c.Resource = "https://db.example/#x" }), []string{"c.resource: must be an absolute URI"}},
		{"scope with a space", te(func(c *Config) { c.Scopes = []string{"a b"} }), []string{"c.scopes[0]: invalid scope"}},
		{"scope outside ASCII (RFC 6749 §3.3)", te(func(c *Config) { c.Scopes = []string{"réad"} }), []string{"c.scopes[0]: invalid scope"}},
		{"unknown protocol", te(func(c *Config) { c.Protocol = "saml" }), []string{"c.protocol: must be rfc8693 or on_behalf_of"}},
		{"id_token requested", te(func(c *Config) { c.RequestedTokenType = "id_token" }), []string{"c.requested_token_type: must be access_token or jwt"}},
		{"saml subject", te(func(c *Config) { c.SubjectTokenType = "saml2" }), []string{"c.subject_token_type: must be access_token or jwt"}},
		{"on_behalf_of without scopes, with audience", te(func(c *Config) { c.Protocol = ProtocolOnBehalfOf }),
			[]string{"c.scopes: is required for protocol on_behalf_of", "c.audience: is only valid with protocol rfc8693"}},
		{"client_credentials with exchange keys", Config{Type: TypeClientCredentials, TokenEndpoint: "https://sts.example/token", ClientID: "gw",
			ClientSecret: "s", Protocol: "rfc8693", SubjectTokenType: "jwt"},
			[]string{"c.protocol: is only valid with type token_exchange", "c.subject_token_type: is only valid with type token_exchange"}},
		{"static with exchange keys (a typo of the type)", Config{Type: TypeStatic, Value: "v", TokenEndpoint: "https://sts.example/token", Audience: "db"},
			[]string{"c.token_endpoint: is only valid with type token_exchange or client_credentials", "c.audience: is only valid"}},
		{"upstream_token with a value", Config{Type: TypeUpstreamToken, Value: "v"}, []string{"c.value: is only valid with type static"}},
		{"timeout too long", te(func(c *Config) { c.Timeout = 3 * time.Minute }), []string{"c.timeout: must be between"}},
		{"negative cache", te(func(c *Config) { c.CacheSize = -1 }), []string{"c.cache_size: must be between"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg
			c.SetDefaults()
			var p validate.Problems
			c.Validate("c", &p)
			got := p.List()
			if len(got) != len(tc.want) {
				t.Fatalf("problems %q, want %d like %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d: %q, want %q", i, got[i], w)
				}
			}
		})
	}
}

// TestDefaults: the keys of an exchange get their defaults, other types
// none (so that Validate can refuse them when set).
func TestDefaults(t *testing.T) {
	c := Config{Type: TypeTokenExchange}
	c.SetDefaults()
	if c.ClientAuth != AuthClientSecretBasic || c.Protocol != ProtocolRFC8693 || c.RequestedTokenType != "access_token" ||
		c.SubjectTokenType != "access_token" || c.Timeout != 10*time.Second || c.CacheSize != 10_000 {
		t.Errorf("%+v", c)
	}
	s := Config{Type: TypeStatic}
	s.SetDefaults()
	if s.Header != "Authorization" || s.ClientAuth != "" || s.Timeout != 0 || s.CacheSize != 0 {
		t.Errorf("%+v", s)
	}
}
