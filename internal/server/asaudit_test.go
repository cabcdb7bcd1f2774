package server_test

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/keys"
	"github.com/mcpgate/mcpgate/internal/server/servertest"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/backends"
)

var hiddenField = regexp.MustCompile(`name="(req|csrf)" value="([^"]+)"`)

// TestAuthorizationServerAuditedInGatewayChain: the built-in authorization
// server writes into the gateway's audit logger, so its records and the MCP
// records share one hash chain in one file that `audit verify` accepts; a
// rotation made by another process (`mcpgate keys rotate`) is recorded once
// the gateway reloads its keys (SIGHUP).
func TestAuthorizationServerAuditedInGatewayChain(t *testing.T) {
	backend := httptest.NewServer(demo.Handler(demo.Options{}))
	t.Cleanup(backend.Close)
	dir := t.TempDir()
	auditPath := filepath.Join(dir, "audit.log")
	hash, err := bcrypt.GenerateFromPassword([]byte("alice-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	gw := servertest.StartServer(t, func(string) string {
		return fmt.Sprintf(`
encryption_key: %s
auth:
  mode: authorization_server
  authorization_server:
    scopes: [mcp]
    upstream:
      type: static
      users: [ { username: alice, email: alice@example.test, groups: [mcp-admins], password_hash: %q } ]
policy:
  roles: { admin: { tools: ["*"] } }
  groups: { mcp-admins: [admin] }
backends: [ { name: demo, url: %s/mcp } ]
store: { driver: sqlite, dsn: %s }
audit: { sink: file, path: %s }
`, base64.StdEncoding.EncodeToString(key), hash, backend.URL, filepath.Join(dir, "db.sqlite"), auditPath)
	}, nil)
	base, srv, stop := gw.Base, gw.Server, gw.Stop
	ctx := t.Context()

	// A client registers, alice signs in and consents, the code becomes a
	// token, the token calls the MCP endpoint, and the client revokes it.
	clientID, code, tok := signIn(t, base, "alice", "alice-password", "")
	at, _ := tok["access_token"].(string)
	req, _ := http.NewRequest(http.MethodPost, base+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_vms","arguments":{}}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+at)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("tools/call: %d", resp.StatusCode)
	}
	postForm(t, base+"/revoke", url.Values{"token": {at}, "client_id": {clientID}})

	// `mcpgate keys rotate` in another process, then SIGHUP.
	st, err := backends.Open(ctx, store.Config{Driver: "sqlite", DSN: filepath.Join(dir, "db.sqlite")}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	sealer, _ := keys.NewSealer(key)
	cli, err := keys.NewManager(ctx, st, sealer, keys.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if err := srv.ReloadKeys(ctx); err != nil {
		t.Fatal(err)
	}
	stop()

	if _, err := audit.VerifyFiles([]string{auditPath}, audit.VerifyOptions{}); err != nil {
		t.Fatalf("one chain for gateway and authorization server does not verify: %v", err)
	}
	f, err := os.Open(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var events []string
	var mcpRec, issued *audit.Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), code) || strings.Contains(sc.Text(), at) {
			t.Error("a code or token is in the audit log")
		}
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		switch {
		case r.Source == audit.SourceAuthServer:
			events = append(events, r.Event)
			if r.Event == audit.EventASTokenIssued {
				issued = &r
			}
		case r.Source == audit.SourceMCP && r.Tool == "list_vms":
			mcpRec = &r
		}
	}
	want := []string{audit.EventASClientRegistered, audit.EventASLoginSuccess, audit.EventASConsentGiven, audit.EventASCodeIssued,
		audit.EventASCodeRedeemed, audit.EventASTokenIssued, audit.EventASTokenRevoked, audit.EventASSigningKeyRotated}
	if !slices.Equal(events, want) {
		t.Errorf("authorization server events:\n got %v\nwant %v", events, want)
	}
	if issued == nil || mcpRec == nil || issued.SessionID == "" || issued.SessionID != mcpRec.SessionID || issued.Subject != mcpRec.Subject ||
		issued.Issuer != mcpRec.Issuer || issued.ClientID != mcpRec.ClientID || issued.ClientIP != "127.0.0.1" {
		t.Errorf("the token's record and the MCP call's record do not name the same session, user and client:\n%+v\n%+v", issued, mcpRec)
	}
}

// signIn registers a public client at base and signs user in as a
// browser would: it follows redirects, posts the built-in login form with
// user and password, approves consent (an upstream IdP signs in on its
// own), and redeems the code with PKCE. resource, when set, is the RFC
// 8707 resource of the request.
func signIn(t *testing.T, base, user, password, resource string) (clientID, code string, tok map[string]any) {
	t.Helper()
	redirect := "http://127.0.0.1:9/cb"
	reg := postJSON(t, base+"/register", `{"client_name":"test client","redirect_uris":["`+redirect+`"],"token_endpoint_auth_method":"none"}`)
	clientID, _ = reg["client_id"].(string)
	verifier := strings.Repeat("v", 50)
	sum := sha256.Sum256([]byte(verifier))
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect}, "state": {"s"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	if resource != "" {
		q.Set("resource", resource)
	}
	loc := base + "/authorize?" + q.Encode()
	// next follows a redirect; the flow ends at the client's redirect URI
	// (an upstream IdP's redirect to the gateway's callback has a code too).
	next := func(from *url.URL, l string) (string, string) {
		u, _ := from.Parse(l)
		if strings.HasPrefix(u.String(), redirect+"?") {
			return "", u.Query().Get("code")
		}
		return u.String(), ""
	}
	for i := 0; i < 40 && code == ""; i++ {
		resp, err := browser.Get(loc)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable { // an upstream IdP is not discovered yet
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if l := resp.Header.Get("Location"); l != "" {
			loc, code = next(resp.Request.URL, l)
			continue
		}
		form := url.Values{}
		for _, m := range hiddenField.FindAllStringSubmatch(string(body), -1) {
			form.Set(m[1], m[2])
		}
		target := base + "/consent"
		if resp.Request.URL.Path == "/login" {
			target = base + "/login"
			form.Set("username", user)
			form.Set("password", password)
		} else {
			form.Set("decision", "approve")
		}
		if form.Get("req") == "" {
			t.Fatalf("flow stopped at %s: %d %s", resp.Request.URL, resp.StatusCode, body)
		}
		resp, err = browser.PostForm(target, form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, code = next(resp.Request.URL, resp.Header.Get("Location"))
	}
	if code == "" {
		t.Fatal("no authorization code")
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect},
		"code_verifier": {verifier}, "client_id": {clientID}}
	if resource != "" {
		form.Set("resource", resource)
	}
	return clientID, code, postForm(t, base+"/token", form)
}

func postJSON(t *testing.T, u, body string) map[string]any {
	t.Helper()
	resp, err := http.Post(u, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return decodeOK(t, resp)
}

func postForm(t *testing.T, u string, form url.Values) map[string]any {
	t.Helper()
	resp, err := http.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	return decodeOK(t, resp)
}

func decodeOK(t *testing.T, resp *http.Response) map[string]any {
	t.Helper()
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s: %d %s", resp.Request.URL.Path, resp.StatusCode, body)
	}
	m := map[string]any{}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("%s: %v", resp.Request.URL.Path, err)
		}
	}
	return m
}
