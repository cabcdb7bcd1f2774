package authserver

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/keys"
	"github.com/mcpgate/mcpgate/internal/store/memory"
)

// TestSigningKeyRevokedStopsVerifying: `mcpgate keys revoke` (another
// process) removes the key that signed a token; once the gateway reloads
// its keys (SIGHUP, or its reload interval) the token is refused at once,
// although it was verified and cached before, and the JWKS no longer
// lists the key.
func TestSigningKeyRevokedStopsVerifying(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	raw := make([]byte, 32)
	rand.Read(raw)
	sealer, err := keys.NewSealer(raw)
	if err != nil {
		t.Fatal(err)
	}
	var srv *Server
	gw, err := keys.NewManager(ctx, st, sealer, keys.Options{OnRevoke: func(ctx context.Context, kid string) {
		if srv != nil {
			srv.SigningKeyRevoked(ctx, kid)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	e, sink := auditedEnv(t, envOpt{st: st, deps: func(d *Deps) { d.Signer = gw }})
	srv = e.srv
	c := e.register("http://127.0.0.1:3000/callback", true)
	at := e.tokens(c)["access_token"].(string)
	if err := e.authn("/mcp", at); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	compromised := gw.ActiveKeyID()

	cli, err := keys.NewManager(ctx, st, sealer, keys.Options{})
	if err != nil {
		t.Fatal(err)
	}
	active, err := cli.Revoke(ctx, compromised)
	if err != nil {
		t.Fatal(err)
	}
	if active == compromised {
		t.Fatal("the revoked key is still active")
	}
	// Before the gateway reloads, its caches still trust the key (the
	// documented window: one reload interval).
	if err := e.authn("/mcp", at); err != nil {
		t.Fatalf("before the reload: %v", err)
	}
	if err := gw.Reload(ctx); err != nil { // SIGHUP
		t.Fatal(err)
	}
	if err := e.authn("/mcp", at); err == nil {
		t.Fatal("a token signed with the revoked key still verifies after the reload")
	}
	_, jwks, _ := e.doJSONGet("/jwks")
	var set jose.JSONWebKeySet
	for _, k := range jwks["keys"].([]any) {
		set.Keys = append(set.Keys, jose.JSONWebKey{KeyID: k.(map[string]any)["kid"].(string)})
	}
	if len(set.Key(compromised)) != 0 || len(set.Key(active)) != 1 {
		t.Errorf("JWKS after revocation: %v", jwks)
	}
	// New tokens are signed with the new key and verify.
	if err := e.authn("/mcp", e.tokens(c)["access_token"].(string)); err != nil {
		t.Errorf("token after revocation: %v", err)
	}
	var revoked int
	for _, r := range sink.records(t) {
		if r.Event == audit.EventASSigningKeyRevoked {
			revoked++
		}
	}
	if revoked != 1 {
		t.Errorf("%d AS_SIGNING_KEY_REVOKED records, want 1", revoked)
	}
	if _, err := cli.Revoke(ctx, "no-such-kid"); !errors.Is(err, keys.ErrUnknownKey) {
		t.Errorf("unknown kid: %v", err)
	}
}

// TestUnknownKidRereadsTheStore: a token signed by a key another process
// rotated to (twice, so this gateway never saw it published) verifies on
// its first use, without waiting for the reload interval or a change
// notification: an unknown kid re-reads the keys from the store.
func TestUnknownKidRereadsTheStore(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	raw := make([]byte, 32)
	rand.Read(raw)
	sealer, err := keys.NewSealer(raw)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := keys.NewManager(ctx, st, sealer, keys.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpt{st: st, deps: func(d *Deps) { d.Signer = gw }})
	c := e.register("http://127.0.0.1:3000/callback", true)
	at := e.tokens(c)["access_token"].(string)
	if err := e.authn("/mcp", at); err != nil {
		t.Fatalf("fresh token: %v", err)
	}

	other, err := keys.NewManager(ctx, st, sealer, keys.Options{}) // another replica, or `mcpgate keys rotate`
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := other.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The same claims, signed where the new key is active.
	_, payload, _ := strings.Cut(at, ".")
	payload, _, _ = strings.Cut(payload, ".")
	claims, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		t.Fatal(err)
	}
	resigned, err := other.SignJWT(ctx, tokenTyp, json.RawMessage(claims))
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Add(2 * time.Second) // past the once-a-second bound on key set refetches
	if err := e.authn("/mcp", resigned); err != nil {
		t.Fatalf("a token signed by the key rotated to elsewhere: %v", err)
	}
	if gw.ActiveKeyID() != other.ActiveKeyID() {
		t.Error("the gateway's signer did not reload the keys")
	}
}
