package authn

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// FuzzAuthenticateJWT feeds arbitrary strings as bearer tokens. None may
// panic, none may authenticate (the fuzzer cannot sign with the IdP's keys),
// and every error must be one of the package's sentinels so the gateway can
// classify it.
func FuzzAuthenticateJWT(f *testing.F) {
	clock := newFakeClock()
	idp := newTestIdP(f, keyRS256(), keyES256(), keyEdDSA())
	a, _ := newAuth(f, jwtConfig(idp), clock)
	now := clock.Now()

	valid := mint(f, keyRS256(), idp.claims(now, nil), mintOpts{})
	parts := strings.Split(valid, ".")
	enc := base64.RawURLEncoding.EncodeToString
	seeds := []string{
		"",
		"garbage",
		"a.b",
		"a.b.c",
		"...",
		parts[0] + "." + parts[1] + ".", // signature stripped
		parts[0] + "." + parts[1],       // two segments
		parts[0] + "." + enc([]byte(`{"sub":"root"}`)) + "." + parts[2], // payload swapped
		rawJWT(map[string]any{"alg": "none"}, idp.claims(now, nil), nil),
		rawJWT(map[string]any{"alg": "RS256", "kid": "rsa-a"}, idp.claims(now, nil), []byte("not a signature")),
		rawJWT(map[string]any{"alg": "ES256", "kid": "ec-256"}, idp.claims(now, nil), make([]byte, 64)),
		rawJWT(map[string]any{"alg": "EdDSA", "kid": "ed"}, idp.claims(now, nil), make([]byte, 64)),
		rawJWT(map[string]any{"alg": "RS256", "crit": []string{"b64"}, "b64": false}, idp.claims(now, nil), []byte("x")),
		mint(f, testKey{kid: "rsa-a", alg: jose.RS256, priv: rsaPrivB()}, idp.claims(now, nil), mintOpts{}),
		mint(f, keyRS256(), idp.claims(now, map[string]any{"aud": "x"}), mintOpts{}),
		mint(f, keyRS256(), idp.claims(now, map[string]any{"exp": "soon", "nbf": []any{1}}), mintOpts{}),
		"eyJhbGciOiJSUzI1NiJ9." + strings.Repeat("A", 1000) + ".AAAA",
		"Bearer " + valid[:20],
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		r.Header["Authorization"] = []string{"Bearer " + token}
		p, err := a.Authenticate(r)
		if err == nil || p != nil {
			t.Fatalf("token %q authenticated as %+v", token, p)
		}
		if !errors.Is(err, ErrInvalidToken) && !errors.Is(err, ErrNoToken) && !errors.Is(err, ErrUnavailable) {
			t.Fatalf("token %q: unclassified error %v", token, err)
		}
	})
}
