package authserver

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"golang.org/x/net/idna"

	"github.com/mcpgate/mcpgate/internal/netguard"
)

// dangerousSchemes can never be redirect targets.
var dangerousSchemes = map[string]bool{
	"javascript": true, "data": true, "vbscript": true, "file": true, "blob": true, "about": true,
	"filesystem": true, "view-source": true, "ftp": true, "ws": true, "wss": true, "chrome": true,
	"chrome-extension": true, "moz-extension": true, "resource": true, "jar": true, "mailto": true, "tel": true,
}

// validateRedirectURI applies the registration rules (OAuth 2.1 §2.3.1,
// RFC 8252 §7, MCP security best practices): an absolute URI without
// fragment, user info or wildcard; http only for loopback; https; or a
// private-use scheme that is trusted or in reverse-domain form.
func validateRedirectURI(raw string, trustedSchemes []string) error {
	if raw == "" {
		return errors.New("redirect URI is empty")
	}
	if len(raw) > 2048 {
		return errors.New("redirect URI is too long")
	}
	if strings.ContainsAny(raw, "#*\\ ") || strings.ContainsFunc(raw, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return errors.New("redirect URI must not contain a fragment, wildcard, backslash, space or control character")
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() {
		return errors.New("redirect URI must be an absolute URI")
	}
	if u.User != nil {
		return errors.New("redirect URI must not contain user info")
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme == "http":
		if !netguard.IsLoopbackHost(u.Hostname()) {
			return errors.New("http redirect URIs are only allowed for loopback (127.0.0.1, [::1], localhost); use https")
		}
	case scheme == "https":
		if u.Hostname() == "" {
			return errors.New("https redirect URI needs a host")
		}
	case dangerousSchemes[scheme]:
		return fmt.Errorf("scheme %q is not allowed in redirect URIs", scheme)
	default:
		// RFC 8252 §7.1: private-use schemes should be reverse domain names.
		if !slices.Contains(trustedSchemes, scheme) && !strings.Contains(scheme, ".") {
			return fmt.Errorf("private-use scheme %q is neither trusted nor in reverse-domain form", scheme)
		}
	}
	return nil
}

// matchRedirectURI reports whether requested may be used with a client that
// registered the given URIs: an exact string match, or, for loopback http
// URIs only, a match of everything except the port (RFC 8252 §7.3: native
// apps pick an ephemeral port at request time).
func matchRedirectURI(registered []string, requested string) bool {
	if slices.Contains(registered, requested) {
		return true
	}
	// Loopback rule. The request must itself be a valid loopback URI.
	if validateRedirectURI(requested, nil) != nil {
		return false
	}
	req, err := url.Parse(requested)
	if err != nil || req.Scheme != "http" || !netguard.IsLoopbackHost(req.Hostname()) {
		return false
	}
	for _, r := range registered {
		reg, err := url.Parse(r)
		if err != nil || reg.Scheme != "http" || !netguard.IsLoopbackHost(reg.Hostname()) {
			continue
		}
		if reg.Hostname() == req.Hostname() && reg.EscapedPath() == req.EscapedPath() &&
			reg.RawQuery == req.RawQuery && reg.ForceQuery == req.ForceQuery && reg.Opaque == req.Opaque {
			return true
		}
	}
	return false
}

// redirectHost is what the consent page shows: the host (and port) of the
// redirect URI, or the scheme for private-use schemes. Hosts are shown in
// their ASCII (punycode) form, so a look-alike internationalised name
// cannot pass for another (UTS #46; the browser would contact the ASCII
// name anyway).
func redirectHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	host := asciiHost(u.Host)
	switch u.Scheme {
	case "http", "https":
		return host
	}
	if u.Host != "" {
		return u.Scheme + "://" + host
	}
	return u.Scheme + ":"
}

// displayURI is an absolute URI as the consent page shows it: scheme, the
// ASCII (punycode) host and the path.
func displayURI(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return raw
	}
	u.Host = asciiHost(u.Host)
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String()
}

// asciiHost converts host[:port] to its ASCII form (IDNA ToASCII); a host
// that is not a valid IDN is punycode-encoded label by label without
// validation, so that no non-ASCII character is ever shown.
func asciiHost(hostport string) string {
	host, port := hostport, ""
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, p
	}
	if strings.HasPrefix(hostport, "[") { // IPv6 literal
		return hostport
	}
	a, err := idna.Lookup.ToASCII(host)
	if err != nil {
		if a, err = idna.Punycode.ToASCII(host); err != nil {
			a = strings.ToValidUTF8(url.PathEscape(host), "")
		}
	}
	if port != "" {
		return net.JoinHostPort(a, port)
	}
	return a
}

// canonicalResource validates an RFC 8707 resource indicator and returns its
// canonical form (MCP: lowercase scheme and host, no fragment, no trailing
// slash) used for comparison.
func canonicalResource(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return "", errors.New("resource must be an absolute URI")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return "", errors.New("resource must not contain a fragment (RFC 8707 §2)")
	}
	if u.User != nil {
		return "", errors.New("resource must not contain user info")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = strings.TrimSuffix(u.RawPath, "/")
	return u.String(), nil
}

// isURLClientID reports whether a client_id is a Client ID Metadata
// Document URL.
func isURLClientID(id string) bool { return strings.HasPrefix(id, "https://") }

func isBcrypt(h string) bool {
	return len(h) == 60 && (strings.HasPrefix(h, "$2a$") || strings.HasPrefix(h, "$2b$") || strings.HasPrefix(h, "$2y$"))
}

// CanonicalResource is the form of a resource URI (RFC 8707) the server
// compares and puts in tokens' aud: lowercase scheme and host, no
// trailing slash.
func CanonicalResource(raw string) (string, error) { return canonicalResource(raw) }
