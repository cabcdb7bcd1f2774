package authn

import (
	"net/netip"
	"strings"
)

// isPrivateHost reports whether host (a name or IP literal from a URL) is
// loopback, private (RFC 1918, RFC 4193), link-local or unspecified. Names are
// not resolved: the check guards against configuring such hosts by mistake,
// the operator still decides which names to trust.
func isPrivateHost(host string) bool {
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
