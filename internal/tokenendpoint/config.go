package tokenendpoint

import (
	"github.com/mcpgate/mcpgate/internal/validate"
)

// Config is the internal token endpoint: a second listener, separate from
// the public one, where backends authenticated by a client certificate
// (mTLS, SPIFFE ID) retrieve the upstream access token stored for a
// user's grant, by presenting the user's mcpgate access token (RFC 8693
// token exchange, seed 001). It needs auth.mode authorization_server.
// Empty listen: off.
type Config struct {
	// Listen is the address of the internal listener, host:port (empty: no
	// internal endpoint). Never the public listen address; bind it to an
	// address only the backends reach (a cluster-internal Service, a
	// private interface), never to the internet.
	Listen string `yaml:"listen"`
	// TLS holds the listener's certificate and the CA that issues the
	// backends' client certificates. All three files are required.
	TLS TLSConfig `yaml:"tls"`
	// TrustDomain is the SPIFFE trust domain of the backends' identities
	// (e.g. example.org, or cluster.local with cert-manager's
	// csi-driver-spiffe). A client certificate whose SPIFFE ID is in
	// another trust domain is refused.
	TrustDomain string `yaml:"trust_domain"`
	// Clients lists the workloads that may retrieve tokens and the
	// backends each may retrieve them for. A workload not listed is
	// refused; there is no wildcard.
	Clients []ClientConfig `yaml:"clients"`
}

// TLSConfig holds the internal listener's certificate files (PEM). They
// are re-read when they change (checked at most every 10 seconds), so
// short-lived certificates renewed by cert-manager or SPIRE are picked up
// without a restart.
type TLSConfig struct {
	// CertFile is the server certificate chain.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the private key of CertFile (mode 0600).
	KeyFile string `yaml:"key_file"`
	// ClientCAFile holds the CA certificates that issue the backends'
	// client certificates. Only these are trusted for client
	// authentication: not the system roots.
	ClientCAFile string `yaml:"client_ca_file"`
}

// ClientConfig allows one workload to retrieve tokens for some backends.
type ClientConfig struct {
	// SPIFFEID is the workload's identity, the single URI SAN of its client
	// certificate, e.g. spiffe://example.org/ns/mcp/sa/vsphere.
	SPIFFEID string `yaml:"spiffe_id"`
	// Backends are the names of the backends (backends[].name) whose users'
	// tokens this workload may retrieve. A subject token is honoured only
	// when it was issued for one of these backends' resource URIs.
	Backends []string `yaml:"backends"`
}

// Enabled reports whether the internal endpoint is configured.
func (c *Config) Enabled() bool { return c.Listen != "" }

// Validate reports every problem of an enabled endpoint under path; the
// checks against the rest of the configuration (auth mode, public listen
// address, backend names) are the caller's.
func (c *Config) Validate(path string, p *validate.Problems) {
	if !c.Enabled() {
		if c.TLS != (TLSConfig{}) || c.TrustDomain != "" || len(c.Clients) > 0 {
			p.Add(path+".listen", "is required when the internal endpoint is configured")
		}
		return
	}
	for _, f := range []struct{ key, v string }{
		{"cert_file", c.TLS.CertFile}, {"key_file", c.TLS.KeyFile}, {"client_ca_file", c.TLS.ClientCAFile},
	} {
		if f.v == "" {
			p.Add(path+".tls."+f.key, "is required: the internal endpoint only serves mutual TLS")
		}
	}
	tdOK := true
	if c.TrustDomain == "" {
		p.Add(path+".trust_domain", "is required (e.g. example.org)")
		tdOK = false
	} else if err := ValidateTrustDomain(c.TrustDomain); err != nil {
		p.Add(path+".trust_domain", "%v (got %q)", err, c.TrustDomain)
		tdOK = false
	}
	if len(c.Clients) == 0 {
		p.Add(path+".clients", "at least one client is required: no workload could retrieve a token")
	}
	seen := map[string]bool{}
	for i, cl := range c.Clients {
		cp := validate.Index(path+".clients", i)
		id, err := ParseSPIFFEID(cl.SPIFFEID)
		switch {
		case err != nil:
			p.Add(cp+".spiffe_id", "%v (got %q)", err, cl.SPIFFEID)
		case tdOK && id.TrustDomain != c.TrustDomain:
			p.Add(cp+".spiffe_id", "is outside trust_domain %q (got %q)", c.TrustDomain, cl.SPIFFEID)
		case seen[cl.SPIFFEID]:
			p.Add(cp+".spiffe_id", "duplicate client %q", cl.SPIFFEID)
		}
		seen[cl.SPIFFEID] = true
		if len(cl.Backends) == 0 {
			p.Add(cp+".backends", "at least one backend name is required")
		}
	}
}
