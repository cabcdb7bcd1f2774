package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/server/servertest"
)

// testIdP is an OIDC issuer (discovery + JWKS) that mints ES256 tokens.
type testIdP struct {
	srv    *httptest.Server
	signer jose.Signer
	jwks   jose.JSONWebKeySet
}

func newTestIdP(t *testing.T) *testIdP {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	idp := &testIdP{}
	jwk := jose.JSONWebKey{Key: key, KeyID: "k1", Algorithm: "ES256", Use: "sig"}
	idp.jwks = jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk.Public()}}
	idp.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jwk}, (&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	idp.srv = httptest.NewServer(mux)
	t.Cleanup(idp.srv.Close)
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"issuer": idp.srv.URL, "jwks_uri": idp.srv.URL + "/jwks"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(idp.jwks)
	})
	return idp
}

func (i *testIdP) token(t *testing.T, aud string, claims map[string]any) string {
	t.Helper()
	return i.tokenFor(t, "alice", aud, claims)
}

func (i *testIdP) tokenFor(t *testing.T, sub, aud string, claims map[string]any) string {
	t.Helper()
	std := jwt.Claims{Issuer: i.srv.URL, Subject: sub, Audience: jwt.Audience{aud},
		Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour)), IssuedAt: jwt.NewNumericDate(time.Now())}
	tok, err := jwt.Signed(i.signer).Claims(std).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// jwtGatewayYAML is the config of a gateway that takes idp's JWTs for
// audience (a YAML scalar or list), with policy (YAML) and backends (one
// list item each, YAML flow style); rest (top-level keys: endpoints,
// audit, ...) follows. Without an audit key in rest, nothing is audited.
func jwtGatewayYAML(idp *testIdP, audience, policy, rest string, backends ...string) string {
	if !strings.Contains("\n"+rest, "\naudit:") {
		rest += "\naudit: { sink: none }"
	}
	return fmt.Sprintf(`
auth: { mode: jwt, jwt: { issuers: [ { issuer: %s, audience: %s, allow_private_issuer: true } ] } }
policy: %s
backends:
  - %s
%s
`, idp.srv.URL, audience, policy, strings.Join(backends, "\n  - "), rest)
}

// readerPolicy grants group readers the demo server's list_* and get_* tools.
const readerPolicy = `{ roles: { reader: { tools: ["list_*", "get_*"] } }, groups: { readers: [reader] } }`

// stdioDemo is a backend item named local that runs this test binary as
// the demo stdio server (see TestMain); more adds keys to the item, env
// entries to the child's environment.
func stdioDemo(more string, env ...string) string {
	e := append([]string{`MCPGATE_TEST_STDIO_SERVER: "1"`}, env...)
	if more != "" {
		more = ", " + more
	}
	return fmt.Sprintf(`{ name: local, command: [%q, "-test.run=^$"], env: { %s }%s }`, os.Args[0], strings.Join(e, ", "), more)
}

// gatewayEnv is a running gateway on a real listener in front of the demo
// MCP server, which records every request it receives.
type gatewayEnv struct {
	url       string // the gateway's MCP endpoint
	idp       *testIdP
	auditPath string
	backend   *httptest.Server
	seenCount atomic.Int64
	mu        sync.Mutex
	seenAuth  []string    // credentials the backend received
	last      http.Header // headers of the backend's last request
}

func (e *gatewayEnv) lastHeaders() http.Header {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.last
}

// startGateway runs the gateway; edits, if any, rewrite the generated YAML.
func startGateway(t *testing.T, extraYAML string, opts demo.Options, edits ...func(string) string) *gatewayEnv {
	t.Helper()
	env := &gatewayEnv{idp: newTestIdP(t)}
	opts.OnRequest = env.record
	return env.start(t, demo.Handler(opts), extraYAML, edits...)
}

// startGatewayTo runs the gateway in front of backend h instead of the demo
// server, recording requests the same way.
func startGatewayTo(t *testing.T, h http.Handler, extraYAML string, edits ...func(string) string) *gatewayEnv {
	t.Helper()
	env := &gatewayEnv{idp: newTestIdP(t)}
	return env.start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		env.record(r)
		h.ServeHTTP(w, r)
	}), extraYAML, edits...)
}

func (env *gatewayEnv) record(r *http.Request) {
	env.seenCount.Add(1)
	env.mu.Lock()
	defer env.mu.Unlock()
	env.last = r.Header.Clone()
	if a := r.Header.Get("Authorization") + r.Header.Get("Cookie"); a != "" {
		env.seenAuth = append(env.seenAuth, a)
	}
}

func (env *gatewayEnv) start(t *testing.T, backend http.Handler, extraYAML string, edits ...func(string) string) *gatewayEnv {
	t.Helper()
	env.backend = httptest.NewServer(backend)
	t.Cleanup(env.backend.Close)
	env.auditPath = filepath.Join(t.TempDir(), "audit.log")
	base := servertest.Start(t, func(base string) string {
		env.url = base + "/mcp"
		yaml := fmt.Sprintf(`
auth:
  mode: jwt
  jwt:
    issuers:
      - issuer: %s
        audience: %s
        allow_private_issuer: true
  scopes_supported: [mcp:tools]
policy:
  roles:
    reader: { tools: ["list_*", "get_*", "echo", "count"], prompts: ["*"], resources: ["*"] }
    admin:  { tools: ["*"], prompts: ["*"], resources: ["*"] }
  groups:
    mcp-readers: [reader]
    mcp-admins: [admin]
backends:
  - name: demo
    url: %s/mcp
audit:
  sink: file
  path: %s
%s`, env.idp.srv.URL, env.url, env.backend.URL, env.auditPath, extraYAML)
		for _, edit := range edits {
			yaml = edit(yaml)
		}
		return yaml
	})
	env.url = base + "/mcp"
	return env
}

func connect(t *testing.T, url, token string) *mcp.ClientSession {
	return servertest.Connect(t, url, token, nil)
}

func toolNames(t *testing.T, cs *mcp.ClientSession) []string { return servertest.ToolNames(t, cs) }

func callText(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any) (string, error) {
	return servertest.CallText(cs, name, args)
}

func TestGatewayEndToEndWithGoSDK(t *testing.T) {
	env := startGateway(t, "", demo.Options{})
	token := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-admins"}, "scope": "mcp:tools"})
	cs := connect(t, env.url, token)

	names := toolNames(t, cs)
	for _, want := range []string{"list_vms", "delete_vm", "count"} {
		if !strings.Contains(strings.Join(names, ","), want) {
			t.Errorf("admin tools/list = %v, missing %s", names, want)
		}
	}
	got, err := callText(t, cs, "get_vm", map[string]any{"vm_name": "web-1"})
	if err != nil || got != "web-1: poweredOn" {
		t.Fatalf("get_vm = %q, %v", got, err)
	}

	// A tool that streams progress notifications over SSE.
	var progress atomic.Int64
	cs2, err := servertest.TryConnect(env.url, token, &mcp.ClientOptions{
		ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) { progress.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	params := &mcp.CallToolParams{Name: "count", Arguments: map[string]any{"to": 5}}
	params.SetProgressToken("p1")
	res, err := cs2.CallTool(context.Background(), params)
	if err != nil || res.IsError {
		t.Fatalf("count: %v %v", res, err)
	}
	if n := progress.Load(); n != 5 {
		t.Errorf("progress notifications = %d, want 5", n)
	}
	// Session DELETE goes through the gateway.
	if err := cs2.Close(); err != nil {
		t.Errorf("close (DELETE): %v", err)
	}
	cs.Close()

	env.mu.Lock()
	defer env.mu.Unlock()
	if len(env.seenAuth) > 0 {
		t.Errorf("backend received client credentials: %q", env.seenAuth)
	}
	if env.seenCount.Load() == 0 {
		t.Error("backend saw no requests")
	}
}

func TestGatewayStatelessBackend(t *testing.T) {
	env := startGateway(t, "", demo.Options{Stateless: true})
	token := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-readers"}})
	cs := connect(t, env.url, token)
	defer cs.Close()
	got, err := callText(t, cs, "echo", map[string]any{"text": "hi"})
	if err != nil || got != "hi" {
		t.Fatalf("echo = %q, %v", got, err)
	}
}

func TestGatewayRejectsWithoutToken(t *testing.T) {
	env := startGateway(t, "", demo.Options{})
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`
	wantMeta := `Bearer resource_metadata="` + strings.TrimSuffix(env.url, "/mcp") + `/.well-known/oauth-protected-resource/mcp", scope="mcp:tools"`
	cases := []struct {
		name, auth, query string
		status            int
		challenge         string
	}{
		{"no token", "", "", 401, wantMeta},
		{"garbage token", "Bearer not.a.jwt", "", 401, wantMeta + `, error="invalid_token", error_description="the access token is invalid or expired"`},
		{"wrong audience", "Bearer " + env.idp.token(t, "https://other.example/mcp", nil), "", 401, wantMeta + `, error="invalid_token", error_description="the access token is invalid or expired"`},
		{"token in query", "", "?access_token=abc", 400, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", env.url+tc.query, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d (%s)", resp.StatusCode, tc.status, b)
			}
			if tc.challenge != "" {
				if got := resp.Header.Get("WWW-Authenticate"); got != tc.challenge {
					t.Errorf("WWW-Authenticate =\n %s\nwant\n %s", got, tc.challenge)
				}
			}
			if strings.Contains(string(b), "jwks") || strings.Contains(string(b), "kid") {
				t.Errorf("body leaks internals: %s", b)
			}
		})
	}
	if n := env.seenCount.Load(); n != 0 {
		t.Errorf("backend received %d unauthenticated requests", n)
	}
}

func TestProtectedResourceMetadata(t *testing.T) {
	env := startGateway(t, "", demo.Options{})
	base := strings.TrimSuffix(env.url, "/mcp")
	for _, path := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Resource               string   `json:"resource"`
			AuthorizationServers   []string `json:"authorization_servers"`
			BearerMethodsSupported []string `json:"bearer_methods_supported"`
		}
		json.NewDecoder(resp.Body).Decode(&doc)
		resp.Body.Close()
		if resp.StatusCode != 200 || doc.Resource != env.url || len(doc.AuthorizationServers) != 1 ||
			doc.AuthorizationServers[0] != env.idp.srv.URL || doc.BearerMethodsSupported[0] != "header" {
			t.Errorf("%s: %d %+v", path, resp.StatusCode, doc)
		}
	}
}
