package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

func TestTokenHash(t *testing.T) {
	var secret [32]byte
	for i := range secret {
		secret[i] = byte(i)
	}
	const at = 1_780_000_000_123_456 // 2026, unix microseconds
	tok := OrderedToken(at, &secret)
	if len(tok) != 54 || strings.ContainsAny(tok, "+/=") {
		t.Fatalf("OrderedToken = %q, want 54 base64url characters", tok)
	}
	h := TokenHash(tok)
	if h != "000652e68bb52240"+HashKey(tok) {
		t.Errorf("TokenHash(ordered) = %s, want the time prefix + HashKey", h)
	}
	if got, ok := TokenTime(h); !ok || got != at {
		t.Errorf("TokenTime = %d %v, want %d", got, ok, at)
	}
	// Every other string hashes as before.
	for name, s := range map[string]string{
		"old format":            "GxT_WWxTyfnw4ghxl3FNHBK1Xpu03hnVRyGN6tSThes",
		"empty":                 "",
		"53 chars":              tok[:53],
		"55 chars":              tok + "A",
		"not base64url":         tok[:53] + "+",
		"padding":               tok[:52] + "==",
		"non-canonical last":    tok[:53] + "B", // nonzero trailing bits (strict decoding)
		"80 hex (a hash given)": h,
	} {
		if got := TokenHash(s); got != HashKey(s) {
			t.Errorf("%s: TokenHash(%q) = %s, want HashKey", name, s, got)
		}
		if _, ok := TokenTime(HashKey(s)); ok {
			t.Errorf("%s: TokenTime of a 64-hex hash ok", name)
		}
	}
	if _, ok := TokenTime(strings.Repeat("z", 80)); ok {
		t.Error("TokenTime of non-hex ok")
	}
	// Later tokens sort later.
	if later := TokenHash(OrderedToken(at+1, &secret)); later <= h {
		t.Errorf("hash of a later token %s sorts before %s", later, h)
	}
}

func TestKeyBytes(t *testing.T) {
	sha := func(s string) []byte { sum := sha256.Sum256([]byte(s)); return sum[:] }
	var secret [32]byte
	early, late := TokenHash(OrderedToken(1000, &secret)), TokenHash(OrderedToken(1001, &secret))
	for _, h := range []string{early, late} {
		want, _ := hex.DecodeString(h)
		if got := KeyBytes(h); len(got) != 40 || !bytes.Equal(got, want) {
			t.Errorf("KeyBytes(%s) = %x, want its 40 bytes", h, got)
		}
	}
	if bytes.Compare(KeyBytes(early), KeyBytes(late)) >= 0 {
		t.Error("keys of tokens are not in issue order")
	}
	for name, s := range map[string]string{
		"uppercase":   strings.ToUpper(early),
		"79 chars":    early[:79],
		"81 chars":    early + "0",
		"non-hex":     early[:79] + "g",
		"64-hex hash": HashKey("x"),
		"client id":   "https://client.example.com/cimd.json",
		"empty":       "",
	} {
		if got := KeyBytes(s); !bytes.Equal(got, sha(s)) {
			t.Errorf("%s: KeyBytes(%q) = %x, want its SHA-256", name, s, got)
		}
	}
}

func BenchmarkTokenHash(b *testing.B) {
	var secret [32]byte
	tok := OrderedToken(1_780_000_000_123_456, &secret)
	b.ReportAllocs()
	for b.Loop() {
		_ = KeyBytes(TokenHash(tok))
	}
}

func TestOrderedIDAndGrantKey(t *testing.T) {
	var r [16]byte
	for i := range r {
		r[i] = byte(0xa0 + i)
	}
	const at = 1_780_000_000_123_456
	id := OrderedID(at, &r)
	if id != "000652e68bb52240a0a1a2a3a4a5a6a7a8a9aaabacadaeaf" || len(id) != OrderedIDLen {
		t.Fatalf("OrderedID = %q", id)
	}
	if later := OrderedID(at+1, &[16]byte{}); later <= id {
		t.Errorf("a later ID %s sorts before %s", later, id)
	}
	k := GrantKeyBytes(id)
	if len(k) != 24 || hex.EncodeToString(k) != id {
		t.Errorf("GrantKeyBytes(ordered) = %x, want its 24 bytes", k)
	}
	// Every other ID is stored as KeyBytes stores it.
	for name, s := range map[string]string{
		"base32 (newID)":  "GH7K2MZQ4WXYLA5T3RBN6PVCDE",
		"uppercase hex":   strings.ToUpper(id),
		"47 chars":        id[:47],
		"49 chars":        id + "0",
		"not hex":         id[:47] + "g",
		"80 hex":          TokenHash(OrderedToken(at, &[32]byte{})),
		"empty":           "",
		"test-style name": "grant-1",
	} {
		if got, want := GrantKeyBytes(s), KeyBytes(s); !bytes.Equal(got, want) {
			t.Errorf("%s: GrantKeyBytes(%q) = %x, want KeyBytes %x", name, s, got, want)
		}
	}
}
