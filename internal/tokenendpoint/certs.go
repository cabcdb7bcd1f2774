package tokenendpoint

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// CertsOptions says what InitCerts creates.
type CertsOptions struct {
	// Dir receives the files; it is created (0700) if missing.
	Dir string
	// TrustDomain of the client certificates' SPIFFE IDs.
	TrustDomain string
	// Backends get one client certificate each, with the SPIFFE ID
	// spiffe://<trust domain>/backend/<name>.
	Backends []string
	// Hosts are extra DNS names or IP addresses of the server certificate
	// (localhost, 127.0.0.1 and ::1 are always in it).
	Hosts []string
	// Now is the time source (tests). Optional.
	Now func() time.Time
}

// CertsResult names what InitCerts wrote.
type CertsResult struct {
	CACert, CAKey, ServerCert, ServerKey string
	// Clients maps each backend to its certificate, key and SPIFFE ID.
	Clients []ClientCert
}

// ClientCert is one backend's client certificate.
type ClientCert struct {
	Backend, SPIFFEID, Cert, Key string
}

// Lifetimes of the certificates InitCerts makes: they are for trying the
// endpoint out; production certificates come from cert-manager or SPIRE.
const (
	caLifetime   = 365 * 24 * time.Hour
	leafLifetime = 90 * 24 * time.Hour
)

// InitCerts creates a small internal CA (ECDSA P-256), a server
// certificate for the internal listener and a client certificate per
// backend with its SPIFFE ID as the only URI SAN. Keys are written 0600.
// It refuses to overwrite any file: nothing is written when one exists.
func InitCerts(o CertsOptions) (*CertsResult, error) {
	if err := ValidateTrustDomain(o.TrustDomain); err != nil {
		return nil, err
	}
	if len(o.Backends) == 0 {
		return nil, errors.New("at least one backend is required")
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	files := map[string][]byte{}
	var order []string
	add := func(name string, data []byte) string {
		p := filepath.Join(o.Dir, name)
		files[p] = data
		order = append(order, p)
		return p
	}
	ca, err := NewCA("mcpgate internal CA", now(), caLifetime)
	if err != nil {
		return nil, err
	}
	res := &CertsResult{CACert: add("ca.crt", ca.CertPEM), CAKey: add("ca.key", ca.KeyPEM)}
	srv, err := ca.Issue(Leaf{CommonName: "mcpgate internal endpoint", Hosts: append([]string{"localhost", "127.0.0.1", "::1"}, o.Hosts...), Server: true}, now(), leafLifetime)
	if err != nil {
		return nil, err
	}
	res.ServerCert, res.ServerKey = add("server.crt", srv.CertPEM), add("server.key", srv.KeyPEM)
	seen := map[string]bool{}
	for _, b := range o.Backends {
		id := "spiffe://" + o.TrustDomain + "/backend/" + b
		if _, err := ParseSPIFFEID(id); err != nil || seen[b] {
			return nil, fmt.Errorf("backend name %q: must be unique and of [a-zA-Z0-9.-_] only", b)
		}
		seen[b] = true
		c, err := ca.Issue(Leaf{CommonName: b, SPIFFEID: id}, now(), leafLifetime)
		if err != nil {
			return nil, err
		}
		res.Clients = append(res.Clients, ClientCert{Backend: b, SPIFFEID: id,
			Cert: add("client-"+b+".crt", c.CertPEM), Key: add("client-"+b+".key", c.KeyPEM)})
	}
	for _, p := range order {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("%s exists: refusing to overwrite it (choose another --dir or remove the old files)", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	for _, p := range order {
		mode := os.FileMode(0o644)
		if filepath.Ext(p) == ".key" {
			mode = 0o600
		}
		// O_EXCL: a file created meanwhile is not overwritten either.
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			return nil, err
		}
		_, werr := f.Write(files[p])
		if err := errors.Join(werr, f.Close()); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// CA is a certificate authority held in memory.
type CA struct {
	Cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	CertPEM []byte
	KeyPEM  []byte
}

// Leaf describes a certificate CA.Issue makes: a server certificate for
// Hosts, or a client certificate (with SPIFFEID as its URI SAN, if set).
type Leaf struct {
	CommonName string
	Hosts      []string
	SPIFFEID   string
	Server     bool
}

// Issued is a certificate and its key, PEM-encoded.
type Issued struct {
	Cert    *x509.Certificate
	CertPEM []byte
	KeyPEM  []byte
}

// NewCA makes a self-signed ECDSA P-256 CA valid from notBefore for
// lifetime.
func NewCA(name string, notBefore time.Time, lifetime time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             notBefore.Add(-time.Minute),
		NotAfter:              notBefore.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyPEM, err := keyPEM(key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, key: key, CertPEM: certPEM(der), KeyPEM: keyPEM}, nil
}

// Issue signs a leaf certificate valid from notBefore for lifetime.
func (ca *CA) Issue(l Leaf, notBefore time.Time, lifetime time.Duration) (*Issued, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: l.CommonName},
		NotBefore:             notBefore.Add(-time.Minute),
		NotAfter:              notBefore.Add(lifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	if l.Server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		for _, h := range l.Hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	}
	if l.SPIFFEID != "" {
		u, err := url.Parse(l.SPIFFEID)
		if err != nil {
			return nil, err
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	kp, err := keyPEM(key)
	if err != nil {
		return nil, err
	}
	return &Issued{Cert: cert, CertPEM: certPEM(der), KeyPEM: kp}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
