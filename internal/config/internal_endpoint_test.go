package config

import (
	"strings"
	"testing"
)

func internalEndpointYAML(listen string) string {
	return asYAML(`encryption_key: ` + testKey + `
internal_endpoint:
  listen: ` + listen + `
  tls: { cert_file: s.crt, key_file: s.key, client_ca_file: ca.crt }
  trust_domain: example.org
  clients: [ { spiffe_id: "spiffe://example.org/ns/mcp/sa/demo", backends: [demo] } ]
`)
}

func TestInternalEndpointConfig(t *testing.T) {
	cfg, err := Parse([]byte(internalEndpointYAML("10.0.0.5:8443")), env(nil), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings()) != 0 {
		t.Errorf("warnings: %v", cfg.Warnings())
	}
	// Listening on every interface is allowed, and warned about.
	cfg, err = Parse([]byte(internalEndpointYAML("0.0.0.0:8443")), env(nil), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(cfg.Warnings(), "\n"); !strings.Contains(w, "internal_endpoint.listen") {
		t.Errorf("no warning for 0.0.0.0: %q", w)
	}
	// Every problem at once, each at its key; unknown keys are errors.
	_, err = Parse([]byte(asYAML(`
internal_endpoint:
  listen: localhost:8080
  tls: { cert_file: s.crt, client_cert: x }
  clients: [ { spiffe_id: "spiffe://example.org/x", backends: [nope] } ]
`)), env(nil), Overrides{})
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"internal_endpoint.tls.client_cert", "internal_endpoint.tls.key_file", "internal_endpoint.tls.client_ca_file",
		"internal_endpoint.trust_domain", "must not be the public listen address", `unknown backend "nope"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}
