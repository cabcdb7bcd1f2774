package authn

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mcpgate/mcpgate/internal/identity"
)

const aud = "https://mcp.example.com/mcp"

func TestJWTAccepts(t *testing.T) {
	clock := newFakeClock()
	keys := []testKey{keyRS256(), keyPS256(), keyES256(), keyES384(), keyEdDSA()}
	idp := newTestIdP(t, keys...)
	a, _ := newAuth(t, jwtConfig(idp), clock)
	now := clock.Now()

	for _, k := range keys {
		t.Run(string(k.alg), func(t *testing.T) {
			tok := mint(t, k, idp.claims(now, map[string]any{
				"preferred_username": "alice",
				"email":              "alice@example.com",
				"email_verified":     true,
				"groups":             []any{"mcp-readers", "ops"},
				"scope":              "mcp:read mcp:write",
				"client_id":          "claude",
				"tsid":               "sess-9",
				"aud":                []any{"other", aud},
			}), mintOpts{})
			p, err := a.Authenticate(bearer(tok))
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			want := &identity.Principal{
				Issuer: idp.URL, Subject: "alice-id", Username: "alice", Email: "alice@example.com",
				EmailVerified: true, Groups: []string{"mcp-readers", "ops"}, Scopes: []string{"mcp:read", "mcp:write"},
				ClientID: "claude", TokenID: "tok-1", SessionID: "sess-9", Audience: []string{"other", aud},
				ExpiresAt: now.Add(time.Hour),
			}
			if diff := cmp.Diff(want, p, cmpopts.IgnoreFields(identity.Principal{}, "Claims"), cmpopts.EquateApproxTime(time.Second)); diff != "" {
				t.Errorf("principal (-want +got):\n%s", diff)
			}
			if p.Claims["tsid"] != "sess-9" {
				t.Errorf("raw claims not kept: %v", p.Claims)
			}
		})
	}
}

func TestJWTRejects(t *testing.T) {
	clock := newFakeClock()
	idp := newTestIdP(t, keyRS256(), keyES256())
	cfg := jwtConfig(idp)
	a, _ := newAuth(t, cfg, clock)
	now := clock.Now()
	rsaPub := &rsaPrivA().PublicKey
	pubDER, err := x509.MarshalPKIXPublicKey(rsaPub)
	if err != nil {
		t.Fatal(err)
	}
	valid := mint(t, keyRS256(), idp.claims(now, nil), mintOpts{})
	parts := strings.Split(valid, ".")

	tests := []struct {
		name   string
		token  func() string
		detail string // substring of the logged error detail
	}{
		{"wrong issuer", func() string {
			return mint(t, keyRS256(), idp.claims(now, map[string]any{"iss": "https://evil.example.com"}), mintOpts{})
		}, "untrusted issuer"},
		{"issuer with trailing slash", func() string {
			return mint(t, keyRS256(), idp.claims(now, map[string]any{"iss": idp.URL + "/"}), mintOpts{})
		}, "untrusted issuer"},
		{"wrong audience", func() string {
			return mint(t, keyRS256(), idp.claims(now, map[string]any{"aud": "https://other.example.com"}), mintOpts{})
		}, "audience"},
		{"wrong audience array", func() string {
			return mint(t, keyRS256(), idp.claims(now, map[string]any{"aud": []any{"a", "b"}}), mintOpts{})
		}, "audience"},
		{"missing audience", func() string {
			return mint(t, keyRS256(), idp.claims(now, map[string]any{"aud": nil}), mintOpts{})
		}, "missing aud"},
		{"audience of wrong type", func() string {
			return mint(t, keyRS256(), idp.claims(now, map[string]any{"aud": 42}), mintOpts{})
		}, "missing aud"},
		{"expired beyond leeway", func() string {
			return mint(t, keyRS256(), idp.claims(now, map[string]any{"exp": now.Add(-61 * time.Second).Unix()}), mintOpts{})
		}, "expired"},
		{"missing exp", func() string {
			return mint(t, keyRS256(), idp.claims(now, map[string]any{"exp": nil}), mintOpts{})
		}, "missing exp"},
		{"exp not a number", func() string {
			return mint(t, keyRS256(), idp.claims(now, map[string]any{"exp": "tomorrow"}), mintOpts{})
		}, "malformed exp"},
		{"not yet valid", func() string {
			return mint(t, keyRS256(), idp.claims(now, map[string]any{"nbf": now.Add(2 * time.Minute).Unix()}), mintOpts{})
		}, "not valid before"},
		{"issued in the future", func() string {
			return mint(t, keyRS256(), idp.claims(now, map[string]any{"iat": now.Add(2 * time.Minute).Unix()}), mintOpts{})
		}, "issued in the future"},
		{"missing sub", func() string {
			return mint(t, keyRS256(), idp.claims(now, map[string]any{"sub": nil}), mintOpts{})
		}, "missing sub"},
		{"alg none", func() string {
			return rawJWT(map[string]any{"alg": "none", "kid": "rsa-a"}, idp.claims(now, nil), nil)
		}, "unexpected signature algorithm"},
		{"alg NONE unsigned", func() string {
			return rawJWT(map[string]any{"alg": "NONE"}, idp.claims(now, nil), []byte("x"))
		}, "unexpected signature algorithm"},
		{"HS256 with the RSA public key as secret", func() string {
			return mint(t, testKey{kid: "rsa-a", alg: jose.HS256, priv: pubDER}, idp.claims(now, nil), mintOpts{})
		}, "unexpected signature algorithm"},
		{"unknown kid", func() string {
			return mint(t, testKey{kid: "nope", alg: jose.RS256, priv: rsaPrivB()}, idp.claims(now, nil), mintOpts{})
		}, `kid "nope"`},
		{"known kid, other key", func() string {
			return mint(t, testKey{kid: "rsa-a", alg: jose.RS256, priv: rsaPrivB()}, idp.claims(now, nil), mintOpts{})
		}, "signature verification failed"},
		{"kid of an EC key with RS256", func() string {
			return mint(t, testKey{kid: "ec-256", alg: jose.RS256, priv: rsaPrivA()}, idp.claims(now, nil), mintOpts{})
		}, `kid "ec-256"`},
		{"tampered payload", func() string {
			forged := strings.Split(mint(t, keyRS256(), idp.claims(now, map[string]any{"sub": "root"}), mintOpts{}), ".")
			return parts[0] + "." + forged[1] + "." + parts[2]
		}, "signature verification failed"},
		{"embedded jwk header with attacker key", func() string {
			atk := testKey{kid: "attacker", alg: jose.RS256, priv: rsaPrivB()}
			return mint(t, atk, idp.claims(now, nil), mintOpts{header: map[jose.HeaderKey]any{"jwk": atk.public()}})
		}, `kid "attacker"`},
		{"crit header", func() string {
			return mint(t, keyRS256(), idp.claims(now, nil), mintOpts{header: map[jose.HeaderKey]any{"crit": []string{"exp"}, "exp": 1}})
		}, "crit"},
		{"garbage", func() string { return "not-a-jwt" }, "malformed JWS"},
		{"two segments", func() string { return parts[0] + "." + parts[1] }, "malformed JWS"},
		{"four segments", func() string { return valid + ".x" }, "malformed JWS"},
		{"bad base64 header", func() string { return "eyJ+/." + parts[1] + "." + parts[2] }, "malformed JWS"},
		{"bad base64 payload", func() string { return parts[0] + ".e30/+." + parts[2] }, "malformed JWS"},
		{"payload not an object", func() string {
			return rawJWT(map[string]any{"alg": "RS256", "kid": "rsa-a"}, []int{1}, []byte("sig"))
		}, "not a JSON object"},
		{"too long", func() string { return strings.Repeat("a", maxTokenBytes+1) }, "longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.Authenticate(bearer(tc.token()))
			if p != nil || !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("got principal %v, err %v; want ErrInvalidToken", p, err)
			}
			if !strings.Contains(err.Error(), tc.detail) {
				t.Errorf("error %q does not mention %q", err, tc.detail)
			}
		})
	}
	// The same valid token passes: the negatives fail for their own reason.
	if _, err := a.Authenticate(bearer(valid)); err != nil {
		t.Fatalf("valid token rejected: %v", err)
	}
}

func TestJWTLeeway(t *testing.T) {
	clock := newFakeClock()
	idp := newTestIdP(t, keyRS256())
	a, _ := newAuth(t, jwtConfig(idp), clock)
	now := clock.Now()
	for name, extra := range map[string]map[string]any{
		"expired within leeway": {"exp": now.Add(-30 * time.Second).Unix()},
		"nbf within leeway":     {"nbf": now.Add(30 * time.Second).Unix()},
		"iat within leeway":     {"iat": now.Add(30 * time.Second).Unix()},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := a.Authenticate(bearer(mint(t, keyRS256(), idp.claims(now, extra), mintOpts{}))); err != nil {
				t.Fatalf("rejected: %v", err)
			}
		})
	}
}

// HMAC-with-public-key must fail even if a caller bypassed config
// validation and allowed HS256: the key type decides, not the header.
func TestHS256WithRSAPublicKeyFailsEvenIfAllowed(t *testing.T) {
	clock := newFakeClock()
	idp := newTestIdP(t, keyRS256())
	ic := jwtConfig(idp).JWT.Issuers[0]
	ic.SetDefaults()
	ic.Algorithms = append(ic.Algorithms, "HS256")
	opts := Options{Now: clock.Now}
	opts.fill()
	ti := newTrustedIssuer(ic, &ClaimsConfig{}, opts)
	v := newJWTVerifier([]*trustedIssuer{ti}, -1, clock.Now)

	pubDER, err := x509.MarshalPKIXPublicKey(&rsaPrivA().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	jwk := keyRS256().public()
	pubJSON, err := jwk.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	for name, secret := range map[string][]byte{"DER": pubDER, "JWK JSON": pubJSON} {
		t.Run(name, func(t *testing.T) {
			tok := mint(t, testKey{kid: "rsa-a", alg: jose.HS256, priv: secret}, idp.claims(clock.Now(), nil), mintOpts{})
			if p, err := v.verify(context.Background(), tok); p != nil || !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("HS256 forgery: principal %v, err %v", p, err)
			}
		})
	}
}

func TestJWTAlgorithmAllowList(t *testing.T) {
	clock := newFakeClock()
	idp := newTestIdP(t, keyRS256(), keyES256())
	cfg := jwtConfig(idp)
	cfg.JWT.Issuers[0].Algorithms = []string{"RS256"}
	a, _ := newAuth(t, cfg, clock)
	tok := mint(t, keyES256(), idp.claims(clock.Now(), nil), mintOpts{})
	if _, err := a.Authenticate(bearer(tok)); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "unexpected signature algorithm") {
		t.Fatalf("ES256 with RS256-only allow-list: err %v", err)
	}
	if _, err := a.Authenticate(bearer(mint(t, keyRS256(), idp.claims(clock.Now(), nil), mintOpts{}))); err != nil {
		t.Fatalf("RS256: %v", err)
	}
}

func TestJWTRequireTyp(t *testing.T) {
	clock := newFakeClock()
	idp := newTestIdP(t, keyRS256())
	cfg := jwtConfig(idp)
	cfg.JWT.Issuers[0].RequireTyp = "at+jwt"
	a, _ := newAuth(t, cfg, clock)
	for _, tc := range []struct {
		typ string
		ok  bool
	}{
		{"at+jwt", true}, {"AT+JWT", true}, {"application/at+jwt", true},
		{"JWT", false}, {"-", false}, {"application/jwt", false},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			_, err := a.Authenticate(bearer(mint(t, keyRS256(), idp.claims(clock.Now(), nil), mintOpts{typ: tc.typ})))
			if (err == nil) != tc.ok {
				t.Fatalf("typ %q: err %v, want ok=%v", tc.typ, err, tc.ok)
			}
		})
	}
}

// TestJWTDefaultTyp: without require_typ, a JWT typed for another purpose
// is refused whatever the issuer (RFC 8725 §3.11); access-token and generic
// types, and no typ at all, are accepted.
func TestJWTDefaultTyp(t *testing.T) {
	clock := newFakeClock()
	idp := newTestIdP(t, keyRS256())
	a, _ := newAuth(t, jwtConfig(idp), clock)
	for _, tc := range []struct {
		name   string
		typ    string
		header map[jose.HeaderKey]any
		ok     bool
	}{
		{name: "at+jwt", typ: "at+jwt", ok: true},
		{name: "AT+JWT", typ: "AT+JWT", ok: true},
		{name: "application/at+jwt", typ: "application/at+jwt", ok: true},
		{name: "JWT", typ: "JWT", ok: true},
		{name: "jwt", typ: "jwt", ok: true},
		{name: "application/jwt", typ: "application/jwt", ok: true},
		{name: "missing", typ: "-", ok: true},
		{name: "logout+jwt", typ: "logout+jwt"},
		{name: "secevent+jwt", typ: "secevent+jwt"},
		{name: "dpop+jwt", typ: "dpop+jwt"},
		{name: "id_token+jwt", typ: "id_token+jwt"},
		{name: "application/logout+jwt", typ: "application/logout+jwt"},
		{name: "empty", typ: "-", header: map[jose.HeaderKey]any{"typ": ""}},
		{name: "at+jwt with suffix", typ: "at+jwt; x=1"},
		{name: "not a string", typ: "-", header: map[jose.HeaderKey]any{"typ": 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			claims := idp.claims(clock.Now(), map[string]any{"jti": tc.name})
			_, err := a.Authenticate(bearer(mint(t, keyRS256(), claims, mintOpts{typ: tc.typ, header: tc.header})))
			if tc.ok && err != nil {
				t.Fatalf("typ %q refused: %v", tc.typ, err)
			}
			if !tc.ok && (!errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "typ")) {
				t.Fatalf("typ %q: err %v, want ErrInvalidToken naming typ", tc.typ, err)
			}
		})
	}
}

func TestJWTWithoutKid(t *testing.T) {
	clock := newFakeClock()
	idp := newTestIdP(t, keyRS256B(), keyRS256())
	a, _ := newAuth(t, jwtConfig(idp), clock)
	if _, err := a.Authenticate(bearer(mint(t, keyRS256(), idp.claims(clock.Now(), nil), mintOpts{noKid: true}))); err != nil {
		t.Fatalf("token without kid: %v", err)
	}
	other := testKey{alg: jose.RS256, priv: mustRSA()}
	if _, err := a.Authenticate(bearer(mint(t, other, idp.claims(clock.Now(), nil), mintOpts{noKid: true}))); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("unpublished key without kid: %v", err)
	}
}

func TestJWKSRotationPicksUpNewKid(t *testing.T) {
	clock := newFakeClock()
	idp := newTestIdP(t, keyRS256())
	a, _ := newAuth(t, jwtConfig(idp), clock)
	if got := idp.jwksHits.Load(); got != 1 {
		t.Fatalf("JWKS fetches after New = %d, want 1 (warm-up)", got)
	}
	// The IdP rotates: key B appears, key A stays for a while.
	idp.setKeys(keyRS256(), keyRS256B())
	clock.Add(DefaultJWKSRefreshMinInterval + time.Second)
	p, err := a.Authenticate(bearer(mint(t, keyRS256B(), idp.claims(clock.Now(), nil), mintOpts{})))
	if err != nil {
		t.Fatalf("token with rotated-in kid: %v", err)
	}
	if p.Subject != "alice-id" || idp.jwksHits.Load() != 2 {
		t.Fatalf("subject %q, fetches %d; want alice-id, 2", p.Subject, idp.jwksHits.Load())
	}
	// Old key still works from the refreshed set without another fetch.
	if _, err := a.Authenticate(bearer(mint(t, keyRS256(), idp.claims(clock.Now(), nil), mintOpts{}))); err != nil {
		t.Fatalf("old key: %v", err)
	}
	if got := idp.jwksHits.Load(); got != 2 {
		t.Fatalf("fetches = %d, want 2", got)
	}
}

func TestUnknownKidRefetchIsRateLimited(t *testing.T) {
	clock := newFakeClock()
	idp := newTestIdP(t, keyRS256())
	a, _ := newAuth(t, jwtConfig(idp), clock)
	ghost := func() string {
		return mint(t, testKey{kid: "ghost", alg: jose.RS256, priv: rsaPrivB()}, idp.claims(clock.Now(), nil), mintOpts{})
	}
	// Within the window after the warm-up fetch: no refetch at all.
	if _, err := a.Authenticate(bearer(ghost())); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("ghost kid accepted: %v", err)
	}
	if got := idp.jwksHits.Load(); got != 1 {
		t.Fatalf("fetches = %d, want 1", got)
	}
	clock.Add(DefaultJWKSRefreshMinInterval)
	if _, err := a.Authenticate(bearer(ghost())); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("ghost kid accepted: %v", err)
	}
	if got := idp.jwksHits.Load(); got != 2 {
		t.Fatalf("fetches = %d, want 2 (one refetch for the unknown kid)", got)
	}
	// A second request inside the window does not refetch.
	clock.Add(DefaultJWKSRefreshMinInterval / 2)
	for range 5 {
		if _, err := a.Authenticate(bearer(ghost())); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("ghost kid accepted: %v", err)
		}
	}
	if got := idp.jwksHits.Load(); got != 2 {
		t.Fatalf("fetches = %d, want still 2", got)
	}
	// After the window the next miss may refetch again.
	clock.Add(DefaultJWKSRefreshMinInterval / 2)
	_, _ = a.Authenticate(bearer(ghost()))
	if got := idp.jwksHits.Load(); got != 3 {
		t.Fatalf("fetches = %d, want 3", got)
	}
}

func TestConcurrentUnknownKidFetchesOnce(t *testing.T) {
	clock := newFakeClock()
	idp := newTestIdP(t, keyRS256())
	a, _ := newAuth(t, jwtConfig(idp), clock)
	idp.mu.Lock()
	idp.jwksDelay = 100 * time.Millisecond
	idp.mu.Unlock()
	idp.setKeys(keyRS256(), keyRS256B())
	clock.Add(DefaultJWKSRefreshMinInterval)
	// Distinct tokens so the verified-token cache cannot serve any of them.
	toks := make([]string, 16)
	for i := range toks {
		toks[i] = mint(t, keyRS256B(), idp.claims(clock.Now(), map[string]any{"jti": i}), mintOpts{})
	}
	var wg sync.WaitGroup
	errs := make([]error, len(toks))
	for i := range toks {
		wg.Go(func() { _, errs[i] = a.Authenticate(bearer(toks[i])) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("goroutine %d: %v", i, err)
		}
	}
	if got := idp.jwksHits.Load(); got != 2 {
		t.Fatalf("fetches = %d, want 2 (warm-up + one shared refetch)", got)
	}
}

func TestJWKSCacheTTLAndStaleKeysOnOutage(t *testing.T) {
	clock := newFakeClock()
	idp := newTestIdP(t, keyRS256())
	a, logs := newAuth(t, jwtConfig(idp), clock)
	clock.Add(DefaultJWKSCacheTTL)
	if _, err := a.Authenticate(bearer(mint(t, keyRS256(), idp.claims(clock.Now(), nil), mintOpts{}))); err != nil {
		t.Fatal(err)
	}
	if got := idp.jwksHits.Load(); got != 2 {
		t.Fatalf("fetches = %d, want 2 (TTL expired)", got)
	}
	// IdP outage after another TTL: the stale keys keep working.
	idp.mu.Lock()
	idp.jwksStatus = 500
	idp.mu.Unlock()
	clock.Add(DefaultJWKSCacheTTL)
	if _, err := a.Authenticate(bearer(mint(t, keyRS256(), idp.claims(clock.Now(), nil), mintOpts{}))); err != nil {
		t.Fatalf("stale keys not used during outage: %v", err)
	}
	if !strings.Contains(logs.String(), "JWKS fetch failed") {
		t.Errorf("outage not logged:\n%s", logs)
	}
}

func TestJWKSUnreachableIsUnavailable(t *testing.T) {
	clock := newFakeClock()
	idp := newTestIdP(t, keyRS256())
	idp.jwksStatus = 503
	a, _ := newAuth(t, jwtConfig(idp), clock)
	_, err := a.Authenticate(bearer(mint(t, keyRS256(), idp.claims(clock.Now(), nil), mintOpts{})))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if err := a.(Readier).Ready(context.Background()); err == nil {
		t.Fatal("Ready = nil before keys were ever loaded")
	}
	idp.mu.Lock()
	idp.jwksStatus = 0
	idp.mu.Unlock()
	// Ready's retry is rate-limited too; after the window it recovers.
	clock.Add(DefaultJWKSRefreshMinInterval)
	if err := a.(Readier).Ready(context.Background()); err != nil {
		t.Fatalf("Ready after recovery: %v", err)
	}
	if _, err := a.Authenticate(bearer(mint(t, keyRS256(), idp.claims(clock.Now(), nil), mintOpts{}))); err != nil {
		t.Fatal(err)
	}
}

// TestJWKSRetryBackoff: after a failed fetch the next attempt waits
// retryMin, doubling per failure up to retryMax; a success restores the
// minInterval limit.
func TestJWKSRetryBackoff(t *testing.T) {
	clock := newFakeClock()
	idp := newTestIdP(t, keyRS256())
	a, _ := newAuth(t, jwtConfig(idp), clock)
	ghost := func() error {
		_, err := a.Authenticate(bearer(mint(t, keyRS256B(), idp.claims(clock.Now(), nil), mintOpts{})))
		return err
	}
	idp.mu.Lock()
	idp.jwksStatus = 500
	idp.mu.Unlock()
	clock.Add(DefaultJWKSRefreshMinInterval) // past the warm-up fetch's limit
	hits := idp.jwksHits.Load()
	if err := ghost(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("unknown kid while the JWKS fails: %v, want ErrUnavailable", err)
	}
	if got := idp.jwksHits.Load() - hits; got != 1 {
		t.Fatalf("fetches = %d, want 1", got)
	}
	for i, wait := range []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 2 * time.Second} {
		hits = idp.jwksHits.Load()
		clock.Add(wait - time.Millisecond)
		if err := ghost(); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("retry %d inside the backoff: %v, want ErrUnavailable", i, err)
		}
		if got := idp.jwksHits.Load() - hits; got != 0 {
			t.Fatalf("retry %d: fetched %d times inside the backoff of %s", i, got, wait)
		}
		clock.Add(time.Millisecond)
		if err := ghost(); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("retry %d: %v, want ErrUnavailable", i, err)
		}
		if got := idp.jwksHits.Load() - hits; got != 1 {
			t.Fatalf("retry %d: fetches = %d after %s, want 1", i, got, wait)
		}
	}
	// The IdP is back with the new key: picked up at the next retry.
	idp.mu.Lock()
	idp.jwksStatus = 0
	idp.mu.Unlock()
	idp.setKeys(keyRS256(), keyRS256B())
	clock.Add(2 * time.Second)
	if err := ghost(); err != nil {
		t.Fatalf("new kid once the IdP is back: %v", err)
	}
	// After a success the minInterval limit is back: an unknown kid is
	// invalid without another fetch.
	hits = idp.jwksHits.Load()
	clock.Add(2 * time.Second)
	_, err := a.Authenticate(bearer(mint(t, testKey{kid: "ghost", alg: jose.RS256, priv: rsaPrivB()}, idp.claims(clock.Now(), nil), mintOpts{})))
	if !errors.Is(err, ErrInvalidToken) || idp.jwksHits.Load() != hits {
		t.Fatalf("unknown kid after a recent success: %v, fetches +%d; want invalid, no fetch", err, idp.jwksHits.Load()-hits)
	}
}

// TestDiscoveryRetryBackoff: a gateway started while discovery fails finds
// the IdP within the short backoff once it answers, not after minInterval.
func TestDiscoveryRetryBackoff(t *testing.T) {
	clock := newFakeClock()
	idp := newTestIdP(t, keyRS256())
	idp.issuer = "https://elsewhere.example.com" // both discovery documents are refused
	a, _ := newAuth(t, jwtConfig(idp), clock)
	tok := mint(t, keyRS256(), idp.claims(clock.Now(), nil), mintOpts{})
	if _, err := a.Authenticate(bearer(tok)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("while discovery fails: %v, want ErrUnavailable", err)
	}
	idp.mu.Lock()
	idp.issuer = ""
	idp.mu.Unlock()
	clock.Add(time.Second)
	if _, err := a.Authenticate(bearer(tok)); err != nil {
		t.Fatalf("1s after the IdP was fixed: %v", err)
	}
}

// TestUnknownKidWhileIdPDown: with the IdP down a token with a new key id
// is answered 503 (it may be valid), never 401; once the IdP is back it is
// accepted within 5 s. Real time and a real server stopped and restarted
// on the same port.
func TestUnknownKidWhileIdPDown(t *testing.T) {
	if testing.Short() {
		t.Skip("takes a few seconds")
	}
	idp := newTestIdP(t, keyRS256())
	var offset atomic.Int64 // lets the test step past the 30 s limit after the warm-up fetch
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	a, err := New(context.Background(), jwtConfig(idp), Options{
		HTTPClient: &http.Client{Timeout: 2 * time.Second},
		Logger:     slog.New(slog.DiscardHandler),
		Now:        now,
	})
	if err != nil {
		t.Fatal(err)
	}
	tok := func(k testKey) string { return mint(t, k, idp.claims(now(), nil), mintOpts{}) }
	if _, err := a.Authenticate(bearer(tok(keyRS256()))); err != nil {
		t.Fatal(err)
	}
	addr := idp.Listener.Addr().String()
	handler := idp.Config.Handler
	idp.Close()
	offset.Store(int64(DefaultJWKSRefreshMinInterval))

	// Down for 3 s, long enough to reach the longest backoff.
	newKid := tok(keyRS256B())
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_, err := a.Authenticate(bearer(newKid))
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("new kid while the IdP is down: %v, want ErrUnavailable", err)
		}
		if st, _, _ := Describe(err); st != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want 503", st)
		}
	}
	// A known key keeps working from the cached set.
	if _, err := a.Authenticate(bearer(tok(keyRS256()))); err != nil {
		t.Fatalf("known kid while the IdP is down: %v", err)
	}

	idp.setKeys(keyRS256(), keyRS256B())
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	back := &httptest.Server{Listener: l, Config: &http.Server{Handler: handler}}
	back.Start()
	t.Cleanup(back.Close)
	start := time.Now()
	for {
		_, err := a.Authenticate(bearer(newKid))
		if err == nil {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("new kid still refused %s after the IdP came back: %v", time.Since(start), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("accepted %s after the IdP came back", time.Since(start).Round(time.Millisecond))
}

func TestVerifiedTokenCache(t *testing.T) {
	clock := newFakeClock()
	idp := newTestIdP(t, keyRS256())
	a, _ := newAuth(t, jwtConfig(idp), clock)
	tok := mint(t, keyRS256(), idp.claims(clock.Now(), map[string]any{"exp": clock.Now().Add(2 * time.Minute).Unix()}), mintOpts{})
	p1, err := a.Authenticate(bearer(tok))
	if err != nil {
		t.Fatal(err)
	}
	p2, err := a.Authenticate(bearer(tok))
	if err != nil {
		t.Fatal(err)
	}
	if p1 != p2 {
		t.Fatal("second verification did not come from the cache")
	}
	// The cache never outlives exp; past exp+leeway the token is refused.
	clock.Add(2*time.Minute + DefaultLeeway + time.Second)
	if p, err := a.Authenticate(bearer(tok)); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired cached token: principal %v, err %v", p, err)
	}
}

func TestVerifiedTokenCacheDisabled(t *testing.T) {
	clock := newFakeClock()
	idp := newTestIdP(t, keyRS256())
	cfg := jwtConfig(idp)
	cfg.CacheSize = -1
	a, _ := newAuth(t, cfg, clock)
	tok := mint(t, keyRS256(), idp.claims(clock.Now(), nil), mintOpts{})
	p1, err1 := a.Authenticate(bearer(tok))
	p2, err2 := a.Authenticate(bearer(tok))
	if err1 != nil || err2 != nil || p1 == p2 {
		t.Fatalf("cache disabled: p1==p2 %v, errs %v %v", p1 == p2, err1, err2)
	}
}

func TestMultipleIssuers(t *testing.T) {
	clock := newFakeClock()
	idp1 := newTestIdP(t, keyRS256())
	idp2 := newTestIdP(t, keyES256())
	cfg := jwtConfig(idp1, idp2)
	cfg.JWT.Issuers[1].Claims = &ClaimsConfig{GroupsClaim: "cognito:groups"}
	a, _ := newAuth(t, cfg, clock)
	now := clock.Now()

	p, err := a.Authenticate(bearer(mint(t, keyRS256(), idp1.claims(now, map[string]any{"groups": []any{"g1"}}), mintOpts{})))
	if err != nil || p.Issuer != idp1.URL || !cmp.Equal(p.Groups, []string{"g1"}) {
		t.Fatalf("issuer 1: %+v, %v", p, err)
	}
	p, err = a.Authenticate(bearer(mint(t, keyES256(), idp2.claims(now, map[string]any{"cognito:groups": []any{"g2"}}), mintOpts{})))
	if err != nil || p.Issuer != idp2.URL || !cmp.Equal(p.Groups, []string{"g2"}) {
		t.Fatalf("issuer 2: %+v, %v", p, err)
	}
	// Claiming issuer 1 but signed with issuer 2's key: issuer 1's keys decide.
	for name, tok := range map[string]string{
		"iss 1, key 2":             mint(t, keyES256(), idp1.claims(now, nil), mintOpts{}),
		"iss 2, key 1":             mint(t, keyRS256(), idp2.claims(now, nil), mintOpts{}),
		"iss 1, key 2 under kid 1": mint(t, testKey{kid: "rsa-a", alg: jose.RS256, priv: rsaPrivB()}, idp1.claims(now, nil), mintOpts{}),
	} {
		if _, err := a.Authenticate(bearer(tok)); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: err %v, want ErrInvalidToken", name, err)
		}
	}
}

func TestNestedGroupClaimEndToEnd(t *testing.T) {
	clock := newFakeClock()
	idp := newTestIdP(t, keyRS256())
	cfg := jwtConfig(idp)
	cfg.Claims.GroupsClaim = "realm_access.roles"
	a, _ := newAuth(t, cfg, clock)
	tok := mint(t, keyRS256(), idp.claims(clock.Now(), map[string]any{
		"realm_access": map[string]any{"roles": []any{"mcp-admins", "offline_access"}},
	}), mintOpts{})
	p, err := a.Authenticate(bearer(tok))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"mcp-admins", "offline_access"}, p.Groups); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
}

func TestDiscovery(t *testing.T) {
	t.Run("RFC 8414 fallback", func(t *testing.T) {
		clock := newFakeClock()
		idp := newTestIdP(t, keyRS256())
		idp.noOIDC = true
		a, _ := newAuth(t, jwtConfig(idp), clock)
		if _, err := a.Authenticate(bearer(mint(t, keyRS256(), idp.claims(clock.Now(), nil), mintOpts{}))); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("issuer mismatch", func(t *testing.T) {
		clock := newFakeClock()
		idp := newTestIdP(t, keyRS256())
		idp.issuer = "https://evil.example.com"
		a, _ := newAuth(t, jwtConfig(idp), clock)
		if err := a.(Readier).Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "names issuer") {
			t.Fatalf("Ready = %v, want issuer mismatch", err)
		}
		if _, err := a.Authenticate(bearer(mint(t, keyRS256(), idp.claims(clock.Now(), nil), mintOpts{}))); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
		if idp.jwksHits.Load() != 0 {
			t.Fatal("JWKS fetched from a mismatched discovery document")
		}
	})
	t.Run("explicit jwks_uri skips discovery", func(t *testing.T) {
		clock := newFakeClock()
		idp := newTestIdP(t, keyRS256())
		cfg := jwtConfig(idp)
		cfg.JWT.Issuers[0].JWKSURI = idp.URL + "/jwks"
		a, _ := newAuth(t, cfg, clock)
		if _, err := a.Authenticate(bearer(mint(t, keyRS256(), idp.claims(clock.Now(), nil), mintOpts{}))); err != nil {
			t.Fatal(err)
		}
		if idp.discHits.Load() != 0 {
			t.Fatalf("discovery fetched %d times", idp.discHits.Load())
		}
	})
}

func TestPrivateIssuer(t *testing.T) {
	idp := newTestIdP(t, keyRS256())
	cfg := jwtConfig(idp)
	cfg.JWT.Issuers[0].AllowPrivateIssuer = false
	_, err := New(context.Background(), cfg, Options{})
	if err == nil || !strings.Contains(err.Error(), "auth.jwt.issuers[0].issuer") || !strings.Contains(err.Error(), "allow_private_issuer") {
		t.Fatalf("private issuer without the flag: err %v", err)
	}

	cfg.JWT.Issuers[0].AllowPrivateIssuer = true
	a, logs := newAuth(t, cfg, newFakeClock())
	if n := strings.Count(logs.String(), "allow_private_issuer is set"); n != 1 {
		t.Fatalf("startup warning logged %d times, want 1:\n%s", n, logs)
	}
	for range 3 {
		_, _ = a.Authenticate(bearer("x.y.z"))
	}
	if n := strings.Count(logs.String(), "allow_private_issuer is set"); n != 1 {
		t.Fatalf("warning repeated per request (%d)", n)
	}
}

func TestTokensNeverLogged(t *testing.T) {
	clock := newFakeClock()
	idp := newTestIdP(t, keyRS256())
	a, logs := newAuth(t, jwtConfig(idp), clock)
	tok := mint(t, keyRS256(), idp.claims(clock.Now(), map[string]any{"aud": "someone-else"}), mintOpts{})
	_, err := a.Authenticate(bearer(tok))
	if err == nil {
		t.Fatal("accepted")
	}
	sig := tok[strings.LastIndex(tok, ".")+1:]
	if strings.Contains(err.Error(), sig) || strings.Contains(logs.String(), sig) {
		t.Fatal("token material in error or log")
	}
}
