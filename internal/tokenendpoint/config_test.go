package tokenendpoint

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/validate"
)

func TestParseSPIFFEID(t *testing.T) {
	for _, ok := range []string{
		"spiffe://example.org/ns/mcp/sa/vsphere",
		"spiffe://cluster.local/ns/default/sa/x_y-z.1",
		"spiffe://a-b_c.d/Backend/V1",
	} {
		id, err := ParseSPIFFEID(ok)
		if err != nil || id.String() != ok {
			t.Errorf("%s: %v (%s)", ok, err, id)
		}
	}
	for _, bad := range []string{
		"", "spiffe://", "spiffe://example.org", "spiffe://example.org/",
		"SPIFFE://example.org/x", "https://example.org/x", "spiffe:example.org/x",
		"spiffe://Example.org/x", "spiffe://example.org:443/x", "spiffe://user@example.org/x",
		"spiffe://example.org/x/", "spiffe://example.org//x", "spiffe://example.org/./x", "spiffe://example.org/x/..",
		"spiffe://example.org/x%2Fy", "spiffe://example.org/x?q=1", "spiffe://example.org/x#f", "spiffe://example.org/a b",
		"spiffe://example.org/" + strings.Repeat("a", maxSPIFFEIDLen),
	} {
		if _, err := ParseSPIFFEID(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	valid := Config{
		Listen: "127.0.0.1:8443", TLS: TLSConfig{CertFile: "s.crt", KeyFile: "s.key", ClientCAFile: "ca.crt"}, TrustDomain: "example.org",
		Clients: []ClientConfig{{SPIFFEID: vsphereID, Backends: []string{"vsphere"}}},
	}
	var p validate.Problems
	valid.Validate("internal_endpoint", &p)
	if p.Err() != nil {
		t.Fatalf("valid: %v", p.Err())
	}
	var off validate.Problems
	(&Config{}).Validate("internal_endpoint", &off)
	if off.Err() != nil {
		t.Fatalf("disabled: %v", off.Err())
	}
	// Every problem at once, each at its key.
	bad := Config{
		Listen: "127.0.0.1:8443", TrustDomain: "Example.org",
		Clients: []ClientConfig{
			{SPIFFEID: "spiffe://other.org/x", Backends: []string{"vsphere"}},
			{SPIFFEID: "https://x"},
			{SPIFFEID: vsphereID, Backends: []string{"a"}},
			{SPIFFEID: vsphereID, Backends: []string{"b"}},
		},
	}
	var bp validate.Problems
	bad.Validate("internal_endpoint", &bp)
	got := strings.Join(bp.List(), "\n")
	for _, want := range []string{
		"internal_endpoint.tls.cert_file", "internal_endpoint.tls.key_file", "internal_endpoint.tls.client_ca_file",
		"internal_endpoint.trust_domain", "internal_endpoint.clients[1].spiffe_id", "internal_endpoint.clients[1].backends",
		"internal_endpoint.clients[3].spiffe_id: duplicate",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	// With a valid trust domain, an ID outside it is reported.
	bad.TrustDomain = "example.org"
	var tp validate.Problems
	bad.Validate("internal_endpoint", &tp)
	if got := strings.Join(tp.List(), "\n"); !strings.Contains(got, "clients[0].spiffe_id: is outside trust_domain") {
		t.Errorf("outside trust domain not reported:\n%s", got)
	}
	// Settings without listen are a mistake, not silently off.
	var np validate.Problems
	(&Config{TrustDomain: "example.org"}).Validate("internal_endpoint", &np)
	if np.Err() == nil || !strings.Contains(np.Err().Error(), "internal_endpoint.listen") {
		t.Errorf("settings without listen: %v", np.Err())
	}
}

func TestInitCerts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	res, err := InitCerts(CertsOptions{Dir: dir, TrustDomain: "example.org", Backends: []string{"vsphere", "k8s"}, Hosts: []string{"mcpgate-internal.mcp.svc", "10.0.0.7"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{res.CAKey, res.ServerKey, res.Clients[0].Key, res.Clients[1].Key} {
		fi, err := os.Stat(f)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", f, err, fi.Mode())
		}
	}
	caPEM, _ := os.ReadFile(res.CACert)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("CA not PEM")
	}
	srv, err := tls.LoadX509KeyPair(res.ServerCert, res.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"localhost", "127.0.0.1", "::1", "mcpgate-internal.mcp.svc", "10.0.0.7"} {
		if _, err := srv.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("server certificate for %s: %v", host, err)
		}
	}
	if pub, ok := srv.Leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Error("server key is not ECDSA P-256")
	}
	for _, c := range res.Clients {
		kp, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kp.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s: %v", c.Backend, err)
		}
		id, err := certSPIFFEID(kp.Leaf)
		if err != nil || id.String() != c.SPIFFEID || c.SPIFFEID != "spiffe://example.org/backend/"+c.Backend {
			t.Errorf("%s: SPIFFE ID %v %v", c.Backend, id, err)
		}
	}
	// Never overwrites: a second run fails and leaves the files as they were.
	before, _ := os.ReadFile(res.CAKey)
	if _, err := InitCerts(CertsOptions{Dir: dir, TrustDomain: "example.org", Backends: []string{"other"}}); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Errorf("second run: %v", err)
	}
	after, _ := os.ReadFile(res.CAKey)
	if string(before) != string(after) {
		t.Error("CA key overwritten")
	}
	if _, err := os.Stat(filepath.Join(dir, "client-other.crt")); err == nil {
		t.Error("a refused run wrote files")
	}
	for _, o := range []CertsOptions{
		{Dir: t.TempDir(), TrustDomain: "Bad Domain", Backends: []string{"x"}},
		{Dir: t.TempDir(), TrustDomain: "example.org"},
		{Dir: t.TempDir(), TrustDomain: "example.org", Backends: []string{"a/b"}},
		{Dir: t.TempDir(), TrustDomain: "example.org", Backends: []string{"a", "a"}},
	} {
		if _, err := InitCerts(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// FuzzParseSPIFFEID: never a panic, and an accepted ID is exactly its
// input (no normalisation), within the length bound, with a path.
func FuzzParseSPIFFEID(f *testing.F) {
	for _, s := range []string{vsphereID, "spiffe://a/b", "spiffe://a//b", "spiffe://A/b", "spiffe://a/%41", "spiffe://a:1/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseSPIFFEID(s)
		if err != nil {
			return
		}
		if id.String() != s || len(s) > maxSPIFFEIDLen || id.Path == "" || ValidateTrustDomain(id.TrustDomain) != nil {
			t.Fatalf("%q accepted as %+v", s, id)
		}
	})
}
