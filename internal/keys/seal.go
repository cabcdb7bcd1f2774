// Package keys holds mcpgate's key material: the AES-256-GCM Sealer that
// encrypts secrets at rest (upstream tokens, PKCE verifiers, private
// signing keys) and the Manager of the authorization server's JWT signing
// keys (generation, rotation, JWKS).
package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// EncryptionKeyEnv is the environment variable holding the base64 sealing key.
const EncryptionKeyEnv = "MCPGATE_ENCRYPTION_KEY"

// PreviousKeysEnv holds earlier sealing keys, comma-separated: values
// sealed under them still open, and are sealed again under the current key
// on use or by `mcpgate keys reseal`.
const PreviousKeysEnv = "MCPGATE_ENCRYPTION_KEY_PREVIOUS"

// KeySize is the sealing key length: AES-256.
const KeySize = 32

const (
	formatV1   = 1
	nonceSize  = 12 // the standard GCM nonce (96 bits)
	headerSize = 2  // format version, key id
)

// ErrOpen is returned for any sealed value that cannot be opened: wrong
// key, wrong associated data, truncated or tampered. It deliberately does
// not say which.
var ErrOpen = errors.New("keys: cannot open sealed value")

// Sealer encrypts small secrets with AES-256-GCM.
//
// Sealed format: version(1) || key id(1) || nonce(12) || ciphertext+tag.
// The key id is derived from the key, so a value sealed under a previous
// key can still be opened after rotation when that key is passed to
// NewSealer as a previous key. The header is authenticated together with
// the caller's associated data, which should bind the value to where it is
// stored (e.g. "upstream-tokens:" + grant ID) so sealed blobs cannot be
// swapped between rows.
type Sealer struct {
	id   byte                   // key id of the sealing key
	aead cipher.AEAD            // the sealing key
	byID map[byte][]cipher.AEAD // all keys that can open, by key id (ids may collide)
}

// NewSealer returns a Sealer that seals with key and opens values sealed
// with key or any of previous. Every key must be exactly 32 bytes.
func NewSealer(key []byte, previous ...[]byte) (*Sealer, error) {
	s := &Sealer{byID: map[byte][]cipher.AEAD{}}
	for i, k := range append([][]byte{key}, previous...) {
		if len(k) != KeySize {
			return nil, fmt.Errorf("keys: sealing key must be %d bytes, got %d", KeySize, len(k))
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		id := keyID(k)
		s.byID[id] = append(s.byID[id], aead)
		if i == 0 {
			s.id, s.aead = id, aead
		}
	}
	return s, nil
}

// keyID is one byte of a hash of the key: enough to pick among a handful
// of keys (Open tries every key with that id) while revealing nothing
// useful about them.
func keyID(key []byte) byte {
	h := sha256.Sum256(append([]byte("mcpgate sealing key id\x00"), key...))
	return h[0]
}

// ParseKey decodes a base64 key (standard or URL alphabet, padded or not),
// as given in MCPGATE_ENCRYPTION_KEY, and checks its length. Generate one
// with `openssl rand -base64 32`.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("keys: %s is empty", EncryptionKeyEnv)
	}
	s = strings.TrimRight(s, "=")
	var (
		key []byte
		err error
	)
	if strings.ContainsAny(s, "-_") {
		key, err = base64.RawURLEncoding.DecodeString(s)
	} else {
		key, err = base64.RawStdEncoding.DecodeString(s)
	}
	if err != nil {
		// The decoder's error quotes an offset only, never the key.
		return nil, fmt.Errorf("keys: encryption key is not valid base64: %w", err)
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("keys: encryption key must decode to %d bytes, got %d (generate one with `openssl rand -base64 32`)", KeySize, len(key))
	}
	return key, nil
}

// Seal encrypts plaintext bound to associatedData with a fresh random nonce.
func (s *Sealer) Seal(plaintext, associatedData []byte) ([]byte, error) {
	out := make([]byte, headerSize+nonceSize, headerSize+nonceSize+len(plaintext)+s.aead.Overhead())
	out[0], out[1] = formatV1, s.id
	if _, err := rand.Read(out[headerSize:]); err != nil {
		return nil, fmt.Errorf("keys: read random nonce: %w", err)
	}
	return s.aead.Seal(out, out[headerSize:], plaintext, adWithHeader(out[:headerSize], associatedData)), nil
}

// Open decrypts a value produced by Seal with the same associatedData.
func (s *Sealer) Open(sealed, associatedData []byte) ([]byte, error) {
	pt, _, err := s.OpenStale(sealed, associatedData)
	return pt, err
}

// OpenStale is Open that also reports whether the value was sealed under a
// previous key, so the caller can seal it again under the current one
// (`mcpgate keys reseal`, or on use) before the previous key is dropped.
func (s *Sealer) OpenStale(sealed, associatedData []byte) (plaintext []byte, stale bool, err error) {
	if len(sealed) < headerSize+nonceSize+s.aead.Overhead() || sealed[0] != formatV1 {
		return nil, false, ErrOpen
	}
	nonce, ct := sealed[headerSize:headerSize+nonceSize], sealed[headerSize+nonceSize:]
	ad := adWithHeader(sealed[:headerSize], associatedData)
	for _, aead := range s.byID[sealed[1]] {
		if pt, err := aead.Open(nil, nonce, ct, ad); err == nil {
			return pt, aead != s.aead, nil
		}
	}
	return nil, false, ErrOpen
}

// NewSealerFromBase64 parses the current key and the previous ones (as in
// MCPGATE_ENCRYPTION_KEY and MCPGATE_ENCRYPTION_KEY_PREVIOUS) and returns
// their Sealer.
func NewSealerFromBase64(current string, previous []string) (*Sealer, error) {
	key, err := ParseKey(current)
	if err != nil {
		return nil, err
	}
	var prev [][]byte
	for i, p := range previous {
		k, err := ParseKey(p)
		if err != nil {
			return nil, fmt.Errorf("previous key %d: %w", i+1, err)
		}
		prev = append(prev, k)
	}
	return NewSealer(key, prev...)
}

func adWithHeader(header, ad []byte) []byte {
	return append(append(make([]byte, 0, len(header)+len(ad)), header...), ad...)
}
