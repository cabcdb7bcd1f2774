package keys_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/keys"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/memory"
	"github.com/mcpgate/mcpgate/internal/store/sqlite"
	"github.com/mcpgate/mcpgate/internal/testutil"
	"github.com/mcpgate/mcpgate/internal/validate"
)

// clock is a settable test clock.
type clock = testutil.Clock

func newClock() *clock { return testutil.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) }

func newManager(t testing.TB, st keys.KeyStore, sealer *keys.Sealer, opts keys.Options) *keys.Manager {
	t.Helper()
	m, err := keys.NewManager(context.Background(), st, sealer, opts)
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	return m
}

func kids(t *testing.T, m *keys.Manager) []string {
	t.Helper()
	set, err := m.JWKS(context.Background())
	if err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.KeyID)
	}
	return out
}

// verify checks tok against the published JWKS as an external verifier would.
func verify(t *testing.T, m *keys.Manager, tok string) (map[string]any, error) {
	t.Helper()
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
	if err != nil {
		t.Fatalf("ParseSigned: %v", err)
	}
	set, err := m.JWKS(context.Background())
	if err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	keys := set.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		return nil, errUnknownKID
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		return nil, err
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims, nil
}

type verifyError string

func (e verifyError) Error() string { return string(e) }

const errUnknownKID = verifyError("kid not in JWKS")

func TestManagerSignAndVerify(t *testing.T) {
	for _, alg := range []string{keys.ES256, keys.RS256} {
		t.Run(alg, func(t *testing.T) {
			m := newManager(t, memory.New(), newSealer(t, randomKey(t)), keys.Options{Algorithm: alg})
			claims := map[string]any{"sub": "alice", "aud": "https://mcp.example/mcp"}
			tok, err := m.SignJWT(context.Background(), "at+jwt", claims)
			if err != nil {
				t.Fatalf("SignJWT: %v", err)
			}
			jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if err != nil {
				t.Fatalf("ParseSigned: %v", err)
			}
			h := jws.Signatures[0].Protected
			if h.KeyID != m.ActiveKeyID() || h.Algorithm != alg || h.ExtraHeaders[jose.HeaderType] != "at+jwt" {
				t.Errorf("header = kid %q alg %q typ %v; want kid %q alg %s typ at+jwt", h.KeyID, h.Algorithm, h.ExtraHeaders[jose.HeaderType], m.ActiveKeyID(), alg)
			}
			got, err := verify(t, m, tok)
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if d := cmp.Diff(claims, got); d != "" {
				t.Errorf("claims (-want +got):\n%s", d)
			}
			// A second typ gets its own header; the first is unaffected.
			tok2, err := m.SignJWT(context.Background(), "JWT", claims)
			if err != nil {
				t.Fatal(err)
			}
			jws2, _ := jose.ParseSigned(tok2, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if typ := jws2.Signatures[0].Protected.ExtraHeaders[jose.HeaderType]; typ != "JWT" {
				t.Errorf("typ = %v, want JWT", typ)
			}
			// Published keys are public only.
			set, _ := m.JWKS(context.Background())
			for _, k := range set.Keys {
				if !k.IsPublic() || k.Use != "sig" || k.Algorithm != alg {
					t.Errorf("published key %s: public=%v use=%q alg=%q", k.KeyID, k.IsPublic(), k.Use, k.Algorithm)
				}
			}
			// A tampered token fails.
			parts := strings.Split(tok, ".")
			parts[1] = parts[1][:len(parts[1])-2] + "AA"
			if _, err := verify(t, m, strings.Join(parts, ".")); err == nil {
				t.Error("tampered token verified")
			}
		})
	}
}

func TestManagerFirstStartIsPersistent(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "mcpgate.db")
	sealKey := randomKey(t)
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	m := newManager(t, st, newSealer(t, sealKey), keys.Options{})
	kid := m.ActiveKeyID()
	published := kids(t, m)
	if len(published) != 2 {
		t.Fatalf("first start published %v, want active + next", published)
	}
	tok, err := m.SignJWT(ctx, "at+jwt", map[string]string{"sub": "a"})
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := st.ListSigningKeys(ctx)
	for _, k := range stored {
		// The private key is sealed, not plain PKCS#8.
		if _, err := x509.ParsePKCS8PrivateKey(k.Private); err == nil {
			t.Errorf("key %s stored unsealed", k.ID)
		}
	}
	st.Close()

	st, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m2 := newManager(t, st, newSealer(t, sealKey), keys.Options{})
	if m2.ActiveKeyID() != kid {
		t.Errorf("after restart the active kid is %q, want %q", m2.ActiveKeyID(), kid)
	}
	if d := cmp.Diff(published, kids(t, m2)); d != "" {
		t.Errorf("published keys changed across restart (-before +after):\n%s", d)
	}
	if _, err := verify(t, m2, tok); err != nil {
		t.Errorf("token from before the restart does not verify: %v", err)
	}

	// The wrong sealing key fails closed instead of generating new keys.
	if _, err := keys.NewManager(ctx, st, newSealer(t, randomKey(t)), keys.Options{}); err == nil {
		t.Error("NewManager with a different sealing key succeeded")
	}
}

func TestManagerRotate(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	st := memory.New()
	m := newManager(t, st, newSealer(t, randomKey(t)), keys.Options{Overlap: time.Hour, Now: clk.Now})
	before := kids(t, m) // [active, next]
	oldKID := m.ActiveKeyID()
	if len(before) != 2 || before[0] != oldKID {
		t.Fatalf("JWKS = %v, want [active %q, next]", before, oldKID)
	}
	oldTok, err := m.SignJWT(ctx, "at+jwt", map[string]string{"sub": "a"})
	if err != nil {
		t.Fatal(err)
	}

	clk.Add(time.Minute)
	if err := m.Rotate(ctx); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	newKID := m.ActiveKeyID()
	if newKID == oldKID {
		t.Fatal("Rotate kept the active key")
	}
	if newKID != before[1] {
		t.Errorf("Rotate activated %q, want the pre-published next key %q", newKID, before[1])
	}
	after := kids(t, m)
	if len(after) != 3 || after[0] != newKID || after[2] != oldKID || contains(before, after[1]) {
		t.Errorf("after Rotate JWKS = %v, want [%q (active), a new next, %q (retired)]", after, newKID, oldKID)
	}
	newTok, err := m.SignJWT(ctx, "at+jwt", map[string]string{"sub": "b"})
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"old": oldTok, "new": newTok} {
		if _, err := verify(t, m, tok); err != nil {
			t.Errorf("%s token does not verify during the overlap: %v", name, err)
		}
	}
	if kidOf(t, newTok) != newKID {
		t.Errorf("new token signed by %q, want %q", kidOf(t, newTok), newKID)
	}

	// After the overlap the retired key leaves the JWKS, and its tokens stop verifying.
	clk.Add(time.Hour)
	if contains(kids(t, m), oldKID) {
		t.Errorf("retired key still published after the overlap")
	}
	if _, err := verify(t, m, oldTok); err == nil {
		t.Error("token of a dropped key still verifies")
	}
	// The next rotation deletes it from the store.
	if err := m.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	stored, _ := st.ListSigningKeys(ctx)
	statuses := map[string]int{}
	for _, k := range stored {
		if k.ID == oldKID {
			t.Errorf("key retired beyond its overlap still stored")
		}
		statuses[k.Status]++
	}
	if d := cmp.Diff(map[string]int{store.KeyActive: 1, store.KeyNext: 1, store.KeyRetired: 1}, statuses); d != "" {
		t.Errorf("stored key statuses (-want +got):\n%s", d)
	}
}

func TestManagerReloadSeesOtherProcess(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	st := memory.New()
	sealKey := randomKey(t)
	opts := keys.Options{ReloadInterval: time.Minute, Now: clk.Now}
	server := newManager(t, st, newSealer(t, sealKey), opts)
	cli := newManager(t, st, newSealer(t, sealKey), opts) // e.g. `mcpgate keys rotate`
	if server.ActiveKeyID() != cli.ActiveKeyID() {
		t.Fatalf("two managers on one store disagree on the active key")
	}
	old := server.ActiveKeyID()
	if err := cli.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if server.ActiveKeyID() != old {
		t.Fatal("server changed keys without reloading")
	}
	// Explicit reload.
	if err := server.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if server.ActiveKeyID() != cli.ActiveKeyID() {
		t.Errorf("after Reload the server signs with %q, want %q", server.ActiveKeyID(), cli.ActiveKeyID())
	}

	// Lazy reload once ReloadInterval has passed.
	if err := cli.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	tok, _ := server.SignJWT(ctx, "at+jwt", map[string]string{})
	if kidOf(t, tok) == cli.ActiveKeyID() {
		t.Fatal("server reloaded before ReloadInterval")
	}
	clk.Add(time.Minute)
	tok, err := server.SignJWT(ctx, "at+jwt", map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if kidOf(t, tok) != cli.ActiveKeyID() {
		t.Errorf("after ReloadInterval the server signed with %q, want %q", kidOf(t, tok), cli.ActiveKeyID())
	}
}

func TestManagerRejectsSwappedPrivateKeys(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	sealer := newSealer(t, randomKey(t))
	newManager(t, st, sealer, keys.Options{})
	stored, _ := st.ListSigningKeys(ctx)
	// Put the first key's sealed private key under the second key's kid.
	a, b := stored[0], stored[1]
	if err := st.DeleteSigningKey(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	b.Private = a.Private
	if err := st.CreateSigningKey(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.NewManager(ctx, st, sealer, keys.Options{}); err == nil {
		t.Error("NewManager accepted a private key sealed for another kid")
	}
}

func TestManagerOptions(t *testing.T) {
	if _, err := keys.NewManager(context.Background(), memory.New(), newSealer(t, randomKey(t)), keys.Options{Algorithm: "HS256"}); err == nil {
		t.Error("NewManager accepted HS256")
	}
	if _, err := keys.NewManager(context.Background(), nil, newSealer(t, randomKey(t)), keys.Options{}); err == nil {
		t.Error("NewManager accepted a nil store")
	}
}

func TestManagerConcurrentSignAndRotate(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, memory.New(), newSealer(t, randomKey(t)), keys.Options{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				tok, err := m.SignJWT(ctx, "at+jwt", map[string]string{"sub": "a"})
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := verify(t, m, tok); err != nil {
					t.Errorf("token signed during rotation does not verify: %v", err)
					return
				}
			}
		}()
	}
	for range 3 {
		if err := m.Rotate(ctx); err != nil {
			t.Error(err)
		}
	}
	wg.Wait()
}

func TestConfig(t *testing.T) {
	var c keys.Config
	c.SetDefaults()
	if d := cmp.Diff(keys.Config{RotateEvery: 30 * 24 * time.Hour, RetiredKeyOverlap: 24 * time.Hour}, c); d != "" {
		t.Errorf("defaults (-want +got):\n%s", d)
	}
	var p validate.Problems
	(&keys.Config{RotateEvery: time.Minute, RetiredKeyOverlap: time.Second}).Validate("keys", &p)
	want := []string{
		"keys.rotate_every: must be at least 1h (got 1m0s)",
		"keys.retired_key_overlap: must be at least 1m (got 1s)",
	}
	if d := cmp.Diff(want, p.List()); d != "" {
		t.Errorf("problems (-want +got):\n%s", d)
	}
	p = validate.Problems{}
	c.Validate("keys", &p)
	if len(p.List()) != 0 {
		t.Errorf("defaults do not validate: %v", p.List())
	}
}

func kidOf(t *testing.T, tok string) string {
	t.Helper()
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	return jws.Signatures[0].Protected.KeyID
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func BenchmarkSealOpen(b *testing.B) {
	s := newSealer(b, randomKey(b))
	pt := make([]byte, 2048) // a typical upstream token blob
	ad := []byte("upstream-tokens:grant-1")
	b.ReportAllocs()
	for b.Loop() {
		sealed, err := s.Seal(pt, ad)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Open(sealed, ad); err != nil {
			b.Fatal(err)
		}
	}
}

// OnRotate fires once per change of the active key, whoever rotated: this
// Manager (Rotate), or another process seen on an explicit or lazy reload;
// never on a reload that finds nothing new, nor at start.
func TestManagerOnRotate(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	st := memory.New()
	sealKey := randomKey(t)
	type change struct{ prev, active string }
	var mu sync.Mutex
	var seen []change
	opts := keys.Options{ReloadInterval: time.Minute, Now: clk.Now, OnRotate: func(_ context.Context, prev, active string) {
		mu.Lock()
		seen = append(seen, change{prev, active})
		mu.Unlock()
	}}
	server := newManager(t, st, newSealer(t, sealKey), opts)
	cli := newManager(t, st, newSealer(t, sealKey), keys.Options{Now: clk.Now})
	got := func() []change {
		mu.Lock()
		defer mu.Unlock()
		return append([]change(nil), seen...)
	}
	if len(got()) != 0 {
		t.Fatalf("OnRotate at start: %v", got())
	}
	if err := server.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if len(got()) != 0 {
		t.Fatalf("OnRotate on a reload without a rotation: %v", got())
	}

	k0 := server.ActiveKeyID()
	if err := server.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	k1 := server.ActiveKeyID()
	if err := cli.Rotate(ctx); err != nil { // another process
		t.Fatal(err)
	}
	if err := server.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	k2 := server.ActiveKeyID()
	if err := cli.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Minute)
	if _, err := server.JWKS(ctx); err != nil { // lazy reload
		t.Fatal(err)
	}
	k3 := server.ActiveKeyID()
	want := []change{{k0, k1}, {k1, k2}, {k2, k3}}
	if diff := cmp.Diff(want, got(), cmp.AllowUnexported(change{})); diff != "" {
		t.Errorf("OnRotate calls (-want +got):\n%s", diff)
	}
}

// Revoke removes a key at once and keeps an active and a next key; another
// process sees it on reload (OnRevoke), a normal expiry is not a revocation.
func TestManagerRevoke(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	st := memory.New()
	sealKey := randomKey(t)
	var mu sync.Mutex
	var revoked []string
	gw := newManager(t, st, newSealer(t, sealKey), keys.Options{Now: clk.Now, Overlap: time.Hour, OnRevoke: func(_ context.Context, kid string) {
		mu.Lock()
		revoked = append(revoked, kid)
		mu.Unlock()
	}})
	cli := newManager(t, st, newSealer(t, sealKey), keys.Options{Now: clk.Now, Overlap: time.Hour})
	statuses := func() map[string]string {
		ks, err := st.ListSigningKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, k := range ks {
			m[k.ID] = k.Status
		}
		return m
	}
	count := func(status string) int {
		n := 0
		for _, s := range statuses() {
			if s == status {
				n++
			}
		}
		return n
	}

	a0 := cli.ActiveKeyID()
	tok, err := cli.SignJWT(ctx, "at+jwt", map[string]any{"sub": "alice"})
	if err != nil {
		t.Fatal(err)
	}
	var next0 string
	for id, s := range statuses() {
		if s == store.KeyNext {
			next0 = id
		}
	}
	// The active key: the next key takes over, a new next key is made.
	a1, err := cli.Revoke(ctx, a0)
	if err != nil {
		t.Fatal(err)
	}
	if a1 != next0 || cli.ActiveKeyID() != next0 || count(store.KeyActive) != 1 || count(store.KeyNext) != 1 {
		t.Fatalf("after revoking the active key: active %s (want %s), %v", a1, next0, statuses())
	}
	if _, ok := statuses()[a0]; ok || slices.Contains(kids(t, cli), a0) {
		t.Error("revoked key still stored or published")
	}
	if _, err := verify(t, cli, tok); err == nil {
		t.Error("a token of the revoked key verifies against the JWKS")
	}
	if err := gw.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(revoked, []string{a0}) || slices.Contains(kids(t, gw), a0) {
		t.Errorf("other process: OnRevoke %v, JWKS %v", revoked, kids(t, gw))
	}

	// The next key: a new one is generated.
	var next1 string
	for id, s := range statuses() {
		if s == store.KeyNext {
			next1 = id
		}
	}
	if _, err := cli.Revoke(ctx, next1); err != nil {
		t.Fatal(err)
	}
	if _, ok := statuses()[next1]; ok || count(store.KeyNext) != 1 || cli.ActiveKeyID() != a1 {
		t.Errorf("after revoking the next key: %v", statuses())
	}
	// A retired key: just removed.
	if err := cli.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Revoke(ctx, a1); err != nil {
		t.Fatal(err)
	}
	if _, ok := statuses()[a1]; ok || count(store.KeyActive) != 1 || count(store.KeyNext) != 1 || count(store.KeyRetired) != 0 {
		t.Errorf("after revoking a retired key: %v", statuses())
	}
	if _, err := cli.Revoke(ctx, "nope"); !errors.Is(err, keys.ErrUnknownKey) {
		t.Errorf("unknown kid: %v", err)
	}

	// A retired key expiring after its overlap is not a revocation.
	if err := gw.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	revoked = nil
	mu.Unlock()
	if err := cli.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := gw.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Add(2 * time.Hour)
	if err := cli.Rotate(ctx); err != nil { // deletes the expired retired key
		t.Fatal(err)
	}
	if err := gw.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(revoked) != 0 {
		t.Errorf("OnRevoke on a normal expiry: %v", revoked)
	}
}

// Rotate and Revoke tell the other processes sharing the store (replicas)
// to reload the keys now (store.Changes), not within ReloadInterval.
func TestManagerNotifiesKeyChanges(t *testing.T) {
	st := memory.New()
	m := newManager(t, st, newSealer(t, randomKey(t)), keys.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := st.Subscribe(ctx)
	expect := func(op string) {
		t.Helper()
		select {
		case c := <-changes:
			if c != (store.Change{Kind: store.ChangeKeys}) {
				t.Errorf("%s: change %+v, want ChangeKeys", op, c)
			}
		default:
			t.Errorf("%s notified nothing", op)
		}
	}
	if err := m.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	expect("Rotate")
	if _, err := m.Revoke(ctx, m.ActiveKeyID()); err != nil {
		t.Fatal(err)
	}
	expect("Revoke")
	if err := m.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if len(changes) != 0 {
		t.Error("Reload notified: a reload would echo between replicas")
	}
}
