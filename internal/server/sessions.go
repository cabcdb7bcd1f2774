package server

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/mcpgate/mcpgate/internal/keys"
)

// Session id bounds.
const (
	// maxBackendSessionID bounds the session id a backend may issue; a
	// longer one is not passed on (UUIDs and 32-byte tokens are far
	// shorter).
	maxBackendSessionID = 512
	// sessionMaxAge ends a session id this long after its initialize; the
	// client then starts a new session (the 404 of MCP streamable HTTP,
	// "Session Management"). The ids carry no last use, so this bounds
	// their whole life.
	sessionMaxAge = 30 * 24 * time.Hour
	// sessionSkew tolerates replicas' clocks apart by this much.
	sessionSkew = time.Minute
)

const (
	sessionTimeSize  = 8
	sessionOwnerSize = sha256.Size
	sessionOverhead  = 2 + 12 + 16 // keys.Sealer: header, nonce, GCM tag
	// maxSessionID bounds the Mcp-Session-Id the gateway issues and
	// accepts: anything longer is not one of ours, refused before decoding.
	maxSessionID = (sessionOverhead+sessionTimeSize+sessionOwnerSize+maxBackendSessionID+2)/3*4 + 4
)

// sessionCodec turns the session id a backend issued into the
// Mcp-Session-Id the client sees, and back.
//
// The client's id is sealed (AES-256-GCM, internal/keys.Sealer) and holds
// the time of the initialize, a hash of the user it was issued to (issuer
// and subject) and the backend's session id; the backend's name is the
// associated data. Any replica holding the key verifies the owner and
// recovers the backend's id without a lookup, so an MCP session continues
// on whichever replica a request reaches (MCP security best practices:
// bind sessions to the user; never authenticate by session). Another
// user's id, one for another backend, a tampered, expired or foreign id
// all get 404, as a backend answers an unknown session, and the client
// starts a new one. The backend's own id never reaches the client.
//
// Nothing is stored, so there is no table to flood (issue 11.4): the
// cost is one AES-GCM open and one SHA-256 per request with a session
// (BenchmarkSessionOpen). A stored binding would cost a store round trip
// per request instead (BenchmarkSessionStoreLookup); see
// docs/architecture.md, "Several replicas".
type sessionCodec struct {
	sealer *keys.Sealer
	ad     []byte // "mcpgate mcp session\x00" + backend name
	now    func() time.Time
}

// sessionState is the outcome of sessionCodec.open.
type sessionState int

const (
	sessionOK       sessionState = iota
	sessionUnknown               // not ours: malformed, tampered, another backend's, expired
	sessionMismatch              // issued to another user
)

// newSessionSealer derives the key that seals session ids from the
// gateway's encryption key (HKDF, RFC 5869), so they never share a key with
// what the store seals; ids sealed under a previous encryption key still
// open (encryption_key_previous), so rotating it ends no session. Without
// an encryption key (modes without the authorization server, when none is
// configured) it draws a random key: session ids then hold on this process
// only and end with it.
func newSessionSealer(encryptionKey string, previous []string) (*keys.Sealer, error) {
	if encryptionKey == "" {
		k := make([]byte, keys.KeySize)
		rand.Read(k)
		return keys.NewSealer(k)
	}
	var derived [][]byte
	for i, b64 := range append([]string{encryptionKey}, previous...) {
		master, err := keys.ParseKey(b64)
		if err != nil {
			if i > 0 {
				return nil, fmt.Errorf("previous key %d: %w", i, err)
			}
			return nil, err
		}
		k, err := hkdf.Key(sha256.New, master, nil, "mcpgate mcp session ids v1", keys.KeySize)
		if err != nil {
			return nil, err
		}
		derived = append(derived, k)
	}
	return keys.NewSealer(derived[0], derived[1:]...)
}

func newSessionCodec(sealer *keys.Sealer, backend string) *sessionCodec {
	return &sessionCodec{sealer: sealer, ad: []byte("mcpgate mcp session\x00" + backend), now: time.Now}
}

// seal returns the client's id for the backend's session id issued to
// userKey. ok is false for an id the backend may not issue (empty, too
// long, or not visible ASCII as MCP requires).
func (c *sessionCodec) seal(userKey, backendID string) (string, bool) {
	if !validSessionID(backendID, maxBackendSessionID) {
		return "", false
	}
	pt := make([]byte, sessionTimeSize, sessionTimeSize+sessionOwnerSize+len(backendID))
	binary.BigEndian.PutUint64(pt, uint64(c.now().Unix()))
	owner := sha256.Sum256([]byte(userKey))
	pt = append(append(pt, owner[:]...), backendID...)
	sealed, err := c.sealer.Seal(pt, c.ad)
	if err != nil {
		return "", false
	}
	return base64.RawURLEncoding.EncodeToString(sealed), true
}

// open verifies the client's id and returns the backend's session id.
func (c *sessionCodec) open(userKey, id string) (string, sessionState) {
	if len(id) > maxSessionID {
		return "", sessionUnknown
	}
	raw, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil {
		return "", sessionUnknown
	}
	pt, err := c.sealer.Open(raw, c.ad)
	if err != nil || len(pt) <= sessionTimeSize+sessionOwnerSize {
		return "", sessionUnknown
	}
	issued := time.Unix(int64(binary.BigEndian.Uint64(pt)), 0)
	if now := c.now(); now.Sub(issued) >= sessionMaxAge || issued.Sub(now) > sessionSkew {
		return "", sessionUnknown
	}
	owner := sha256.Sum256([]byte(userKey))
	if subtle.ConstantTimeCompare(owner[:], pt[sessionTimeSize:sessionTimeSize+sessionOwnerSize]) != 1 {
		return "", sessionMismatch
	}
	return string(pt[sessionTimeSize+sessionOwnerSize:]), sessionOK
}

// validSessionID reports whether id is a non-empty run of visible ASCII
// (0x21–0x7E, MCP streamable HTTP) of at most max bytes.
func validSessionID(id string, max int) bool {
	if id == "" || len(id) > max {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// sessionHeader rewrites Mcp-Session-Id in a backend's answer: the
// backend's id goes out sealed to the request's user, never in clear. It
// lives in the exchange, so no request allocates a hook for it.
type sessionHeader struct {
	codec     *sessionCodec
	userKey   string
	clientID  string // the id the client presented (already sealed)
	backendID string // what it unsealed to
	log       *slog.Logger
}

// rewrite runs on the backend's final status and headers before they are
// sent.
func (s *sessionHeader) rewrite(code int, h http.Header) {
	ids := h.Values("Mcp-Session-Id")
	if len(ids) == 0 {
		return
	}
	switch {
	case len(ids) == 1 && ids[0] == s.backendID && s.backendID != "":
		h["Mcp-Session-Id"] = []string{s.clientID} // the session the client named: its id unchanged
		return
	case len(ids) == 1 && code >= 200 && code < 300:
		if sealed, ok := s.codec.seal(s.userKey, ids[0]); ok {
			h["Mcp-Session-Id"] = []string{sealed}
			return
		}
	}
	// Several ids, an unusable one, or one on an error: the client gets
	// none (its next request with it would fail anyway).
	h.Del("Mcp-Session-Id")
	s.log.Warn("backend issued an unusable session id (several, malformed or on an error); not passed on", "ids", len(ids), "status", code)
}

func (s sessionState) String() string {
	switch s {
	case sessionOK:
		return "ok"
	case sessionMismatch:
		return "mismatch"
	}
	return fmt.Sprintf("unknown(%d)", int(s))
}
