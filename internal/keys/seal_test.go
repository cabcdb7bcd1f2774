package keys_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/keys"
)

func randomKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, keys.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func newSealer(t testing.TB, key []byte, previous ...[]byte) *keys.Sealer {
	t.Helper()
	s, err := keys.NewSealer(key, previous...)
	if err != nil {
		t.Fatalf("NewSealer: %v", err)
	}
	return s
}

func TestSealRoundTrip(t *testing.T) {
	s := newSealer(t, randomKey(t))
	for _, pt := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("upstream-refresh-token"), 500)} {
		sealed, err := s.Seal(pt, []byte("grant:g1"))
		if err != nil {
			t.Fatalf("Seal: %v", err)
		}
		if len(pt) > 4 && bytes.Contains(sealed, pt[:5]) {
			t.Errorf("sealed value contains plaintext")
		}
		got, err := s.Open(sealed, []byte("grant:g1"))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if !bytes.Equal(got, pt) {
			t.Errorf("Open = %q, want %q", got, pt)
		}
	}
}

func TestSealUsesFreshNonces(t *testing.T) {
	s := newSealer(t, randomKey(t))
	a, _ := s.Seal([]byte("same"), nil)
	b, _ := s.Seal([]byte("same"), nil)
	if bytes.Equal(a, b) {
		t.Error("two seals of the same plaintext are identical: nonce reused")
	}
}

func TestOpenRejects(t *testing.T) {
	key := randomKey(t)
	s := newSealer(t, key)
	ad := []byte("grant:g1")
	sealed, err := s.Seal([]byte("secret"), ad)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x01
		return b
	}
	for _, tc := range []struct {
		name   string
		sealer *keys.Sealer
		sealed []byte
		ad     []byte
	}{
		{"tampered ciphertext", s, flip(len(sealed) - 20), ad},
		{"tampered tag", s, flip(len(sealed) - 1), ad},
		{"tampered nonce", s, flip(5), ad},
		{"tampered version", s, flip(0), ad},
		{"tampered key id", s, flip(1), ad},
		{"wrong associated data", s, sealed, []byte("grant:g2")},
		{"missing associated data", s, sealed, nil},
		{"wrong key", newSealer(t, randomKey(t)), sealed, ad},
		{"truncated", s, sealed[:len(sealed)-1], ad},
		{"header only", s, sealed[:2], ad},
		{"empty", s, nil, ad},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.sealer.Open(tc.sealed, tc.ad)
			if !errors.Is(err, keys.ErrOpen) {
				t.Errorf("Open error = %v, want ErrOpen", err)
			}
			if got != nil {
				t.Errorf("Open returned plaintext %q on failure", got)
			}
		})
	}
}

func TestSealerKeyRotation(t *testing.T) {
	oldKey, newKey := randomKey(t), randomKey(t)
	old := newSealer(t, oldKey)
	sealed, err := old.Seal([]byte("secret"), nil)
	if err != nil {
		t.Fatal(err)
	}
	rotated := newSealer(t, newKey, oldKey)
	if got, err := rotated.Open(sealed, nil); err != nil || string(got) != "secret" {
		t.Errorf("Open of a value sealed with the previous key = %q, %v", got, err)
	}
	// New values are sealed with the new key: the old sealer cannot open them.
	fresh, _ := rotated.Seal([]byte("new"), nil)
	if _, err := old.Open(fresh, nil); !errors.Is(err, keys.ErrOpen) {
		t.Errorf("old key opened a value sealed after rotation: %v", err)
	}
}

func TestNewSealerKeyLength(t *testing.T) {
	for _, n := range []int{0, 16, 24, 31, 33, 64} {
		if _, err := keys.NewSealer(make([]byte, n)); err == nil {
			t.Errorf("NewSealer accepted a %d-byte key", n)
		}
	}
	if _, err := keys.NewSealer(randomKey(t), make([]byte, 16)); err == nil {
		t.Error("NewSealer accepted a 16-byte previous key")
	}
}

func TestParseKey(t *testing.T) {
	key := randomKey(t)
	key[0], key[1] = 0xfb, 0xff // force '+', '/' or '-', '_' into the encodings
	for _, enc := range []string{
		base64.StdEncoding.EncodeToString(key),
		base64.RawStdEncoding.EncodeToString(key),
		base64.URLEncoding.EncodeToString(key),
		base64.RawURLEncoding.EncodeToString(key),
		"  " + base64.StdEncoding.EncodeToString(key) + "\n",
	} {
		got, err := keys.ParseKey(enc)
		if err != nil {
			t.Errorf("ParseKey(%q): %v", enc, err)
			continue
		}
		if !bytes.Equal(got, key) {
			t.Errorf("ParseKey(%q) decoded a different key", enc)
		}
	}
	secret := "not base64 at all but a s3cret passphrase!"
	for _, bad := range []string{
		"",
		"   ",
		base64.StdEncoding.EncodeToString(make([]byte, 16)),
		base64.StdEncoding.EncodeToString(make([]byte, 33)),
		secret,
	} {
		_, err := keys.ParseKey(bad)
		if err == nil {
			t.Errorf("ParseKey(%q) succeeded", bad)
			continue
		}
		if bad == secret && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("ParseKey error leaks the input: %v", err)
		}
	}
}
