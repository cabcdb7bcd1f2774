package netguard

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// ErrPrivateAddress is returned when an outbound connection would reach a
// loopback, private, link-local or otherwise non-public address.
var ErrPrivateAddress = errors.New("refusing to connect to a non-public address")

// nonPublic lists special-purpose ranges beyond what netip.Addr's predicates
// cover (RFC 6890 and its IPv6 counterpart). NAT64 and 6to4 can embed any IPv4
// address, private ones included, so they are refused as a whole.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("2002::/16"),
	netip.MustParsePrefix("100::/64"),
}

// IsPublicAddr reports whether ip is a globally routable unicast address.
func IsPublicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || !ip.IsGlobalUnicast() || ip.IsPrivate() || ip.IsLoopback() ||
		ip.IsLinkLocalUnicast() || ip.IsInterfaceLocalMulticast() || ip.IsUnspecified() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// publicOnly is a net.Dialer Control hook. It runs after name resolution, on
// the address actually dialled, so DNS rebinding cannot slip a private
// address past it.
func publicOnly(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return err
	}
	if !IsPublicAddr(ip) {
		return fmt.Errorf("%w: %s", ErrPrivateAddress, ip)
	}
	return nil
}

// HostList is an allow-list of host names: exact names or IP literals, and
// "*.zone" patterns matching any name of one or more labels under zone (not
// zone itself). Matching is case-insensitive and ignores a trailing dot.
type HostList struct {
	exact    map[string]bool
	suffixes []string // ".zone"
}

// ParseHostList validates patterns. Names must be ASCII (write
// internationalised names in punycode); "*" may only be a whole first label.
func ParseHostList(patterns []string) (*HostList, error) {
	l := &HostList{exact: map[string]bool{}}
	var errs []error
	for _, p := range patterns {
		h := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(p)), ".")
		if zone, ok := strings.CutPrefix(h, "*."); ok {
			if !validHostName(zone) {
				errs = append(errs, fmt.Errorf("%q is not a host name or *.zone pattern", p))
				continue
			}
			l.suffixes = append(l.suffixes, "."+zone)
			continue
		}
		if a, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
			l.exact[a.Unmap().String()] = true
			continue
		}
		if !validHostName(h) {
			errs = append(errs, fmt.Errorf("%q is not a host name or *.zone pattern", p))
			continue
		}
		l.exact[h] = true
	}
	return l, errors.Join(errs...)
}

// validHostName: dot-separated LDH labels (RFC 1123 §2.1), 1–63 characters
// each, no leading or trailing hyphen.
func validHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// Contains reports whether host (a URL's Hostname()) is on the list.
func (l *HostList) Contains(host string) bool {
	if l == nil {
		return false
	}
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if a, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return l.exact[a.Unmap().String()]
	}
	if l.exact[h] {
		return true
	}
	for _, sfx := range l.suffixes {
		if len(h) > len(sfx) && strings.HasSuffix(h, sfx) {
			return true
		}
	}
	return false
}

// Empty reports whether the list names no host.
func (l *HostList) Empty() bool { return l == nil || len(l.exact)+len(l.suffixes) == 0 }

// GuardedClientExcept is GuardedClient with exceptions: hosts on private may
// resolve to non-public addresses, and are verified against privateRoots
// (when non-nil) instead of the system's roots. Every other host gets the
// dial-time guard. The choice is made per request by URL host, and checked
// again on the address dialled, so nothing but a listed name reaches a
// private address.
func GuardedClientExcept(base *http.Client, timeout time.Duration, private *HostList, privateRoots *x509.CertPool) *http.Client {
	public := GuardedClient(base, false, timeout)
	if private.Empty() {
		return public
	}
	tr := public.Transport.(*http.Transport).Clone()
	guarded := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second, Control: publicOnly}
	open := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, _, err := net.SplitHostPort(addr); err == nil && private.Contains(host) {
			return open.DialContext(ctx, network, addr)
		}
		return guarded.DialContext(ctx, network, addr)
	}
	if privateRoots != nil {
		if tr.TLSClientConfig == nil {
			tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		} else {
			tr.TLSClientConfig = tr.TLSClientConfig.Clone()
		}
		tr.TLSClientConfig.RootCAs = privateRoots
	}
	return &http.Client{
		Transport:     hostRouter{private: private, internal: tr, public: public.Transport},
		Timeout:       timeout,
		CheckRedirect: public.CheckRedirect,
	}
}

// hostRouter sends requests for listed hosts through the internal transport.
type hostRouter struct {
	private          *HostList
	internal, public http.RoundTripper
}

func (h hostRouter) RoundTrip(r *http.Request) (*http.Response, error) {
	if h.private.Contains(r.URL.Hostname()) {
		return h.internal.RoundTrip(r)
	}
	return h.public.RoundTrip(r)
}

// GuardedClient returns an HTTP client for fetching URLs that come from
// untrusted or semi-trusted sources (client metadata documents, IdP
// discovery). Unless allowPrivate is set, it refuses to connect to non-public
// addresses (SSRF guard). It does not follow redirects and ignores proxy
// environment variables, since a proxy would bypass the address check.
// base, when non-nil, contributes its TLS settings (tests pass a client that
// trusts an httptest certificate).
func GuardedClient(base *http.Client, allowPrivate bool, timeout time.Duration) *http.Client {
	var tr *http.Transport
	if base != nil {
		if bt, ok := base.Transport.(*http.Transport); ok {
			tr = bt.Clone()
		}
	}
	if tr == nil {
		tr = http.DefaultTransport.(*http.Transport).Clone()
	}
	tr.Proxy = nil
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		d.Control = publicOnly
	}
	tr.DialContext = d.DialContext
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
