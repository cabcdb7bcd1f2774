package tokenendpoint

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// maxSPIFFEIDLen is the longest SPIFFE ID accepted (SPIFFE ID spec §2.3:
// 2048 bytes).
const maxSPIFFEIDLen = 2048

// SPIFFEID is a workload identity, spiffe://<trust domain>/<path>
// (SPIFFE ID specification, "The SPIFFE Identity and Verifiable Identity
// Document", §2).
type SPIFFEID struct {
	TrustDomain string
	Path        string // "/ns/x/sa/y": never empty for a workload
}

func (id SPIFFEID) String() string { return "spiffe://" + id.TrustDomain + id.Path }

// ParseSPIFFEID parses a workload's SPIFFE ID strictly, as the spec
// defines it and with no normalisation: lowercase scheme "spiffe", a trust
// domain of [a-z0-9.-_] only (§2.1: no port, user info or upper case), and
// a non-empty path of segments of [a-zA-Z0-9.-_] other than "." and ".."
// (§2.2: no empty segment, trailing slash, percent-encoding, query or
// fragment). An ID without a path names a trust domain, not a workload,
// and is refused.
func ParseSPIFFEID(s string) (SPIFFEID, error) {
	if len(s) > maxSPIFFEIDLen {
		return SPIFFEID{}, errors.New("SPIFFE ID longer than 2048 bytes")
	}
	rest, ok := strings.CutPrefix(s, "spiffe://")
	if !ok {
		return SPIFFEID{}, errors.New("not a spiffe:// URI")
	}
	td, path, _ := strings.Cut(rest, "/")
	if err := ValidateTrustDomain(td); err != nil {
		return SPIFFEID{}, err
	}
	if path == "" {
		return SPIFFEID{}, errors.New("SPIFFE ID has no path: it names a trust domain, not a workload")
	}
	for seg := range strings.SplitSeq(path, "/") {
		switch seg {
		case "":
			return SPIFFEID{}, errors.New("SPIFFE ID path has an empty segment or a trailing slash")
		case ".", "..":
			return SPIFFEID{}, errors.New("SPIFFE ID path has a dot segment")
		}
		for i := 0; i < len(seg); i++ {
			if c := seg[i]; !isLowerOrDigit(c) && !(c >= 'A' && c <= 'Z') && c != '.' && c != '-' && c != '_' {
				return SPIFFEID{}, fmt.Errorf("SPIFFE ID path has a character outside [a-zA-Z0-9.-_] (%q)", c)
			}
		}
	}
	return SPIFFEID{TrustDomain: td, Path: "/" + path}, nil
}

// ValidateTrustDomain checks a trust domain name (§2.1): 1-255 bytes of
// [a-z0-9.-_].
func ValidateTrustDomain(td string) error {
	if td == "" {
		return errors.New("trust domain is empty")
	}
	if len(td) > 255 {
		return errors.New("trust domain longer than 255 bytes")
	}
	for i := 0; i < len(td); i++ {
		if c := td[i]; !isLowerOrDigit(c) && c != '.' && c != '-' && c != '_' {
			return fmt.Errorf("trust domain has a character outside [a-z0-9.-_] (%q)", c)
		}
	}
	return nil
}

func isLowerOrDigit(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// certSPIFFEID returns the SPIFFE ID of an X.509-SVID (X509-SVID spec §2,
// §4): a leaf (not a CA) with exactly one URI SAN, a valid SPIFFE ID.
func certSPIFFEID(leaf *x509.Certificate) (SPIFFEID, error) {
	if leaf.IsCA {
		return SPIFFEID{}, errors.New("client certificate is a CA certificate")
	}
	if len(leaf.URIs) != 1 {
		return SPIFFEID{}, fmt.Errorf("client certificate has %d URI SANs, want exactly one spiffe:// URI", len(leaf.URIs))
	}
	return ParseSPIFFEID(leaf.URIs[0].String())
}
