package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpgate/mcpgate/internal/testutil"
)

// testKey is a signing key with the kid and alg it is published under.
type testKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv any
}

func (k testKey) public() jose.JSONWebKey {
	var pub any
	switch p := k.priv.(type) {
	case *rsa.PrivateKey:
		pub = &p.PublicKey
	case *ecdsa.PrivateKey:
		pub = &p.PublicKey
	case ed25519.PrivateKey:
		pub = p.Public()
	}
	return jose.JSONWebKey{Key: pub, KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}
}

var (
	rsaPrivA = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA() })
	rsaPrivB = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA() })
	ecPriv   = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P256()) })
	ec384    = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P384()) })
	edPriv   = sync.OnceValue(func() ed25519.PrivateKey {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	})
)

func mustRSA() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

func mustEC(c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func keyRS256() testKey { return testKey{kid: "rsa-a", alg: jose.RS256, priv: rsaPrivA()} }
func keyRS256B() testKey {
	return testKey{kid: "rsa-b", alg: jose.RS256, priv: rsaPrivB()}
}
func keyPS256() testKey { return testKey{kid: "rsa-pss", alg: jose.PS256, priv: rsaPrivA()} }
func keyES256() testKey { return testKey{kid: "ec-256", alg: jose.ES256, priv: ecPriv()} }
func keyES384() testKey { return testKey{kid: "ec-384", alg: jose.ES384, priv: ec384()} }
func keyEdDSA() testKey { return testKey{kid: "ed", alg: jose.EdDSA, priv: edPriv()} }

// mintOpts tweaks the JOSE header of a minted token.
type mintOpts struct {
	typ    string // default "JWT"; "-" omits typ
	noKid  bool
	header map[jose.HeaderKey]any
}

func mint(t testing.TB, k testKey, claims map[string]any, o mintOpts) string {
	t.Helper()
	so := &jose.SignerOptions{}
	switch o.typ {
	case "":
		so.WithType("JWT")
	case "-":
	default:
		so.WithType(jose.ContentType(o.typ))
	}
	for h, v := range o.header {
		so.WithHeader(h, v)
	}
	jwk := jose.JSONWebKey{Key: k.priv, KeyID: k.kid}
	if o.noKid {
		jwk.KeyID = ""
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: jwk}, so)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rawJWT assembles header.payload.signature from JSON values without signing.
func rawJWT(header, claims any, sig []byte) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding.EncodeToString
	return enc(h) + "." + enc(c) + "." + enc(sig)
}

// fakeClock is a settable clock.
type fakeClock = testutil.Clock

func newFakeClock() *fakeClock {
	return testutil.NewClock(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
}

// testIdP serves OIDC discovery and a JWKS, counting fetches.
type testIdP struct {
	*httptest.Server
	mu         sync.Mutex
	keys       []jose.JSONWebKey
	issuer     string // advertised issuer; default the server URL
	noOIDC     bool   // 404 on openid-configuration (RFC 8414 fallback)
	jwksStatus int    // non-zero: answer the JWKS with this status
	jwksDelay  time.Duration
	jwksHits   atomic.Int32
	discHits   atomic.Int32
}

func newTestIdP(t testing.TB, keys ...testKey) *testIdP {
	t.Helper()
	idp := &testIdP{}
	idp.setKeys(keys...)
	mux := http.NewServeMux()
	meta := func(w http.ResponseWriter, r *http.Request) {
		idp.discHits.Add(1)
		idp.mu.Lock()
		iss := idp.issuer
		idp.mu.Unlock()
		if iss == "" {
			iss = idp.URL
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                 iss,
			"jwks_uri":               idp.URL + "/jwks",
			"introspection_endpoint": idp.URL + "/introspect",
		})
	}
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		idp.mu.Lock()
		no := idp.noOIDC
		idp.mu.Unlock()
		if no {
			http.NotFound(w, r)
			return
		}
		meta(w, r)
	})
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", meta)
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		idp.jwksHits.Add(1)
		idp.mu.Lock()
		set := jose.JSONWebKeySet{Keys: idp.keys}
		status, delay := idp.jwksStatus, idp.jwksDelay
		idp.mu.Unlock()
		time.Sleep(delay)
		if status != 0 {
			w.WriteHeader(status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	})
	idp.Server = httptest.NewServer(mux)
	t.Cleanup(idp.Close)
	return idp
}

func (idp *testIdP) setKeys(keys ...testKey) {
	pub := make([]jose.JSONWebKey, 0, len(keys))
	for _, k := range keys {
		pub = append(pub, k.public())
	}
	idp.mu.Lock()
	idp.keys = pub
	idp.mu.Unlock()
}

// claims returns valid claims for this IdP at time now.
func (idp *testIdP) claims(now time.Time, extra map[string]any) map[string]any {
	c := map[string]any{
		"iss": idp.URL,
		"sub": "alice-id",
		"aud": "https://mcp.example.com/mcp",
		"exp": now.Add(time.Hour).Unix(),
		"iat": now.Unix(),
		"jti": "tok-1",
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// jwtConfig is a jwt-mode Config trusting the given IdPs.
func jwtConfig(idps ...*testIdP) Config {
	cfg := Config{Mode: ModeJWT}
	for _, idp := range idps {
		cfg.JWT.Issuers = append(cfg.JWT.Issuers, IssuerConfig{
			Issuer:             idp.URL,
			Audience:           StringList{"https://mcp.example.com/mcp"},
			AllowPrivateIssuer: true,
		})
	}
	return cfg
}

// lockedBuffer is a log sink safe for concurrent writers.
type lockedBuffer = testutil.SyncBuffer

// newAuth builds an Authenticator with a fake clock and a captured log.
func newAuth(t testing.TB, cfg Config, clock *fakeClock) (Authenticator, *lockedBuffer) {
	t.Helper()
	logs := &lockedBuffer{}
	a, err := New(context.Background(), cfg, Options{
		HTTPClient: &http.Client{Timeout: 5 * time.Second},
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:        clock.Now,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a, logs
}

func bearer(token string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader("{}"))
	r.Header.Set("Authorization", "Bearer "+token)
	return r
}
