package keys

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpgate/mcpgate/internal/store/memory"
)

func testManager(t testing.TB, st KeyStore, alg string, sealKey []byte) *Manager {
	t.Helper()
	sealer, err := NewSealer(sealKey)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(context.Background(), st, sealer, Options{Algorithm: alg})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func testSealKey(t testing.TB) []byte {
	t.Helper()
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return key
}

// The tokens are those go-jose wrote before the signer was cached: the same
// protected header and payload segments (RS256, deterministic: the same
// token), and a signature go-jose verifies.
func TestSignJWTMatchesGoJose(t *testing.T) {
	claims := map[string]any{"sub": "alice", "aud": "https://mcp.example/mcp", "scope": "a<b&c"}
	for _, alg := range []string{ES256, RS256} {
		for _, typ := range []string{"at+jwt", ""} {
			t.Run(alg+"/"+typ, func(t *testing.T) {
				m := testManager(t, memory.New(), alg, testSealKey(t))
				got, err := m.SignJWT(context.Background(), typ, claims)
				if err != nil {
					t.Fatal(err)
				}
				opts := &jose.SignerOptions{}
				if typ != "" {
					opts = opts.WithType(jose.ContentType(typ))
				}
				js, err := jose.NewSigner(jose.SigningKey{
					Algorithm: jose.SignatureAlgorithm(alg),
					Key:       jose.JSONWebKey{Key: m.active.private, KeyID: m.active.id, Algorithm: alg},
				}, opts)
				if err != nil {
					t.Fatal(err)
				}
				payload := `{"aud":"https://mcp.example/mcp","scope":"a\u003cb\u0026c","sub":"alice"}`
				obj, err := js.Sign([]byte(payload))
				if err != nil {
					t.Fatal(err)
				}
				want, _ := obj.CompactSerialize()
				g, w := strings.Split(got, "."), strings.Split(want, ".")
				if len(g) != 3 || g[0] != w[0] || g[1] != w[1] {
					t.Errorf("token = %s\nwant header and payload of %s", got, want)
				}
				if alg == RS256 && got != want {
					t.Errorf("RS256 token = %s, want %s", got, want)
				}
				jws, err := jose.ParseSigned(got, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := jws.Verify(m.active.public); err != nil {
					t.Errorf("go-jose does not verify the token: %v", err)
				}
			})
		}
	}
}

// The signer cache never signs with a key that is no longer active: not
// after Rotate, not after a reload that finds another process's rotation,
// not after the active key is revoked, and not from an entry left for
// another key. It holds one entry per typ.
func TestSignerCacheFollowsActiveKey(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	sealKey := testSealKey(t)
	m := testManager(t, st, ES256, sealKey)
	other := testManager(t, st, ES256, sealKey) // another replica, same store
	kidOf := func() string {
		t.Helper()
		tok, err := m.SignJWT(ctx, "at+jwt", map[string]string{"sub": "a"})
		if err != nil {
			t.Fatal(err)
		}
		jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jws.Verify(m.active.public); err != nil {
			t.Fatalf("token does not verify with the active key: %v", err)
		}
		return jws.Signatures[0].Protected.KeyID
	}
	steps := []struct {
		name   string
		change func() error
	}{
		{"first use", func() error { return nil }},
		{"Rotate", func() error { return m.Rotate(ctx) }},
		{"rotated by another process, then Reload", func() error {
			if err := other.Rotate(ctx); err != nil {
				return err
			}
			return m.Reload(ctx)
		}},
		{"active key revoked", func() error { _, err := m.Revoke(ctx, m.ActiveKeyID()); return err }},
		{"stale entry of another key", func() error {
			var next *loadedKey
			for _, k := range m.keys {
				if k.id != m.active.id {
					next = k
				}
			}
			s, err := newJWSSigner(next, "at+jwt")
			m.signers["at+jwt"] = s
			return err
		}},
	}
	for _, st := range steps {
		if err := st.change(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got, want := kidOf(), m.ActiveKeyID(); got != want {
			t.Errorf("%s: signed with %q, want the active key %q", st.name, got, want)
		}
	}
	if _, err := m.SignJWT(ctx, "JWT", map[string]string{}); err != nil {
		t.Fatal(err)
	}
	if n := len(m.signers); n != 2 {
		t.Errorf("signer cache holds %d entries after two typs, want 2", n)
	}
}

// BenchmarkSignJWT signs access-token claims with the Manager, and with the
// go-jose signer it used before (cached, as it was) for the ratio.
func BenchmarkSignJWT(b *testing.B) {
	claims := struct {
		Iss, Sub, Aud, ClientID, Scope, JTI, TSID string
		Iat, Exp                                  int64
	}{"https://gate.example", "https://idp.example#alice", "https://mcp.example/mcp", "c1", "tools:read tools:call", "abc", "g1", 1767319200, 1767322800}
	for _, alg := range []string{ES256, RS256} {
		m := testManager(b, memory.New(), alg, testSealKey(b))
		ctx := context.Background()
		b.Run(alg+"/manager", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.SignJWT(ctx, "at+jwt", claims); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(alg+"/go-jose", func(b *testing.B) {
			js, err := jose.NewSigner(jose.SigningKey{
				Algorithm: jose.SignatureAlgorithm(alg),
				Key:       jose.JSONWebKey{Key: m.active.private, KeyID: m.active.id, Algorithm: alg},
			}, (&jose.SignerOptions{}).WithType("at+jwt"))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				payload, _ := json.Marshal(claims)
				obj, err := js.Sign(payload)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := obj.CompactSerialize(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// appenderClaims are claims that encode themselves (JSONAppender).
type appenderClaims struct{ raw string }

func (c appenderClaims) AppendJSON(b []byte) []byte { return append(b, c.raw...) }

// Claims that append their own JSON are signed over exactly those bytes,
// as json.Marshal's encoding of the same claims is: the same header and
// payload segments, a signature that verifies, and the pooled buffer does
// not leak one token's claims into the next.
func TestSignJWTAppender(t *testing.T) {
	ctx := context.Background()
	for _, alg := range []string{ES256, RS256} {
		t.Run(alg, func(t *testing.T) {
			m := testManager(t, memory.New(), alg, testSealKey(t))
			for _, raw := range []string{`{"scope":"a\u003cb","sub":"alice"}`, `{"sub":"b"}`, `{"sub":"` + strings.Repeat("x", 20<<10) + `"}`, `{}`} {
				var viaMarshal map[string]any
				if err := json.Unmarshal([]byte(raw), &viaMarshal); err != nil {
					t.Fatal(err)
				}
				got, err := m.SignJWT(ctx, "at+jwt", appenderClaims{raw})
				if err != nil {
					t.Fatal(err)
				}
				want, err := m.SignJWT(ctx, "at+jwt", viaMarshal)
				if err != nil {
					t.Fatal(err)
				}
				g, w := strings.Split(got, "."), strings.Split(want, ".")
				if len(g) != 3 || g[0] != w[0] || g[1] != w[1] {
					t.Fatalf("appender token %.80s… differs from the marshalled one %.80s…", got, want)
				}
				jws, err := jose.ParseSigned(got, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
				if err != nil {
					t.Fatal(err)
				}
				payload, err := jws.Verify(m.active.public)
				if err != nil {
					t.Fatalf("go-jose does not verify the token: %v", err)
				}
				if string(payload) != raw {
					t.Fatalf("payload = %.80s…, want %.80s…", payload, raw)
				}
			}
		})
	}
}

// rawECDSASignature takes exactly a DER SEQUENCE of two non-negative
// INTEGERs no wider than half the output, and right-aligns them.
func TestRawECDSASignature(t *testing.T) {
	seq := func(body ...byte) []byte { return append([]byte{0x30, byte(len(body))}, body...) }
	cases := []struct {
		name string
		der  []byte
		want string // hex of the 8-byte output; "" = refused
	}{
		{"small", seq(0x02, 0x01, 0x05, 0x02, 0x02, 0x01, 0x02), "0000000500000102"},
		{"sign byte", seq(0x02, 0x05, 0x00, 0x80, 0x00, 0x00, 0x01, 0x02, 0x01, 0x07), "8000000100000007"},
		{"full width", seq(0x02, 0x04, 0x7f, 0x01, 0x02, 0x03, 0x02, 0x01, 0x00), "7f01020300000000"},
		{"too wide", seq(0x02, 0x05, 0x01, 0x00, 0x00, 0x00, 0x00, 0x02, 0x01, 0x01), ""},
		{"negative", seq(0x02, 0x01, 0x80, 0x02, 0x01, 0x01), ""},
		{"empty integer", seq(0x02, 0x00, 0x02, 0x01, 0x01), ""},
		{"one integer", seq(0x02, 0x01, 0x01), ""},
		{"three integers", seq(0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01), ""},
		{"trailing bytes", append(seq(0x02, 0x01, 0x01, 0x02, 0x01, 0x01), 0x00), ""},
		{"not a sequence", []byte{0x31, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01}, ""},
		{"empty", nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var raw [8]byte
			ok := rawECDSASignature(c.der, raw[:])
			if got := fmt.Sprintf("%x", raw); ok != (c.want != "") || (ok && got != c.want) {
				t.Errorf("rawECDSASignature = %v %s, want %q", ok, got, c.want)
			}
		})
	}
}

// ES256 signatures use RFC 6979's deterministic nonce: the test vector of
// RFC 6979 A.2.5 (P-256, SHA-256, message "sample") gives its r and s, a
// token signed twice is the same token, and another token (another jti)
// gets another signature. The hedged nonce of crypto/ecdsa fails all three.
func TestSignES256RFC6979(t *testing.T) {
	d, _ := hex.DecodeString("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721")
	pk, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("sample"))
	var raw [64]byte
	if err := signES256(pk, digest[:], &raw); err != nil {
		t.Fatal(err)
	}
	const want = "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716" +
		"F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8"
	if got := strings.ToUpper(hex.EncodeToString(raw[:])); got != want {
		t.Errorf("r||s = %s, want RFC 6979 A.2.5's %s", got, want)
	}
	if !ecdsa.Verify(&pk.PublicKey, digest[:], new(big.Int).SetBytes(raw[:32]), new(big.Int).SetBytes(raw[32:])) {
		t.Error("the signature does not verify")
	}

	m := testManager(t, memory.New(), ES256, testSealKey(t))
	ctx := context.Background()
	sign := func(jti string) string {
		tok, err := m.SignJWT(ctx, "at+jwt", map[string]any{"sub": "alice", "jti": jti})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	a1, a2, b := sign("a"), sign("a"), sign("b")
	if a1 != a2 {
		t.Errorf("the same claims signed twice: %s and %s", a1, a2)
	}
	if strings.Split(a1, ".")[2] == strings.Split(b, ".")[2] {
		t.Error("two tokens with different claims have the same signature")
	}
}
