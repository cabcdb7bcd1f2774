package store

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
)

// Time-ordered codes and refresh tokens. A token is the unpadded base64url
// (RFC 4648 §5) of 8 bytes of issue time (unix microseconds, big-endian)
// followed by 32 secret bytes: 54 characters. Its stored hash starts with
// the hex of the time prefix, so SQL backends (which store an 80-hex key as
// its 40 bytes) insert new tokens at the right edge of the key index, and
// tokens issued together share index pages. The prefix reveals only the
// issue time; the secret part keeps 256 bits.
const (
	tokenTimeLen   = 8
	tokenSecretLen = 32
	orderedLen     = 54 // base64url length of tokenTimeLen+tokenSecretLen bytes
	// OrderedHashLen is the length of TokenHash of a time-ordered token.
	OrderedHashLen = 2*tokenTimeLen + 2*32
)

var tokenEncoding = base64.RawURLEncoding.Strict()

// OrderedToken returns the time-ordered token of secret issued at micros
// (unix microseconds).
func OrderedToken(micros int64, secret *[tokenSecretLen]byte) string {
	var b [tokenTimeLen + tokenSecretLen]byte
	binary.BigEndian.PutUint64(b[:tokenTimeLen], uint64(micros))
	copy(b[tokenTimeLen:], secret[:])
	return tokenEncoding.EncodeToString(b[:])
}

// TokenHash returns the stored hash of a code or refresh token: for a
// time-ordered token (see OrderedToken), the hex of its time prefix followed
// by HashKey(tok) (80 lowercase hex characters); for any other string,
// HashKey(tok), so tokens issued before the ordered format keep their hash.
// The hash covers the whole token, so a chosen prefix gains nothing.
func TokenHash(tok string) string {
	var b [tokenTimeLen + tokenSecretLen]byte
	if len(tok) != orderedLen {
		return HashKey(tok)
	}
	if n, err := tokenEncoding.Decode(b[:], []byte(tok)); err != nil || n != len(b) {
		return HashKey(tok)
	}
	var h [OrderedHashLen]byte // built in place: one allocation per hash
	hex.Encode(h[:2*tokenTimeLen], b[:tokenTimeLen])
	sum := sha256.Sum256([]byte(tok))
	hex.Encode(h[2*tokenTimeLen:], sum[:])
	return string(h[:])
}

// TokenTime returns the issue time (unix microseconds) a TokenHash of a
// time-ordered token carries; ok is false for any other hash.
func TokenTime(hash string) (micros int64, ok bool) {
	if len(hash) != OrderedHashLen {
		return 0, false
	}
	var b [tokenTimeLen]byte
	if _, err := hex.Decode(b[:], []byte(hash[:2*tokenTimeLen])); err != nil {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(b[:])), true
}

// KeyBytes is how SQL backends store a caller-supplied key. A string of
// exactly OrderedHashLen lowercase hex characters (TokenHash of a
// time-ordered token) is stored as the 40 bytes it encodes, so the index
// orders it by its time prefix; every other string is stored as its
// SHA-256 (32 bytes), so long identifiers never become index keys. The map
// is injective (up to SHA-256 collisions): lowercase hex decoding is
// injective on strings of one length, the two families have different
// byte lengths (40 and 32), so they never collide, and uppercase or any
// other near miss falls to SHA-256.
func KeyBytes(s string) []byte {
	if len(s) == OrderedHashLen && lowerHex(s) {
		b := make([]byte, OrderedHashLen/2)
		if _, err := hex.Decode(b, []byte(s)); err == nil {
			return b
		}
	}
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Time-ordered grant IDs. A grant's ID (tsid) is made when its code is
// stored and becomes the grants' key at the exchange; a random ID put every
// new grant at a random leaf of the key index (a leaf written per grant,
// a cold one at 100k grants). An ordered ID is the lowercase hex of 8 bytes
// of issue time (unix microseconds, big-endian) followed by the hex of 16
// random bytes (128 bits): 48 characters.
const (
	idRandomLen = 16
	// OrderedIDLen is the length of an OrderedID.
	OrderedIDLen = 2*tokenTimeLen + 2*idRandomLen
)

// OrderedID returns the time-ordered grant ID of random issued at micros
// (unix microseconds).
func OrderedID(micros int64, random *[idRandomLen]byte) string {
	var b [tokenTimeLen + idRandomLen]byte
	binary.BigEndian.PutUint64(b[:tokenTimeLen], uint64(micros))
	copy(b[tokenTimeLen:], random[:])
	return hex.EncodeToString(b[:])
}

// GrantKeyBytes is how SQL backends store a grant ID: an OrderedID as the
// 24 bytes it encodes, so grants issued together share the key index's
// right edge; any other ID as KeyBytes stores it. The families cannot
// collide (24 bytes against 32 and 40), and no grant was stored the first
// way before ordered IDs existed (earlier IDs are uppercase base32), so
// grants of either kind are found again. Only grant IDs take this map: a
// client ID or another key of 48 hex characters keeps its SHA-256.
func GrantKeyBytes(id string) []byte {
	if len(id) == OrderedIDLen && lowerHex(id) {
		b := make([]byte, OrderedIDLen/2)
		if _, err := hex.Decode(b, []byte(id)); err == nil {
			return b
		}
	}
	return KeyBytes(id)
}
