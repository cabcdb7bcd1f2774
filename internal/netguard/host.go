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

// IsPrivateHost reports whether host (a name or IP literal from a URL) is
// loopback, private (RFC 1918, RFC 4193), link-local or unspecified. Names are
// not resolved: the check guards against configuring such hosts by mistake,
// the operator still decides which names to trust. Being a refusal, it takes
// names broadly: any case, a trailing dot, and every name under localhost.
// The dial-time guard (GuardedClient) is what holds against DNS.
func IsPrivateHost(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	if err != nil {
		return false
	}
	a = a.Unmap()
	return a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsUnspecified()
}
