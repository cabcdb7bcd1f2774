// Package netguard holds the gateway's checks on network addresses: which
// hosts are loopback or private, and the HTTP clients that refuse to reach
// non-public addresses (SSRF guard) for URLs from semi-trusted sources.
package netguard

import (
	"net/netip"
	"strings"
)

// IsLoopbackHost reports whether host (a URL's Hostname() or the host of a
// listen address; brackets allowed, no port) names the loopback interface:
// "localhost" in any case, or an IP literal in 127.0.0.0/8 or ::1 (also
// IPv4-mapped). RFC 8252 §8.3 prefers the IP literals; "localhost" is accepted
// because widely used clients (mcp-remote) register it. Sub-names of
// localhost and a trailing dot are not: outside browsers they reach the DNS,
// and http is allowed only where the traffic cannot leave the machine.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	if inner, ok := strings.CutPrefix(host, "["); ok {
		if host, ok = strings.CutSuffix(inner, "]"); !ok {
			return false
		}
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Zone() == "" && a.Unmap().IsLoopback()
}
