// Package conformance is the test suite every store.Store backend must pass.
// Backends call Run from their own tests:
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, func(t *testing.T) store.Store { return newTestStore(t) })
//	}
package conformance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mcpgate/mcpgate/internal/store"
)

// Run runs every conformance test. newStore must return an empty store; the
// suite closes it.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Clients", testClients},
		{"CountClientsByIP", testCountClientsByIP},
		{"AuthRequests", testAuthRequests},
		{"TakeAuthRequestByUpstreamState", testTakeAuthRequest},
		{"TakeAuthRequestConcurrent", testTakeAuthRequestConcurrent},
		{"RedeemAuthCode", testRedeemAuthCode},
		{"RedeemAuthCodeRefused", testRedeemAuthCodeRefused},
		{"RedeemAuthCodeConflicts", testRedeemAuthCodeConflicts},
		{"RedeemAuthCodeConcurrent", testRedeemAuthCodeConcurrent},
		{"Grants", testGrants},
		{"UpdateGrantUpstream", testUpdateGrantUpstream},
		{"UpdateGrantUpstreamConcurrent", testUpdateGrantUpstreamConcurrent},
		{"ListGrants", testListGrants},
		{"RefreshTokens", testRefreshTokens},
		{"GetRefreshTokenGrant", testGetRefreshTokenGrant},
		{"RotateRefreshToken", testRotateRefreshToken},
		{"RotateRefreshTokenConcurrent", testRotateRefreshTokenConcurrent},
		{"Consents", testConsents},
		{"SigningKeys", testSigningKeys},
		{"DeleteExpired", testDeleteExpired},
		{"LongKeys", testLongKeys},
		{"OrderedTokens", testOrderedTokens},
		{"OrderedGrantIDs", testOrderedGrantIDs},
		{"Changes", testChanges},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

var opts = cmp.Options{cmpopts.EquateEmpty()}

// now is rounded to the precision every backend keeps.
func now() time.Time { return store.NormTime(time.Now()) }

func wantErr(t *testing.T, op string, got, want error) {
	t.Helper()
	if !errors.Is(got, want) {
		t.Fatalf("%s: error = %v, want %v", op, got, want)
	}
}

func must(t *testing.T, op string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", op, err)
	}
}

func testClients(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := now()
	c := &store.Client{
		ID:                      "client-1",
		SecretHash:              "$2a$10$abcdefghijklmnopqrstuv",
		Name:                    "Claude",
		RedirectURIs:            []string{"https://a.example/cb", "http://127.0.0.1/cb"},
		GrantTypes:              []string{"authorization_code", "refresh_token"},
		ResponseTypes:           []string{"code"},
		TokenEndpointAuthMethod: "client_secret_basic",
		Scope:                   "tools:read tools:call",
		ApplicationType:         "native",
		Kind:                    store.ClientKindDynamic,
		RegisteredIP:            "192.0.2.1",
		Metadata:                []byte(`{"client_name":"Claude"}`),
		CreatedAt:               n,
		ExpiresAt:               n.Add(time.Hour),
	}
	must(t, "CreateClient", s.CreateClient(ctx, c))
	wantErr(t, "CreateClient duplicate", s.CreateClient(ctx, c), store.ErrConflict)

	got, err := s.GetClient(ctx, c.ID)
	must(t, "GetClient", err)
	same(t, "GetClient mismatch", c, got)
	// Returned values are copies.
	got.RedirectURIs[0] = "https://evil.example/cb"
	got.Metadata[0] = 'X'
	again, err := s.GetClient(ctx, c.ID)
	must(t, "GetClient", err)
	same(t, "store aliased a returned client", c, again)

	_, err = s.GetClient(ctx, "unknown")
	wantErr(t, "GetClient unknown", err, store.ErrNotFound)

	pub := &store.Client{ID: "public", Kind: store.ClientKindStatic, CreatedAt: n}
	must(t, "CreateClient public", s.CreateClient(ctx, pub))
	got, err = s.GetClient(ctx, "public")
	must(t, "GetClient public", err)
	same(t, "GetClient public mismatch", pub, got)

	expired := &store.Client{ID: "expired", CreatedAt: n.Add(-2 * time.Hour), ExpiresAt: n.Add(-time.Hour)}
	must(t, "CreateClient expired", s.CreateClient(ctx, expired))
	_, err = s.GetClient(ctx, "expired")
	wantErr(t, "GetClient expired", err, store.ErrNotFound)

	must(t, "DeleteClient", s.DeleteClient(ctx, c.ID))
	_, err = s.GetClient(ctx, c.ID)
	wantErr(t, "GetClient deleted", err, store.ErrNotFound)
	wantErr(t, "DeleteClient again", s.DeleteClient(ctx, c.ID), store.ErrNotFound)
	// The ID is free again.
	must(t, "CreateClient after delete", s.CreateClient(ctx, c))
}

func testCountClientsByIP(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := now()
	for i, tc := range []struct {
		ip  string
		age time.Duration
	}{
		{"192.0.2.1", 0},
		{"192.0.2.1", 30 * time.Minute},
		{"192.0.2.1", 2 * time.Hour}, // outside the window
		{"192.0.2.2", 0},
		{"2001:db8::1", 0},
	} {
		must(t, "CreateClient", s.CreateClient(ctx, &store.Client{
			ID: fmt.Sprintf("c%d", i), RegisteredIP: tc.ip, CreatedAt: n.Add(-tc.age),
		}))
	}
	for _, tc := range []struct {
		ip    string
		since time.Time
		want  int
	}{
		{"192.0.2.1", n.Add(-time.Hour), 2},
		{"192.0.2.1", n.Add(-3 * time.Hour), 3},
		{"192.0.2.1", n.Add(-30 * time.Minute), 2}, // since is inclusive
		{"192.0.2.1", n.Add(time.Minute), 0},
		{"192.0.2.2", n.Add(-time.Hour), 1},
		{"2001:db8::1", n.Add(-time.Hour), 1},
		{"198.51.100.7", n.Add(-time.Hour), 0},
	} {
		got, err := s.CountClientsByIP(ctx, tc.ip, tc.since)
		must(t, "CountClientsByIP", err)
		if got != tc.want {
			t.Errorf("CountClientsByIP(%s, now%v) = %d, want %d", tc.ip, tc.since.Sub(n), got, tc.want)
		}
	}
	// NthClientTimeByIP: oldest first, inside the window only.
	for _, tc := range []struct {
		ip    string
		since time.Time
		nth   int
		want  time.Time // zero: ErrNotFound
	}{
		{"192.0.2.1", n.Add(-time.Hour), 0, n.Add(-30 * time.Minute)},
		{"192.0.2.1", n.Add(-time.Hour), 1, n},
		{"192.0.2.1", n.Add(-time.Hour), 2, time.Time{}},
		{"192.0.2.1", n.Add(-3 * time.Hour), 0, n.Add(-2 * time.Hour)},
		{"192.0.2.1", n.Add(-30 * time.Minute), 0, n.Add(-30 * time.Minute)}, // since is inclusive
		{"192.0.2.1", n.Add(-time.Hour), -1, time.Time{}},
		{"198.51.100.7", n.Add(-time.Hour), 0, time.Time{}},
	} {
		got, err := s.NthClientTimeByIP(ctx, tc.ip, tc.since, tc.nth)
		if tc.want.IsZero() {
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("NthClientTimeByIP(%s, now%v, %d) = %v, %v; want ErrNotFound", tc.ip, tc.since.Sub(n), tc.nth, got, err)
			}
			continue
		}
		must(t, "NthClientTimeByIP", err)
		if !got.Equal(tc.want) {
			t.Errorf("NthClientTimeByIP(%s, now%v, %d) = now%v, want now%v", tc.ip, tc.since.Sub(n), tc.nth, got.Sub(n), tc.want.Sub(n))
		}
	}
}

func newRequest(id string, exp time.Time) *store.AuthRequest {
	return &store.AuthRequest{
		ID:                  id,
		ClientID:            "client-1",
		RedirectURI:         "http://127.0.0.1:3000/cb",
		State:               "client-state",
		Resource:            "https://mcp.example/mcp",
		Scopes:              []string{"openid", "tools:read"},
		CodeChallenge:       "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		CodeChallengeMethod: "S256",
		UpstreamStateHash:   "state-hash-" + id,
		UpstreamNonce:       "nonce",
		UpstreamVerifier:    []byte{1, 2, 3},
		ConsentCSRF:         "csrf",
		ExpiresAt:           exp,
	}
}

func testAuthRequests(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := now()
	r := newRequest("req-1", n.Add(10*time.Minute))
	must(t, "CreateAuthRequest", s.CreateAuthRequest(ctx, r))
	wantErr(t, "CreateAuthRequest duplicate", s.CreateAuthRequest(ctx, r), store.ErrConflict)

	got, err := s.GetAuthRequest(ctx, r.ID)
	must(t, "GetAuthRequest", err)
	same(t, "GetAuthRequest mismatch", r, got)
	_, err = s.GetAuthRequest(ctx, "unknown")
	wantErr(t, "GetAuthRequest unknown", err, store.ErrNotFound)

	upd := *got
	upd.UserKey = "https://idp.example#alice"
	upd.Identity = []byte(`{"groups":["admins"]}`)
	upd.UpstreamTokens = []byte("sealed")
	upd.Scopes = []string{"openid"}
	must(t, "UpdateAuthRequest", s.UpdateAuthRequest(ctx, &upd))
	got, err = s.GetAuthRequest(ctx, r.ID)
	must(t, "GetAuthRequest after update", err)
	same(t, "GetAuthRequest after update mismatch", &upd, got)
	wantErr(t, "UpdateAuthRequest unknown", s.UpdateAuthRequest(ctx, newRequest("unknown", n.Add(time.Hour))), store.ErrNotFound)

	exp := newRequest("req-expired", n.Add(-time.Second))
	must(t, "CreateAuthRequest expired", s.CreateAuthRequest(ctx, exp))
	_, err = s.GetAuthRequest(ctx, exp.ID)
	wantErr(t, "GetAuthRequest expired", err, store.ErrNotFound)
	wantErr(t, "UpdateAuthRequest expired", s.UpdateAuthRequest(ctx, exp), store.ErrNotFound)

	must(t, "DeleteAuthRequest", s.DeleteAuthRequest(ctx, r.ID))
	_, err = s.GetAuthRequest(ctx, r.ID)
	wantErr(t, "GetAuthRequest deleted", err, store.ErrNotFound)
	wantErr(t, "DeleteAuthRequest again", s.DeleteAuthRequest(ctx, r.ID), store.ErrNotFound)
}

func testTakeAuthRequest(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := now()
	r := newRequest("req-1", n.Add(10*time.Minute))
	must(t, "CreateAuthRequest", s.CreateAuthRequest(ctx, r))
	other := newRequest("req-2", n.Add(10*time.Minute))
	must(t, "CreateAuthRequest other", s.CreateAuthRequest(ctx, other))
	noState := newRequest("req-3", n.Add(10*time.Minute))
	noState.UpstreamStateHash = ""
	must(t, "CreateAuthRequest without state", s.CreateAuthRequest(ctx, noState))

	_, err := s.TakeAuthRequestByUpstreamState(ctx, "")
	wantErr(t, "Take empty state", err, store.ErrNotFound)
	_, err = s.TakeAuthRequestByUpstreamState(ctx, "no-such-state")
	wantErr(t, "Take unknown state", err, store.ErrNotFound)

	got, err := s.TakeAuthRequestByUpstreamState(ctx, r.UpstreamStateHash)
	must(t, "Take", err)
	want := *r
	want.UpstreamStateHash = ""
	same(t, "Take mismatch", &want, got)
	_, err = s.TakeAuthRequestByUpstreamState(ctx, r.UpstreamStateHash)
	wantErr(t, "Take twice", err, store.ErrNotFound)

	// Saving the taken request must not re-arm its state.
	got.UserKey = "https://idp.example#alice"
	must(t, "UpdateAuthRequest taken", s.UpdateAuthRequest(ctx, got))
	_, err = s.TakeAuthRequestByUpstreamState(ctx, r.UpstreamStateHash)
	wantErr(t, "Take after update", err, store.ErrNotFound)
	// The request itself is still there.
	stored, err := s.GetAuthRequest(ctx, r.ID)
	must(t, "GetAuthRequest taken", err)
	if stored.UserKey != got.UserKey || stored.UpstreamStateHash != "" {
		t.Errorf("taken request = %+v, want user key set and state hash cleared", stored)
	}

	// The other request is untouched.
	got, err = s.TakeAuthRequestByUpstreamState(ctx, other.UpstreamStateHash)
	must(t, "Take other", err)
	if got.ID != other.ID {
		t.Errorf("Take other returned %q, want %q", got.ID, other.ID)
	}

	// A state set later by UpdateAuthRequest is armed.
	_, err = s.TakeAuthRequestByUpstreamState(ctx, "late-state")
	wantErr(t, "Take before arming", err, store.ErrNotFound)
	noState.UpstreamStateHash = "late-state"
	must(t, "UpdateAuthRequest arm state", s.UpdateAuthRequest(ctx, noState))
	got, err = s.TakeAuthRequestByUpstreamState(ctx, "late-state")
	must(t, "Take late state", err)
	if got.ID != noState.ID {
		t.Errorf("Take late state returned %q, want %q", got.ID, noState.ID)
	}

	exp := newRequest("req-expired", n.Add(-time.Second))
	must(t, "CreateAuthRequest expired", s.CreateAuthRequest(ctx, exp))
	_, err = s.TakeAuthRequestByUpstreamState(ctx, exp.UpstreamStateHash)
	wantErr(t, "Take expired", err, store.ErrNotFound)
}

// Race runs fn from n goroutines released at once and returns their errors,
// for backends' own race tests too.
func Race(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var start, done sync.WaitGroup
	start.Add(1)
	for i := range n {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			errs[i] = fn(i)
		}()
	}
	start.Done()
	done.Wait()
	return errs
}

// ExactlyOne checks that one error is nil and all others match loser, and
// returns the winner's index.
func ExactlyOne(t *testing.T, op string, errs []error, loser error) int {
	t.Helper()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("%s: goroutines %d and %d both succeeded", op, winner, i)
			}
			winner = i
		case !errors.Is(err, loser):
			t.Fatalf("%s: goroutine %d: error = %v, want %v", op, i, err, loser)
		}
	}
	if winner < 0 {
		t.Fatalf("%s: no goroutine succeeded", op)
	}
	return winner
}

const racers = 8

func testTakeAuthRequestConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := newRequest("req-1", now().Add(10*time.Minute))
	must(t, "CreateAuthRequest", s.CreateAuthRequest(ctx, r))
	errs := Race(racers, func(int) error {
		_, err := s.TakeAuthRequestByUpstreamState(ctx, r.UpstreamStateHash)
		return err
	})
	ExactlyOne(t, "concurrent Take", errs, store.ErrNotFound)
}

// same fails t when got differs from want (under opts).
func same(t *testing.T, what string, want, got any) {
	t.Helper()
	if d := cmp.Diff(want, got, opts); d != "" {
		t.Errorf("%s (-want +got):\n%s", what, d)
	}
}

// createCode stores newCode(store.HashKey(name), exp).
func createCode(t *testing.T, s store.Store, name string, exp time.Time) *store.AuthCode {
	t.Helper()
	c := newCode(store.HashKey(name), exp)
	must(t, "CreateAuthCode "+name, s.CreateAuthCode(context.Background(), c))
	return c
}

func newCode(hash string, exp time.Time) *store.AuthCode {
	return &store.AuthCode{
		Hash:           hash,
		ClientID:       "client-1",
		RedirectURI:    "http://127.0.0.1:3000/cb",
		Resource:       "https://mcp.example/mcp",
		UserKey:        "https://idp.example#alice",
		Scopes:         []string{"tools:read"},
		CodeChallenge:  "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		GrantID:        "grant-" + hash,
		Identity:       []byte(`{"sub":"alice"}`),
		UpstreamTokens: []byte("sealed"),
		ExpiresAt:      exp,
	}
}

// issueFor is an IssueFunc that builds the grant named by the code, and a
// refresh token with hash rtHash unless rtHash is empty; calls counts its
// invocations.
func issueFor(n time.Time, rtHash string, calls *atomic.Int32) store.IssueFunc {
	return func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
		calls.Add(1)
		g := &store.Grant{
			ID: c.GrantID, ClientID: c.ClientID, UserKey: c.UserKey, Resource: c.Resource, Scopes: c.Scopes,
			Identity: c.Identity, UpstreamTokens: c.UpstreamTokens, CreatedAt: n, ExpiresAt: n.Add(24 * time.Hour),
		}
		if rtHash == "" {
			return g, nil, nil
		}
		return g, &store.RefreshToken{Hash: rtHash, GrantID: g.ID, ClientID: c.ClientID, CreatedAt: n, ExpiresAt: n.Add(time.Hour)}, nil
	}
}

// seeds numbers the codes seed redeems.
var seeds atomic.Int64

// seed stores grant g and refresh token rt (if not nil) the only way the
// store offers: by redeeming a fresh code that never expires (so
// DeleteExpired counts do not change).
func seed(s store.Store, g *store.Grant, rt *store.RefreshToken) error {
	ctx := context.Background()
	c := newCode(store.HashKey(fmt.Sprintf("seed-%d", seeds.Add(1))), time.Time{})
	c.GrantID = g.ID
	if err := s.CreateAuthCode(ctx, c); err != nil {
		return err
	}
	_, err := s.RedeemAuthCode(ctx, c.Hash, func(*store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
		return g, rt, nil
	})
	return err
}

func testRedeemAuthCode(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := now()
	c := createCode(t, s, "code-1", n.Add(time.Minute))
	wantErr(t, "CreateAuthCode duplicate", s.CreateAuthCode(ctx, c), store.ErrConflict)

	var calls atomic.Int32
	var seen *store.AuthCode
	issue := issueFor(n, store.HashKey("rt-1"), &calls)
	got, err := s.RedeemAuthCode(ctx, c.Hash, func(ac *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
		seen = ac
		return issue(ac)
	})
	must(t, "RedeemAuthCode", err)
	same(t, "RedeemAuthCode returned", c, got)
	same(t, "issue was called with", c, seen)
	wantG, wantRT, _ := issue(c)
	gotG, err := s.GetGrant(ctx, c.GrantID)
	must(t, "GetGrant", err)
	same(t, "grant created by RedeemAuthCode", wantG, gotG)
	gotRT, err := s.GetRefreshToken(ctx, wantRT.Hash)
	must(t, "GetRefreshToken", err)
	same(t, "refresh token created by RedeemAuthCode", wantRT, gotRT)

	// A replay gets the code back (to revoke its grant) and ErrAlreadyUsed.
	calls.Store(0)
	for range 2 {
		got, err = s.RedeemAuthCode(ctx, c.Hash, issueFor(n, store.HashKey("rt-replay"), &calls))
		wantErr(t, "RedeemAuthCode replay", err, store.ErrAlreadyUsed)
		if got == nil || got.GrantID != c.GrantID {
			t.Fatalf("RedeemAuthCode replay returned %+v, want the code with GrantID %q", got, c.GrantID)
		}
	}
	// A used code still blocks its hash.
	wantErr(t, "CreateAuthCode used duplicate", s.CreateAuthCode(ctx, c), store.ErrConflict)

	_, err = s.RedeemAuthCode(ctx, store.HashKey("unknown"), issueFor(n, "", &calls))
	wantErr(t, "RedeemAuthCode unknown", err, store.ErrNotFound)

	exp := createCode(t, s, "code-expired", n.Add(-time.Second))
	got, err = s.RedeemAuthCode(ctx, exp.Hash, issueFor(n, "", &calls))
	wantErr(t, "RedeemAuthCode expired", err, store.ErrNotFound)
	if got != nil {
		t.Errorf("RedeemAuthCode expired returned %+v, want nil", got)
	}
	if calls.Load() != 0 {
		t.Errorf("issue was called %d times for used, unknown or expired codes", calls.Load())
	}
	_, err = s.GetRefreshToken(ctx, store.HashKey("rt-replay"))
	wantErr(t, "GetRefreshToken of a replay", err, store.ErrNotFound)
	_, err = s.GetGrant(ctx, exp.GrantID)
	wantErr(t, "GetGrant of an expired code", err, store.ErrNotFound)

	// Without a refresh token only the grant is created.
	c2 := createCode(t, s, "code-2", n.Add(time.Minute))
	_, err = s.RedeemAuthCode(ctx, c2.Hash, issueFor(n, "", &calls))
	must(t, "RedeemAuthCode without refresh token", err)
	if _, err := s.GetGrant(ctx, c2.GrantID); err != nil {
		t.Errorf("GetGrant of code-2: %v", err)
	}
}

// testRedeemAuthCodeRefused: a redemption that issue refuses spends the
// code, stores nothing, and returns issue's error.
func testRedeemAuthCodeRefused(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := now()
	c := createCode(t, s, "code-1", n.Add(time.Minute))
	refused := errors.New("PKCE verification failed")
	got, err := s.RedeemAuthCode(ctx, c.Hash, func(*store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
		return nil, nil, refused
	})
	if err != refused { // unchanged, so the caller's own error types survive
		t.Fatalf("RedeemAuthCode refused: error = %v, want %v unchanged", err, refused)
	}
	if got == nil || got.GrantID != c.GrantID {
		t.Errorf("RedeemAuthCode refused returned %+v, want the code", got)
	}
	_, err = s.GetGrant(ctx, c.GrantID)
	wantErr(t, "GetGrant after refusal", err, store.ErrNotFound)
	var calls atomic.Int32
	got, err = s.RedeemAuthCode(ctx, c.Hash, issueFor(n, store.HashKey("rt"), &calls))
	wantErr(t, "RedeemAuthCode after refusal", err, store.ErrAlreadyUsed)
	if got == nil || got.GrantID != c.GrantID || calls.Load() != 0 {
		t.Errorf("RedeemAuthCode after refusal returned %+v and called issue %d times", got, calls.Load())
	}
}

// testRedeemAuthCodeConflicts: a redemption that cannot store what issue
// built changes nothing, so the code can still be redeemed.
func testRedeemAuthCodeConflicts(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := now()
	var calls atomic.Int32
	taken := createCode(t, s, "code-taken", n.Add(time.Minute))
	_, err := s.RedeemAuthCode(ctx, taken.Hash, issueFor(n, store.HashKey("rt-taken"), &calls))
	must(t, "RedeemAuthCode", err)

	tests := []struct {
		name  string
		issue store.IssueFunc
		want  error // nil: any non-nil error
	}{
		{"existing grant ID", func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
			return newGrant(taken.GrantID, n), nil, nil
		}, store.ErrConflict},
		{"existing refresh token hash", func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
			rt := newRefresh("x", c.GrantID, n)
			rt.Hash = store.HashKey("rt-taken")
			return newGrant(c.GrantID, n), rt, nil
		}, store.ErrConflict},
		{"refresh token of another grant", func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
			return newGrant(c.GrantID, n), newRefresh("rt-other", taken.GrantID, n), nil
		}, nil},
		{"no grant", func(*store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
			return nil, nil, nil
		}, nil},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := createCode(t, s, fmt.Sprintf("code-%d", i), n.Add(time.Minute))
			_, err := s.RedeemAuthCode(ctx, c.Hash, tc.issue)
			switch {
			case err == nil:
				t.Fatalf("RedeemAuthCode succeeded")
			case tc.want != nil:
				wantErr(t, "RedeemAuthCode", err, tc.want)
			case errors.Is(err, store.ErrAlreadyUsed):
				t.Fatalf("RedeemAuthCode: error = %v", err)
			}
			_, err = s.GetGrant(ctx, c.GrantID)
			wantErr(t, "GetGrant after failed redemption", err, store.ErrNotFound)
			if _, err := s.GetRefreshToken(ctx, store.HashKey("rt-other")); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetRefreshToken rt-other: error = %v, want ErrNotFound", err)
			}
			// Nothing changed: the code is still unused.
			_, err = s.RedeemAuthCode(ctx, c.Hash, issueFor(n, "", &calls))
			must(t, "RedeemAuthCode retry", err)
		})
	}
	// The taken grant is untouched.
	got, err := s.GetGrant(ctx, taken.GrantID)
	must(t, "GetGrant taken", err)
	if got.Resource != taken.Resource || got.Revoked {
		t.Errorf("conflicting redemptions changed the existing grant: %+v", got)
	}
}

// testRedeemAuthCodeConcurrent: of racing redemptions of one code exactly
// one runs issue and succeeds; every loser gets ErrAlreadyUsed only once
// the winner's grant exists, so a replay can always revoke it.
func testRedeemAuthCodeConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := now()
	c := createCode(t, s, "code-1", n.Add(time.Minute))
	var calls atomic.Int32
	errs := Race(racers, func(i int) error {
		got, err := s.RedeemAuthCode(ctx, c.Hash, issueFor(n, store.HashKey(fmt.Sprintf("rt-%d", i)), &calls))
		if errors.Is(err, store.ErrAlreadyUsed) {
			if got == nil {
				return fmt.Errorf("replay returned no code")
			}
			if _, gerr := s.GetGrant(ctx, got.GrantID); gerr != nil {
				return fmt.Errorf("replay saw no grant to revoke: %w", gerr)
			}
		}
		return err
	})
	winner := ExactlyOne(t, "concurrent RedeemAuthCode", errs, store.ErrAlreadyUsed)
	if calls.Load() != 1 {
		t.Errorf("issue was called %d times, want 1", calls.Load())
	}
	for i := range racers {
		_, err := s.GetRefreshToken(ctx, store.HashKey(fmt.Sprintf("rt-%d", i)))
		if i == winner && err != nil {
			t.Errorf("winner's refresh token missing: %v", err)
		}
		if i != winner && !errors.Is(err, store.ErrNotFound) {
			t.Errorf("loser %d's refresh token: error = %v, want ErrNotFound", i, err)
		}
	}
}

func newGrant(id string, n time.Time) *store.Grant {
	return &store.Grant{
		ID:             id,
		ClientID:       "client-1",
		UserKey:        "https://idp.example#alice",
		Resource:       "https://mcp.example/mcp",
		Scopes:         []string{"tools:read", "tools:call"},
		Identity:       []byte(`{"groups":["dev"]}`),
		UpstreamTokens: []byte("sealed-v0"),
		UpstreamExpiry: n.Add(time.Hour),
		CreatedAt:      n,
		ExpiresAt:      n.Add(30 * 24 * time.Hour),
	}
}

func testGrants(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := now()
	g := newGrant("grant-1", n)
	g.Version = 3
	must(t, "seed grant", seed(s, g, nil))
	wantErr(t, "seed grant duplicate", seed(s, g, nil), store.ErrConflict)
	got, err := s.GetGrant(ctx, g.ID)
	must(t, "GetGrant", err)
	same(t, "GetGrant mismatch", g, got)
	_, err = s.GetGrant(ctx, "unknown")
	wantErr(t, "GetGrant unknown", err, store.ErrNotFound)

	for range 2 { // idempotent
		must(t, "RevokeGrant", s.RevokeGrant(ctx, g.ID))
	}
	got, err = s.GetGrant(ctx, g.ID)
	must(t, "GetGrant revoked", err)
	if !got.Revoked {
		t.Errorf("GetGrant after revoke: Revoked = false")
	}
	wantErr(t, "RevokeGrant unknown", s.RevokeGrant(ctx, "unknown"), store.ErrNotFound)

	exp := newGrant("grant-expired", n.Add(-time.Hour))
	exp.ExpiresAt = n.Add(-time.Second)
	must(t, "seed expired grant", seed(s, exp, nil))
	_, err = s.GetGrant(ctx, exp.ID)
	wantErr(t, "GetGrant expired", err, store.ErrNotFound)

	never := newGrant("grant-forever", n)
	never.ExpiresAt = time.Time{}
	must(t, "seed grant without expiry", seed(s, never, nil))
	got, err = s.GetGrant(ctx, never.ID)
	must(t, "GetGrant no expiry", err)
	if !got.ExpiresAt.IsZero() {
		t.Errorf("GetGrant no expiry: ExpiresAt = %v, want zero", got.ExpiresAt)
	}
}

func testUpdateGrantUpstream(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := now()
	g := newGrant("grant-1", n)
	must(t, "seed grant", seed(s, g, nil))

	exp1 := n.Add(2 * time.Hour)
	must(t, "UpdateGrantUpstream v0", s.UpdateGrantUpstream(ctx, g.ID, nil, []byte("sealed-v1"), exp1, 0))
	got, err := s.GetGrant(ctx, g.ID)
	must(t, "GetGrant", err)
	want := *g
	want.UpstreamTokens = []byte("sealed-v1")
	want.UpstreamExpiry = exp1
	want.Version = 1
	same(t, "GetGrant after update mismatch", &want, got)

	// A stale version loses and changes nothing.
	wantErr(t, "UpdateGrantUpstream stale", s.UpdateGrantUpstream(ctx, g.ID, []byte(`{"groups":["stale"]}`), []byte("stale"), n, 0), store.ErrConflict)
	wantErr(t, "UpdateGrantUpstream future", s.UpdateGrantUpstream(ctx, g.ID, nil, []byte("stale"), n, 5), store.ErrConflict)
	got, err = s.GetGrant(ctx, g.ID)
	must(t, "GetGrant", err)
	same(t, "stale update changed the grant", &want, got)
	// A non-nil identity replaces the stored one in the same write.
	must(t, "UpdateGrantUpstream v1", s.UpdateGrantUpstream(ctx, g.ID, []byte(`{"groups":["ops"]}`), []byte("sealed-v2"), n, 1))
	got, err = s.GetGrant(ctx, g.ID)
	must(t, "GetGrant", err)
	want.Identity, want.UpstreamTokens, want.UpstreamExpiry, want.Version = []byte(`{"groups":["ops"]}`), []byte("sealed-v2"), n, 2
	same(t, "GetGrant after identity update mismatch", &want, got)

	wantErr(t, "UpdateGrantUpstream unknown", s.UpdateGrantUpstream(ctx, "unknown", nil, nil, n, 0), store.ErrNotFound)
	must(t, "RevokeGrant", s.RevokeGrant(ctx, g.ID))
	wantErr(t, "UpdateGrantUpstream revoked", s.UpdateGrantUpstream(ctx, g.ID, nil, nil, n, 2), store.ErrNotFound)

	exp := newGrant("grant-expired", n)
	exp.ExpiresAt = n.Add(-time.Second)
	must(t, "seed expired grant", seed(s, exp, nil))
	wantErr(t, "UpdateGrantUpstream expired", s.UpdateGrantUpstream(ctx, exp.ID, nil, nil, n, 0), store.ErrNotFound)
}

func testUpdateGrantUpstreamConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := now()
	g := newGrant("grant-1", n)
	must(t, "seed grant", seed(s, g, nil))
	errs := Race(racers, func(i int) error {
		return s.UpdateGrantUpstream(ctx, g.ID, fmt.Appendf(nil, `{"n":%d}`, i), fmt.Appendf(nil, "sealed-%d", i), n.Add(time.Hour), 0)
	})
	winner := ExactlyOne(t, "concurrent UpdateGrantUpstream", errs, store.ErrConflict)
	got, err := s.GetGrant(ctx, g.ID)
	must(t, "GetGrant", err)
	if want := fmt.Sprintf("sealed-%d", winner); string(got.UpstreamTokens) != want || got.Version != 1 ||
		string(got.Identity) != fmt.Sprintf(`{"n":%d}`, winner) {
		t.Errorf("grant after race: tokens %q identity %q version %d, want %q of racer %d, version 1",
			got.UpstreamTokens, got.Identity, got.Version, want, winner)
	}
}

func testListGrants(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := now()
	list := func(f store.GrantFilter) []string {
		t.Helper()
		gs, err := s.ListGrants(ctx, f)
		must(t, "ListGrants", err)
		var ids []string
		for _, g := range gs {
			ids = append(ids, g.ID)
		}
		return ids
	}
	if ids := list(store.GrantFilter{}); len(ids) != 0 {
		t.Fatalf("ListGrants on an empty store = %v", ids)
	}
	// Seeded out of order: the list is by CreatedAt, then ID.
	mk := func(id, user, client string, created time.Time) *store.Grant {
		g := newGrant(id, created)
		g.UserKey, g.ClientID = user, client
		return g
	}
	alice, bob := "https://idp.example#alice", "https://idp.example#"+strings.Repeat("b", 600) // long keys too
	cimd := "https://client.example/" + strings.Repeat("m", 600)
	grants := []*store.Grant{
		mk("g3", alice, cimd, n.Add(2*time.Second)),
		mk("g1", alice, "client-1", n),
		mk("g2", bob, "client-1", n.Add(time.Second)),
		mk("g0", bob, cimd, n.Add(time.Second)),
	}
	for _, g := range grants {
		must(t, "seed grant", seed(s, g, nil))
	}
	expired := mk("g-expired", alice, "client-1", n.Add(-time.Hour))
	expired.ExpiresAt = n.Add(-time.Second)
	must(t, "seed expired grant", seed(s, expired, nil))
	must(t, "RevokeGrant", s.RevokeGrant(ctx, "g2"))

	for _, tc := range []struct {
		f    store.GrantFilter
		want []string
	}{
		{store.GrantFilter{}, []string{"g1", "g0", "g2", "g3"}},
		{store.GrantFilter{UserKey: alice}, []string{"g1", "g3"}},
		{store.GrantFilter{UserKey: bob}, []string{"g0", "g2"}},
		{store.GrantFilter{ClientID: "client-1"}, []string{"g1", "g2"}},
		{store.GrantFilter{ClientID: cimd, UserKey: bob}, []string{"g0"}},
		{store.GrantFilter{UserKey: "https://idp.example#nobody"}, nil},
		{store.GrantFilter{UserKey: "' OR 1=1 --"}, nil},
	} {
		if d := cmp.Diff(tc.want, list(tc.f), opts); d != "" {
			t.Errorf("ListGrants(%+v) (-want +got):\n%s", tc.f, d)
		}
	}
	gs, err := s.ListGrants(ctx, store.GrantFilter{UserKey: bob, ClientID: "client-1"})
	must(t, "ListGrants", err)
	want := *grants[2]
	want.Revoked = true
	if len(gs) != 1 {
		t.Fatalf("ListGrants bob/client-1: %d grants", len(gs))
	}
	same(t, "listed grant", &want, gs[0])
}

func newRefresh(token, grantID string, n time.Time) *store.RefreshToken {
	return &store.RefreshToken{
		Hash:      store.HashKey(token),
		GrantID:   grantID,
		ClientID:  "client-1",
		CreatedAt: n,
		ExpiresAt: n.Add(24 * time.Hour),
	}
}

func testRefreshTokens(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := now()
	rt := newRefresh("rt-1", "grant-1", n)
	must(t, "seed grant-1", seed(s, newGrant("grant-1", n), rt))
	other := newRefresh("rt-other", "grant-2", n)
	must(t, "seed grant-2", seed(s, newGrant("grant-2", n), other))
	got, err := s.GetRefreshToken(ctx, rt.Hash)
	must(t, "GetRefreshToken", err)
	same(t, "GetRefreshToken mismatch", rt, got)
	_, err = s.GetRefreshToken(ctx, store.HashKey("unknown"))
	wantErr(t, "GetRefreshToken unknown", err, store.ErrNotFound)

	exp := newRefresh("rt-expired", "grant-3", n.Add(-48*time.Hour))
	must(t, "seed grant-3", seed(s, newGrant("grant-3", n), exp))
	_, err = s.GetRefreshToken(ctx, exp.Hash)
	wantErr(t, "GetRefreshToken expired", err, store.ErrNotFound)

	rt2 := newRefresh("rt-2", "grant-1", n)
	must(t, "RotateRefreshToken", s.RotateRefreshToken(ctx, rt.Hash, rt2, n))

	for range 2 { // idempotent
		must(t, "RevokeRefreshTokensForGrant", s.RevokeRefreshTokensForGrant(ctx, "grant-1"))
	}
	for _, h := range []string{rt.Hash, rt2.Hash} {
		_, err = s.GetRefreshToken(ctx, h)
		wantErr(t, "GetRefreshToken revoked", err, store.ErrNotFound)
	}
	if _, err := s.GetRefreshToken(ctx, other.Hash); err != nil {
		t.Errorf("revoking grant-1 removed a token of grant-2: %v", err)
	}
	must(t, "RevokeRefreshTokensForGrant unknown", s.RevokeRefreshTokensForGrant(ctx, "unknown"))
}

// testGetRefreshTokenGrant: the one read of a refresh answers as
// GetRefreshToken and GetGrant would, for each case a refresh meets.
func testGetRefreshTokenGrant(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := now()
	live := func(id string) *store.Grant {
		g := newGrant(id, n)
		g.Version = 2
		return g
	}

	// A live token and grant come back whole.
	g1, rt1 := live("grant-1"), newRefresh("rt-1", "grant-1", n)
	must(t, "seed grant-1", seed(s, g1, rt1))
	// A rotated token still comes back, with RotatedAt and ReplacedBy (reuse detection).
	rt2, rotatedAt := newRefresh("rt-2", "grant-1", n), n.Add(time.Second)
	must(t, "RotateRefreshToken", s.RotateRefreshToken(ctx, rt1.Hash, rt2, rotatedAt))
	rotated := *rt1
	rotated.RotatedAt, rotated.ReplacedBy = rotatedAt, rt2.Hash
	// A revoked grant comes back with Revoked set; the caller refuses it.
	g3, rt3 := live("grant-3"), newRefresh("rt-3", "grant-3", n)
	must(t, "seed grant-3", seed(s, g3, rt3))
	must(t, "RevokeGrant", s.RevokeGrant(ctx, g3.ID))
	revoked := *g3
	revoked.Revoked = true
	// An expired token of a live grant.
	g4, rt4 := live("grant-4"), newRefresh("rt-expired", "grant-4", n.Add(-48*time.Hour))
	must(t, "seed grant-4", seed(s, g4, rt4))
	// A live token of an expired grant.
	g5, rt5 := live("grant-5"), newRefresh("rt-5", "grant-5", n)
	g5.ExpiresAt = n.Add(-time.Second)
	must(t, "seed grant-5", seed(s, g5, rt5))
	// The tokens of a grant whose tokens were revoked.
	g6, rt6 := live("grant-6"), newRefresh("rt-6", "grant-6", n)
	must(t, "seed grant-6", seed(s, g6, rt6))
	must(t, "RevokeRefreshTokensForGrant", s.RevokeRefreshTokensForGrant(ctx, g6.ID))

	tests := []struct {
		name   string
		hash   string
		wantRT *store.RefreshToken
		wantG  *store.Grant
	}{
		{"live", rt2.Hash, rt2, g1},
		{"rotated", rt1.Hash, &rotated, g1},
		{"revoked grant", rt3.Hash, rt3, &revoked},
		{"unknown token", store.HashKey("unknown"), nil, nil},
		{"expired token", rt4.Hash, nil, nil},
		{"expired grant", rt5.Hash, nil, nil},
		{"revoked tokens", rt6.Hash, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rt, g, err := s.GetRefreshTokenGrant(ctx, tc.hash)
			if tc.wantRT == nil {
				wantErr(t, "GetRefreshTokenGrant", err, store.ErrNotFound)
				if rt != nil || g != nil {
					t.Errorf("GetRefreshTokenGrant = %+v, %+v with ErrNotFound, want nil, nil", rt, g)
				}
				return
			}
			must(t, "GetRefreshTokenGrant", err)
			same(t, "token", tc.wantRT, rt)
			same(t, "grant", tc.wantG, g)
			// The same answer as the two reads it replaces.
			rt0, err := s.GetRefreshToken(ctx, tc.hash)
			must(t, "GetRefreshToken", err)
			g0, err := s.GetGrant(ctx, rt0.GrantID)
			must(t, "GetGrant", err)
			if d := cmp.Diff(rt0, rt, opts); d != "" {
				t.Errorf("token differs from GetRefreshToken (-GetRefreshToken +got):\n%s", d)
			}
			if d := cmp.Diff(g0, g, opts); d != "" {
				t.Errorf("grant differs from GetGrant (-GetGrant +got):\n%s", d)
			}
		})
	}

	// A token of a deleted grant: the sweep removes the expired grant 5
	// and its tokens with it.
	if _, err := s.DeleteExpired(ctx, n); err != nil {
		t.Fatalf("DeleteExpired: %v", err)
	}
	_, _, err := s.GetRefreshTokenGrant(ctx, rt5.Hash)
	wantErr(t, "GetRefreshTokenGrant of a deleted grant", err, store.ErrNotFound)
	if _, _, err := s.GetRefreshTokenGrant(ctx, rt2.Hash); err != nil {
		t.Errorf("GetRefreshTokenGrant of a live token after the sweep: %v", err)
	}
}

func testRotateRefreshToken(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := now()
	old := newRefresh("rt-1", "grant-1", n)
	must(t, "seed grant", seed(s, newGrant("grant-1", n), old))

	next := newRefresh("rt-2", "grant-1", n.Add(time.Minute))
	rotatedAt := n.Add(time.Minute)
	must(t, "RotateRefreshToken", s.RotateRefreshToken(ctx, old.Hash, next, rotatedAt))

	got, err := s.GetRefreshToken(ctx, old.Hash)
	must(t, "GetRefreshToken old", err)
	wantOld := *old
	wantOld.RotatedAt = rotatedAt
	wantOld.ReplacedBy = next.Hash
	same(t, "rotated token mismatch", &wantOld, got)
	got, err = s.GetRefreshToken(ctx, next.Hash)
	must(t, "GetRefreshToken next", err)
	same(t, "successor mismatch", next, got)

	// The old token cannot be rotated again, and the failed attempt stores nothing.
	third := newRefresh("rt-3", "grant-1", n)
	wantErr(t, "RotateRefreshToken twice", s.RotateRefreshToken(ctx, old.Hash, third, n), store.ErrConflict)
	_, err = s.GetRefreshToken(ctx, third.Hash)
	wantErr(t, "GetRefreshToken of losing successor", err, store.ErrNotFound)

	// The successor rotates normally.
	must(t, "RotateRefreshToken successor", s.RotateRefreshToken(ctx, next.Hash, third, n))

	wantErr(t, "RotateRefreshToken unknown", s.RotateRefreshToken(ctx, store.HashKey("unknown"), newRefresh("rt-4", "grant-1", n), n), store.ErrNotFound)
	// A successor whose hash already exists is a conflict and leaves the old token current.
	cur := newRefresh("rt-5", "grant-2", n)
	must(t, "seed grant-2", seed(s, newGrant("grant-2", n), cur))
	wantErr(t, "RotateRefreshToken onto existing hash", s.RotateRefreshToken(ctx, cur.Hash, third, n), store.ErrConflict)
	got, err = s.GetRefreshToken(ctx, cur.Hash)
	must(t, "GetRefreshToken 5", err)
	if !got.RotatedAt.IsZero() || got.ReplacedBy != "" {
		t.Errorf("failed rotation marked the token rotated: %+v", got)
	}
	// A successor whose grant does not exist is rejected.
	wantErr(t, "RotateRefreshToken to unknown grant", s.RotateRefreshToken(ctx, cur.Hash, newRefresh("rt-6", "nope", n), n), store.ErrNotFound)

	exp := newRefresh("rt-expired", "grant-3", n.Add(-48*time.Hour))
	must(t, "seed grant-3", seed(s, newGrant("grant-3", n), exp))
	wantErr(t, "RotateRefreshToken expired", s.RotateRefreshToken(ctx, exp.Hash, newRefresh("rt-7", "grant-1", n), n), store.ErrNotFound)

	// A current token of a grant revoked after it was read is not rotated.
	rev := newRefresh("rt-8", "grant-4", n)
	must(t, "seed grant-4", seed(s, newGrant("grant-4", n), rev))
	_, _, err = s.GetRefreshTokenGrant(ctx, rev.Hash)
	must(t, "GetRefreshTokenGrant 8", err)
	must(t, "RevokeGrant 4", s.RevokeGrant(ctx, "grant-4"))
	revNext := newRefresh("rt-9", "grant-4", n)
	wantErr(t, "RotateRefreshToken of a revoked grant", s.RotateRefreshToken(ctx, rev.Hash, revNext, n), store.ErrNotFound)
	got, err = s.GetRefreshToken(ctx, rev.Hash)
	must(t, "GetRefreshToken 8", err)
	if !got.RotatedAt.IsZero() || got.ReplacedBy != "" {
		t.Errorf("a revoked grant's token was rotated: %+v", got)
	}
	_, err = s.GetRefreshToken(ctx, revNext.Hash)
	wantErr(t, "GetRefreshToken of a revoked grant's successor", err, store.ErrNotFound)
}

func testRotateRefreshTokenConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := now()
	old := newRefresh("rt-old", "grant-1", n)
	must(t, "seed grant", seed(s, newGrant("grant-1", n), old))
	next := make([]*store.RefreshToken, racers)
	for i := range next {
		next[i] = newRefresh(fmt.Sprintf("rt-next-%d", i), "grant-1", n)
	}
	errs := Race(racers, func(i int) error {
		return s.RotateRefreshToken(ctx, old.Hash, next[i], n)
	})
	winner := ExactlyOne(t, "concurrent RotateRefreshToken", errs, store.ErrConflict)
	got, err := s.GetRefreshToken(ctx, old.Hash)
	must(t, "GetRefreshToken old", err)
	if got.ReplacedBy != next[winner].Hash {
		t.Errorf("old.ReplacedBy = %q, want the winner's %q", got.ReplacedBy, next[winner].Hash)
	}
	for i, nt := range next {
		_, err := s.GetRefreshToken(ctx, nt.Hash)
		if i == winner && err != nil {
			t.Errorf("winner's successor missing: %v", err)
		}
		if i != winner && !errors.Is(err, store.ErrNotFound) {
			t.Errorf("loser %d's successor: error = %v, want ErrNotFound", i, err)
		}
	}
}

func testConsents(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := now()
	const user = "https://idp.example#alice"
	_, err := s.GetConsent(ctx, user, "client-1")
	wantErr(t, "GetConsent missing", err, store.ErrNotFound)
	wantErr(t, "DeleteConsent missing", s.DeleteConsent(ctx, user, "client-1"), store.ErrNotFound)

	c := &store.Consent{UserKey: user, ClientID: "client-1", Scopes: []string{"tools:read"}, CreatedAt: n}
	must(t, "SaveConsent", s.SaveConsent(ctx, c))
	other := &store.Consent{UserKey: user, ClientID: "client-2", Scopes: []string{"tools:call"}, CreatedAt: n}
	must(t, "SaveConsent other", s.SaveConsent(ctx, other))
	got, err := s.GetConsent(ctx, user, "client-1")
	must(t, "GetConsent", err)
	same(t, "GetConsent mismatch", c, got)

	c2 := &store.Consent{UserKey: user, ClientID: "client-1", Scopes: []string{"tools:read", "tools:call"}, CreatedAt: n.Add(time.Minute)}
	must(t, "SaveConsent replace", s.SaveConsent(ctx, c2))
	got, err = s.GetConsent(ctx, user, "client-1")
	must(t, "GetConsent replaced", err)
	same(t, "GetConsent after replace mismatch", c2, got)
	// The key is the pair: neither half alone matches.
	_, err = s.GetConsent(ctx, "https://idp.example#bob", "client-1")
	wantErr(t, "GetConsent other user", err, store.ErrNotFound)

	must(t, "DeleteConsent", s.DeleteConsent(ctx, user, "client-1"))
	_, err = s.GetConsent(ctx, user, "client-1")
	wantErr(t, "GetConsent deleted", err, store.ErrNotFound)
	if _, err := s.GetConsent(ctx, user, "client-2"); err != nil {
		t.Errorf("deleting client-1's consent removed client-2's: %v", err)
	}
}

func testSigningKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := now()
	keys, err := s.ListSigningKeys(ctx)
	must(t, "ListSigningKeys empty", err)
	if len(keys) != 0 {
		t.Fatalf("ListSigningKeys on empty store = %d keys", len(keys))
	}
	k1 := &store.SigningKey{ID: "kid-1", Algorithm: "ES256", Private: []byte("sealed-1"), Public: []byte(`{"kid":"kid-1"}`), Status: store.KeyActive, CreatedAt: n.Add(-time.Hour)}
	k2 := &store.SigningKey{ID: "kid-2", Algorithm: "RS256", Private: []byte("sealed-2"), Public: []byte(`{"kid":"kid-2"}`), Status: store.KeyNext, CreatedAt: n}
	// Insert out of order: the list is ordered by CreatedAt.
	must(t, "CreateSigningKey 2", s.CreateSigningKey(ctx, k2))
	must(t, "CreateSigningKey 1", s.CreateSigningKey(ctx, k1))
	wantErr(t, "CreateSigningKey duplicate", s.CreateSigningKey(ctx, k1), store.ErrConflict)
	keys, err = s.ListSigningKeys(ctx)
	must(t, "ListSigningKeys", err)
	same(t, "ListSigningKeys mismatch", []*store.SigningKey{k1, k2}, keys)

	// Status and RetireAt change; key material does not.
	upd := *k1
	upd.Status = store.KeyRetired
	upd.RetireAt = n
	upd.Private = []byte("replaced")
	upd.Algorithm = "HS256"
	must(t, "UpdateSigningKey", s.UpdateSigningKey(ctx, &upd))
	want1 := *k1
	want1.Status = store.KeyRetired
	want1.RetireAt = n
	want1.Private = []byte("replaced") // re-sealed; the algorithm never changes
	keys, err = s.ListSigningKeys(ctx)
	must(t, "ListSigningKeys after update", err)
	same(t, "ListSigningKeys after update mismatch", []*store.SigningKey{&want1, k2}, keys)
	// Without Private, the sealed key stays as stored.
	upd.Private = nil
	must(t, "UpdateSigningKey without Private", s.UpdateSigningKey(ctx, &upd))
	keys, err = s.ListSigningKeys(ctx)
	must(t, "ListSigningKeys after second update", err)
	same(t, "UpdateSigningKey without Private changed the key", []*store.SigningKey{&want1, k2}, keys)
	wantErr(t, "UpdateSigningKey unknown", s.UpdateSigningKey(ctx, &store.SigningKey{ID: "unknown", Status: store.KeyActive}), store.ErrNotFound)

	must(t, "DeleteSigningKey", s.DeleteSigningKey(ctx, k1.ID))
	wantErr(t, "DeleteSigningKey again", s.DeleteSigningKey(ctx, k1.ID), store.ErrNotFound)
	keys, err = s.ListSigningKeys(ctx)
	must(t, "ListSigningKeys after delete", err)
	same(t, "ListSigningKeys after delete mismatch", []*store.SigningKey{k2}, keys)
}

func testDeleteExpired(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := now()
	sweep := n.Add(time.Hour)
	before, after := sweep.Add(-time.Minute), sweep.Add(time.Minute)

	must(t, "client old", s.CreateClient(ctx, &store.Client{ID: "c-old", CreatedAt: n, ExpiresAt: before}))
	must(t, "client edge", s.CreateClient(ctx, &store.Client{ID: "c-edge", CreatedAt: n, ExpiresAt: sweep})) // expiry == now counts as expired
	must(t, "client live", s.CreateClient(ctx, &store.Client{ID: "c-live", CreatedAt: n, ExpiresAt: after}))
	must(t, "client forever", s.CreateClient(ctx, &store.Client{ID: "c-forever", CreatedAt: n}))

	must(t, "request old", s.CreateAuthRequest(ctx, newRequest("r-old", before)))
	must(t, "request live", s.CreateAuthRequest(ctx, newRequest("r-live", after)))

	must(t, "code old", s.CreateAuthCode(ctx, newCode("code-old", before)))
	must(t, "code live", s.CreateAuthCode(ctx, newCode("code-live", after)))

	gOld := newGrant("g-old", n)
	gOld.ExpiresAt = before
	gLive := newGrant("g-live", n)
	gLive.ExpiresAt = after.Add(48 * time.Hour)
	rtOfOld := newRefresh("rt-of-old-grant", "g-old", n) // live itself, but its grant goes
	rtOld := newRefresh("rt-old", "g-live", n)
	rtOld.ExpiresAt = before
	rtLive := newRefresh("rt-live", "g-live", n)
	rtLive.ExpiresAt = after
	must(t, "grant old", seed(s, gOld, rtOfOld))
	must(t, "grant live", seed(s, gLive, rtLive))
	must(t, "refresh old", s.RotateRefreshToken(ctx, rtLive.Hash, rtOld, n))
	must(t, "consent", s.SaveConsent(ctx, &store.Consent{UserKey: "u", ClientID: "c-old", CreatedAt: n}))
	must(t, "signing key", s.CreateSigningKey(ctx, &store.SigningKey{ID: "kid", Algorithm: "ES256", Status: store.KeyRetired, CreatedAt: n, RetireAt: before}))

	// Before the sweep time, nothing has expired yet.
	removed, err := s.DeleteExpired(ctx, n.Add(-time.Hour))
	must(t, "DeleteExpired early", err)
	if removed != 0 {
		t.Errorf("DeleteExpired before anything expired removed %d", removed)
	}

	removed, err = s.DeleteExpired(ctx, sweep)
	must(t, "DeleteExpired", err)
	// c-old, c-edge, r-old, code-old, g-old, rt-of-old-grant, rt-old
	if removed != 7 {
		t.Errorf("DeleteExpired removed %d objects, want 7", removed)
	}
	removed, err = s.DeleteExpired(ctx, sweep)
	must(t, "DeleteExpired again", err)
	if removed != 0 {
		t.Errorf("second DeleteExpired removed %d objects, want 0", removed)
	}

	// Getters use the real clock, under which everything above is live, so
	// they see exactly what the sweep left.
	for _, id := range []string{"c-old", "c-edge"} {
		_, err := s.GetClient(ctx, id)
		wantErr(t, "GetClient "+id, err, store.ErrNotFound)
	}
	for _, id := range []string{"c-live", "c-forever"} {
		if _, err := s.GetClient(ctx, id); err != nil {
			t.Errorf("GetClient %s: %v", id, err)
		}
	}
	_, err = s.GetAuthRequest(ctx, "r-old")
	wantErr(t, "GetAuthRequest r-old", err, store.ErrNotFound)
	if _, err := s.GetAuthRequest(ctx, "r-live"); err != nil {
		t.Errorf("GetAuthRequest r-live: %v", err)
	}
	var calls atomic.Int32
	_, err = s.RedeemAuthCode(ctx, "code-old", issueFor(n, "", &calls))
	wantErr(t, "RedeemAuthCode code-old", err, store.ErrNotFound)
	if _, err := s.RedeemAuthCode(ctx, "code-live", issueFor(n, "", &calls)); err != nil {
		t.Errorf("RedeemAuthCode code-live: %v", err)
	}
	_, err = s.GetGrant(ctx, "g-old")
	wantErr(t, "GetGrant g-old", err, store.ErrNotFound)
	if _, err := s.GetGrant(ctx, "g-live"); err != nil {
		t.Errorf("GetGrant g-live: %v", err)
	}
	for _, h := range []string{rtOfOld.Hash, rtOld.Hash} {
		_, err := s.GetRefreshToken(ctx, h)
		wantErr(t, "GetRefreshToken swept", err, store.ErrNotFound)
	}
	if _, err := s.GetRefreshToken(ctx, rtLive.Hash); err != nil {
		t.Errorf("GetRefreshToken rt-live: %v", err)
	}
	if _, err := s.GetConsent(ctx, "u", "c-old"); err != nil {
		t.Errorf("DeleteExpired removed a consent: %v", err)
	}
	if keys, err := s.ListSigningKeys(ctx); err != nil || len(keys) != 1 {
		t.Errorf("DeleteExpired touched signing keys: %d keys, %v", len(keys), err)
	}
}

// testLongKeys guards against identifiers too long to be raw index keys
// (CIMD client IDs are URLs; subjects can be long).
func testLongKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := now()
	clientID := "https://client.example/" + strings.Repeat("a", 8000)
	userKey := "https://idp.example#" + strings.Repeat("s", 8000)
	must(t, "CreateClient long ID", s.CreateClient(ctx, &store.Client{ID: clientID, Kind: store.ClientKindCIMD, CreatedAt: n}))
	got, err := s.GetClient(ctx, clientID)
	must(t, "GetClient long ID", err)
	if got.ID != clientID {
		t.Errorf("GetClient long ID returned ID of length %d, want %d", len(got.ID), len(clientID))
	}
	// A prefix of the long ID is a different client.
	_, err = s.GetClient(ctx, clientID[:len(clientID)-1])
	wantErr(t, "GetClient prefix", err, store.ErrNotFound)

	must(t, "SaveConsent long keys", s.SaveConsent(ctx, &store.Consent{UserKey: userKey, ClientID: clientID, Scopes: []string{"a"}, CreatedAt: n}))
	c, err := s.GetConsent(ctx, userKey, clientID)
	must(t, "GetConsent long keys", err)
	if c.UserKey != userKey || c.ClientID != clientID {
		t.Errorf("GetConsent long keys returned different keys")
	}

	g := newGrant(strings.Repeat("g", 5000), n)
	g.UserKey = userKey
	g.ClientID = clientID
	rt := newRefresh("rt", g.ID, n)
	rt.ClientID = clientID
	must(t, "seed grant with long ID", seed(s, g, rt))
	must(t, "RevokeRefreshTokensForGrant long", s.RevokeRefreshTokensForGrant(ctx, g.ID))
	_, err = s.GetRefreshToken(ctx, rt.Hash)
	wantErr(t, "GetRefreshToken after revoke", err, store.ErrNotFound)
}

// nextChange waits for a change other than ChangeAll (which a backend may
// send at any time, e.g. when its listener connects).
func nextChange(t *testing.T, ch <-chan store.Change) store.Change {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case c, ok := <-ch:
			if !ok {
				t.Fatal("subscription closed")
			}
			if c.Kind != store.ChangeAll {
				return c
			}
		case <-timeout:
			t.Fatal("no change within 5s")
		}
	}
}

func testChanges(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := s.Subscribe(ctx), s.Subscribe(ctx)

	// Every subscriber hears every change, in order.
	must(t, "Notify", s.Notify(ctx, store.Change{Kind: store.ChangeGrant, ID: "g1"}))
	must(t, "Notify", s.Notify(ctx, store.Change{Kind: store.ChangeKeys}))
	for name, ch := range map[string]<-chan store.Change{"a": a, "b": b} {
		if got := nextChange(t, ch); got != (store.Change{Kind: store.ChangeGrant, ID: "g1"}) {
			t.Errorf("%s: first change %+v", name, got)
		}
		if got := nextChange(t, ch); got != (store.Change{Kind: store.ChangeKeys}) {
			t.Errorf("%s: second change %+v", name, got)
		}
	}

	// An ID past the bound names everything.
	must(t, "Notify", s.Notify(ctx, store.Change{Kind: store.ChangeGrant, ID: strings.Repeat("x", store.MaxChangeID+1)}))
	for _, ch := range []<-chan store.Change{a, b} {
		select {
		case c := <-ch:
			if c.Kind != store.ChangeAll {
				t.Errorf("oversized ID: got %+v, want ChangeAll", c)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("oversized ID: nothing delivered")
		}
	}

	// A subscriber that does not read never blocks Notify, and learns that
	// it missed changes.
	lagging := s.Subscribe(ctx)
	for i := range 500 {
		must(t, "Notify", s.Notify(ctx, store.Change{Kind: store.ChangeGrant, ID: fmt.Sprint(i)}))
	}
	sawAll := false
	for len(lagging) > 0 {
		if (<-lagging).Kind == store.ChangeAll {
			sawAll = true
		}
	}
	if !sawAll {
		t.Error("a lagging subscriber was not told it missed changes")
	}

	// A subscription ends with its context.
	sctx, scancel := context.WithCancel(ctx)
	ended := s.Subscribe(sctx)
	scancel()
	timeout := time.After(5 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-ended:
		case <-timeout:
			t.Fatal("subscription not closed after its context ended")
		}
	}
}

// testOrderedTokens: codes and refresh tokens keyed by the 80-hex hash of a
// time-ordered token (stored by SQL backends as its 40 bytes) live beside
// 64-hex ones: redeemed, looked up, rotated either way, with ReplacedBy
// kept as given; tokens of the same microsecond stay distinct.
func testOrderedTokens(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := now()
	ordered := func(at int64, b byte) string {
		var secret [32]byte
		secret[0] = b
		return store.TokenHash(store.OrderedToken(at, &secret))
	}
	at := n.UnixMicro()
	codes := []string{ordered(at, 1), ordered(at, 2), store.HashKey("legacy-code")}
	rts := []string{ordered(at+1, 1), store.HashKey("legacy-rt"), ordered(at+1, 2)}
	var calls atomic.Int32
	for i, h := range codes {
		c := newCode(h, n.Add(time.Minute))
		must(t, "CreateAuthCode", s.CreateAuthCode(ctx, c))
		_, err := s.RedeemAuthCode(ctx, h, issueFor(n, rts[i], &calls))
		must(t, "RedeemAuthCode", err)
		_, err = s.RedeemAuthCode(ctx, h, issueFor(n, "", &calls))
		wantErr(t, "RedeemAuthCode again", err, store.ErrAlreadyUsed)
		rt, g, err := s.GetRefreshTokenGrant(ctx, rts[i])
		must(t, "GetRefreshTokenGrant", err)
		if rt.Hash != rts[i] || g.ID != c.GrantID {
			t.Fatalf("token %d: got %s of %s, want %s of %s", i, rt.Hash, g.ID, rts[i], c.GrantID)
		}
	}
	// Rotate each to the other family.
	for i, h := range rts {
		next := ordered(at+2, byte(10+i))
		if i == 0 {
			next = store.HashKey("legacy-successor")
		}
		g := "grant-" + codes[i]
		must(t, "RotateRefreshToken", s.RotateRefreshToken(ctx, h, &store.RefreshToken{Hash: next, GrantID: g, ClientID: "client-1",
			CreatedAt: n, ExpiresAt: n.Add(time.Hour)}, n))
		old, err := s.GetRefreshToken(ctx, h)
		must(t, "GetRefreshToken", err)
		if old.ReplacedBy != next {
			t.Errorf("token %d replaced by %q, want %q", i, old.ReplacedBy, next)
		}
		cur, err := s.GetRefreshToken(ctx, next)
		must(t, "GetRefreshToken successor", err)
		if cur.GrantID != g || !cur.RotatedAt.IsZero() {
			t.Errorf("successor %d: %+v", i, cur)
		}
	}
	_, err := s.GetRefreshToken(ctx, ordered(at+1, 3))
	wantErr(t, "GetRefreshToken of another secret, same time", err, store.ErrNotFound)
}

// testOrderedGrantIDs: grants whose ID is a time-ordered ID (stored by SQL
// backends as its 24 bytes) live beside grants with other IDs, including
// one of the same length in uppercase hex: each is created by its code,
// read, updated, rotated under, revoked, and its tokens revoked, without
// touching the others.
func testOrderedGrantIDs(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := now()
	var r1, r2 [16]byte
	r2[0] = 1
	at := n.UnixMicro()
	ids := []string{store.OrderedID(at, &r1), "GH7K2MZQ4WXYLA5T3RBN6PVCDE", strings.ToUpper(store.OrderedID(at, &r1)), store.OrderedID(at, &r2)}
	var calls atomic.Int32
	for i, id := range ids {
		c := newCode(store.HashKey("code-"+id), n.Add(time.Minute))
		c.GrantID = id
		must(t, "CreateAuthCode", s.CreateAuthCode(ctx, c))
		_, err := s.RedeemAuthCode(ctx, c.Hash, issueFor(n, store.HashKey(fmt.Sprint("rt-", i)), &calls))
		must(t, "RedeemAuthCode", err)
	}
	for i, id := range ids {
		g, err := s.GetGrant(ctx, id)
		must(t, "GetGrant", err)
		if g.ID != id {
			t.Errorf("GetGrant(%s).ID = %s", id, g.ID)
		}
		rt, g, err := s.GetRefreshTokenGrant(ctx, store.HashKey(fmt.Sprint("rt-", i)))
		must(t, "GetRefreshTokenGrant", err)
		if rt.GrantID != id || g.ID != id {
			t.Errorf("token %d: grant %s / %s, want %s", i, rt.GrantID, g.ID, id)
		}
		must(t, "UpdateGrantUpstream", s.UpdateGrantUpstream(ctx, id, nil, []byte(id), n.Add(time.Hour), g.Version))
		next := &store.RefreshToken{Hash: store.HashKey(fmt.Sprint("rt2-", i)), GrantID: id, ClientID: "client-1", CreatedAt: n, ExpiresAt: n.Add(time.Hour)}
		must(t, "RotateRefreshToken", s.RotateRefreshToken(ctx, rt.Hash, next, n))
	}
	// Revoke the first grant and its tokens: the others, one of which has
	// the same bytes in another case, keep theirs.
	must(t, "RevokeGrant", s.RevokeGrant(ctx, ids[0]))
	must(t, "RevokeRefreshTokensForGrant", s.RevokeRefreshTokensForGrant(ctx, ids[0]))
	for i, id := range ids {
		g, err := s.GetGrant(ctx, id)
		must(t, "GetGrant", err)
		if g.Revoked != (i == 0) || string(g.UpstreamTokens) != id || g.Version != 1 {
			t.Errorf("grant %s: revoked %v, upstream %q, version %d", id, g.Revoked, g.UpstreamTokens, g.Version)
		}
		_, err = s.GetRefreshToken(ctx, store.HashKey(fmt.Sprint("rt2-", i)))
		if i == 0 {
			wantErr(t, "GetRefreshToken of the revoked grant's token", err, store.ErrNotFound)
		} else {
			must(t, "GetRefreshToken", err)
		}
	}
}
