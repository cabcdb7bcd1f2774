package authn

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	cfTeam = "myteam.cloudflareaccess.com"
	cfAUD  = "4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2"
)

func cfSetup(t *testing.T) (Authenticator, *testIdP, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	idp := newTestIdP(t, keyRS256(), keyES256())
	cfg := Config{Mode: ModeTrustedHeader, TrustedHeader: TrustedHeaderConfig{
		TeamDomain: cfTeam, Audience: cfAUD, CertsURL: idp.URL + "/jwks",
	}}
	a, _ := newAuth(t, cfg, clock)
	return a, idp, clock
}

func cfClaims(now time.Time, extra map[string]any) map[string]any {
	c := map[string]any{
		"iss": "https://" + cfTeam, "aud": []any{cfAUD}, "sub": "7335d417-61da-459d-899c-0a01c76a2b94",
		"email": "dana@example.com", "type": "app", "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(24 * time.Hour).Unix(),
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

func cfRequest(assertion string, headers map[string]string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	if assertion != "" {
		r.Header.Set("Cf-Access-Jwt-Assertion", assertion)
	}
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	return r
}

func TestCloudflareValid(t *testing.T) {
	a, _, clock := cfSetup(t)
	tok := mint(t, keyRS256(), cfClaims(clock.Now(), nil), mintOpts{})
	// A spoofed plain email header must not change who the caller is.
	p, err := a.Authenticate(cfRequest(tok, map[string]string{"Cf-Access-Authenticated-User-Email": "ceo@example.com"}))
	if err != nil {
		t.Fatal(err)
	}
	if p.Email != "dana@example.com" || p.Subject != "7335d417-61da-459d-899c-0a01c76a2b94" || p.Issuer != "https://"+cfTeam {
		t.Fatalf("principal %+v", p)
	}
	if p.Key() != "https://"+cfTeam+"#7335d417-61da-459d-899c-0a01c76a2b94" {
		t.Errorf("identity key %q must be issuer+sub, not email", p.Key())
	}
}

func TestCloudflareServiceToken(t *testing.T) {
	a, _, clock := cfSetup(t)
	tok := mint(t, keyRS256(), cfClaims(clock.Now(), map[string]any{"sub": "", "email": nil, "common_name": "abc123.access"}), mintOpts{})
	p, err := a.Authenticate(cfRequest(tok, nil))
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject != "abc123.access" || p.ClientID != "abc123.access" {
		t.Fatalf("service token principal %+v", p)
	}
}

func TestCloudflareRejects(t *testing.T) {
	a, _, clock := cfSetup(t)
	now := clock.Now()
	tests := []struct {
		name    string
		req     *http.Request
		wantErr error
	}{
		{"no assertion", cfRequest("", nil), ErrNoToken},
		{"plain email header only", cfRequest("", map[string]string{"Cf-Access-Authenticated-User-Email": "ceo@example.com"}), ErrNoToken},
		{"assertion sent as bearer token", bearer(mint(t, keyRS256(), cfClaims(now, nil), mintOpts{})), ErrNoToken},
		{"wrong audience", cfRequest(mint(t, keyRS256(), cfClaims(now, map[string]any{"aud": []any{"other-app"}}), mintOpts{}), nil), ErrInvalidToken},
		{"wrong issuer", cfRequest(mint(t, keyRS256(), cfClaims(now, map[string]any{"iss": "https://otherteam.cloudflareaccess.com"}), mintOpts{}), nil), ErrInvalidToken},
		{"expired", cfRequest(mint(t, keyRS256(), cfClaims(now, map[string]any{"exp": now.Add(-time.Hour).Unix()}), mintOpts{}), nil), ErrInvalidToken},
		{"not RS256", cfRequest(mint(t, keyES256(), cfClaims(now, nil), mintOpts{}), nil), ErrInvalidToken},
		{"unknown signing key", cfRequest(mint(t, testKey{kid: "rsa-a", alg: jose.RS256, priv: rsaPrivB()}, cfClaims(now, nil), mintOpts{}), nil), ErrInvalidToken},
		{"garbage", cfRequest("garbage", nil), ErrInvalidToken},
		{"no sub and no common_name", cfRequest(mint(t, keyRS256(), cfClaims(now, map[string]any{"sub": ""}), mintOpts{}), nil), ErrInvalidToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.Authenticate(tc.req)
			if p != nil || !errors.Is(err, tc.wantErr) {
				t.Fatalf("principal %v, err %v; want %v", p, err, tc.wantErr)
			}
		})
	}
	r := cfRequest(mint(t, keyRS256(), cfClaims(now, nil), mintOpts{}), nil)
	r.Header.Add("Cf-Access-Jwt-Assertion", "second")
	if _, err := a.Authenticate(r); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("two assertion headers: %v", err)
	}
}

func TestCloudflareDefaultCertsURLAndReady(t *testing.T) {
	cfg := Config{Mode: ModeTrustedHeader, TrustedHeader: TrustedHeaderConfig{TeamDomain: "https://" + cfTeam + "/", Audience: cfAUD}}
	var asked string
	client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		asked = r.URL.String()
		return nil, errors.New("offline")
	})}
	ctx := context.Background()
	a, err := New(ctx, cfg, Options{HTTPClient: client, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if asked != "https://"+cfTeam+"/cdn-cgi/access/certs" {
		t.Errorf("certs fetched from %q", asked)
	}
	if err := a.(Readier).Ready(ctx); err == nil {
		t.Error("Ready while certs unreachable")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
