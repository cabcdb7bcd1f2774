package credential

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// assertionSigner signs private_key_jwt client assertions (RFC 7523 §2.2,
// OpenID Connect Core §9).
type assertionSigner struct{ s jose.Signer }

func newAssertionSigner(file, kid string) (*assertionSigner, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var key crypto.Signer
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		key, _ = k.(crypto.Signer)
	} else if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		key = k
	} else if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		key = k
	}
	var alg jose.SignatureAlgorithm
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, errors.New("RSA key shorter than 2048 bits")
		}
		alg = jose.RS256
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("EC key is not on P-256")
		}
		alg = jose.ES256
	default:
		return nil, errors.New("not an RSA or EC P-256 private key (PKCS#8, PKCS#1 or SEC 1 PEM)")
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		return nil, err
	}
	return &assertionSigner{s: s}, nil
}

// sign returns a one-minute assertion for clientID at the token endpoint
// aud, with a fresh jti so that it cannot be replayed.
func (a *assertionSigner) sign(clientID, aud string, now time.Time) (string, error) {
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	c := jwt.Claims{Issuer: clientID, Subject: clientID, Audience: jwt.Audience{aud}, ID: hex.EncodeToString(jti[:]),
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute))}
	tok, err := jwt.Signed(a.s).Claims(c).Serialize()
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return tok, nil
}
