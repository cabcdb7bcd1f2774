package idp

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
)

// claimAt follows a dotted path ("realm_access.roles") through nested JSON
// objects. A key containing dots that exists verbatim at the top level wins
// (some IdPs use URLs such as "https://example.com/groups" as claim names).
func claimAt(claims map[string]any, path string) (any, bool) {
	if path == "" || claims == nil {
		return nil, false
	}
	if v, ok := claims[path]; ok {
		return v, true
	}
	var cur any = claims
	for part := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// stringsAt returns the claim at path as a list of strings. It accepts an
// array of strings or a single string; other shapes yield nothing.
func stringsAt(claims map[string]any, path string) []string {
	v, ok := claimAt(claims, path)
	if !ok {
		return nil
	}
	switch v := v.(type) {
	case string:
		if v == "" {
			return nil
		}
		return []string{v}
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

// stringAt returns the claim at path if it is a non-empty string.
func stringAt(claims map[string]any, path string) string {
	v, _ := claimAt(claims, path)
	s, _ := v.(string)
	return s
}

// boolAt reads a boolean claim; some IdPs send "true"/"false" strings.
func boolAt(claims map[string]any, path string) bool {
	v, _ := claimAt(claims, path)
	switch v := v.(type) {
	case bool:
		return v
	case string:
		return v == "true"
	}
	return false
}

// unverifiedJWTClaims decodes a JWT's payload without checking its signature.
// It is only used on an access token received directly from the IdP's token
// endpoint over TLS (so its origin is already established), to read groups
// that some IdPs put only there. Non-JWT (opaque) tokens yield nil.
func unverifiedJWTClaims(token string) map[string]any {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var claims map[string]any
	if json.Unmarshal(payload, &claims) != nil {
		return nil
	}
	return claims
}

// mergeGroups unions group lists, keeping first-seen order.
func mergeGroups(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		for _, g := range l {
			if !slices.Contains(out, g) {
				out = append(out, g)
			}
		}
	}
	return out
}
