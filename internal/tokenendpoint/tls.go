package tokenendpoint

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// reloadInterval is how often the certificate files are checked for a
// change at most (on a handshake, not by a timer).
const reloadInterval = 10 * time.Second

// tlsFiles serves the listener's TLS configuration from its files and
// re-reads them when they change, keeping the last good configuration if
// the new files do not load.
type tlsFiles struct {
	cfg TLSConfig
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex
	current *tls.Config
	roots   map[[32]byte]bool // SHA-256 of each CA certificate in current.ClientCAs
	stamp   string
	checked time.Time
}

func newTLSFiles(cfg TLSConfig, log *slog.Logger, now func() time.Time) (*tlsFiles, error) {
	f := &tlsFiles{cfg: cfg, log: log, now: now}
	stamp, err := f.stampFiles()
	if err != nil {
		return nil, err
	}
	if f.current, f.roots, err = f.load(); err != nil {
		return nil, err
	}
	f.stamp, f.checked = stamp, now()
	return f, nil
}

// serverConfig is the listener's tls.Config: every connection gets the
// configuration current at its handshake (GetConfigForClient).
func (f *tlsFiles) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAndVerifyClientCert,
		NextProtos: []string{"http/1.1"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return f.get(), nil
		},
	}
}

func (f *tlsFiles) get() *tls.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if now.Sub(f.checked) < reloadInterval {
		return f.current
	}
	f.checked = now
	stamp, err := f.stampFiles()
	if err != nil || stamp == f.stamp {
		if err != nil {
			f.log.Error("internal endpoint: certificate files unreadable; keeping the loaded ones", "err", err)
		}
		return f.current
	}
	next, roots, err := f.load()
	if err != nil {
		f.log.Error("internal endpoint: new certificate files do not load; keeping the loaded ones", "err", err)
		return f.current
	}
	f.current, f.roots, f.stamp = next, roots, stamp
	f.log.Info("internal endpoint: certificate files reloaded")
	return f.current
}

// stampFiles identifies the files' versions by size and modification time
// (following symlinks, so a Kubernetes secret volume's swap counts).
func (f *tlsFiles) stampFiles() (string, error) {
	var s string
	for _, p := range []string{f.cfg.CertFile, f.cfg.KeyFile, f.cfg.ClientCAFile} {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		s += fmt.Sprintf("%d/%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return s, nil
}

// trustedRoot reports whether root (the last certificate of a verified
// chain) is still one of the client CAs: a CA removed from client_ca_file
// stops vouching for connections made before the reload as well.
func (f *tlsFiles) trustedRoot(root *x509.Certificate) bool {
	f.get() // reload first if the files changed
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.roots[sha256.Sum256(root.Raw)]
}

func (f *tlsFiles) load() (*tls.Config, map[[32]byte]bool, error) {
	cert, err := tls.LoadX509KeyPair(f.cfg.CertFile, f.cfg.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("internal_endpoint.tls: %w", err)
	}
	pemCA, err := os.ReadFile(f.cfg.ClientCAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("internal_endpoint.tls.client_ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	roots := map[[32]byte]bool{}
	for rest := pemCA; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("internal_endpoint.tls.client_ca_file: %w", err)
		}
		pool.AddCert(c)
		roots[sha256.Sum256(c.Raw)] = true
	}
	if len(roots) == 0 {
		return nil, nil, errors.New("internal_endpoint.tls.client_ca_file: no PEM certificate in the file")
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool, // only these: never the system roots
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"http/1.1"},
	}, roots, nil
}
