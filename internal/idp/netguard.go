package idp

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
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
