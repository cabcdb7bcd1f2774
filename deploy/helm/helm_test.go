// Package helm tests the Helm chart in deploy/helm/mcpgate: it lints and
// renders with the helm CLI (helm.sh/helm/v4, a Go tool of the separate
// module tools/helm, so the main module does not depend on k8s.io), runs
// `mcpgate config check` on the config the chart renders, and checks that
// the dashboard and alerts name only metrics the gateway exports.
package helm

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const chart = "deploy/helm/mcpgate"

// root is the repository root (tests run in deploy/helm).
var root = func() string {
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	return filepath.Join(wd, "..", "..")
}()

// helm runs the helm CLI from the tools module, in the repository root.
// The first call builds it (minutes on a cold cache; scripts/test.sh builds
// it in a step of its own first), later ones reuse the cached binary.
func helm(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	if testing.Short() {
		t.Skip("helm: builds the helm CLI (slow on a cold module cache)")
	}
	cmd := exec.Command("go", append([]string{"tool", "-modfile=tools/helm/go.mod", "helm"}, args...)...)
	cmd.Dir = root
	// No kube context is needed or wanted: helm template and lint work offline.
	cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(t.TempDir(), "none"), "HELM_CACHE_HOME="+t.TempDir(),
		"HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

var (
	mcpgateOnce sync.Once
	mcpgateBin  string
	mcpgateErr  error
	binDir      string
)

// mcpgate builds the gateway's binary once for `config check`.
func mcpgate(t *testing.T) string {
	t.Helper()
	mcpgateOnce.Do(func() {
		binDir, mcpgateErr = os.MkdirTemp("", "mcpgate-helm-test")
		if mcpgateErr != nil {
			return
		}
		mcpgateBin = filepath.Join(binDir, "mcpgate")
		out, err := exec.Command("go", "build", "-o", mcpgateBin, filepath.Join(root, "cmd", "mcpgate")).CombinedOutput()
		if err != nil {
			mcpgateErr = &buildError{err, string(out)}
		}
	})
	if mcpgateErr != nil {
		t.Fatal(mcpgateErr)
	}
	return mcpgateBin
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return "go build ./cmd/mcpgate: " + e.err.Error() + "\n" + e.out }

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// TestChartLint: helm lint --strict accepts the chart with the values an
// operator must give.
func TestChartLint(t *testing.T) {
	out, errOut, err := helm(t, append([]string{"lint", "--strict", chart}, requiredSecrets...)...)
	if err != nil {
		t.Fatalf("helm lint: %v\n%s%s", err, out, errOut)
	}
	if !strings.Contains(out, "0 chart(s) failed") {
		t.Fatalf("helm lint output:\n%s%s", out, errOut)
	}
}

// requiredSecrets are the values without which the chart-made Secret is refused.
var requiredSecrets = []string{
	"--set", "secrets.encryptionKey=" + testKey,
	"--set", "secrets.storeDSN=postgres://mcpgate:pw@postgres:5432/mcpgate?sslmode=verify-full",
	"--set", "secrets.values.OIDC_CLIENT_SECRET=s3cret-value",
}

const testKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // base64 of 32 bytes
