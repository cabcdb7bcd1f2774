package authn

import (
	"context"
	"crypto/elliptic"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// localFixture is a LocalIssuer whose key set the test controls.
type localFixture struct {
	clock *fakeClock
	key   testKey
	keys  atomic.Pointer[[]jose.JSONWebKey]
	loads atomic.Int32
	// during, if set, runs inside a key load (before it returns).
	during func()
	v      *Verifier
}

func newLocalFixture(t *testing.T) *localFixture {
	f := &localFixture{clock: newFakeClock(), key: keyES256()}
	f.setKeys(f.key)
	f.v = NewLocalVerifier(LocalIssuer{
		Issuer: "https://as.example.com", Audience: []string{aud},
		Algorithms: []jose.SignatureAlgorithm{jose.ES256}, RequireTyp: "at+jwt",
		Required: []string{"tsid", "client_id"},
		Keys: func(context.Context) ([]jose.JSONWebKey, error) {
			f.loads.Add(1)
			ks := *f.keys.Load()
			if f.during != nil {
				f.during()
			}
			return ks, nil
		},
		KeysTTL: time.Minute, IATLeeway: time.Minute, CacheSize: 100, Now: f.clock.Now,
	})
	return f
}

func (f *localFixture) setKeys(ks ...testKey) {
	var pubs []jose.JSONWebKey
	for _, k := range ks {
		pubs = append(pubs, k.public())
	}
	f.keys.Store(&pubs)
}

func (f *localFixture) token(t *testing.T, extra map[string]any) string {
	now := f.clock.Now()
	c := map[string]any{"iss": "https://as.example.com", "aud": aud, "sub": "alice", "tsid": "g1", "client_id": "c1",
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return mint(t, f.key, c, mintOpts{typ: "at+jwt"})
}

func TestLocalVerifier(t *testing.T) {
	f := newLocalFixture(t)
	ctx := context.Background()
	p, err := f.v.Verify(ctx, f.token(t, map[string]any{"email": "a@example.com", "jti": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	// Username is the username claim alone: no fallback to email or sub.
	if p.Username != "" || p.SessionID != "g1" || p.ClientID != "c1" || p.Issuer != "https://as.example.com" {
		t.Errorf("principal = %+v", p)
	}
	p, _ = f.v.Verify(ctx, f.token(t, map[string]any{"preferred_username": "al", "jti": "2"}))
	if p == nil || p.Username != "al" {
		t.Errorf("username = %+v", p)
	}
	for name, extra := range map[string]map[string]any{
		"no tsid":      {"tsid": nil},
		"no client_id": {"client_id": nil},
		"iat 2m ahead": {"iat": f.clock.Now().Add(2 * time.Minute).Unix()},
		"other aud":    {"aud": "https://other.example.com"},
	} {
		if _, err := f.v.Verify(ctx, f.token(t, extra)); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := f.v.Verify(ctx, mint(t, f.key, map[string]any{"iss": "https://as.example.com", "aud": aud, "sub": "a", "tsid": "g", "client_id": "c",
		"exp": f.clock.Now().Add(time.Minute).Unix()}, mintOpts{typ: "JWT"})); err == nil || !strings.Contains(err.Error(), "typ") {
		t.Errorf("typ JWT: %v", err)
	}
}

// TestLocalVerifierCacheBoundedByKeysTTL: a verified token is served from
// the cache no longer than KeysTTL, so a key that left the set stops
// verifying within it; Forget makes that immediate.
func TestLocalVerifierCacheBoundedByKeysTTL(t *testing.T) {
	f := newLocalFixture(t)
	ctx := context.Background()
	tok := f.token(t, nil)
	if _, err := f.v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	f.setKeys(keyRS256()) // the signing key leaves the set
	if _, err := f.v.Verify(ctx, tok); err != nil {
		t.Fatalf("cached within KeysTTL: %v", err)
	}
	f.clock.Add(time.Minute)
	if _, err := f.v.Verify(ctx, tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("after KeysTTL: %v, want invalid", err)
	}

	f = newLocalFixture(t)
	tok = f.token(t, nil)
	if _, err := f.v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	f.setKeys(keyRS256())
	f.v.Forget()
	if _, err := f.v.Verify(ctx, tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("after Forget: %v, want invalid", err)
	}
}

// TestLocalVerifierForgetDiscardsFetchUnderWay: a key set read before
// Forget is not installed after it.
func TestLocalVerifierForgetDiscardsFetchUnderWay(t *testing.T) {
	f := newLocalFixture(t)
	ctx := context.Background()
	tok := f.token(t, nil)
	f.during = func() {
		f.during = nil
		f.setKeys(keyRS256())
		f.v.Forget() // the revocation lands while the old set is in flight
	}
	if _, err := f.v.Verify(ctx, tok); err == nil {
		t.Fatal("token verified with a key set read before Forget")
	}
	if _, err := f.v.Verify(ctx, tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("next verification: %v, want invalid (key gone)", err)
	}
}

func TestSignedClaimsIgnoresLifetime(t *testing.T) {
	f := newLocalFixture(t)
	tok := f.token(t, map[string]any{"exp": f.clock.Now().Add(-time.Hour).Unix()})
	if _, err := f.v.Verify(context.Background(), tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("expired token verified: %v", err)
	}
	c, err := f.v.SignedClaims(context.Background(), tok)
	if err != nil || c["tsid"] != "g1" {
		t.Fatalf("SignedClaims = %v, %v", c, err)
	}
	// Same kid, another key: refused.
	other := testKey{kid: f.key.kid, alg: jose.ES256, priv: mustEC(elliptic.P256())}
	forged := mint(t, other, map[string]any{"iss": "https://as.example.com", "tsid": "g1"}, mintOpts{typ: "at+jwt"})
	if _, err := f.v.SignedClaims(context.Background(), forged); err == nil {
		t.Fatal("SignedClaims accepted a token signed by another key")
	}
}
