package mcp

import (
	"errors"
	"strings"
)

// ErrMalformedURI is returned by NormalizeURI for a '%' that does not start
// a percent-encoded octet (RFC 3986 §2.1).
var ErrMalformedURI = errors.New("malformed percent-encoding")

// NormalizeURI returns the syntax-based normal form of a resource URI
// (RFC 3986 §6.2.2): the scheme and host in lower case, the hex digits of
// percent-encodings in upper case (§6.2.2.1), percent-encoded unreserved
// characters decoded (§6.2.2.2), and the dot segments removed from the path
// (§6.2.2.3, with the algorithm of §5.2.4).
//
// Resource grants are prefixes and globs over URIs, so "demo://public/../x"
// and "demo://public/%2e%2e/x" must be matched as what they resolve to,
// "demo://x". Characters outside RFC 3986 (MCP URIs may hold non-ASCII text)
// are kept as they are; only the syntax above is touched.
func NormalizeURI(uri string) (string, error) {
	s, err := normalizePercent(uri)
	if err != nil {
		return "", err
	}
	// scheme ":" hier-part [ "?" query ] [ "#" fragment ] (§3)
	scheme, rest := "", s
	if i := schemeEnd(s); i > 0 {
		scheme, rest = strings.ToLower(s[:i+1]), s[i+1:]
	}
	tail := ""
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		rest, tail = rest[:i], rest[i:]
	}
	authority := ""
	if strings.HasPrefix(rest, "//") {
		end := strings.IndexByte(rest[2:], '/')
		if end < 0 {
			end = len(rest) - 2
		}
		authority, rest = rest[:2+end], rest[2+end:]
		// The host (after any userinfo) is case-insensitive (§3.2.2);
		// userinfo is not.
		at := strings.LastIndexByte(authority, '@') + 1
		if at == 0 {
			at = 2
		}
		authority = authority[:at] + strings.ToLower(authority[at:])
	}
	path := removeDotSegments(rest)
	if authority == "" && strings.HasPrefix(path, "//") {
		path = "/." + path // would read as an authority (as in WHATWG URL serialization)
	}
	if scheme == "" && authority == "" && schemeEnd(path) > 0 {
		path = "./" + path // would read as a scheme (§4.2)
	}
	return scheme + authority + path + tail, nil
}

// schemeEnd returns the index of the ':' ending a scheme at the start of s
// (ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), §3.1), or -1.
func schemeEnd(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			return i
		default:
			return -1
		}
	}
	return -1
}

// normalizePercent decodes percent-encoded unreserved characters and upper-
// cases the hex digits of the others (§6.2.2.1, §6.2.2.2).
func normalizePercent(s string) (string, error) {
	i := strings.IndexByte(s, '%')
	if i < 0 {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return "", ErrMalformedURI
		}
		v := unhex(s[i+1])<<4 | unhex(s[i+2])
		if isUnreserved(v) {
			b.WriteByte(v)
		} else {
			b.WriteByte('%')
			b.WriteByte(upperHex[v>>4])
			b.WriteByte(upperHex[v&15])
		}
		i += 2
	}
	return b.String(), nil
}

const upperHex = "0123456789ABCDEF"

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// isUnreserved: ALPHA / DIGIT / "-" / "." / "_" / "~" (§2.3).
func isUnreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// removeDotSegments is RFC 3986 §5.2.4.
func removeDotSegments(in string) string {
	if !strings.HasPrefix(in, ".") && !strings.Contains(in, "/.") {
		return in // no segment starts with a dot
	}
	out := make([]string, 0, strings.Count(in, "/")+1)
	for in != "" {
		switch {
		case strings.HasPrefix(in, "../"):
			in = in[3:]
		case strings.HasPrefix(in, "./"):
			in = in[2:]
		case strings.HasPrefix(in, "/./"):
			in = in[2:]
		case in == "/.":
			in = "/"
		case strings.HasPrefix(in, "/../"):
			in = in[3:]
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		case in == "/..":
			in = "/"
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		case in == "." || in == "..":
			in = ""
		default:
			// Move the first segment, with its leading '/', to the output.
			j := strings.IndexByte(in[1:], '/')
			if j < 0 {
				out = append(out, in)
				in = ""
			} else {
				out = append(out, in[:j+1])
				in = in[j+1:]
			}
		}
	}
	return strings.Join(out, "")
}
