// Package gotest holds the Go side of the end-to-end suite: mcpgate running
// for real, in front of real MCP servers, with tokens from a real OpenID
// provider (npm oidc-provider, started from e2e/idp.mjs) and the official Go
// MCP SDK client.
package gotest

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readerAdminPolicy is the policy of the demo backend these tests share:
// group mcp-readers may list and get, mcp-admins everything.
const readerAdminPolicy = `policy:
  roles:
    reader: { tools: ["list_*", "get_*"] }
    admin:  { tools: ["*"] }
  groups:
    mcp-readers: [reader]
    mcp-admins: [admin]`

// e2eDir is the e2e/ folder with its node_modules.
func e2eDir(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Dir(filepath.Dir(file))
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider")); err != nil {
		if os.Getenv("MCPGATE_E2E_REQUIRED") != "" {
			t.Fatalf("e2e node packages missing (run: cd e2e && npm ci): %v", err)
		}
		t.Skip("e2e node packages not installed (cd e2e && npm ci); set MCPGATE_E2E_REQUIRED=1 to fail instead")
	}
	return dir
}

// IdP is a running oidc-provider.
type IdP struct {
	Issuer string
	dir    string
}

// startIdP runs e2e/idp.mjs and waits for its {"issuer":…} line.
func startIdP(t testing.TB, env ...string) *IdP {
	t.Helper()
	dir := e2eDir(t)
	cmd := exec.Command("node", "idp.mjs", "--port", "0")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
	}()
	select {
	case l, ok := <-line:
		var out struct{ Issuer string }
		if !ok || json.Unmarshal([]byte(l), &out) != nil || out.Issuer == "" {
			t.Fatalf("idp did not start: %q\n%s", l, stderr.String())
		}
		return &IdP{Issuer: out.Issuer, dir: dir}
	case <-time.After(30 * time.Second):
		t.Fatalf("idp start timed out\n%s", stderr.String())
	}
	return nil
}

// UserToken logs user in headlessly (authorization code + PKCE) and returns
// a JWT access token for resource.
func (i *IdP) UserToken(t testing.TB, user, resource, scope string) string {
	t.Helper()
	return i.getToken(t, "--user", user, "--resource", resource, "--scope", scope)
}

// ClientToken returns a client_credentials JWT access token for resource.
func (i *IdP) ClientToken(t testing.TB, resource, scope string) string {
	t.Helper()
	return i.getToken(t, "--client-credentials", "--resource", resource, "--scope", scope)
}

func (i *IdP) getToken(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command("node", append([]string{"get-token.mjs", "--issuer", i.Issuer, "--raw"}, args...)...)
	cmd.Dir = i.dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("get-token %v: %v\n%s", args, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}
