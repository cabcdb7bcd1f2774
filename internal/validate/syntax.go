package validate

import "net/url"

// IsScopeToken reports whether s is an RFC 6749 §3.3 scope-token:
// 1*( %x21 / %x23-5B / %x5D-7E ), printable ASCII but space, '"' and '\'.
// An allow-list: a scope that is not one could not be sent in a scope
// parameter, or would split into two.
func IsScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// Scopes reports each entry of scopes, at path[i], that is not an RFC 6749
// §3.3 scope-token.
func Scopes(path string, scopes []string, p *Problems) {
	for i, s := range scopes {
		if !IsScopeToken(s) {
			p.Add(Index(path, i), "invalid scope %q (RFC 6749 §3.3 scope-token)", s)
		}
	}
}

// EndpointURL checks the URL of a server the gateway calls out to (a
// token endpoint, an issuer): absolute, no user info or fragment, and https,
// or plain http where allowHTTP (an operator's allow_private_network).
func EndpointURL(path, raw string, allowHTTP bool, p *Problems) {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || u.Fragment != "" || u.User != nil:
		p.Add(path, "must be an absolute URL without user info or fragment")
	case u.Scheme == "https":
	case u.Scheme == "http" && allowHTTP:
	default:
		p.Add(path, "must be https (http only with allow_private_network)")
	}
}
