package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"
	"unsafe"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"

	"github.com/mcpgate/mcpgate/internal/store"
)

// Signing algorithms a Manager can generate keys for.
const (
	ES256 = "ES256" // ECDSA P-256: the default (small, fast to sign)
	RS256 = "RS256" // RSA 2048 PKCS#1 v1.5: for verifiers that only do RSA
)

// Defaults for Options.
const (
	DefaultOverlap        = 24 * time.Hour
	DefaultReloadInterval = time.Minute
)

// KeyStore is the part of store.Store the Manager uses.
type KeyStore interface {
	// UpdateSigningKey also replaces the sealed private key when
	// k.Private is set (re-sealing under a new encryption key).
	ListSigningKeys(ctx context.Context) ([]*store.SigningKey, error)
	CreateSigningKey(ctx context.Context, k *store.SigningKey) error
	UpdateSigningKey(ctx context.Context, k *store.SigningKey) error
	DeleteSigningKey(ctx context.Context, id string) error
}

// Options configure a Manager. Zero values mean the defaults.
type Options struct {
	// Algorithm for newly generated keys: ES256 (default) or RS256. Existing
	// keys keep their algorithm until rotated out.
	Algorithm string
	// Overlap is how long a retired key stays in the JWKS after it stopped
	// signing. It must be at least the lifetime of the tokens it signed.
	Overlap time.Duration
	// RotateEvery, when positive, rotates the keys by themselves once the
	// next key has been published that long (see Manager). Zero: only
	// `mcpgate keys rotate` rotates.
	RotateEvery time.Duration
	// ReloadInterval bounds how stale the view of the key table may get when
	// another process (another replica, `mcpgate keys rotate`) rotates keys:
	// SignJWT and JWKS reload from the store when it has passed.
	ReloadInterval time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// Logger receives background reload failures; default slog.Default().
	Logger *slog.Logger
	// OnRotate, when set, is called once the Manager sees that the active
	// key changed: after Rotate, or on a reload that finds a rotation made
	// by another process (`mcpgate keys rotate`, another replica). The
	// gateway records it in the audit log. It runs with the reload lock
	// held and must not call back into the Manager.
	OnRotate func(ctx context.Context, previousKID, activeKID string)
	// OnRevoke, when set, is called for each key the Manager had loaded
	// that left the store before its overlap ended (Revoke here or in
	// another process). The authorization server drops what it verified
	// with it. Same calling rules as OnRotate.
	OnRevoke func(ctx context.Context, kid string)
}

// Locker is a store that can take a lock shared by every process using it
// (PostgreSQL: an advisory lock). With it, automatic rotation happens once
// across replicas; without it, the store is used by one process.
type Locker interface {
	// TryLock takes the named lock if it is free and returns its release.
	TryLock(ctx context.Context, name string) (release func(), ok bool, err error)
}

// rotationLock names the lock automatic rotation runs under.
const rotationLock = "mcpgate: signing key rotation"

// Manager owns the authorization server's signing keys.
//
// The store always holds one "active" key (signs tokens) and one "next"
// key (published but not yet used), so verifiers that cache the JWKS
// already know a key when it becomes active. Rotate promotes next to
// active, retires the old active key (still published for Overlap so
// tokens it signed keep verifying) and generates a new next key. Private
// keys are stored sealed, bound to their kid; a key sealed under a previous
// encryption key is sealed again under the current one when loaded.
//
// With Options.RotateEvery the Manager rotates by itself when the next key
// has been published for RotateEvery: that is the publish-ahead (verifiers
// that cache the JWKS for less than RotateEvery know the key before it
// signs), and Overlap is the retire-after. Every replica checks when it
// reloads (every ReloadInterval); the one that gets the store's lock
// rotates, and the others see the result on their next reload.
type Manager struct {
	st     KeyStore
	sealer *Sealer
	opts   Options

	writeMu sync.Mutex // serializes Reload and Rotate

	mu       sync.RWMutex
	active   *loadedKey
	keys     []*loadedKey          // every published key: active, next, retired
	signers  map[string]*jwsSigner // by typ, for the active key (see signer)
	loadedAt time.Time
}

type loadedKey struct {
	id, alg, status string
	created         time.Time
	retireAt        time.Time
	private         crypto.Signer
	public          jose.JSONWebKey
}

// NewManager loads the signing keys from st, generating the first active
// and next keys on first start.
func NewManager(ctx context.Context, st KeyStore, sealer *Sealer, opts Options) (*Manager, error) {
	if opts.Algorithm == "" {
		opts.Algorithm = ES256
	}
	if opts.Algorithm != ES256 && opts.Algorithm != RS256 {
		return nil, fmt.Errorf("keys: unsupported signing algorithm %q (want ES256 or RS256)", opts.Algorithm)
	}
	if opts.Overlap <= 0 {
		opts.Overlap = DefaultOverlap
	}
	if opts.ReloadInterval <= 0 {
		opts.ReloadInterval = DefaultReloadInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if st == nil || sealer == nil {
		return nil, errors.New("keys: NewManager needs a store and a sealer")
	}
	m := &Manager{st: st, sealer: sealer, opts: opts}
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	stored, err := st.ListSigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("keys: list signing keys: %w", err)
	}
	var haveActive, haveNext bool
	for _, k := range stored {
		haveActive = haveActive || k.Status == store.KeyActive
		haveNext = haveNext || k.Status == store.KeyNext
	}
	if !haveActive {
		if err := m.generate(ctx, store.KeyActive); err != nil {
			return nil, err
		}
	}
	if !haveNext {
		if err := m.generate(ctx, store.KeyNext); err != nil {
			return nil, err
		}
	}
	if err := m.reload(ctx); err != nil {
		return nil, err
	}
	if err := m.autoRotate(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// autoRotate rotates when the next key has been published for RotateEvery.
// Callers hold writeMu. The check is made again under the store's lock, on
// the keys as stored: another replica may have rotated meanwhile.
func (m *Manager) autoRotate(ctx context.Context) error {
	if m.opts.RotateEvery <= 0 || !m.rotationDue(m.loadedNextCreated()) {
		return nil
	}
	if l, ok := m.st.(Locker); ok {
		release, ok, err := l.TryLock(ctx, rotationLock)
		if err != nil {
			return fmt.Errorf("keys: rotation lock: %w", err)
		}
		if !ok {
			return nil // another replica is rotating
		}
		defer release()
	}
	stored, err := m.st.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("keys: list signing keys: %w", err)
	}
	var next time.Time
	for _, k := range stored {
		if k.Status == store.KeyNext {
			next = k.CreatedAt
		}
	}
	if !m.rotationDue(next) {
		return m.reload(ctx) // rotated elsewhere: pick it up now
	}
	m.opts.Logger.Info("keys: rotating the signing keys (keys.rotate_every)", "published_since", next, "rotate_every", m.opts.RotateEvery)
	return m.rotate(ctx)
}

func (m *Manager) rotationDue(nextCreated time.Time) bool {
	return !nextCreated.IsZero() && !m.opts.Now().Before(nextCreated.Add(m.opts.RotateEvery))
}

func (m *Manager) loadedNextCreated() time.Time {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var t time.Time
	for _, k := range m.keys {
		if k.status == store.KeyNext {
			t = k.created
		}
	}
	return t
}

// Reload re-reads the keys from the store, e.g. after `mcpgate keys rotate`
// ran in another process. SignJWT and JWKS also do this by themselves once
// ReloadInterval has passed.
func (m *Manager) Reload(ctx context.Context) error {
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	return m.reload(ctx)
}

// Rotate makes the next key active, retires the active key (published for
// Overlap more), generates a new next key and deletes retired keys whose
// overlap has ended.
func (m *Manager) Rotate(ctx context.Context) error {
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	return m.rotate(ctx)
}

// rotate is Rotate; callers hold writeMu.
func (m *Manager) rotate(ctx context.Context) error {
	now := m.opts.Now()
	stored, err := m.st.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("keys: list signing keys: %w", err)
	}
	var next *store.SigningKey
	for _, k := range stored { // oldest first: the last next key wins
		if k.Status == store.KeyNext {
			next = k
		}
	}
	if next == nil { // e.g. deleted by hand: rotate straight to a fresh key
		if err := m.generate(ctx, store.KeyActive); err != nil {
			return err
		}
	} else {
		next.Status, next.RetireAt = store.KeyActive, time.Time{}
		if err := m.st.UpdateSigningKey(ctx, next); err != nil {
			return fmt.Errorf("keys: activate next key: %w", err)
		}
	}
	for _, k := range stored {
		switch {
		case k.Status == store.KeyActive && (next == nil || k.ID != next.ID):
			k.Status, k.RetireAt = store.KeyRetired, now
			if err := m.st.UpdateSigningKey(ctx, k); err != nil {
				return fmt.Errorf("keys: retire key: %w", err)
			}
		case k.Status == store.KeyRetired && !now.Before(k.RetireAt.Add(m.opts.Overlap)):
			if err := m.st.DeleteSigningKey(ctx, k.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("keys: delete expired key: %w", err)
			}
		}
	}
	if err := m.generate(ctx, store.KeyNext); err != nil {
		return err
	}
	if err := m.reload(ctx); err != nil {
		return err
	}
	m.notify(ctx)
	return nil
}

// notify tells the other processes sharing the store (replicas) to reload
// the keys now rather than within ReloadInterval. A failed notification
// leaves that interval as the bound.
func (m *Manager) notify(ctx context.Context) {
	if c, ok := m.st.(store.Changes); ok {
		if err := c.Notify(ctx, store.Change{Kind: store.ChangeKeys}); err != nil {
			m.opts.Logger.Warn("keys: notifying other replicas of the key change failed; they reload within the reload interval", "err", err)
		}
	}
}

// ErrUnknownKey is returned by Revoke for a kid the store does not hold.
var ErrUnknownKey = errors.New("keys: no such signing key")

// Revoke removes the key kid from the store at once, for a compromised
// key: it is no longer published, and tokens it signed stop verifying
// (in this process now; in others on their next reload). The store always
// keeps an active and a next key: revoking the active key rotates first
// (the published next key starts signing; revoke it too if it may be
// compromised as well), and revoking the next key generates a new one.
// It returns the kid of the active key afterwards.
func (m *Manager) Revoke(ctx context.Context, kid string) (string, error) {
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	stored, err := m.st.ListSigningKeys(ctx)
	if err != nil {
		return "", fmt.Errorf("keys: list signing keys: %w", err)
	}
	var target, next *store.SigningKey
	for _, k := range stored {
		if k.ID == kid {
			target = k
		}
		if k.Status == store.KeyNext && k.ID != kid {
			next = k // oldest first: the last next key wins, as in Rotate
		}
	}
	if target == nil {
		return "", fmt.Errorf("%w: %s", ErrUnknownKey, kid)
	}
	if target.Status == store.KeyActive {
		if next == nil {
			if err := m.generate(ctx, store.KeyActive); err != nil {
				return "", err
			}
		} else {
			next.Status, next.RetireAt = store.KeyActive, time.Time{}
			if err := m.st.UpdateSigningKey(ctx, next); err != nil {
				return "", fmt.Errorf("keys: activate next key: %w", err)
			}
		}
	}
	if err := m.st.DeleteSigningKey(ctx, kid); err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("keys: delete key %s: %w", kid, err)
	}
	if target.Status != store.KeyRetired {
		if err := m.generate(ctx, store.KeyNext); err != nil {
			return "", err
		}
	}
	if err := m.reload(ctx); err != nil {
		return "", err
	}
	m.notify(ctx)
	return m.ActiveKeyID(), nil
}

// generate creates, seals and stores a new key with the given status.
func (m *Manager) generate(ctx context.Context, status string) error {
	var priv crypto.Signer
	var err error
	switch m.opts.Algorithm {
	case RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return fmt.Errorf("keys: generate %s key: %w", m.opts.Algorithm, err)
	}
	jwk := jose.JSONWebKey{Key: priv.Public(), Algorithm: m.opts.Algorithm, Use: "sig"}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return fmt.Errorf("keys: key thumbprint: %w", err)
	}
	// RFC 7638 §1: the JWK thumbprint is a natural, collision-free kid.
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	pub, err := json.Marshal(jwk)
	if err != nil {
		return fmt.Errorf("keys: encode public key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("keys: encode private key: %w", err)
	}
	sealed, err := m.sealer.Seal(der, privateAD(jwk.KeyID))
	if err != nil {
		return err
	}
	k := &store.SigningKey{
		ID:        jwk.KeyID,
		Algorithm: m.opts.Algorithm,
		Private:   sealed,
		Public:    pub,
		Status:    status,
		CreatedAt: m.opts.Now(),
	}
	if err := m.st.CreateSigningKey(ctx, k); err != nil {
		return fmt.Errorf("keys: store new key: %w", err)
	}
	return nil
}

// privateAD binds a sealed private key to its kid, so a sealed key cannot
// be moved under another key's row.
func privateAD(kid string) []byte { return []byte("mcpgate signing key:" + kid) }

// reload rebuilds the in-memory view. Callers hold writeMu.
func (m *Manager) reload(ctx context.Context) error {
	stored, err := m.st.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("keys: list signing keys: %w", err)
	}
	now := m.opts.Now()
	var active *loadedKey
	var loaded []*loadedKey
	for _, k := range stored {
		if k.Status == store.KeyRetired && !now.Before(k.RetireAt.Add(m.opts.Overlap)) {
			continue // no longer published
		}
		lk, err := m.load(ctx, k)
		if err != nil {
			return err
		}
		loaded = append(loaded, lk)
		if k.Status == store.KeyActive {
			active = lk // oldest first: the newest active key signs
		}
	}
	if active == nil {
		return errors.New("keys: the store holds no active signing key (run `mcpgate keys rotate` or restart to generate one)")
	}
	// Publish the active key first, then next, then retired keys newest first.
	rank := map[string]int{store.KeyActive: 0, store.KeyNext: 1, store.KeyRetired: 2}
	sort.SliceStable(loaded, func(i, j int) bool {
		if ri, rj := rank[loaded[i].status], rank[loaded[j].status]; ri != rj {
			return ri < rj
		}
		return loaded[i].retireAt.After(loaded[j].retireAt)
	})
	m.mu.Lock()
	previous := m.active
	if previous == nil || previous.id != active.id {
		m.signers = map[string]*jwsSigner{}
	}
	// Keys that were published and are gone before their overlap ended
	// were revoked.
	var revoked []string
	for _, old := range m.keys {
		if old.status == store.KeyRetired && !now.Before(old.retireAt.Add(m.opts.Overlap)) {
			continue
		}
		if !slices.ContainsFunc(loaded, func(k *loadedKey) bool { return k.id == old.id }) {
			revoked = append(revoked, old.id)
		}
	}
	m.active, m.keys, m.loadedAt = active, loaded, now
	m.mu.Unlock()
	if previous != nil && previous.id != active.id && m.opts.OnRotate != nil {
		m.opts.OnRotate(ctx, previous.id, active.id)
	}
	if m.opts.OnRevoke != nil {
		for _, kid := range revoked {
			m.opts.OnRevoke(ctx, kid)
		}
	}
	return nil
}

// load unseals and parses one stored key, sealing it again under the
// current encryption key if a previous one sealed it. The published JWK is
// derived from the private key, so it always matches what signs. Callers
// hold writeMu.
func (m *Manager) load(ctx context.Context, k *store.SigningKey) (*loadedKey, error) {
	der, stale, err := m.sealer.OpenStale(k.Private, privateAD(k.ID))
	if err != nil {
		return nil, fmt.Errorf("keys: cannot unseal signing key %s (was %s changed without listing the old key in %s?): %w", k.ID, EncryptionKeyEnv, PreviousKeysEnv, err)
	}
	if stale {
		if err := m.reseal(ctx, k, der); err != nil {
			// The key still works under the previous encryption key; only
			// dropping that key must wait.
			m.opts.Logger.Warn("keys: could not re-seal a signing key under the current encryption key", "kid", k.ID, "err", err)
		}
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("keys: parse signing key %s: %w", k.ID, err)
	}
	priv, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("keys: signing key %s has unsupported type %T", k.ID, parsed)
	}
	switch pk := priv.(type) {
	case *ecdsa.PrivateKey:
		if k.Algorithm != ES256 || pk.Curve != elliptic.P256() {
			return nil, fmt.Errorf("keys: signing key %s does not match algorithm %s", k.ID, k.Algorithm)
		}
	case *rsa.PrivateKey:
		if k.Algorithm != RS256 || pk.N.BitLen() < 2048 {
			return nil, fmt.Errorf("keys: signing key %s does not match algorithm %s", k.ID, k.Algorithm)
		}
	default:
		return nil, fmt.Errorf("keys: signing key %s has unsupported type %T", k.ID, parsed)
	}
	return &loadedKey{
		id:       k.ID,
		alg:      k.Algorithm,
		status:   k.Status,
		created:  k.CreatedAt,
		retireAt: k.RetireAt,
		private:  priv,
		public:   jose.JSONWebKey{Key: priv.Public(), KeyID: k.ID, Algorithm: k.Algorithm, Use: "sig"},
	}, nil
}

// reseal stores k's private key sealed under the current encryption key.
func (m *Manager) reseal(ctx context.Context, k *store.SigningKey, der []byte) error {
	sealed, err := m.sealer.Seal(der, privateAD(k.ID))
	if err != nil {
		return err
	}
	up := *k
	up.Private = sealed
	if err := m.st.UpdateSigningKey(ctx, &up); err != nil {
		return err
	}
	m.opts.Logger.Info("keys: signing key re-sealed under the current encryption key", "kid", k.ID)
	return nil
}

// maybeReload refreshes the view once ReloadInterval has passed. Only one
// caller reloads; the others go on with the current keys, which stay valid
// to sign with: a key rotated out elsewhere is still published for Overlap.
func (m *Manager) maybeReload(ctx context.Context) {
	m.mu.RLock()
	stale := m.opts.Now().Sub(m.loadedAt) >= m.opts.ReloadInterval
	m.mu.RUnlock()
	if !stale || !m.writeMu.TryLock() {
		return
	}
	defer m.writeMu.Unlock()
	if err := m.reload(ctx); err != nil {
		m.opts.Logger.Warn("keys: reloading signing keys failed; using the loaded keys", "err", err)
		return
	}
	if err := m.autoRotate(ctx); err != nil {
		m.opts.Logger.Warn("keys: automatic rotation failed; will retry at the next reload", "err", err)
	}
}

// ActiveKeyID returns the kid of the key that signs new tokens.
func (m *Manager) ActiveKeyID() string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.active.id
}

// jwsSigner signs compact JWS (RFC 7515 §7.1) with one key under one
// protected header, whose encoding is computed once: signing a token is
// then one base64 pass over the claims, one hash and one signature.
type jwsSigner struct {
	kid    string // the key it signs with: the cache entry is valid while it is active
	prefix []byte // base64url(protected header) + "."
	key    crypto.Signer
	sigLen int // bytes of the raw signature (RFC 7518 §3.4: R||S for ES256)
}

// jwsHeader is the protected header (RFC 7515 §4.1). Its fields are in the
// order go-jose wrote them (sorted), so the tokens are byte-for-byte those
// of earlier versions but for the signature.
type jwsHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid,omitempty"`
	Typ string `json:"typ,omitempty"`
}

func newJWSSigner(k *loadedKey, typ string) (*jwsSigner, error) {
	h, err := json.Marshal(jwsHeader{Alg: k.alg, Kid: k.id, Typ: typ})
	if err != nil {
		return nil, fmt.Errorf("keys: encode header: %w", err)
	}
	s := &jwsSigner{kid: k.id, key: k.private}
	s.prefix = append(base64.RawURLEncoding.AppendEncode(nil, h), '.')
	switch pk := k.private.(type) {
	case *ecdsa.PrivateKey:
		s.sigLen = 64
	case *rsa.PrivateKey:
		s.sigLen = pk.Size()
	default:
		return nil, fmt.Errorf("keys: signing key %s has unsupported type %T", k.id, k.private)
	}
	return s, nil
}

// sign returns header.payload.signature for payload, the JSON claims.
func (s *jwsSigner) sign(payload []byte) (string, error) {
	b64 := base64.RawURLEncoding
	buf := make([]byte, 0, len(s.prefix)+b64.EncodedLen(len(payload))+1+b64.EncodedLen(s.sigLen))
	buf = append(buf, s.prefix...)
	buf = b64.AppendEncode(buf, payload)
	digest := sha256.Sum256(buf)
	var sig []byte
	switch pk := s.key.(type) {
	case *ecdsa.PrivateKey:
		var raw [64]byte
		if err := signES256(pk, digest[:], &raw); err != nil {
			return "", err
		}
		sig = raw[:]
	case *rsa.PrivateKey:
		var err error
		if sig, err = rsa.SignPKCS1v15(rand.Reader, pk, crypto.SHA256, digest[:]); err != nil {
			return "", fmt.Errorf("keys: sign: %w", err)
		}
	}
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, sig)
	// buf is never written again: the token is its bytes (as
	// strings.Builder.String does), not a copy of them.
	return unsafe.String(unsafe.SliceData(buf), len(buf)), nil
}

// signES256 signs a SHA-256 digest with a P-256 key into raw, as RFC 7518
// §3.4 wants it: R and S as 32-byte big-endian integers, concatenated (read
// from the DER without the big.Ints ecdsa.Sign would make).
//
// The nonce is RFC 6979's (deterministic: an HMAC-DRBG over SHA-256 keyed
// by the private key and the digest) rather than crypto/ecdsa's hedged one
// (the same DRBG over SHA-512, seeded with 32 more bytes from the system's
// DRBG), which costs about a quarter more per signature. The hedge defends
// against fault attacks that need the same message signed twice; no two
// tokens here have the same claims (each has its own random jti and its
// own iat), so the nonces are as distinct as hedged ones. A nonce never
// depends on a random source that could fail or repeat.
func signES256(pk *ecdsa.PrivateKey, digest []byte, raw *[64]byte) error {
	der, err := pk.Sign(nil, digest, crypto.SHA256) // nil rand: RFC 6979
	if err != nil {
		return fmt.Errorf("keys: sign: %w", err)
	}
	if !rawECDSASignature(der, raw[:]) {
		return errors.New("keys: sign: malformed ECDSA signature")
	}
	return nil
}

// rawECDSASignature writes the r and s of a DER ECDSA-Sig-Value (RFC 3279
// §2.2.3: SEQUENCE { INTEGER r, INTEGER s }) into the halves of raw, as
// fixed-size big-endian integers. It reports false for anything else,
// including an integer wider than a half.
func rawECDSASignature(der, raw []byte) bool {
	var seq cryptobyte.String
	in := cryptobyte.String(der)
	if !in.ReadASN1(&seq, asn1.SEQUENCE) || !in.Empty() {
		return false
	}
	half := len(raw) / 2
	for i := range 2 {
		var n cryptobyte.String
		if !seq.ReadASN1(&n, asn1.INTEGER) || len(n) == 0 || n[0]&0x80 != 0 {
			return false // absent, empty or negative
		}
		for len(n) > 1 && n[0] == 0 {
			n = n[1:] // the sign byte of a high-bit integer
		}
		if len(n) > half {
			return false
		}
		copy(raw[i*half+half-len(n):(i+1)*half], n)
	}
	return seq.Empty()
}

// signer returns the cached signer of the active key for typ, building it
// on first use. The cache holds one entry per typ the code signs with (a
// constant of the caller, never client input) and is dropped when the
// active key changes (reload); an entry of another key is never used.
func (m *Manager) signer(ctx context.Context, typ string) (*jwsSigner, error) {
	m.maybeReload(ctx)
	m.mu.RLock()
	s, ok := m.signers[typ]
	ok = ok && s.kid == m.active.id
	m.mu.RUnlock()
	if ok {
		return s, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.signers[typ]; ok && s.kid == m.active.id {
		return s, nil
	}
	s, err := newJWSSigner(m.active, typ)
	if err != nil {
		return nil, err
	}
	if m.signers == nil {
		m.signers = map[string]*jwsSigner{}
	}
	m.signers[typ] = s
	return s, nil
}

// SignJWT returns the compact JWS of the JSON encoding of claims, signed
// with the active key, with "kid" and "typ" (omitted when empty) in the
// protected header. Claims that are a JSONAppender are encoded by their
// AppendJSON, without reflection.
func (m *Manager) SignJWT(ctx context.Context, typ string, claims any) (string, error) {
	s, err := m.signer(ctx, typ)
	if err != nil {
		return "", err
	}
	if a, ok := claims.(JSONAppender); ok {
		bp := payloadPool.Get().(*[]byte)
		payload := a.AppendJSON((*bp)[:0])
		tok, err := s.sign(payload)
		if cap(payload) <= maxPooledPayload {
			*bp = payload
			payloadPool.Put(bp)
		}
		return tok, err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("keys: encode claims: %w", err)
	}
	return s.sign(payload)
}

// JSONAppender is claims that append their own JSON encoding: exactly what
// encoding/json would write for them (compact), so a token does not depend
// on which path encoded it.
type JSONAppender interface {
	AppendJSON(b []byte) []byte
}

// payloadPool holds the claims buffers of JSONAppender claims (the token
// is a copy: sign base64-encodes the payload into its own buffer).
var payloadPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledPayload keeps one unusually large claims set from pinning its
// buffer in the pool.
const maxPooledPayload = 16 << 10

// JWKS returns the public keys to publish (RFC 7517 §5): the active key,
// the next key, and retired keys within their overlap, in that order.
func (m *Manager) JWKS(ctx context.Context) (*jose.JSONWebKeySet, error) {
	m.maybeReload(ctx)
	now := m.opts.Now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	set := &jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(m.keys))}
	for _, k := range m.keys {
		if k.status == store.KeyRetired && !now.Before(k.retireAt.Add(m.opts.Overlap)) {
			continue
		}
		set.Keys = append(set.Keys, k.public)
	}
	return set, nil
}
