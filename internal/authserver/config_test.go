package authserver

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/mcpgate/mcpgate/internal/idp"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/validate"
)

func validStatic() idp.Config {
	return idp.Config{Type: idp.TypeStatic, Users: []idp.User{{Username: "a", PasswordHash: testUserHash}}}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{PublicURL: "https://mcp.example.com/", Upstream: validStatic()}
	c.SetDefaults()
	var p validate.Problems
	c.Validate("as", &p)
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"https://mcp.example.com/mcp"}, c.Resources); d != "" {
		t.Error(d)
	}
	if c.AccessTokenLifetime != 15*time.Minute || c.RefreshTokenLifetime != 720*time.Hour || c.refreshGrace() != 30*time.Second ||
		c.SigningAlg != "ES256" || c.Registration.Mode != RegistrationOpen || !c.CIMD.enabled() {
		t.Errorf("defaults: %+v", c)
	}
}

func TestConfigYAML(t *testing.T) {
	src := `
resources: [https://mcp.example.com/mcp]
scopes: [mcp:read, mcp:write]
default_scopes: [mcp:read]
access_token_lifetime: 5m
refresh_grace: 10s
registration: {mode: token, token: "0123456789abcdef0123", max_clients_per_ip: 5, trusted_schemes: ["cursor://"]}
cimd: {enabled: false}
upstream:
  type: oidc
  issuer: https://idp.example.com/realms/x
  client_id: mcpgate
  client_secret: s3cret
  groups_claim: realm_access.roles
branding: {title: Acme, primary_color: "#112233"}
`
	var c Config
	if err := yaml.Unmarshal([]byte(src), &c); err != nil {
		t.Fatal(err)
	}
	c.PublicURL = "https://mcp.example.com"
	c.SetDefaults()
	var p validate.Problems
	c.Validate("as", &p)
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	if c.AccessTokenLifetime != 5*time.Minute || c.refreshGrace() != 10*time.Second || c.CIMD.enabled() ||
		c.Registration.TrustedSchemes[0] != "cursor" || c.Upstream.GroupsClaim != "realm_access.roles" {
		t.Errorf("decoded: %+v", c)
	}
}

// TestConfigRefreshGrace: an explicit 0 is kept (strict rotation), only an
// absent key gets the 30s default.
func TestConfigRefreshGrace(t *testing.T) {
	for _, tc := range []struct {
		src     string
		want    time.Duration
		problem string
	}{
		{src: "", want: 30 * time.Second},
		{src: "refresh_grace: 0", want: 0},
		{src: "refresh_grace: 0s", want: 0},
		{src: `refresh_grace: "0"`, want: 0},
		{src: "refresh_grace: null", want: 30 * time.Second},
		{src: "refresh_grace: 5s", want: 5 * time.Second},
		{src: "refresh_grace: -1s", want: -time.Second, problem: "as.refresh_grace: must not be negative"},
		{src: "refresh_grace: 6m", want: 6 * time.Minute, problem: "as.refresh_grace: must be at most 5m"},
	} {
		t.Run(tc.src, func(t *testing.T) {
			var c Config
			if err := yaml.Unmarshal([]byte(tc.src), &c); err != nil {
				t.Fatal(err)
			}
			c.PublicURL = "https://mcp.example.com"
			c.Upstream = validStatic()
			c.SetDefaults()
			if c.RefreshGrace == nil || c.refreshGrace() != tc.want {
				t.Fatalf("refresh_grace = %v, want %s", c.RefreshGrace, tc.want)
			}
			var p validate.Problems
			c.Validate("as", &p)
			err := p.Err()
			if tc.problem == "" && err != nil {
				t.Fatal(err)
			}
			if tc.problem != "" && (err == nil || !strings.Contains(err.Error(), tc.problem)) {
				t.Fatalf("problems %v, want %q", err, tc.problem)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want []string
	}{
		{"no public_url", func(c *Config) { c.PublicURL = "" }, []string{"public_url:", "as.resources: at least one"}},
		{"http public_url", func(c *Config) { c.PublicURL = "http://mcp.example.com" }, []string{"public_url:"}},
		{"bad resource", func(c *Config) { c.Resources = []string{"https://x.example.com/mcp#f"} }, []string{"as.resources[0]: resource must not contain a fragment"}},
		{"bad scope", func(c *Config) { c.Scopes = []string{"a b", "offline_access"} }, []string{`as.scopes[0]: invalid scope "a b"`, "as.scopes[1]: offline_access"}},
		{"default not in scopes", func(c *Config) { c.DefaultScopes = []string{"x"} }, []string{`as.default_scopes[0]: "x" is not in scopes`}},
		{"lifetimes", func(c *Config) {
			c.CodeLifetime = time.Hour
			c.RefreshGrace = new(Duration(time.Hour))
			c.RefreshTokenLifetime = 1000 * time.Hour
			c.SessionLifetime = 10 * time.Hour
		}, []string{"as.code_lifetime: must be at most 10m", "as.refresh_grace: must be at most 5m", "as.refresh_token_lifetime: must not exceed"}},
		{"alg", func(c *Config) { c.SigningAlg = "HS256" }, []string{"as.signing_alg: must be ES256 or RS256"}},
		{"registration", func(c *Config) {
			c.Registration.Mode = RegistrationToken
			c.Registration.Token = "short"
			c.Registration.TrustedSchemes = []string{"javascript", "https"}
		}, []string{"as.registration.token: must be at least 16", `as.registration.trusted_schemes[0]: "javascript"`, `as.registration.trusted_schemes[1]: "https"`}},
		{"bad mode", func(c *Config) { c.Registration.Mode = "public" }, []string{"as.registration.mode: must be open, token or closed"}},
		{"static clients", func(c *Config) {
			c.StaticClients = []StaticClient{
				{ClientID: "a", RedirectURIs: []string{"http://evil.example.com/cb"}},
				{ClientID: "a", ClientSecret: "short", ClientSecretHash: "x", RedirectURIs: []string{"https://ok.example.com/cb"}},
				{ClientID: "https://x.example.com/c.json"},
			}
		}, []string{
			"as.static_clients[0].redirect_uris[0]: http redirect URIs are only allowed for loopback",
			`as.static_clients[1].client_id: duplicate client_id "a"`,
			"as.static_clients[1].client_secret: set client_secret or client_secret_hash, not both",
			"as.static_clients[1].client_secret_hash: must be a bcrypt hash",
			"as.static_clients[1].client_secret: must be at least 16 characters",
			"as.static_clients[2].client_id: must not be an https URL",
			"as.static_clients[2].redirect_uris: at least one redirect URI is required",
		}},
		{"branding", func(c *Config) {
			c.Branding.PrimaryColor = "red; x"
			c.Branding.LogoURL = "javascript:alert(1)"
		}, []string{"as.branding.primary_color: must be a hex colour", "as.branding.logo_url: must be an https or data: URL"}},
		{"upstream", func(c *Config) { c.Upstream = idp.Config{} }, []string{"as.upstream.type: is required"}},
		{"cimd allowed_hosts", func(c *Config) {
			c.CIMD.AllowedHosts = []string{"ok.internal", "*.corp.internal", "10.1.2.3", "*", "*.", "a_b.internal", "https://x.internal", "bücher.internal", "x.*.internal"}
		}, []string{
			`as.cimd.allowed_hosts[3]: "*" is not a host name or *.zone pattern`,
			`as.cimd.allowed_hosts[4]: "*."`,
			`as.cimd.allowed_hosts[5]: "a_b.internal"`,
			`as.cimd.allowed_hosts[6]: "https://x.internal"`,
			`as.cimd.allowed_hosts[7]: "bücher.internal"`,
			`as.cimd.allowed_hosts[8]: "x.*.internal"`,
		}},
		{"rate limits", func(c *Config) {
			c.RateLimit.PerIP = ratelimit.Limit{RPS: -1, Burst: 1}
			c.RateLimit.Metadata = ratelimit.Limit{RPS: 1, Burst: 0}
		}, []string{"as.rate_limit.per_ip.rps: must be a positive number (got -1)", "as.rate_limit.metadata.burst: must be at least 1 (got 0)"}},
		{"cimd ca_file", func(c *Config) { c.CIMD.CAFile = "/nonexistent/ca.pem" }, []string{
			"as.cimd.ca_file: is used only for cimd.allowed_hosts",
			"as.cimd.ca_file: open /nonexistent/ca.pem",
		}},
		{"cimd ca_file not PEM", func(c *Config) {
			c.CIMD.AllowedHosts = []string{"ok.internal"}
			c.CIMD.CAFile = "config_test.go"
		}, []string{"as.cimd.ca_file: config_test.go holds no PEM certificate"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{PublicURL: "https://mcp.example.com", Upstream: validStatic()}
			tc.mod(&c)
			c.SetDefaults()
			var p validate.Problems
			c.Validate("as", &p)
			got := p.List()
			if len(got) != len(tc.want) {
				t.Fatalf("problems = %q, want %d matching %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("problem %d = %q, want prefix %q", i, got[i], w)
				}
			}
		})
	}
}

func TestNewRefusesInvalidConfig(t *testing.T) {
	c := Config{PublicURL: "https://mcp.example.com", Upstream: validStatic(), SigningAlg: "none"}
	c.SetDefaults()
	if _, err := New(c, Deps{Store: nil}); err == nil {
		t.Error("New accepted an invalid config")
	}
}
