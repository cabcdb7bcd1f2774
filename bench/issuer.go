package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// issuer is a local OIDC issuer (discovery + JWKS) whose ES256 key signs the
// access tokens the load generator presents to mcpgate.
type issuer struct {
	url    string
	srv    *http.Server
	signer jose.Signer
}

func startIssuer() (*issuer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	jwk := jose.JSONWebKey{Key: key, KeyID: "bench-1", Algorithm: string(jose.ES256), Use: "sig"}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jwk}, (&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	is := &issuer{url: "http://" + ln.Addr().String(), signer: signer}
	jwks := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk.Public()}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"issuer": is.url, "jwks_uri": is.url + "/jwks"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(jwks)
	})
	is.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go is.srv.Serve(ln)
	return is, nil
}

func (is *issuer) Close() { is.srv.Close() }

// token mints a one-hour access token for user n, audience aud, in the
// groups that policy rule 18 of 20 maps (plus one that maps to nothing).
func (is *issuer) token(n int, aud ...string) (string, error) {
	now := time.Now()
	std := jwt.Claims{
		Issuer:   is.url,
		Subject:  fmt.Sprintf("bench-user-%03d", n),
		Audience: jwt.Audience(aud),
		Expiry:   jwt.NewNumericDate(now.Add(time.Hour)),
		IssuedAt: jwt.NewNumericDate(now),
		ID:       fmt.Sprintf("jti-%03d", n),
	}
	extra := map[string]any{
		"groups": []string{"staff", callerGroup},
		"scope":  "mcp:tools",
		"email":  fmt.Sprintf("bench-user-%03d@example.com", n),
	}
	return jwt.Signed(is.signer).Claims(std).Claims(extra).Serialize()
}
