package authn

import (
	"math"
	"strings"
	"time"
	"unicode"

	"github.com/mcpgate/mcpgate/internal/identity"
)

// LookupClaim finds a claim by name (the claim-path syntax of every
// *_claim setting, shared with the upstream IdP connectors): first as a literal key (so
// "cognito:groups" or "https://example.com/roles" work as written), then as
// a dotted path into nested objects ("realm_access.roles"); at each level a
// key containing dots is tried before splitting further.
func LookupClaim(m map[string]any, path string) (any, bool) {
	if v, ok := m[path]; ok {
		return v, true
	}
	for i := 0; i < len(path); i++ {
		if path[i] != '.' {
			continue
		}
		if sub, ok := m[path[:i]].(map[string]any); ok {
			if v, ok := LookupClaim(sub, path[i+1:]); ok {
				return v, true
			}
		}
	}
	return nil, false
}

// stringClaim returns the claim if it is a string.
func stringClaim(m map[string]any, name string) string {
	s, _ := m[name].(string)
	return s
}

// GroupList reads a groups claim the same way in every mode: an array of
// strings, or one string of names separated by spaces or commas.
func GroupList(v any) []string { return listClaim(v, true) }

// listClaim reads a claim holding either an array of strings or one string
// of names separated by spaces (and, if commas is set, commas). Non-string
// array elements are ignored.
func listClaim(v any, commas bool) []string {
	switch v := v.(type) {
	case string:
		return strings.FieldsFunc(v, func(r rune) bool { return unicode.IsSpace(r) || (commas && r == ',') })
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// audienceClaim reads aud, a string or an array of strings (RFC 7519 §4.1.3).
func audienceClaim(m map[string]any) []string {
	switch v := m["aud"].(type) {
	case string:
		if v == "" {
			return nil
		}
		return []string{v}
	case []any:
		return listClaim(v, false)
	}
	return nil
}

func intersects(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

// numericDate reads a NumericDate claim (RFC 7519 §2: seconds since the
// epoch, possibly fractional). ok is false if absent; bad is true if present
// but not a usable number.
func numericDate(m map[string]any, name string) (t time.Time, ok, bad bool) {
	v, present := m[name]
	if !present {
		return time.Time{}, false, false
	}
	f, isNum := v.(float64)
	if !isNum || math.IsNaN(f) || f < 0 || f > 1e12 { // 1e12 s is year ~33658: nonsense
		return time.Time{}, true, true
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, false
}

// principalFromClaims fills a Principal from verified claims. The claims map
// is kept as Principal.Claims and must not be modified afterwards.
func principalFromClaims(claims map[string]any, cc *ClaimsConfig) *identity.Principal {
	p := &identity.Principal{
		Issuer:    stringClaim(claims, "iss"),
		Subject:   stringClaim(claims, "sub"),
		Email:     stringClaim(claims, "email"),
		ClientID:  stringClaim(claims, "client_id"), // RFC 9068 §2.2, RFC 7662 §2.2
		TokenID:   stringClaim(claims, "jti"),
		SessionID: stringClaim(claims, "tsid"),
		Audience:  audienceClaim(claims),
		Claims:    claims,
	}
	if p.ClientID == "" {
		p.ClientID = stringClaim(claims, "azp")
	}
	switch v := claims["email_verified"].(type) {
	case bool:
		p.EmailVerified = v
	case string: // Cognito and some others send "true"
		p.EmailVerified = v == "true"
	}
	if exp, ok, bad := numericDate(claims, "exp"); ok && !bad {
		p.ExpiresAt = exp
	}
	for _, name := range []string{cc.UsernameClaim, "username", "email", "sub"} {
		if v, ok := LookupClaim(claims, name); ok {
			if s, ok := v.(string); ok && s != "" {
				p.Username = s
				break
			}
		}
	}
	if v, ok := LookupClaim(claims, cc.ScopeClaim); ok {
		p.Scopes = listClaim(v, false)
	} else if v, ok := claims["scp"]; ok {
		p.Scopes = listClaim(v, false)
	}
	if v, ok := LookupClaim(claims, cc.GroupsClaim); ok {
		p.Groups = GroupList(v)
	}
	return p
}
