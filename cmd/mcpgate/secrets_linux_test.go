package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/crypto/bcrypt"

	"github.com/mcpgate/mcpgate/internal/server/servertest"
)

// gatewayProc is a real mcpgate process started from the test binary.
type gatewayProc struct {
	base   string
	stderr *lockedBuffer
}

// startGatewayProcess runs `mcpgate serve` as a separate process (role
// "gateway" or "gateway-unhardened"), as uid when uid > 0.
func startGatewayProcess(t *testing.T, exe, role, cfgPath, key string, uid int) *gatewayProc {
	t.Helper()
	cmd := exec.Command(exe, "serve", "--config", cfgPath)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "MCPGATE_TEST_ROLE=" + role, "MCPGATE_ENCRYPTION_KEY=" + key}
	if uid > 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	}
	g := &gatewayProc{stderr: &lockedBuffer{}}
	cmd.Stderr = g.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("gateway log:\n%s", g.stderr.String())
		}
	})
	return g
}

// loginToken signs alice in through the gateway's authorization server, as
// an MCP client would (RFC 7591 registration, authorization code with
// PKCE), and returns the access token.
func loginToken(t *testing.T, base, user, password string) string {
	t.Helper()
	reg, _ := json.Marshal(map[string]any{"client_name": "probe test", "redirect_uris": []string{"http://127.0.0.1:1/cb"},
		"token_endpoint_auth_method": "none", "grant_types": []string{"authorization_code"}})
	resp, err := http.Post(base+"/register", "application/json", strings.NewReader(string(reg)))
	if err != nil {
		t.Fatal(err)
	}
	var client struct {
		ID string `json:"client_id"`
	}
	json.NewDecoder(resp.Body).Decode(&client)
	resp.Body.Close()
	if client.ID == "" {
		t.Fatalf("register: %d", resp.StatusCode)
	}
	verifier := rand.Text() + rand.Text()
	sum := sha256.Sum256([]byte(verifier))
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	hidden := regexp.MustCompile(`name="(req|csrf)" value="([^"]+)"`)
	loc := base + "/authorize?" + url.Values{
		"response_type": {"code"}, "client_id": {client.ID}, "redirect_uri": {"http://127.0.0.1:1/cb"}, "state": {"s"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}.Encode()
	for range 8 {
		resp, err := browser.Get(loc)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK { // a form: log in or consent
			form := url.Values{}
			for _, m := range hidden.FindAllStringSubmatch(string(body), -1) {
				form.Set(m[1], m[2])
			}
			u, _ := url.Parse(loc)
			form.Set("username", user)
			form.Set("password", password)
			form.Set("decision", "approve")
			if resp, err = browser.PostForm(base+u.Path, form); err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		next, err := resp.Location()
		if err != nil {
			t.Fatalf("login flow stopped at %s: %d %s", loc, resp.StatusCode, body)
		}
		if code := next.Query().Get("code"); strings.HasPrefix(next.String(), "http://127.0.0.1:1/cb") && code != "" {
			resp, err := http.PostForm(base+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
				"redirect_uri": {"http://127.0.0.1:1/cb"}, "client_id": {client.ID}, "code_verifier": {verifier}})
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var tok struct {
				AccessToken string `json:"access_token"`
			}
			json.NewDecoder(resp.Body).Decode(&tok)
			if tok.AccessToken == "" {
				t.Fatalf("token: %d", resp.StatusCode)
			}
			return tok.AccessToken
		}
		loc = next.String()
	}
	t.Fatal("login flow did not finish")
	return ""
}

// TestStdioChildCannotReadGatewaySecrets runs a real gateway process, with
// the encryption key in its environment (the worst case) and a SQLite store,
// in front of a stdio server that tries to read the gateway's
// /proc/PPID/environ, /proc/PPID/mem and store file. The test runs as root,
// whose children may read anything (CAP_SYS_PTRACE), so it covers:
//
//   - run_as (the documented production setup): a root gateway, the child
//     as nobody: it reads nothing.
//   - a same-user child of a non-root gateway (both nobody): not dumpable
//     (PR_SET_DUMPABLE=0) closes environ and mem; the store file is the
//     user's own and stays readable — which is why run_as exists.
//   - a root gateway with a root child (no run_as): the child reads
//     everything, hardened or not, as documented.
//   - the control: a non-root gateway without procsec.Harden, whose
//     same-user child does read the environment, key included, and the
//     memory.
func TestStdioChildCannotReadGatewaySecrets(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: run_as and a gateway running as another user")
	}
	const nobody = 65534
	// go test builds into a private directory: copy the binary where
	// nobody can run it.
	shared, err := os.MkdirTemp("", "mcpgate-secrets-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	os.Chmod(shared, 0o755)
	exe := filepath.Join(shared, "mcpgate-test")
	bin, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("pw-alice"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	var raw [32]byte
	rand.Read(raw[:])
	key := base64.StdEncoding.EncodeToString(raw[:])
	keySum := sha256.Sum256([]byte(key))

	denied := func(s string) bool { return strings.HasPrefix(s, "denied: ") }
	tests := []struct {
		name      string
		role      string
		gatewayAs int  // 0: root
		runAs     bool // the child as nobody
		check     func(t *testing.T, r probeReport)
	}{
		{"root gateway, child run_as nobody", "gateway", 0, true, func(t *testing.T, r probeReport) {
			if !denied(r.Environ) || !denied(r.Mem) || !denied(r.Store) || r.Key {
				t.Errorf("the child read something: %+v", r)
			}
		}},
		{"non-root gateway, same-user child", "gateway", nobody, false, func(t *testing.T, r probeReport) {
			if !denied(r.Environ) || !denied(r.Mem) || r.Key {
				t.Errorf("a same-user child read the gateway's environment or memory: %+v", r)
			}
			if denied(r.Store) {
				t.Errorf("store: %s; a same-user child can read the user's files (documented; use run_as)", r.Store)
			}
		}},
		{"root gateway, root child: hardening cannot stop root", "gateway", 0, false, func(t *testing.T, r probeReport) {
			if denied(r.Environ) || !r.Key || denied(r.Mem) || denied(r.Store) {
				t.Errorf("a root child has CAP_SYS_PTRACE and reads everything; got %+v (if this changed, update docs/configuration.md)", r)
			}
		}},
		{"control: non-root gateway not hardened", "gateway-unhardened", nobody, false, func(t *testing.T, r probeReport) {
			if denied(r.Environ) || !r.Key || denied(r.Mem) {
				t.Errorf("without hardening the child should read environ (key included) and mem: %+v", r)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, err := os.MkdirTemp(shared, "data-")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(dir, tc.gatewayAs, tc.gatewayAs); err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()
			store := filepath.Join(dir, "mcpgate.db")
			runAs := ""
			if tc.runAs {
				runAs = fmt.Sprintf("    run_as: { uid: %d, gid: %d }\n", nobody, nobody)
			}
			cfg := fmt.Sprintf(`listen: %s
auth:
  mode: authorization_server
  authorization_server:
    upstream: { type: static, users: [ { username: alice, groups: [probers], password_hash: %q } ] }
policy: { roles: { prober: { tools: [probe] } }, groups: { probers: [prober] } }
store: { driver: sqlite, dsn: %s }
audit: { sink: none }
backends:
  - name: probe
    command: [%q, "-test.run=^$"]
    env: { MCPGATE_TEST_ROLE: probe, PROBE_STORE: %q, PROBE_KEY_SHA256: "%x" }
%s`, addr, hash, store, exe, store, keySum, runAs)
			cfgPath := filepath.Join(dir, "mcpgate.yaml")
			if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			os.Chown(cfgPath, tc.gatewayAs, tc.gatewayAs)
			g := startGatewayProcess(t, exe, tc.role, cfgPath, key, tc.gatewayAs)
			base := "http://" + addr
			deadline := time.Now().Add(20 * time.Second)
			for {
				if resp, err := http.Get(base + "/readyz"); err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						break
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("gateway did not come up:\n%s", g.stderr.String())
				}
				time.Sleep(100 * time.Millisecond)
			}
			// stderr reaches the buffer through a pipe, after the answer may
			// have: wait for the line logged after the hardening report.
			for !strings.Contains(g.stderr.String(), "mcpgate listening") && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			hardened := strings.Contains(g.stderr.String(), "process hardening: not dumpable")
			if hardened != (tc.role == "gateway") {
				t.Errorf("gateway log says hardened=%v, want %v", hardened, tc.role == "gateway")
			}

			cs := servertest.Connect(t, base+"/mcp", loginToken(t, base, "alice", "pw-alice"), nil)
			res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "probe", Arguments: map[string]any{}})
			if err != nil || res.IsError {
				t.Fatalf("probe: %v %+v", err, res)
			}
			var r probeReport
			data, _ := json.Marshal(res.StructuredContent)
			json.Unmarshal(data, &r)
			// The probe looked at the right process: the gateway is its parent.
			if r.Parent != "mcpgate-test" {
				t.Fatalf("the probe's parent is %q (pid %d), not the gateway", r.Parent, r.PPID)
			}
			t.Logf("%+v", r)
			tc.check(t, r)
		})
	}
}
