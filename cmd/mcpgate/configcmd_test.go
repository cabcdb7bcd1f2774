package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const checkKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes, base64

// asConfig is an authorization-server config; mod replaces parts of it.
const asConfig = `listen: 127.0.0.1:8080
encryption_key: ` + checkKey + `
auth:
  mode: authorization_server
  authorization_server:
    upstream:
      preset: dex
      issuer: https://dex.example.com
      client_id: mcpgate
      client_secret: dex-client-secret-value
backends:
  - name: demo
    url: http://127.0.0.1:9000/mcp
`

const jwtConfig = `listen: 127.0.0.1:8080
auth:
  mode: jwt
  jwt:
    issuers:
      - issuer: https://idp.example.com
        audience: AUD
backends:
  - name: demo
    url: http://127.0.0.1:9000/mcp
`

// TestConfigCheck: each mistake that bit users is reported by config check,
// naming the key and the fix; a sound config has no warning.
func TestConfigCheck(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // "" = no warning
	}{
		{"sound authorization server", asConfig, ""},
		{"sound jwt", strings.Replace(jwtConfig, "AUD", "http://127.0.0.1:8080/mcp", 1), ""},
		{"public listener without public_url", strings.Replace(asConfig, "127.0.0.1:8080", "0.0.0.0:8080", 1),
			"warning: public_url: is not set while listen (0.0.0.0:8080) accepts connections from other machines: it defaults to http://localhost:8080, " +
				"so clients that reach the gateway by any other name get 403 host not allowed. Set public_url to the URL clients use"},
		{"IPv6 listener without public_url", strings.Replace(asConfig, "127.0.0.1:8080", "'[::]:8080'", 1),
			"warning: public_url: is not set while listen ([::]:8080) accepts connections from other machines"},
		{"public listener with public_url", strings.Replace(asConfig, "127.0.0.1:8080", "0.0.0.0:8080\npublic_url: https://mcp.example.com", 1), ""},
		{"jwt audience not the advertised resource", strings.Replace(jwtConfig, "AUD", "https://mcp.example.com/mcp", 1),
			"warning: auth.jwt.issuers[0].audience: https://mcp.example.com/mcp is not the resource URI the gateway advertises in its protected resource metadata (http://127.0.0.1:8080/mcp): " +
				"clients ask the IdP for a token for that URI (RFC 8707), so tokens will carry it, not this audience. Set audience to http://127.0.0.1:8080/mcp"},
		{"dex without the groups scope", strings.Replace(asConfig, "client_secret: dex-client-secret-value", "client_secret: dex-client-secret-value\n      scopes: [openid, email, offline_access]", 1),
			`warning: auth.authorization_server.upstream.scopes: do not include "groups": the groups claim "groups" will never arrive (dex sends it only for that scope), ` +
				"so users sign in with no groups and get no roles. Add groups to upstream.scopes (the dex preset requests it when scopes is not set)"},
		{"no preset, default groups claim", strings.Replace(asConfig, "preset: dex", "type: oidc", 1),
			`warning: auth.authorization_server.upstream.scopes: do not include "groups": the groups claim "groups" will never arrive (Dex, Okta and other IdPs send it only for that scope)`},
		{"cimd.allow_private", strings.Replace(asConfig, "    upstream:", "    cimd: {allow_private: true}\n    upstream:", 1),
			"warning: auth.authorization_server.cimd.allow_private: is on: client metadata documents may be fetched from loopback and private addresses"},
		{"allow_private_issuer", strings.Replace(asConfig, "client_id: mcpgate", "client_id: mcpgate\n      allow_private_issuer: true", 1),
			"warning: auth.authorization_server.upstream.allow_private_issuer: is on"},
		{"auth mode none", "auth: {mode: none}\nbackends: [{name: d, url: 'http://127.0.0.1:9000/mcp'}]\n",
			"warning: auth.mode: is none: every local process may use every tool; for development only"},
		{"allow_insecure_http", strings.Replace(asConfig, "listen: 127.0.0.1:8080", "listen: 127.0.0.1:8080\nsecurity: {allow_insecure_http: true}", 1),
			"warning: security.allow_insecure_http: is on"},
		{"auth0 without a groups claim", strings.Replace(asConfig, "preset: dex", "preset: auth0", 1),
			"warning: auth.authorization_server.upstream.groups_claim: is not set: Auth0 sends groups only in a namespaced claim"},
	}
	dir := t.TempDir()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "mcpgate.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			err := configCheck(&out, &configFlags{path: path}, false)
			if err != nil {
				t.Fatalf("check: %v\n%s", err, out.String())
			}
			got := out.String()
			if !strings.HasPrefix(got, "Read: "+path+"\n") {
				t.Errorf("does not say which file it read:\n%s", got)
			}
			if tc.want == "" {
				if strings.Contains(got, "warning:") || !strings.Contains(got, "0 warning(s)") {
					t.Errorf("unexpected warnings:\n%s", got)
				}
				return
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("output lacks\n%s\ngot\n%s", tc.want, got)
			}
			// --strict fails on warnings.
			if err := configCheck(&bytes.Buffer{}, &configFlags{path: path}, true); err == nil {
				t.Error("--strict passed with warnings")
			}
		})
	}
}

// TestConfigCheckErrors: a problem is an error naming the key; a missing
// file names the path tried; no file says so.
func TestConfigCheckErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(asConfig, "preset: dex", "preset: dexx", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	err := configCheck(&bytes.Buffer{}, &configFlags{path: path}, false)
	if err == nil || !strings.Contains(err.Error(), `auth.authorization_server.upstream.preset: unknown preset "dexx": choose one of auth0, authentik, dex, entra, google, keycloak, okta`) {
		t.Errorf("bad preset: %v", err)
	}
	missing := filepath.Join(dir, "missing.yaml")
	if err := configCheck(&bytes.Buffer{}, &configFlags{path: missing}, false); err == nil || err.Error() != "config file not found: tried "+missing+"; pass the file with --config or MCPGATE_CONFIG" {
		t.Errorf("missing file: %v", err)
	}
	var out bytes.Buffer
	_ = configCheck(&out, &configFlags{}, false)
	if !strings.HasPrefix(out.String(), "Read: no config file") {
		t.Errorf("no file: %s", out.String())
	}
}

// TestConfigPrint: the effective configuration, defaults applied, secrets
// redacted.
func TestConfigPrint(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mcpgate.yaml")
	cfg := strings.Replace(asConfig, "  - name: demo\n", "  - name: demo\n    credential: {type: static, value: 'Bearer backend-token-value'}\n", 1) +
		"store: {driver: postgres, dsn: 'postgres://u:db-password-value@db/mcpgate'}\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := newConfigPrintCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{path})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"# Read: " + path, "encryption_key: REDACTED", "client_secret: REDACTED", "value: REDACTED", "dsn: REDACTED",
		"max_clients_per_ip: 1000", "refresh_grace: 30s", "scopes:\n        - openid\n        - profile\n        - email\n        - groups\n        - offline_access"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, secret := range []string{checkKey, "dex-client-secret-value", "backend-token-value", "db-password-value"} {
		if strings.Contains(got, secret) {
			t.Errorf("output shows the secret %q", secret)
		}
	}
}
