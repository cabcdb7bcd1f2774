package server_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/idp/idptest"
	"github.com/mcpgate/mcpgate/internal/server"
	"github.com/mcpgate/mcpgate/internal/server/servertest"
	"github.com/mcpgate/mcpgate/internal/tokenendpoint"
)

// internalEnv is a gateway in authorization_server mode, federated to a
// fake OIDC IdP, with the internal token endpoint on its own listener and
// certificates from tokenendpoint.InitCerts (what `mcpgate certs init`
// writes).
type internalEnv struct {
	base, internalURL string
	idp               *idptest.Provider
	certs             *tokenendpoint.CertsResult
	auditPath         string
	stop              func()
}

func internalYAML(t *testing.T, listen, base, idpIssuer, backendURL, dir string, certs *tokenendpoint.CertsResult, internalListen string) string {
	key := make([]byte, 32)
	rand.Read(key)
	return fmt.Sprintf(`
listen: %s
public_url: %s
encryption_key: %s
auth:
  mode: authorization_server
  authorization_server:
    access_token_lifetime: 3s
    revocation_cache_ttl: 0s
    upstream: {type: oidc, issuer: %s, client_id: mcpgate, client_secret: upstream-secret, allow_private_issuer: true, groups_claim: groups}
policy:
  roles: { admin: { backends: { vsphere: { tools: ["*"] } } } }
  groups: { ops: [admin] }
backends:
  - { name: vsphere, path: /vsphere, url: %s/mcp }
  - { name: k8s, path: /k8s, url: %s/mcp }
store: { driver: sqlite, dsn: %s }
audit: { sink: file, path: %s }
internal_endpoint:
  listen: %s
  tls: { cert_file: %s, key_file: %s, client_ca_file: %s }
  trust_domain: example.org
  clients:
    - { spiffe_id: %s, backends: [vsphere] }
    - { spiffe_id: %s, backends: [k8s] }
`, listen, base, base64.StdEncoding.EncodeToString(key), idpIssuer, backendURL, backendURL,
		filepath.Join(dir, "db.sqlite"), filepath.Join(dir, "audit.log"), internalListen,
		certs.ServerCert, certs.ServerKey, certs.CACert, certs.Clients[0].SPIFFEID, certs.Clients[1].SPIFFEID)
}

func startInternalEnv(t *testing.T) *internalEnv {
	t.Helper()
	backend := httptest.NewServer(demo.Handler(demo.Options{}))
	t.Cleanup(backend.Close)
	p := idptest.New(t)
	p.Set(func(p *idptest.Provider) {
		p.IDTokenClaims = map[string]any{"preferred_username": "bob", "email": "bob@example.com", "email_verified": true, "groups": []string{"ops"}}
	})
	dir := t.TempDir()
	certs, err := tokenendpoint.InitCerts(tokenendpoint.CertsOptions{Dir: filepath.Join(dir, "certs"), TrustDomain: "example.org", Backends: []string{"vsphere", "k8s"}})
	if err != nil {
		t.Fatal(err)
	}
	iln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gw := servertest.StartServer(t, func(base string) string {
		return internalYAML(t, strings.TrimPrefix(base, "http://"), base, p.Issuer(), backend.URL, dir, certs, iln.Addr().String())
	}, iln)
	return &internalEnv{base: gw.Base, internalURL: "https://" + iln.Addr().String() + tokenendpoint.Path, idp: p, certs: certs,
		auditPath: filepath.Join(dir, "audit.log"), stop: gw.Stop}
}

// login signs bob in through the upstream IdP for resource and returns the
// token response (access and refresh token).
func (e *internalEnv) login(t *testing.T, resource string) map[string]any {
	t.Helper()
	clientID, _, tok := signIn(t, e.base, "", "", resource)
	tok["client_id"] = clientID
	return tok
}

// client is a backend's mTLS client with the certificate of backend i.
func (e *internalEnv) client(t *testing.T, i int) *http.Client {
	t.Helper()
	caPEM, err := os.ReadFile(e.certs.CACert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tc := &tls.Config{RootCAs: pool}
	if i >= 0 {
		kp, err := tls.LoadX509KeyPair(e.certs.Clients[i].Cert, e.certs.Clients[i].Key)
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{kp}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
}

func (e *internalEnv) retrieve(t *testing.T, c *http.Client, subject, audience string) (int, map[string]any) {
	t.Helper()
	resp, err := c.PostForm(e.internalURL, url.Values{
		"grant_type": {tokenendpoint.GrantTypeTokenExchange}, "subject_token": {subject},
		"subject_token_type": {tokenendpoint.TokenTypeAccessToken}, "audience": {audience},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m := map[string]any{}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("%d: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, m
}

// TestInternalEndpointRetrievesUpstreamToken runs the internal endpoint in
// a real gateway: the authorization server's verifier, store, grants and
// upstream refresh, real mTLS, and the gateway's audit chain.
func TestInternalEndpointRetrievesUpstreamToken(t *testing.T) {
	e := startInternalEnv(t)
	vsphere, k8s := e.client(t, 0), e.client(t, 1)
	vsphereRes := e.base + "/vsphere"

	// Happy path: the stored upstream token, not refreshed.
	tok := e.login(t, vsphereRes)
	at := tok["access_token"].(string)
	status, m := e.retrieve(t, vsphere, at, "vsphere")
	up, _ := m["access_token"].(string)
	if status != http.StatusOK || !e.idp.ValidAccessToken(up) || m["issued_token_type"] != tokenendpoint.TokenTypeAccessToken {
		t.Fatalf("happy path: %d %v", status, m)
	}
	if exp, _ := m["expires_in"].(float64); exp < 3000 {
		t.Errorf("expires_in = %v", m["expires_in"])
	}
	if n := e.idp.RefreshCount(); n != 0 {
		t.Errorf("a fresh upstream token was refreshed (%d)", n)
	}

	// A backend reaches only its own users' tokens: k8s may not present a
	// vsphere user's token, and vsphere may not ask for k8s.
	if status, m := e.retrieve(t, k8s, at, "k8s"); status != http.StatusBadRequest || m["error"] != "invalid_request" {
		t.Errorf("k8s with a vsphere token: %d %v", status, m)
	}
	if status, m := e.retrieve(t, vsphere, at, "k8s"); status != http.StatusBadRequest || m["error"] != "invalid_target" {
		t.Errorf("vsphere asking for k8s: %d %v", status, m)
	}
	// A malformed subject token, and one with a forged signature.
	if status, m := e.retrieve(t, vsphere, "not-a-jwt", "vsphere"); status != http.StatusBadRequest || m["error"] != "invalid_request" {
		t.Errorf("malformed: %d %v", status, m)
	}
	parts := strings.Split(at, ".")
	if status, _ := e.retrieve(t, vsphere, parts[0]+"."+parts[1]+".AAAA", "vsphere"); status != http.StatusBadRequest {
		t.Errorf("forged signature: %d", status)
	}
	// No client certificate: no TLS session.
	if _, err := e.client(t, -1).PostForm(e.internalURL, url.Values{}); err == nil {
		t.Error("no client certificate accepted")
	}

	// Near expiry: a grant whose upstream token expires within
	// upstream_refresh_skew (30s) is refreshed at the IdP, once.
	e.idp.Set(func(p *idptest.Provider) { p.AccessTokenTTL = 10 * time.Second })
	tok2 := e.login(t, vsphereRes)
	e.idp.Set(func(p *idptest.Provider) { p.AccessTokenTTL = time.Hour })
	status, m = e.retrieve(t, vsphere, tok2["access_token"].(string), "vsphere")
	refreshed, _ := m["access_token"].(string)
	if status != http.StatusOK || !e.idp.ValidAccessToken(refreshed) || refreshed == up {
		t.Fatalf("refresh: %d %v", status, m)
	}
	if exp, _ := m["expires_in"].(float64); exp < 3000 {
		t.Errorf("refreshed expires_in = %v", m["expires_in"])
	}
	if n := e.idp.RefreshCount(); n != 1 {
		t.Errorf("IdP refreshed %d times, want 1", n)
	}
	if status, m := e.retrieve(t, vsphere, tok2["access_token"].(string), "vsphere"); status != http.StatusOK || m["access_token"] != refreshed || e.idp.RefreshCount() != 1 {
		t.Errorf("the refreshed token was not stored: %d %v", status, m)
	}

	// The policy gives bob nothing on k8s: his k8s token is not handed to
	// the k8s workload either.
	tokK8s := e.login(t, e.base+"/k8s")
	if status, m := e.retrieve(t, k8s, tokK8s["access_token"].(string), "k8s"); status != http.StatusBadRequest || m["error"] != "invalid_request" {
		t.Errorf("policy denies k8s: %d %v", status, m)
	}

	// A revoked grant: its access token, still unexpired, gets nothing.
	tok3 := e.login(t, vsphereRes)
	postForm(t, e.base+"/revoke", url.Values{"token": {tok3["refresh_token"].(string)}, "client_id": {tok3["client_id"].(string)}})
	if status, m := e.retrieve(t, vsphere, tok3["access_token"].(string), "vsphere"); status != http.StatusBadRequest || m["error"] != "invalid_request" {
		t.Errorf("revoked grant: %d %v", status, m)
	}

	// An expired subject token (access_token_lifetime: 3s).
	time.Sleep(time.Until(time.Now().Add(4 * time.Second)))
	if status, m := e.retrieve(t, vsphere, at, "vsphere"); status != http.StatusBadRequest || m["error"] != "invalid_request" {
		t.Errorf("expired subject token: %d %v", status, m)
	}

	// The public listener does not serve the endpoint.
	resp, err := http.PostForm(e.base+tokenendpoint.Path, url.Values{"grant_type": {tokenendpoint.GrantTypeTokenExchange}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("public listener %s: %d", tokenendpoint.Path, resp.StatusCode)
	}
	// And the internal listener serves nothing else.
	resp, err = vsphere.Get(strings.TrimSuffix(e.internalURL, tokenendpoint.Path) + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("internal listener serves metadata: %d", resp.StatusCode)
	}

	// Every retrieval and refusal is in the gateway's one audit chain,
	// without a token.
	e.stop()
	if _, err := audit.VerifyFiles([]string{e.auditPath}, audit.VerifyOptions{}); err != nil {
		t.Fatalf("audit chain: %v", err)
	}
	f, err := os.Open(e.auditPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	counts := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		for _, secret := range []string{at, up, refreshed} {
			if strings.Contains(sc.Text(), secret) {
				t.Fatal("a token is in the audit log")
			}
		}
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if r.Source == audit.SourceInternal {
			counts[r.Event]++
			if r.Event == audit.EventInternalTokenRetrieved && (r.Workload != e.certs.Clients[0].SPIFFEID || r.Backend != "vsphere" || r.SessionID == "" || r.Subject == "") {
				t.Errorf("retrieval record %+v", r)
			}
		}
	}
	if counts[audit.EventInternalTokenRetrieved] != 3 || counts[audit.EventInternalTokenRefused] < 7 {
		t.Errorf("internal endpoint records: %v", counts)
	}
}

// TestInternalEndpointRefusedConfig: the gateway does not start with an
// incomplete internal endpoint, one on the public address, or one whose
// files do not load.
func TestInternalEndpointRefusedConfig(t *testing.T) {
	dir := t.TempDir()
	certs, err := tokenendpoint.InitCerts(tokenendpoint.CertsOptions{Dir: filepath.Join(dir, "certs"), TrustDomain: "example.org", Backends: []string{"vsphere", "k8s"}})
	if err != nil {
		t.Fatal(err)
	}
	good := internalYAML(t, "127.0.0.1:8080", "http://127.0.0.1:8080", "https://idp.example.com", "http://127.0.0.1:9000", dir, certs, "127.0.0.1:8443")
	parse := func(y string) (*config.Config, error) {
		return config.Parse([]byte(y), func(string) (string, bool) { return "", false }, config.Overrides{})
	}
	if _, err := parse(good); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for name, tc := range map[string]struct{ from, to, want string }{
		"no client CA":            {"client_ca_file: " + certs.CACert, "", "internal_endpoint.tls.client_ca_file: is required"},
		"no key":                  {"key_file: " + certs.ServerKey + ",", "", "internal_endpoint.tls.key_file: is required"},
		"public address":          {"listen: 127.0.0.1:8443", "listen: 127.0.0.1:8080", "must not be the public listen address"},
		"wildcard on public port": {"listen: 127.0.0.1:8443", "listen: 0.0.0.0:8080", "must not be the public listen address"},
		"unknown backend":         {"backends: [k8s]", "backends: [db]", "unknown backend \"db\""},
		"no trust domain":         {"trust_domain: example.org", "", "internal_endpoint.trust_domain: is required"},
		"other auth mode":         {"mode: authorization_server", "mode: jwt", "requires auth.mode authorization_server"},
	} {
		y := strings.Replace(good, tc.from, tc.to, 1)
		if y == good {
			t.Fatalf("%s: edit did not apply", name)
		}
		if _, err := parse(y); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Valid as configuration, but the CA file is not there: no start.
	cfg, err := parse(strings.Replace(good, certs.CACert, filepath.Join(dir, "missing.crt"), 1))
	if err != nil {
		t.Fatal(err)
	}
	if srv, err := server.New(context.Background(), cfg, slog.New(slog.DiscardHandler)); err == nil {
		srv.Close()
		t.Fatal("started without its client CA file")
	} else if !strings.Contains(err.Error(), "internal_endpoint") {
		t.Errorf("error does not name internal_endpoint: %v", err)
	}
}
