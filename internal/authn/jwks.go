package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpgate/mcpgate/internal/flight"
)

const minRSABits = 2048

// errRefreshLimited: a refetch was skipped because the last attempt
// succeeded less than minInterval ago, so the keys are current.
var errRefreshLimited = errors.New("JWKS refetch rate-limited")

// Retries after a failed fetch are spaced by a short backoff instead of
// minInterval, so keys are picked up within seconds of the IdP coming back
// while a down IdP still sees at most one attempt per retryMax.
const (
	retryMin = 250 * time.Millisecond
	retryMax = 2 * time.Second
)

// retryWait is how long to wait after the last attempt before the next one,
// given the number of consecutive failures: limit after a success, else
// retryMin doubling per failure up to retryMax (never more than limit).
func retryWait(failures int, limit time.Duration) time.Duration {
	if failures == 0 {
		return limit
	}
	d := retryMin << min(failures-1, 8)
	return min(d, retryMax, limit)
}

// RetryBackoff is the wait before the next attempt to reach an IdP after
// failures consecutive failed ones: 250ms doubling up to 2s. The
// authorization server's upstream connector retries discovery with it too.
func RetryBackoff(failures int) time.Duration { return retryWait(max(failures, 1), retryMax) }

// keySet caches one issuer's signing keys (RFC 7517). Keys are refetched when
// older than ttl, or when a token names an unknown kid, but never more than
// once per minInterval after a success (retryWait after a failure);
// concurrent misses share one fetch.
type keySet struct {
	issuer  string                                    // for logs
	jwksURL func(ctx context.Context) (string, error) // fixed or discovered
	// source, if set, yields the keys instead of a fetch of jwksURL (an
	// issuer whose key set is in process: the built-in authorization server).
	source      func(ctx context.Context) ([]jose.JSONWebKey, error)
	client      *http.Client
	log         *slog.Logger
	now         func() time.Time
	ttl         time.Duration
	minInterval time.Duration

	mu          sync.Mutex
	keys        []jose.JSONWebKey // public signing keys only
	loadedAt    time.Time         // zero until the first successful fetch
	lastAttempt time.Time
	lastErr     error
	failures    int    // consecutive failed fetches
	gen         uint64 // bumped by forget: a fetch begun before it is discarded
	flight      flight.Group[struct{}]

	ready atomic.Bool
}

// get returns the keys usable for a token with this kid and alg (all
// compatible keys when kid is empty). It loads the set if it was never
// loaded or is older than ttl; a stale set is still used if the refetch
// fails. ErrUnavailable means no keys were ever loaded.
func (ks *keySet) get(ctx context.Context, kid string, alg jose.SignatureAlgorithm) ([]jose.JSONWebKey, error) {
	ks.mu.Lock()
	stale := ks.loadedAt.IsZero() || ks.now().Sub(ks.loadedAt) >= ks.ttl
	ks.mu.Unlock()
	if stale {
		_ = ks.refresh(ctx) // failures are logged; fall back to what we have
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.loadedAt.IsZero() {
		return nil, fmt.Errorf("%w: keys of issuer %s not loaded: %v", ErrUnavailable, ks.issuer, ks.lastErr)
	}
	var out []jose.JSONWebKey
	for _, k := range ks.keys {
		if (kid == "" || k.KeyID == kid) && keyFitsAlg(k, alg) {
			out = append(out, k)
		}
	}
	return out, nil
}

// refresh refetches the set unless the last attempt is more recent than
// retryWait allows; callers arriving while a fetch runs wait for it instead
// of starting another (flight: the fetch is detached from the caller's
// context, so one impatient caller cannot fail it for the others). It
// returns nil after a successful fetch, errRefreshLimited when the keys were
// fetched successfully too recently to try again, and an ErrUnavailable
// error when the issuer cannot be reached now.
func (ks *keySet) refresh(ctx context.Context) error {
	_, err := ks.flight.Do(ctx, "", func(ctx context.Context) (struct{}, error) {
		return struct{}{}, ks.fetch(ctx)
	})
	if err != nil && !errors.Is(err, ErrUnavailable) && !errors.Is(err, errRefreshLimited) {
		return fmt.Errorf("%w: %v", ErrUnavailable, err) // the caller's own context ended
	}
	return err
}

// fetch is one attempt, run by refresh's flight.
func (ks *keySet) fetch(ctx context.Context) error {
	ks.mu.Lock()
	now := ks.now()
	if !ks.lastAttempt.IsZero() && now.Sub(ks.lastAttempt) < retryWait(ks.failures, ks.minInterval) {
		err := error(errRefreshLimited)
		if ks.failures > 0 {
			err = fmt.Errorf("%w: keys of issuer %s: %v", ErrUnavailable, ks.issuer, ks.lastErr)
		}
		ks.mu.Unlock()
		return err
	}
	ks.lastAttempt = now
	load := ks.load
	if ks.source != nil {
		load = ks.source
	}
	var keys []jose.JSONWebKey
	var err error
	// A forget during the load (a key revoked) voids what it read: read
	// again, once, after it.
	for try := 0; ; try++ {
		gen := ks.gen
		ks.mu.Unlock()
		keys, err = load(ctx)
		ks.mu.Lock()
		if gen == ks.gen {
			break
		}
		if try == 1 {
			ks.mu.Unlock()
			return fmt.Errorf("%w: keys of issuer %s changed during the fetch", ErrUnavailable, ks.issuer)
		}
	}
	ks.lastErr = err
	if err == nil {
		ks.keys, ks.loadedAt, ks.failures = keys, ks.now(), 0
		ks.ready.Store(true)
	} else {
		ks.failures++
	}
	ks.mu.Unlock()
	// Log before waking the waiters, so the log is in order with what they do next.
	if err != nil {
		ks.log.Warn("authn: JWKS fetch failed", "issuer", ks.issuer, "error", err)
		return fmt.Errorf("%w: keys of issuer %s: %v", ErrUnavailable, ks.issuer, err)
	}
	ks.log.Debug("authn: JWKS loaded", "issuer", ks.issuer, "keys", len(keys))
	return nil
}

func (ks *keySet) load(ctx context.Context) ([]jose.JSONWebKey, error) {
	u, err := ks.jwksURL(ctx)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := getJSON(ctx, ks.client, u, &doc); err != nil {
		return nil, err
	}
	keys := make([]jose.JSONWebKey, 0, len(doc.Keys))
	for i, raw := range doc.Keys {
		// Keys are parsed one by one so one unsupported key (a new kty, an
		// encryption key) does not take the whole set down.
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			ks.log.Debug("authn: skipping unparseable JWK", "issuer", ks.issuer, "index", i, "error", err)
			continue
		}
		if reason := unusableKey(&k); reason != "" {
			ks.log.Debug("authn: skipping JWK", "issuer", ks.issuer, "kid", k.KeyID, "reason", reason)
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("JWKS %s has no usable signing keys", u)
	}
	return keys, nil
}

// unusableKey says why a JWK cannot verify signatures, or "" if it can.
func unusableKey(k *jose.JSONWebKey) string {
	if k.Use != "" && k.Use != "sig" {
		return "use is " + k.Use
	}
	if !k.Valid() {
		return "invalid key"
	}
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < minRSABits {
			return "RSA key shorter than 2048 bits"
		}
		if pub.E < 3 || pub.E%2 == 0 { // RFC 8017 §3.1: 3 <= e < n, odd
			return "RSA public exponent is not odd and at least 3"
		}
	case *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		// Symmetric keys have no place in a JWKS we verify with; private
		// keys mean the IdP published secrets: refuse them too.
		return fmt.Sprintf("key type %T not accepted", k.Key)
	}
	return ""
}

// keyFitsAlg reports whether key k may verify alg: the key type must match
// the algorithm family (so an RSA key never serves as an HMAC secret), and
// a key that names its alg is used only for that alg (RFC 7517 §4.4).
func keyFitsAlg(k jose.JSONWebKey, alg jose.SignatureAlgorithm) bool {
	if k.Algorithm != "" && k.Algorithm != string(alg) {
		return false
	}
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		switch alg {
		case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
			return true
		}
	case *ecdsa.PublicKey:
		switch alg {
		case jose.ES256:
			return pub.Curve == elliptic.P256()
		case jose.ES384:
			return pub.Curve == elliptic.P384()
		case jose.ES512:
			return pub.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == jose.EdDSA
	}
	return false
}

// forget drops the keys, so the next verification reloads them at once,
// unlimited by minInterval; a fetch under way is discarded.
func (ks *keySet) forget() {
	ks.mu.Lock()
	ks.keys, ks.loadedAt, ks.lastAttempt, ks.failures = nil, time.Time{}, time.Time{}, 0
	ks.gen++
	ks.mu.Unlock()
}

// Ready reports whether keys were ever loaded, trying a (rate-limited) fetch if not.
func (ks *keySet) Ready(ctx context.Context) error {
	if ks.ready.Load() {
		return nil
	}
	if err := ks.refresh(ctx); err != nil && !ks.ready.Load() {
		ks.mu.Lock()
		defer ks.mu.Unlock()
		if ks.lastErr != nil {
			err = ks.lastErr
		}
		return fmt.Errorf("issuer %s: signing keys not loaded: %w", ks.issuer, err)
	}
	return nil
}
