package authn

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// The targets below feed documents an IdP (or whoever answers in its place)
// sends us through the real fetch path: an in-memory RoundTripper stands in
// for the network, so decodeJSONResponse's status, media type and size
// checks are fuzzed together with the parsers behind them.

// fuzzTransport answers every request from a function of its URL.
type fuzzTransport func(*http.Request) (status int, contentType string, body []byte)

func (f fuzzTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	status, ct, body := f(r)
	h := http.Header{}
	if ct != "" {
		h.Set("Content-Type", ct)
	}
	return &http.Response{
		StatusCode: status, Header: h, Body: io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)), Request: r,
	}, nil
}

func fuzzOptions(t fuzzTransport, now time.Time) Options {
	return Options{
		HTTPClient: &http.Client{Transport: t},
		Logger:     slog.New(slog.DiscardHandler),
		Now:        func() time.Time { return now },
	}
}

var fuzzNow = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func mustJSON(tb testing.TB, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzIntrospectionResponse: an RFC 7662 response yields a Principal only if
// it says active:true (a JSON boolean), names a subject, carries one of our
// audiences, is no refresh token, comes from the configured issuer and has
// not expired. Every failure is a classified error.
func FuzzIntrospectionResponse(f *testing.F) {
	const issuer = "https://auth.example.com"
	seeds := []map[string]any{
		activeAnswer(fuzzNow, nil),
		activeAnswer(fuzzNow, map[string]any{"active": false}),
		activeAnswer(fuzzNow, map[string]any{"active": "true"}),
		activeAnswer(fuzzNow, map[string]any{"active": 1}),
		activeAnswer(fuzzNow, map[string]any{"aud": nil}),
		activeAnswer(fuzzNow, map[string]any{"aud": "https://other.example.com"}),
		activeAnswer(fuzzNow, map[string]any{"aud": aud}),
		activeAnswer(fuzzNow, map[string]any{"aud": []any{1, aud}}),
		activeAnswer(fuzzNow, map[string]any{"sub": nil}),
		activeAnswer(fuzzNow, map[string]any{"sub": 42}),
		activeAnswer(fuzzNow, map[string]any{"iss": "https://evil.example.com"}),
		activeAnswer(fuzzNow, map[string]any{"iss": nil}),
		activeAnswer(fuzzNow, map[string]any{"iss": 5}),
		activeAnswer(fuzzNow, map[string]any{"iss": []any{"https://auth.example.com"}}),
		activeAnswer(fuzzNow, map[string]any{"exp": fuzzNow.Add(-time.Hour).Unix()}),
		activeAnswer(fuzzNow, map[string]any{"exp": "tomorrow"}),
		activeAnswer(fuzzNow, map[string]any{"exp": 1e300}),
		activeAnswer(fuzzNow, map[string]any{"nbf": fuzzNow.Add(time.Hour).Unix()}),
		activeAnswer(fuzzNow, map[string]any{"nbf": "x"}),
		activeAnswer(fuzzNow, map[string]any{"token_type": "refresh_token"}),
		activeAnswer(fuzzNow, map[string]any{"typ": "Refresh"}),
		activeAnswer(fuzzNow, map[string]any{"groups": []any{"a", nil, 3}, "scope": []any{"x"}}),
	}
	for _, s := range seeds {
		f.Add(mustJSON(f, s), "application/json")
	}
	for _, s := range []string{``, `null`, `[]`, `{}`, `{"active":true}`, `{"active":true,"active":false}`,
		`{"active":false,"active":true,"sub":"u","aud":"` + aud + `"}`, `{"Active":true,"sub":"u","aud":"` + aud + `"}`,
		`{"active":true,"sub":"u","aud":"` + aud + `","exp":-1}`, `{"active":true,"sub":"u","aud":["` + aud + `"],"exp":1e12}`,
		`{"active":true,"sub":"u\u0000","aud":"` + aud + `"}` + "\n{}", "\xff"} {
		f.Add([]byte(s), "application/json; charset=utf-8")
	}
	f.Add(mustJSON(f, activeAnswer(fuzzNow, nil)), "text/html")
	f.Add(mustJSON(f, activeAnswer(fuzzNow, nil)), "application/token-introspection+jwt")
	f.Add(mustJSON(f, activeAnswer(fuzzNow, nil)), "")

	f.Fuzz(func(t *testing.T, body []byte, ct string) {
		cfg := Config{Mode: ModeIntrospection, CacheSize: 4, Introspection: IntrospectionConfig{
			Endpoint: "https://auth.example.com/introspect", Issuer: issuer, ClientID: "gw", ClientSecret: "s",
			Audience: StringList{aud}, CacheTTL: time.Minute,
		}}
		tr := fuzzTransport(func(*http.Request) (int, string, []byte) { return http.StatusOK, ct, body })
		i := newIntrospector(cfg, fuzzOptions(tr, fuzzNow))
		p, err := i.Verify(context.Background(), "opaque-token")
		if err != nil {
			if p != nil {
				t.Fatalf("principal %+v returned with error %v", p, err)
			}
			if !errors.Is(err, ErrInvalidToken) && !errors.Is(err, ErrUnavailable) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		var m map[string]any
		if json.Unmarshal(body, &m) != nil {
			t.Fatalf("accepted a body that is not a JSON object: %q", body)
		}
		if m["active"] != true {
			t.Fatalf("principal from a response with active=%v", m["active"])
		}
		if sub, _ := m["sub"].(string); sub == "" || p.Subject != sub {
			t.Fatalf("subject %q from sub %v", p.Subject, m["sub"])
		}
		if !slices.Contains(audienceClaim(m), aud) || !slices.Contains(p.Audience, aud) {
			t.Fatalf("accepted audience %v", m["aud"])
		}
		if m["token_type"] == "refresh_token" {
			t.Fatal("accepted a refresh token")
		}
		if typ, _ := m["typ"].(string); strings.EqualFold(typ, "refresh") {
			t.Fatal("accepted typ refresh")
		}
		if iss, ok := m["iss"]; ok && iss != "" && iss != issuer {
			t.Fatalf("accepted issuer %v", iss)
		}
		if p.Issuer != issuer {
			t.Fatalf("principal issuer %q", p.Issuer)
		}
		if exp, ok := m["exp"]; ok {
			e, isNum := exp.(float64)
			if !isNum || time.Unix(int64(e), 0).Add(DefaultLeeway+time.Second).Before(fuzzNow) {
				t.Fatalf("accepted exp %v", exp)
			}
		}
		if nbf, ok := m["nbf"]; ok {
			n, isNum := nbf.(float64)
			if !isNum || time.Unix(int64(n), 0).After(fuzzNow.Add(DefaultLeeway)) {
				t.Fatalf("accepted nbf %v", nbf)
			}
		}
		if mt := strings.ToLower(strings.TrimSpace(strings.Split(ct, ";")[0])); ct != "" && mt != "application/json" && !strings.HasSuffix(mt, "+json") {
			t.Fatalf("accepted content type %q", ct)
		}
	})
}

// FuzzDiscovery: whatever the two well-known documents say, a discovered
// document names exactly our issuer, and a jwks_uri taken from it is an
// https URL on a public host without query or fragment.
func FuzzDiscovery(f *testing.F) {
	const issuer = "https://idp.example.com/tenant"
	doc := func(iss, jwks string) []byte {
		return mustJSON(f, map[string]any{"issuer": iss, "jwks_uri": jwks, "introspection_endpoint": issuer + "/introspect"})
	}
	good := doc(issuer, issuer+"/jwks")
	for _, s := range [][2][]byte{
		{good, nil},
		{nil, good},
		{doc(issuer+"/", issuer+"/jwks"), good},
		{doc("https://evil.example.com", "https://evil.example.com/jwks"), doc("HTTPS://idp.example.com/tenant", issuer+"/jwks")},
		{doc(issuer, "http://idp.example.com/jwks"), nil},
		{doc(issuer, "https://127.0.0.1/jwks"), nil},
		{doc(issuer, "https://[::ffff:10.0.0.1]/jwks"), nil},
		{doc(issuer, "https://localhost./jwks"), nil},
		{doc(issuer, "https://169.254.169.254/latest/meta-data"), nil},
		{doc(issuer, "https://idp.example.com/jwks?x=1"), nil},
		{doc(issuer, "https://idp.example.com/jwks#x"), nil},
		{doc(issuer, "//idp.example.com/jwks"), nil},
		{doc(issuer, "https://user@idp.example.com:443/jwks"), nil},
		{doc(issuer, ""), nil},
		{[]byte(`{"issuer":"` + issuer + `","issuer":"x","jwks_uri":"https://a.example/j"}`), nil},
		{[]byte(`{"issuer":"` + issuer + `","jwks_uri":["https://a.example/j"]}`), nil},
		{[]byte(`{"issuer":"` + issuer + `"}garbage`), []byte(`[`)},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, oidcDoc, oauthDoc []byte) {
		tr := fuzzTransport(func(r *http.Request) (int, string, []byte) {
			var body []byte
			switch r.URL.Path {
			case "/tenant/.well-known/openid-configuration":
				body = oidcDoc
			case "/.well-known/oauth-authorization-server/tenant":
				body = oauthDoc
			default:
				t.Fatalf("discovery requested %s", r.URL)
			}
			if body == nil {
				return http.StatusNotFound, "", nil
			}
			return http.StatusOK, "application/json", body
		})
		opts := fuzzOptions(tr, fuzzNow)
		md, err := discover(context.Background(), opts.HTTPClient, issuer)
		if err == nil && md.Issuer != issuer {
			t.Fatalf("discovered issuer %q, want %q", md.Issuer, issuer)
		}
		ic := IssuerConfig{Issuer: issuer, Audience: StringList{aud}}
		ic.SetDefaults()
		ti := newTrustedIssuer(ic, &ClaimsConfig{}, opts)
		u, err := ti.keys.jwksURL(context.Background())
		if err != nil {
			return
		}
		if md == nil {
			t.Fatalf("jwks_uri %q without a discovered document", u)
		}
		pu, perr := url.Parse(u)
		if perr != nil || pu.Scheme != "https" || pu.Host == "" || pu.RawQuery != "" || pu.Fragment != "" {
			t.Fatalf("accepted jwks_uri %q", u)
		}
		host := strings.ToLower(strings.TrimSuffix(pu.Hostname(), "."))
		if h, _, ok := strings.Cut(host, "%"); ok {
			host = h
		}
		if host == "localhost" || strings.HasSuffix(host, ".localhost") {
			t.Fatalf("accepted loopback jwks_uri %q", u)
		}
		if ip := net.ParseIP(host); ip != nil && (ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsUnspecified()) {
			t.Fatalf("accepted private jwks_uri %q", u)
		}
	})
}

// rsaExponent is a JWKS of keyRS256 with its exponent replaced.
func rsaExponent(tb testing.TB, e string) []byte {
	k := mustJSON(tb, keyRS256().public())
	return []byte(`{"keys":[` + strings.Replace(string(k), `"e":"AQAB"`, `"e":"`+e+`"`, 1) + `]}`)
}

// FuzzJWKS: a parsed key set holds only public asymmetric signing keys (no
// private, symmetric or short RSA key, no encryption key), each valid for
// its curve, and a key is offered only for an allowed algorithm of its own
// family: never for HMAC, none, or an algorithm other than the one it names.
func FuzzJWKS(f *testing.F) {
	set := func(keys ...any) []byte { return mustJSON(f, map[string]any{"keys": keys}) }
	pub := func(k testKey) jose.JSONWebKey { return k.public() }
	priv := jose.JSONWebKey{Key: rsaPrivA(), KeyID: "leak", Algorithm: "RS256", Use: "sig"}
	ecPrivJWK := jose.JSONWebKey{Key: ecPriv(), KeyID: "leak-ec", Algorithm: "ES256"}
	oct := jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "hmac", Algorithm: "HS256"}
	rsaAsHS := pub(keyRS256())
	rsaAsHS.Algorithm = "HS256"
	enc := pub(keyRS256())
	enc.Use = "enc"
	ecWrongAlg := pub(keyES256())
	ecWrongAlg.Algorithm = "ES384"
	for _, b := range [][]byte{
		set(pub(keyRS256()), pub(keyES256()), pub(keyEdDSA())),
		set(pub(keyPS256()), pub(keyES384())),
		set(priv, ecPrivJWK, oct, rsaAsHS, enc, ecWrongAlg),
		set(oct),
		rsaExponent(f, "Ag"), rsaExponent(f, "BA"), rsaExponent(f, "AQAA"), rsaExponent(f, "AQ"), rsaExponent(f, "Aw"),
		[]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"short"}]}`),
		[]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}]}`),
		[]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]}`),
		[]byte(`{"keys":[{"kty":"OKP","crv":"X25519","x":"` + strings.Repeat("A", 43) + `"}]}`),
		[]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`),
		[]byte(`{"keys":[{"kty":"none"}, null, 1, "x", []]}`),
		[]byte(`{"keys":{}}`), []byte(`{}`), []byte(`[]`), []byte(`null`), []byte(``),
	} {
		f.Add(b)
	}
	family := map[jose.SignatureAlgorithm]string{
		jose.RS256: "rsa", jose.RS384: "rsa", jose.RS512: "rsa", jose.PS256: "rsa", jose.PS384: "rsa", jose.PS512: "rsa",
		jose.ES256: "P-256", jose.ES384: "P-384", jose.ES512: "P-521", jose.EdDSA: "ed25519",
	}
	algs := []jose.SignatureAlgorithm{"", "none", "None", jose.HS256, jose.HS384, jose.HS512, "RSA-OAEP", "ECDH-ES", "rs256"}
	for a := range family {
		algs = append(algs, a)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		tr := fuzzTransport(func(*http.Request) (int, string, []byte) { return http.StatusOK, "application/json", body })
		opts := fuzzOptions(tr, fuzzNow)
		ks := &keySet{
			issuer: "https://idp.example.com", client: opts.HTTPClient, log: opts.Logger, now: opts.Now,
			jwksURL: func(context.Context) (string, error) { return "https://idp.example.com/jwks", nil },
			ttl:     time.Hour,
		}
		keys, err := ks.load(context.Background())
		if err == nil && len(keys) == 0 {
			t.Fatal("empty key set accepted")
		}
		for _, k := range keys {
			if !k.IsPublic() {
				t.Fatalf("private key %q accepted", k.KeyID)
			}
			if k.Use != "" && k.Use != "sig" {
				t.Fatalf("key %q with use %q accepted", k.KeyID, k.Use)
			}
			var fam string
			switch pk := k.Key.(type) {
			case *rsa.PublicKey:
				if pk.N.BitLen() < 2048 || pk.E < 3 || pk.E%2 == 0 {
					t.Fatalf("weak RSA key %q: %d bits, e=%d", k.KeyID, pk.N.BitLen(), pk.E)
				}
				fam = "rsa"
			case *ecdsa.PublicKey:
				if _, err := pk.ECDH(); err != nil {
					t.Fatalf("EC key %q is not a valid point: %v", k.KeyID, err)
				}
				fam = pk.Curve.Params().Name
			case ed25519.PublicKey:
				if len(pk) != ed25519.PublicKeySize {
					t.Fatalf("Ed25519 key %q of %d bytes", k.KeyID, len(pk))
				}
				fam = "ed25519"
			default:
				t.Fatalf("key %q of type %T accepted", k.KeyID, k.Key)
			}
			for _, a := range algs {
				if !keyFitsAlg(k, a) {
					continue
				}
				if family[a] != fam {
					t.Fatalf("key %q (%s) offered for %q", k.KeyID, fam, a)
				}
				if k.Algorithm != "" && k.Algorithm != string(a) {
					t.Fatalf("key %q naming alg %q offered for %q", k.KeyID, k.Algorithm, a)
				}
			}
		}
	})
}
