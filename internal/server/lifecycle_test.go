package server_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/server/servertest"
)

// TestGracefulShutdownDrainsInFlightCalls: a tool call in progress when
// shutdown starts completes; new connections are refused afterwards. The
// backend holds the call until the listener is closed (shutdown has begun),
// so the call is in flight at shutdown by construction, not by timing.
func TestGracefulShutdownDrainsInFlightCalls(t *testing.T) {
	idp := newTestIdP(t)
	demoHandler := demo.Handler(demo.Options{})
	inBackend, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if bytes.Contains(body, []byte(`"tools/call"`)) {
			once.Do(func() { close(inBackend) })
			<-release
		}
		demoHandler.ServeHTTP(w, r)
	}))
	t.Cleanup(backend.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	var url string
	base, stop := servertest.StartControlled(t, func(base string) string {
		url = base + "/mcp"
		return jwtGatewayYAML(idp, url, `{ roles: { admin: { tools: ["*"] } }, groups: { admins: [admin] } }`,
			"shutdown_timeout: 2s", "{ name: demo, url: "+backend.URL+"/mcp }")
	})
	cs := servertest.Connect(t, url, idp.token(t, url, map[string]any{"groups": []string{"admins"}}), nil)
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := servertest.CallText(cs, "count", map[string]any{"to": 5})
		done <- result{out, err}
	}()
	select {
	case <-inBackend:
	case r := <-done:
		t.Fatalf("call ended before reaching the backend: %q, %v", r.out, r.err)
	}
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	// Shutdown closes the listener first: once a dial is refused, it has begun.
	addr := strings.TrimPrefix(base, "http://")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still open 10s after shutdown began")
		}
	}
	close(release)
	r := <-done
	if r.err != nil || r.out != "counted to 5" {
		t.Errorf("in-flight call during shutdown: %q, %v", r.out, r.err)
	}
	cs.Close() // ends the client's GET stream, which shutdown would wait for
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown did not finish")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("server still accepting connections after shutdown")
	}
}

// TestTLSListener serves HTTPS from cert/key files and sends HSTS.
func TestTLSListener(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // the server binds it again
	_ = servertest.Start(t, func(string) string {
		return fmt.Sprintf(`
listen: %[1]s
public_url: https://%[1]s
tls: { cert_file: %[2]s, key_file: %[3]s }
auth: { mode: none }
policy: { roles: {} }
backends: [ { name: demo, url: http://127.0.0.1:9/mcp } ]
audit: { sink: none }
`, addr, certFile, keyFile)
	})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + addr + "/.well-known/oauth-protected-resource")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Strict-Transport-Security"), "max-age=") {
		t.Errorf("status %d, HSTS %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
	}
	// Go's TLS server answers plain HTTP with 400 and closes.
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil && resp.StatusCode != http.StatusBadRequest {
		t.Errorf("plain HTTP on the TLS listener: %d", resp.StatusCode)
	}
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
