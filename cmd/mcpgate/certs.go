package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/mcpgate/mcpgate/internal/tokenendpoint"
)

func newCertsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "certs", Short: "Certificates for the internal token endpoint"}
	var o tokenendpoint.CertsOptions
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create a small internal CA, a server certificate and a client certificate per backend",
		Long: `Creates, for trying out the internal token endpoint (internal_endpoint):

  ca.crt, ca.key                  an internal CA (ECDSA P-256, one year)
  server.crt, server.key          the internal listener's certificate, for
                                  localhost, 127.0.0.1, ::1 and each --host
  client-NAME.crt, client-NAME.key  a client certificate per --backend, whose
                                  only URI SAN is the SPIFFE ID
                                  spiffe://TRUST_DOMAIN/backend/NAME

Leaf certificates last 90 days. Keys are written 0600. Existing files are never
overwritten: the command fails and writes nothing. It prints the
internal_endpoint configuration that trusts these certificates.

In production let cert-manager (with csi-driver-spiffe) or SPIRE issue the
certificates instead: see docs/internal-endpoint.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := tokenendpoint.InitCerts(o)
			if err != nil {
				return err
			}
			return printCerts(cmd.OutOrStdout(), o, res)
		},
	}
	f := initCmd.Flags()
	f.StringVar(&o.Dir, "dir", "mcpgate-certs", "directory to write the files to (created 0700)")
	f.StringVar(&o.TrustDomain, "trust-domain", "example.org", "SPIFFE trust domain of the client certificates")
	f.StringSliceVar(&o.Backends, "backend", nil, "backend name to issue a client certificate for (repeat, or comma-separated; required)")
	f.StringSliceVar(&o.Hosts, "host", nil, "extra DNS name or IP address of the server certificate (repeatable)")
	cmd.AddCommand(initCmd)
	return cmd
}

func printCerts(w io.Writer, o tokenendpoint.CertsOptions, res *tokenendpoint.CertsResult) error {
	_, err := fmt.Fprintf(w, `wrote the CA, the server certificate and %d client certificate(s) to %s

internal_endpoint:
  listen: 127.0.0.1:8443
  tls:
    cert_file: %s
    key_file: %s
    client_ca_file: %s
  trust_domain: %s
  clients:
`, len(res.Clients), o.Dir, res.ServerCert, res.ServerKey, res.CACert, o.TrustDomain)
	if err != nil {
		return err
	}
	for _, c := range res.Clients {
		if _, err := fmt.Fprintf(w, "    - spiffe_id: %s\n      backends: [%s]\n", c.SPIFFEID, c.Backend); err != nil {
			return err
		}
	}
	if len(res.Clients) > 0 {
		c := res.Clients[0]
		_, err = fmt.Fprintf(w, `
A backend retrieves a user's upstream token (SUBJECT = the user's mcpgate access token):
  curl --cacert %s --cert %s --key %s \
    -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange \
    -d subject_token_type=urn:ietf:params:oauth:token-type:access_token \
    -d audience=%s --data-urlencode subject_token="$SUBJECT" \
    https://127.0.0.1:8443%s
`, res.CACert, c.Cert, c.Key, c.Backend, tokenendpoint.Path)
	}
	return err
}
