package idp

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"

	"github.com/mcpgate/mcpgate/internal/authn"
)

// claimAt finds a claim by path, with the same syntax as the gateway's
// token validation (authn.LookupClaim).
func claimAt(claims map[string]any, path string) (any, bool) {
	if path == "" || claims == nil {
		return nil, false
	}
	return authn.LookupClaim(claims, path)
}

// stringsAt returns the claim at path as a list of strings, parsed like the
// gateway parses groups (authn.GroupList), so a group claim means the same
// in every auth mode.
func stringsAt(claims map[string]any, path string) []string {
	v, _ := claimAt(claims, path)
	return authn.GroupList(v)
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
