// Package idptest is a fake OpenID Connect provider for tests: discovery,
// an authorization endpoint that approves at once, a token endpoint with
// PKCE and rotating refresh tokens, userinfo and JWKS.
package idptest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Provider is a fake OIDC provider. Configure the exported fields before
// the flow starts; they are read under the provider's lock.
type Provider struct {
	Server       *httptest.Server
	ClientID     string
	ClientSecret string

	mu sync.Mutex
	// Subject of the user that "logs in".
	Subject string
	// IDTokenClaims, UserInfoClaims and AccessTokenClaims are merged into
	// the respective token or response.
	IDTokenClaims     map[string]any
	UserInfoClaims    map[string]any
	AccessTokenClaims map[string]any
	// AccessTokenTTL is the expires_in of issued access tokens.
	AccessTokenTTL time.Duration
	// RotateRefresh makes each refresh return a new refresh token and
	// invalidate the old one.
	RotateRefresh bool
	// DenyLogin makes /authorize redirect back with error=access_denied.
	DenyLogin bool
	// BadNonce makes the id_token carry a wrong nonce.
	BadNonce bool
	// NoRefreshToken makes the code exchange issue no refresh token.
	NoRefreshToken bool
	// NoRefreshIDToken leaves the id_token out of refresh responses.
	NoRefreshIDToken bool
	// UserInfoDown makes the userinfo endpoint answer 503.
	UserInfoDown bool
	// DiscoveryDown makes the discovery document answer 503 (an IdP that
	// is down); Discoveries counts requests for it.
	DiscoveryDown bool
	Discoveries   int

	key       *rsa.PrivateKey
	codes     map[string]codeInfo
	refreshes map[string]bool // valid refresh tokens
	// Counters for assertions.
	Refreshes      int
	AuthorizeQuery url.Values
	accessTokens   map[string]bool
}

type codeInfo struct {
	nonce, challenge, redirectURI string
}

// New starts a provider on 127.0.0.1 and registers its shutdown with t.
func New(t testing.TB) *Provider {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &Provider{
		ClientID:       "mcpgate",
		ClientSecret:   "upstream-secret",
		Subject:        "user-1",
		AccessTokenTTL: time.Hour,
		RotateRefresh:  true,
		key:            key,
		codes:          map[string]codeInfo{},
		refreshes:      map[string]bool{},
		accessTokens:   map[string]bool{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	mux.HandleFunc("GET /userinfo", p.userinfo)
	mux.HandleFunc("GET /jwks", p.jwks)
	p.Server = httptest.NewServer(mux)
	t.Cleanup(p.Server.Close)
	return p
}

// Issuer is the provider's issuer URL.
func (p *Provider) Issuer() string { return p.Server.URL }

// Set runs f under the provider's lock (to change fields mid-test).
func (p *Provider) Set(f func(p *Provider)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

// ValidAccessToken reports whether tok is an access token this provider issued.
func (p *Provider) ValidAccessToken(tok string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accessTokens[tok]
}

// RevokeRefreshTokens invalidates every refresh token issued so far (the
// user's upstream session ended).
func (p *Provider) RevokeRefreshTokens() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.refreshes)
}

// RefreshCount returns how many refresh grants succeeded.
func (p *Provider) RefreshCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.Refreshes
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (p *Provider) discovery(w http.ResponseWriter, _ *http.Request) {
	p.mu.Lock()
	p.Discoveries++
	down := p.DiscoveryDown
	p.mu.Unlock()
	if down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	iss := p.Issuer()
	writeJSON(w, 200, map[string]any{
		"issuer":                                iss,
		"authorization_endpoint":                iss + "/authorize",
		"token_endpoint":                        iss + "/token",
		"userinfo_endpoint":                     iss + "/userinfo",
		"jwks_uri":                              iss + "/jwks",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
}

func (p *Provider) jwks(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, 200, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
}

func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.AuthorizeQuery = q
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || q.Get("client_id") != p.ClientID {
		http.Error(w, "bad client", 400)
		return
	}
	out := url.Values{"state": {q.Get("state")}}
	if p.DenyLogin {
		out.Set("error", "access_denied")
	} else {
		code := rand.Text()
		p.codes[code] = codeInfo{nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), redirectURI: q.Get("redirect_uri")}
		out.Set("code", code)
	}
	redirect.RawQuery = out.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

func (p *Provider) sign(claims map[string]any) string {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: p.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		panic(err)
	}
	s, err := jwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		panic(err)
	}
	return s
}

func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, 400, map[string]string{"error": "invalid_request"})
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != p.ClientID || secret != p.ClientSecret {
		writeJSON(w, 401, map[string]string{"error": "invalid_client"})
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	nonce := ""
	refresh := ""
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		ci, ok := p.codes[r.PostForm.Get("code")]
		delete(p.codes, r.PostForm.Get("code"))
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if !ok || base64.RawURLEncoding.EncodeToString(sum[:]) != ci.challenge || r.PostForm.Get("redirect_uri") != ci.redirectURI {
			writeJSON(w, 400, map[string]string{"error": "invalid_grant"})
			return
		}
		nonce = ci.nonce
		if !p.NoRefreshToken {
			refresh = rand.Text()
			p.refreshes[refresh] = true
		}
	case "refresh_token":
		old := r.PostForm.Get("refresh_token")
		if !p.refreshes[old] {
			writeJSON(w, 400, map[string]string{"error": "invalid_grant"})
			return
		}
		p.Refreshes++
		if p.RotateRefresh {
			delete(p.refreshes, old)
			refresh = rand.Text()
			p.refreshes[refresh] = true
		}
	default:
		writeJSON(w, 400, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	now := time.Now()
	at := map[string]any{"iss": p.Issuer(), "sub": p.Subject, "aud": p.ClientID, "iat": now.Unix(), "exp": now.Add(p.AccessTokenTTL).Unix(), "jti": rand.Text()}
	maps.Copy(at, p.AccessTokenClaims)
	access := p.sign(at)
	p.accessTokens[access] = true
	if p.BadNonce {
		nonce = "wrong"
	}
	idc := map[string]any{"iss": p.Issuer(), "sub": p.Subject, "aud": p.ClientID, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if nonce != "" {
		idc["nonce"] = nonce
	}
	maps.Copy(idc, p.IDTokenClaims)
	resp := map[string]any{
		"access_token": access,
		"token_type":   "Bearer",
		"expires_in":   int(p.AccessTokenTTL.Seconds()),
	}
	if r.PostForm.Get("grant_type") == "authorization_code" || !p.NoRefreshIDToken {
		resp["id_token"] = p.sign(idc)
	}
	if refresh != "" {
		resp["refresh_token"] = refresh
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, 200, resp)
}

func (p *Provider) userinfo(w http.ResponseWriter, r *http.Request) {
	tok, ok := bearer(r)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.UserInfoDown {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if !ok || !p.accessTokens[tok] {
		w.WriteHeader(401)
		return
	}
	out := map[string]any{"sub": p.Subject}
	maps.Copy(out, p.UserInfoClaims)
	writeJSON(w, 200, out)
}

func bearer(r *http.Request) (string, bool) {
	const prefix = "Bearer "
	h := r.Header.Get("Authorization")
	if len(h) <= len(prefix) || h[:len(prefix)] != prefix {
		return "", false
	}
	return h[len(prefix):], true
}
