package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

const validJWT = `
listen: 127.0.0.1:8080
auth:
  mode: jwt
  jwt:
    issuers:
      - issuer: https://idp.example.com
        audience: http://127.0.0.1:8080/mcp
backends:
  - name: demo
    url: http://127.0.0.1:9000/mcp
audit: { sink: stdout }
`

func TestParseValid(t *testing.T) {
	cfg, err := Parse([]byte(validJWT), env(nil), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PublicURL != "http://127.0.0.1:8080" || cfg.Backends[0].Path != "/mcp" || cfg.Security.MaxBodyBytes != 4<<20 {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	if got := cfg.ResourceURLs(); !cmp.Equal(got, []string{"http://127.0.0.1:8080/mcp"}) {
		t.Errorf("ResourceURLs = %v", got)
	}
}

// TestParseErrors checks that each problem is reported with its key path.
func TestParseErrors(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		env  map[string]string
		want []string // substrings that must all appear
	}{
		{"unknown top-level key", validJWT + "bogus: 1\n", nil, []string{"bogus: unknown key (line"}},
		{"unknown nested key", strings.Replace(validJWT, "audience:", "audiance:", 1), nil,
			[]string{"auth.jwt.issuers[0].audiance: unknown key", "auth.jwt.issuers[0].audience"}},
		{"missing audience", strings.Replace(validJWT, "        audience: http://127.0.0.1:8080/mcp\n", "", 1), nil,
			[]string{"auth.jwt.issuers[0].audience"}},
		{"no auth mode", strings.Replace(validJWT, "mode: jwt", "mode: ''", 1), nil, []string{"auth.mode: is required"}},
		{"none on non-loopback", strings.Replace(strings.Replace(validJWT, "mode: jwt", "mode: none", 1), "listen: 127.0.0.1:8080", "listen: 0.0.0.0:8080\npublic_url: https://mcp.example.com", 1), nil,
			[]string{"auth.mode: none is only allowed when listen is a loopback address"}},
		{"bad CORS origin", validJWT + "security:\n  cors_origins: [\"https://app.example.com/path\", \"*\"]\n", nil,
			[]string{"security.cors_origins[0]: must be an origin", "security.cors_origins[1]"}},
		{"bad allowed origin", validJWT + "security:\n  allowed_origins: [\"app.example.com\"]\n", nil, []string{"security.allowed_origins[0]"}},
		{"no backends", strings.Split(validJWT, "backends:")[0] + "audit: { sink: stdout }\n", nil, []string{"backends: at least one backend is required"}},
		{"bad backend url", strings.Replace(validJWT, "http://127.0.0.1:9000/mcp", "ftp://x", 1), nil, []string{"backends[0].url"}},
		{"http public url off loopback", validJWT + "public_url: http://mcp.example.com\n", nil, []string{"public_url: must be https"}},
		{"unset env var", strings.Replace(validJWT, "https://idp.example.com", "${IDP_URL}", 1), nil,
			[]string{"auth.jwt.issuers[0].issuer: environment variable IDP_URL is not set"}},
		{"duplicate backend", strings.Replace(validJWT, "audit:", "  - name: demo\n    url: http://127.0.0.1:9001/mcp\n    path: /other\naudit:", 1), nil,
			[]string{`backends[1].name: duplicate backend name "demo"`}},
		{"upstream_token without authorization server", strings.Replace(validJWT, "url: http://127.0.0.1:9000/mcp", "url: http://127.0.0.1:9000/mcp\n    credential: { type: upstream_token }", 1), nil,
			[]string{"backends[0].credential.type: upstream_token requires auth.mode authorization_server"}},
		{"token_exchange without a user token (trusted_header)", strings.Replace(strings.Replace(validJWT, "mode: jwt", "mode: trusted_header\n  trusted_header: { type: cloudflare_access, team_domain: t.cloudflareaccess.com, audience: a }", 1),
			"url: http://127.0.0.1:9000/mcp", "url: http://127.0.0.1:9000/mcp\n    credential: { type: token_exchange, token_endpoint: 'https://sts.example/token', client_id: gw, client_secret: s, audience: db }", 1), nil,
			[]string{"backends[0].credential.type: token_exchange needs the user's token"}},
		{"token_exchange with a typo'd key", strings.Replace(validJWT, "url: http://127.0.0.1:9000/mcp", "url: http://127.0.0.1:9000/mcp\n    credential: { type: token_exchange, token_endpoint: 'http://sts.example/token', client_id: gw, client_secret: s, audiance: db }", 1), nil,
			[]string{"backends[0].credential.audiance: unknown key", "backends[0].credential.token_endpoint: must be https"}},
		{"static credential without value", strings.Replace(validJWT, "url: http://127.0.0.1:9000/mcp", "url: http://127.0.0.1:9000/mcp\n    credential: { type: static }", 1), nil,
			[]string{"backends[0].credential.value: is required"}},
		{"shared limiter without postgres", validJWT + "rate_limit:\n  shared: { store: postgres }\n", nil,
			[]string{`rate_limit.shared.store: postgres keeps the limits in the store's database: set store.driver: postgres`}},
		{"per-tool limit naming no backend", validJWT + "rate_limit:\n  per_tool: [ { tools: [delete_*], backends: [nope], rps: 1, burst: 1 } ]\n", nil,
			[]string{`rate_limit.per_tool[0].backends[0]: names no backend (got "nope")`}},
		{"bad trusted proxy", validJWT + "security:\n  trusted_proxies: [\"10.0.0.0/8\", \"lb.internal\"]\n", nil,
			[]string{"security.trusted_proxies[1]: must be an IP address or CIDR"}},
		{"url and command", strings.Replace(validJWT, "url: http://127.0.0.1:9000/mcp", "url: http://127.0.0.1:9000/mcp\n    command: [my-server]", 1), nil,
			[]string{"backends[0].url: cannot be combined with command"}},
		{"stdio with a credential", strings.Replace(validJWT, "url: http://127.0.0.1:9000/mcp", "command: [my-server]\n    credential: { type: static, value: x }", 1), nil,
			[]string{"backends[0].credential.type: must be none for a stdio backend"}},
		{"forward_headers refuses credentials, hop-by-hop and the gateway's own headers",
			strings.Replace(validJWT, "url: http://127.0.0.1:9000/mcp", "url: http://127.0.0.1:9000/mcp\n    identity_headers: { user: X-MCP-User }\n    credential: { type: static, header: X-Api-Key, value: k }\n    forward_headers: [X-Tenant, authorization, Cookie, connection, x-mcp-user, X-API-KEY, X-Forwarded-For, \"bad name\"]", 1), nil,
			[]string{"backends[0].forward_headers[1]: Authorization must not be forwarded: it is a client credential",
				"backends[0].forward_headers[2]: Cookie must not be forwarded",
				"backends[0].forward_headers[3]: Connection must not be forwarded: it is hop-by-hop",
				"backends[0].forward_headers[4]: X-Mcp-User must not be forwarded: it is an identity header",
				"backends[0].forward_headers[5]: X-Api-Key must not be forwarded: it is this backend's credential header",
				"backends[0].forward_headers[6]: X-Forwarded-For must not be forwarded: it is set by the gateway",
				`backends[0].forward_headers[7]: "bad name" is not a header name`}},
		{"valid forward_headers", strings.Replace(validJWT, "url: http://127.0.0.1:9000/mcp", "url: http://127.0.0.1:9000/mcp\n    forward_headers: [X-Tenant, Accept-Language]", 1), nil, nil},
		{"stdio with forward_headers", strings.Replace(validJWT, "url: http://127.0.0.1:9000/mcp", "command: [my-server]\n    forward_headers: [X-Tenant]", 1), nil,
			[]string{"backends[0].forward_headers: cannot be used with a stdio backend"}},
		{"policy naming unknown backends, each reported", validJWT + `endpoints: [ { path: /all, name: all, backends: [demo] } ]
policy:
  roles:
    r: { tools: ["demo/*", "all/x", "dmeo/*", "get_vm"], prompts: ["ghost/p"], backends: { demo: {}, nope: { tools: [x] } } }
  tool_scopes: { "demo/delete_*": [d], "k8s/delete_*": [d] }
`, nil, []string{
			`policy.roles.r.backends.nope: names no backend or aggregated endpoint "nope" (known: all, demo)`,
			`policy.roles.r.tools[2]: names no backend or aggregated endpoint "dmeo"`,
			`policy.roles.r.prompts[0]: names no backend or aggregated endpoint "ghost"`,
			`policy.tool_scopes.k8s/delete_*: names no backend or aggregated endpoint "k8s"`}},
		{"policy naming a backend and an endpoint", validJWT + "endpoints: [ { path: /all, name: all, backends: [demo] } ]\npolicy: { roles: { r: { tools: [\"demo/*\", \"all/x\"] } } }\n", nil, nil},
		{"valid stdio backend", strings.Replace(validJWT, "url: http://127.0.0.1:9000/mcp", "command: [python3, -m, srv]\n    env: { VCENTER_HOST: vc.example.com }", 1), nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), env(tc.env), Overrides{})
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestEveryProblemAtOnce: one config with several problems reports all.
func TestEveryProblemAtOnce(t *testing.T) {
	y := `
listen: 127.0.0.1:8080
auth: { mode: jwt, jwt: { issuers: [ { issuer: "https://idp.example.com" } ] }, scopes_supported: ["*", "café"] }
backends: [ { name: "a b", url: "nope" } ]
security: { cors_origins: ["https://x.example.com/"] }
log: { format: xml }
audit: { sink: stdout }
`
	_, err := Parse([]byte(y), env(nil), Overrides{})
	if err == nil {
		t.Fatal("want error")
	}
	for _, w := range []string{"auth.jwt.issuers[0].audience", "auth.scopes_supported[0]", "auth.scopes_supported[1]", "backends[0].name", "backends[0].url", "security.cors_origins[0]", "log.format"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%v", w, err)
		}
	}
}

func TestEnvSubstitutionAndOverrides(t *testing.T) {
	y := strings.Replace(validJWT, "https://idp.example.com", "${IDP_URL}", 1)
	y = strings.Replace(y, "url: http://127.0.0.1:9000/mcp", "url: http://127.0.0.1:9000/mcp\n    credential: { type: static, value: \"Bearer ${BACKEND_TOKEN}\" }", 1)
	cfg, err := Parse([]byte(y), env(map[string]string{
		"IDP_URL":               "https://login.example.org",
		"BACKEND_TOKEN":         "s3cr3t: *not yaml*",
		"MCPGATE_LISTEN":        "127.0.0.1:9999",
		"MCPGATE_LOG_LEVEL":     "debug",
		"MCPGATE_PUBLIC_URL":    "http://localhost:9999",
		"MCPGATE_AUDIT_REPLICA": "gw-2",
	}), Overrides{Audience: "http://localhost:9999/mcp"})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Auth.JWT.Issuers[0].Issuer; got != "https://login.example.org" {
		t.Errorf("issuer = %q", got)
	}
	if got := cfg.Backends[0].Credential.Value; got != "Bearer s3cr3t: *not yaml*" {
		t.Errorf("credential = %q (substitution must not be parsed as YAML)", got)
	}
	if cfg.Listen != "127.0.0.1:9999" || cfg.Log.Level != "debug" || cfg.PublicURL != "http://localhost:9999" {
		t.Errorf("env overrides not applied: %s %s %s", cfg.Listen, cfg.Log.Level, cfg.PublicURL)
	}
	if cfg.Audit.Replica != "gw-2" {
		t.Errorf("audit.replica = %q, want MCPGATE_AUDIT_REPLICA", cfg.Audit.Replica)
	}
	if got := []string(cfg.Auth.JWT.Issuers[0].Audience); !cmp.Equal(got, []string{"http://localhost:9999/mcp"}) {
		t.Errorf("flag audience = %v", got)
	}
}

func TestDefaultValueSyntax(t *testing.T) {
	y := strings.Replace(validJWT, "127.0.0.1:8080\n", "${LISTEN:-127.0.0.1:7070}\n", 1)
	cfg, err := Parse([]byte(y), env(nil), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:7070" {
		t.Errorf("listen = %q", cfg.Listen)
	}
}

func TestNoneOnLoopbackAllowed(t *testing.T) {
	y := strings.Replace(validJWT, "mode: jwt", "mode: none", 1)
	if _, err := Parse([]byte(y), env(nil), Overrides{}); err != nil {
		t.Fatal(err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(validJWT))
	f.Add([]byte("auth: {mode: jwt}\nbackends: [{name: x}]"))
	f.Add([]byte("a: &x {b: *x}"))
	f.Add([]byte("listen: ${A:-${B}}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Must never panic; errors are fine.
		cfg, err := Parse(b, env(map[string]string{"A": "1"}), Overrides{})
		if err == nil && cfg.Auth.Mode == "" {
			t.Fatal("config without auth mode accepted")
		}
	})
}

// TestCredentialPlainHTTPWarning: a security token service reached over
// plain http off loopback is valid with allow_private_network, and warned
// about; on loopback it is not.
func TestCredentialPlainHTTPWarning(t *testing.T) {
	for host, want := range map[string]bool{"sts.internal": true, "10.0.0.5": true, "127.0.0.1": false} {
		y := strings.Replace(validJWT, "url: http://127.0.0.1:9000/mcp", "url: http://127.0.0.1:9000/mcp\n    credential: { type: token_exchange, token_endpoint: 'http://"+host+"/token', allow_private_network: true, client_id: gw, client_secret: s }", 1)
		cfg, err := Parse([]byte(y), env(nil), Overrides{})
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Contains(strings.Join(cfg.Warnings(), "\n"), "backends[0].credential.allow_private_network: lets the security token service be plain http")
		if got != want {
			t.Errorf("%s: warned %v, want %v (%q)", host, got, want, cfg.Warnings())
		}
	}
}

// TestTokenExchangeNeedsUpstreamIdP: built-in users have no upstream token
// to exchange.
func TestTokenExchangeNeedsUpstreamIdP(t *testing.T) {
	y := `
listen: 127.0.0.1:8080
encryption_key: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
backends: [{name: b, url: 'http://127.0.0.1:9000/mcp', credential: {type: token_exchange, token_endpoint: 'https://sts.example/token', client_id: gw, client_secret: s}}]
auth:
  mode: authorization_server
  authorization_server:
    upstream: {type: static, users: [{username: u, password_hash: '$2a$04$abcdefghijklmnopqrstuuq0bdIuEXyRxzE7tIS6kTpYbbfNxV9Gm'}]}
audit: { sink: stdout }
`
	_, err := Parse([]byte(y), env(nil), Overrides{})
	if err == nil || !strings.Contains(err.Error(), "backends[0].credential.type: token_exchange needs the user's token from an upstream identity provider") {
		t.Errorf("err = %v", err)
	}
}

// TestLinkedTokenConfig: a linked_token credential needs the built-in
// authorization server and must name a configured linked provider; the
// providers' problems are all listed.
func TestLinkedTokenConfig(t *testing.T) {
	y := `
listen: 127.0.0.1:8080
encryption_key: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
backends:
  - {name: gh, url: 'http://127.0.0.1:9000/mcp', credential: {type: linked_token, provider: PROVIDER}}
auth:
  mode: authorization_server
  authorization_server:
    upstream: {type: static, users: [{username: u, password_hash: '$2a$04$abcdefghijklmnopqrstuuq0bdIuEXyRxzE7tIS6kTpYbbfNxV9Gm'}]}
    linked_providers:
      - {name: github, authorization_endpoint: 'https://github.com/login/oauth/authorize', token_endpoint: 'https://github.com/login/oauth/access_token', client_id: c, client_secret: s, scopes: [repo]}
audit: { sink: stdout }
`
	cfg, err := Parse([]byte(strings.Replace(y, "PROVIDER", "github", 1)), env(nil), Overrides{})
	if err != nil {
		t.Fatalf("valid: %v", err)
	}
	if lp := cfg.Auth.AuthorizationServer.LinkedProviders[0]; lp.DisplayName != "github" || lp.LinkTimeout.Minutes() != 10 || lp.ClientAuth != "client_secret_basic" {
		t.Errorf("defaults: %+v", lp)
	}
	// Behind an aggregated endpoint too (its calls answer the same link error).
	if _, err := Parse([]byte(strings.Replace(strings.Replace(y, "PROVIDER", "github", 1), "audit: { sink: stdout }",
		"endpoints: [{path: /all, backends: [gh]}]\naudit: { sink: stdout }", 1)), env(nil), Overrides{}); err != nil {
		t.Errorf("behind an aggregated endpoint: %v", err)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown provider", strings.Replace(y, "PROVIDER", "gitlab", 1), `backends[0].credential.provider: names no entry of auth.authorization_server.linked_providers (got "gitlab")`},
		{"no provider", strings.Replace(y, ", provider: PROVIDER", "", 1), "backends[0].credential.provider: is required"},
		{"provider on another type", strings.Replace(y, "type: linked_token", "type: upstream_token", 1), "backends[0].credential.provider: is only valid with type linked_token"},
		{"typo in a provider", strings.Replace(strings.Replace(y, "PROVIDER", "github", 1), "client_secret: s", "client_secert: s", 1),
			"auth.authorization_server.linked_providers[0].client_secert: unknown key"},
		{"jwt mode", strings.Replace(validJWT, "url: http://127.0.0.1:9000/mcp", "url: http://127.0.0.1:9000/mcp\n    credential: { type: linked_token, provider: github }", 1),
			"backends[0].credential.type: linked_token requires auth.mode authorization_server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), env(nil), Overrides{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
