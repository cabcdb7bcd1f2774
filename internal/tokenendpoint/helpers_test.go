package tokenendpoint

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// count reads the outcome counter.
func count(e *Endpoint, outcome string) float64 {
	var m dto.Metric
	_ = e.outcomes.WithLabelValues(outcome).(prometheus.Metric).Write(&m)
	return m.GetCounter().GetValue()
}

// reissue signs tmpl (a modified copy of an issued certificate) with ca
// under a fresh key.
func reissue(t *testing.T, ca *CA, tmpl *x509.Certificate) *Issued {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.Raw, tmpl.RawTBSCertificate, tmpl.PublicKey = nil, nil, nil
	tmpl.SerialNumber = serial()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := keyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	out := &Issued{Cert: cert, CertPEM: certPEM(der), KeyPEM: kp}
	if _, err := tls.X509KeyPair(out.CertPEM, out.KeyPEM); err != nil {
		t.Fatal(err)
	}
	return out
}
