package authserver

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/memory"
	"github.com/mcpgate/mcpgate/internal/store/sqlite"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

func TestCodeExchangeFailures(t *testing.T) {
	e := newEnv(t, envOpt{})
	c := e.register("http://127.0.0.1:3000/cb", true)
	other := e.register("http://127.0.0.1:3000/cb", true)
	tests := []struct {
		name    string
		as      regClient
		extra   url.Values
		status  int
		errCode string
		spends  bool // the code was redeemed and refused: it is used up
	}{
		{"wrong verifier", c, url.Values{"code_verifier": {strings.Repeat("a", 43)}}, 400, "invalid_grant", true},
		{"missing verifier", c, url.Values{"code_verifier": {""}}, 400, "invalid_request", false},
		{"short verifier", c, url.Values{"code_verifier": {"abc"}}, 400, "invalid_grant", true},
		{"challenge as verifier", c, url.Values{"code_verifier": {pkceS256(testVerifier)}}, 400, "invalid_grant", true},
		{"redirect mismatch", c, url.Values{"redirect_uri": {"http://127.0.0.1:3000/cb/"}}, 400, "invalid_grant", true},
		{"redirect missing", c, url.Values{"redirect_uri": {""}}, 400, "invalid_grant", true},
		{"other client", other, nil, 400, "invalid_grant", true},
		{"unknown client", regClient{ID: "nope", Redirect: c.Redirect}, nil, 401, "invalid_client", false},
		{"resource mismatch", c, url.Values{"resource": {"https://other.example.com/mcp"}}, 400, "invalid_target", true},
		{"bad grant type", c, url.Values{"grant_type": {"password"}}, 400, "unsupported_grant_type", false},
		{"repeated code", c, url.Values{"code": {"a", "b"}}, 400, "invalid_request", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code := e.code(c)
			st, m := e.exchange(tc.as, code, tc.extra)
			if st != tc.status || m["error"] != tc.errCode {
				t.Errorf("got %d %v, want %d %s", st, m, tc.status, tc.errCode)
			}
			// A refused redemption spends the code (RFC 6749 §4.1.2: single
			// use); one rejected before redemption leaves it usable.
			st, m = e.exchange(c, code, nil)
			if tc.spends && (st != http.StatusBadRequest || m["error"] != "invalid_grant") {
				t.Errorf("correct exchange after a refused one: %d %v, want invalid_grant", st, m)
			}
			if !tc.spends && st != http.StatusOK {
				t.Errorf("correct exchange after an early rejection: %d %v, want 200", st, m)
			}
		})
	}
	t.Run("garbage code", func(t *testing.T) {
		if st, m := e.exchange(c, "garbage", nil); st != 400 || m["error"] != "invalid_grant" {
			t.Errorf("got %d %v", st, m)
		}
	})
	t.Run("expired code", func(t *testing.T) {
		// The store expires by wall clock: issue the code "2 minutes ago"
		// so its 1-minute lifetime has passed.
		e.clock.Add(-2 * time.Minute)
		code := e.code(c)
		e.clock.Add(2 * time.Minute)
		if st, m := e.exchange(c, code, nil); st != 400 || m["error"] != "invalid_grant" {
			t.Errorf("got %d %v", st, m)
		}
	})
}

func TestCodeReplayRevokesTokens(t *testing.T) {
	e := newEnv(t, envOpt{})
	c := e.register("http://127.0.0.1:3000/cb", true)
	code := e.code(c)
	st, tok := e.exchange(c, code, nil)
	if st != http.StatusOK {
		t.Fatal(tok)
	}
	at, rt := tok["access_token"].(string), tok["refresh_token"].(string)
	if err := e.authn("/mcp", at); err != nil {
		t.Fatal(err)
	}
	st, m := e.exchange(c, code, nil)
	if st != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Fatalf("replay: %d %v", st, m)
	}
	if err := e.authn("/mcp", at); !errors.Is(err, authn.ErrInvalidToken) {
		t.Errorf("access token after code replay: err = %v, want revoked", err)
	}
	if st, m := e.refresh(c, rt); st != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Errorf("refresh after code replay: %d %v", st, m)
	}
}

// TestConcurrentCodeExchange races exchanges of one code: exactly one
// gets tokens, and since the others are replays, its grant ends up revoked.
// The grant is created in the same write that spends the code, so no
// replay can run before the grant exists and miss it.
func TestConcurrentCodeExchange(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) store.Store{
		"memory": func(*testing.T) store.Store { return memory.New() },
		"sqlite": func(t *testing.T) store.Store {
			s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "as.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, envOpt{st: open(t)})
			c := e.register("http://127.0.0.1:3000/cb", true)
			for round := range 5 {
				code := e.code(c)
				const n = 6
				var wg sync.WaitGroup
				results := make([]map[string]any, n)
				codes := make([]int, n)
				for i := range n {
					wg.Go(func() { codes[i], results[i] = e.exchange(c, code, nil) })
				}
				wg.Wait()
				winner := -1
				for i := range n {
					switch {
					case codes[i] == http.StatusOK && winner >= 0:
						t.Fatalf("round %d: exchanges %d and %d both succeeded", round, winner, i)
					case codes[i] == http.StatusOK:
						winner = i
					case codes[i] != http.StatusBadRequest || results[i]["error"] != "invalid_grant":
						t.Fatalf("round %d: exchange %d: %d %v", round, i, codes[i], results[i])
					}
				}
				if winner < 0 {
					t.Fatalf("round %d: no exchange succeeded", round)
				}
				if err := e.authn("/mcp", results[winner]["access_token"].(string)); !errors.Is(err, authn.ErrInvalidToken) {
					t.Errorf("round %d: winner's access token after replays: err = %v, want revoked", round, err)
				}
				if st, m := e.refresh(c, results[winner]["refresh_token"].(string)); st != http.StatusBadRequest {
					t.Errorf("round %d: winner's refresh token after replays: %d %v", round, st, m)
				}
			}
		})
	}
}

func TestRefreshRotation(t *testing.T) {
	e := newEnv(t, envOpt{})
	c := e.register("http://127.0.0.1:3000/cb", true)
	tok := e.tokens(c)
	rt0 := tok["refresh_token"].(string)

	st, r1 := e.refresh(c, rt0)
	if st != http.StatusOK {
		t.Fatal(r1)
	}
	rt1 := r1["refresh_token"].(string)
	if rt1 == rt0 || r1["access_token"] == tok["access_token"] || r1["token_type"] != "Bearer" || r1["scope"] != "mcp:read" {
		t.Fatalf("refresh response = %v", r1)
	}
	if err := e.authn("/mcp", r1["access_token"].(string)); err != nil {
		t.Fatal(err)
	}
	st, r2 := e.refresh(c, rt1)
	if st != http.StatusOK {
		t.Fatal(r2)
	}
	// Narrower scope on refresh is allowed; wider is not; neither consumes
	// the token on failure.
	rt2 := r2["refresh_token"].(string)
	st, m := e.tokenRequest(c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt2}, "scope": {"mcp:read mcp:write"}})
	if st != 400 || m["error"] != "invalid_scope" {
		t.Errorf("wider scope: %d %v", st, m)
	}
	st, m = e.tokenRequest(c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt2}, "resource": {"https://x.example.com/mcp"}})
	if st != 400 || m["error"] != "invalid_target" {
		t.Errorf("other resource: %d %v", st, m)
	}
	other := e.register("http://127.0.0.1:3000/cb", true)
	if st, m := e.refresh(other, rt2); st != 400 || m["error"] != "invalid_grant" {
		t.Errorf("another client's refresh token: %d %v", st, m)
	}
	if st, m := e.refresh(c, rt2); st != http.StatusOK {
		t.Errorf("refresh after rejected attempts: %d %v", st, m)
	}
}

func TestRefreshReuseOutsideGraceRevokesFamily(t *testing.T) {
	e := newEnv(t, envOpt{})
	c := e.register("http://127.0.0.1:3000/cb", true)
	rt0 := e.tokens(c)["refresh_token"].(string)
	_, r1 := e.refresh(c, rt0)
	rt1, at1 := r1["refresh_token"].(string), r1["access_token"].(string)

	e.clock.Add(31 * time.Second) // past the 30s grace
	st, m := e.refresh(c, rt0)
	if st != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Fatalf("reuse: %d %v", st, m)
	}
	// The whole family is dead: the current refresh token and access tokens.
	if st, m := e.refresh(c, rt1); st != http.StatusBadRequest {
		t.Errorf("current refresh token after reuse: %d %v", st, m)
	}
	if err := e.authn("/mcp", at1); !errors.Is(err, authn.ErrInvalidToken) {
		t.Errorf("access token after reuse: %v", err)
	}
}

// TestRefreshGrace: reusing the immediately previous refresh token is
// forgiven within refresh_grace (default 30s); with refresh_grace 0 even an
// immediate reuse is a replay that revokes the whole family.
func TestRefreshGrace(t *testing.T) {
	for _, tc := range []struct {
		name    string
		grace   *Duration
		after   time.Duration // between the rotation and the reuse
		revoked bool
	}{
		{name: "unset, immediate reuse", after: 0},
		{name: "unset, reuse after 29s", after: 29 * time.Second},
		{name: "unset, reuse after 31s", after: 31 * time.Second, revoked: true},
		{name: "0, immediate reuse", grace: new(Duration(0)), after: 0, revoked: true},
		{name: "0, reuse after 1s", grace: new(Duration(0)), after: time.Second, revoked: true},
		{name: "5s, reuse after 4s", grace: new(Duration(5 * time.Second)), after: 4 * time.Second},
		{name: "5s, reuse after 6s", grace: new(Duration(5 * time.Second)), after: 6 * time.Second, revoked: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOpt{cfg: func(c *Config) { c.RefreshGrace = tc.grace }})
			c := e.register("http://127.0.0.1:3000/cb", true)
			rt0 := e.tokens(c)["refresh_token"].(string)
			st, r1 := e.refresh(c, rt0)
			if st != http.StatusOK {
				t.Fatalf("first refresh: %d %v", st, r1)
			}
			rt1 := r1["refresh_token"].(string)
			e.clock.Add(tc.after)
			st, m := e.refresh(c, rt0)
			if !tc.revoked {
				if st != http.StatusOK || m["refresh_token"] != rt1 {
					t.Fatalf("reuse within grace: %d %v, want 200 with the same successor", st, m)
				}
				if st, m := e.refresh(c, rt1); st != http.StatusOK {
					t.Fatalf("successor after a forgiven reuse: %d %v", st, m)
				}
				return
			}
			if st != http.StatusBadRequest || m["error"] != "invalid_grant" {
				t.Fatalf("reuse: %d %v, want 400 invalid_grant", st, m)
			}
			// Reuse detection revoked the family: the successor and the access token are dead.
			if st, m := e.refresh(c, rt1); st != http.StatusBadRequest {
				t.Errorf("successor after reuse: %d %v", st, m)
			}
			if err := e.authn("/mcp", r1["access_token"].(string)); !errors.Is(err, authn.ErrInvalidToken) {
				t.Errorf("access token after reuse: %v", err)
			}
		})
	}
}

func TestRefreshReuseOfOlderTokenInsideGraceRevokes(t *testing.T) {
	e := newEnv(t, envOpt{})
	c := e.register("http://127.0.0.1:3000/cb", true)
	rt0 := e.tokens(c)["refresh_token"].(string)
	_, r1 := e.refresh(c, rt0)
	_, r2 := e.refresh(c, r1["refresh_token"].(string))
	// rt0 is two generations old: not the immediately previous token.
	if st, _ := e.refresh(c, rt0); st != http.StatusBadRequest {
		t.Fatalf("older token reuse accepted: %d", st)
	}
	if st, _ := e.refresh(c, r2["refresh_token"].(string)); st != http.StatusBadRequest {
		t.Error("family not revoked")
	}
}

func TestConcurrentRefreshInsideGrace(t *testing.T) {
	e := newEnv(t, envOpt{})
	c := e.register("http://127.0.0.1:3000/cb", true)
	rt0 := e.tokens(c)["refresh_token"].(string)

	const n = 5
	var wg sync.WaitGroup
	results := make([]map[string]any, n)
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() { codes[i], results[i] = e.refresh(c, rt0) })
	}
	wg.Wait()
	var successor string
	for i := range n {
		if codes[i] != http.StatusOK {
			t.Fatalf("concurrent refresh %d: %d %v", i, codes[i], results[i])
		}
		// All get the same successor, so whichever the client keeps works.
		rt := results[i]["refresh_token"].(string)
		if successor == "" {
			successor = rt
		} else if rt != successor {
			t.Errorf("refresh %d got a different successor", i)
		}
		if err := e.authn("/mcp", results[i]["access_token"].(string)); err != nil {
			t.Errorf("access token %d: %v", i, err)
		}
	}
	// Long after the grace window, the successor still works: the session lives.
	e.clock.Add(10 * time.Minute)
	if st, m := e.refresh(c, successor); st != http.StatusOK {
		t.Errorf("successor after concurrent refresh: %d %v", st, m)
	}
}

func TestRefreshWithoutRefreshGrant(t *testing.T) {
	e := newEnv(t, envOpt{})
	st, m := e.registerRaw(map[string]any{"redirect_uris": []string{"http://127.0.0.1:1/cb"}, "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code"}}, nil)
	if st != http.StatusCreated {
		t.Fatal(m)
	}
	c := regClient{ID: m["client_id"].(string), Redirect: "http://127.0.0.1:1/cb"}
	tok := e.tokens(c)
	if _, ok := tok["refresh_token"]; ok {
		t.Error("refresh token issued to a client without the refresh_token grant")
	}
	if st, m := e.refresh(c, "anything"); st != 400 || m["error"] != "unauthorized_client" {
		t.Errorf("refresh grant: %d %v", st, m)
	}
}

func TestTokenEndpointProtocol(t *testing.T) {
	e := newEnv(t, envOpt{})
	c := e.register("http://127.0.0.1:3000/cb", true)
	tok := e.tokens(c)
	_, _, h := e.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}, "client_id": {c.ID}}, nil)
	if h.Get("Cache-Control") != "no-store" || h.Get("Content-Type") != "application/json" {
		t.Errorf("token response headers: %v", h)
	}
	// GET is not allowed.
	if p := e.browser().get(e.iss + "/token"); p.status != http.StatusMethodNotAllowed {
		t.Errorf("GET /token: %d", p.status)
	}
	// A public client presenting a secret is refused.
	st, m, _ := e.post("/token", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "client_id": {c.ID}, "client_secret": {"s"}}, nil)
	if st != 401 || m["error"] != "invalid_client" {
		t.Errorf("public client with secret: %d %v", st, m)
	}
	// Basic and form secret at once.
	conf := e.register("https://c.example.com/cb", false)
	st, m, _ = e.post("/token", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "client_secret": {conf.Secret}},
		func(r *http.Request) { r.SetBasicAuth(conf.ID, conf.Secret) })
	if st != 400 || m["error"] != "invalid_request" {
		t.Errorf("two auth methods: %d %v", st, m)
	}
	// Failed Basic authentication carries a challenge.
	_, _, h = e.post("/token", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}},
		func(r *http.Request) { r.SetBasicAuth(conf.ID, "wrong") })
	if !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("no Basic challenge: %v", h)
	}
}

// lockedBuffer is a log destination shared by concurrent handlers.
type lockedBuffer = testutil.SyncBuffer

// A grant writes no log line at the default level (info): the audit record
// is the record of it, and a log write per grant is a cost of the hot path.
// At debug level the exchange's line is there.
func TestTokenEndpointLogsNothingPerGrant(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		t.Run(level.String(), func(t *testing.T) {
			var buf lockedBuffer
			e := newEnv(t, envOpt{deps: func(d *Deps) {
				d.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level}))
			}})
			c := e.register("http://127.0.0.1:3000/cb", true)
			code := e.code(c)
			before := len(buf.String())
			st, tok := e.exchange(c, code, nil)
			if st != http.StatusOK {
				t.Fatalf("exchange: %d %v", st, tok)
			}
			if st, m := e.refresh(c, tok["refresh_token"].(string)); st != http.StatusOK {
				t.Fatalf("refresh: %d %v", st, m)
			}
			logged := buf.String()[before:]
			if level == slog.LevelInfo && logged != "" {
				t.Errorf("an exchange and a refresh logged at info:\n%s", logged)
			}
			if level == slog.LevelDebug && !strings.Contains(logged, `msg="tokens issued"`) {
				t.Errorf("no debug line for the exchange:\n%s", logged)
			}
		})
	}
}

// A token request's parameters are its body's: a query is ignored (even
// one naming the parameters), and one that does not parse is refused, as
// net/http's ParseForm refuses it, whether or not r.Form is left empty for
// a request without a query.
func TestTokenRequestQuery(t *testing.T) {
	e := newEnv(t, envOpt{})
	c := e.register("http://127.0.0.1:3000/cb", true)
	for _, tc := range []struct {
		query   string
		status  int
		errCode string
	}{
		{"", http.StatusOK, ""},
		{"?grant_type=password&code=other&code_verifier=x", http.StatusOK, ""},
		{"?a=%zz", http.StatusBadRequest, "invalid_request"},
		{"?a=1;b=2", http.StatusBadRequest, "invalid_request"},
	} {
		f := url.Values{"grant_type": {"authorization_code"}, "code": {e.code(c)}, "redirect_uri": {c.Redirect},
			"code_verifier": {testVerifier}, "client_id": {c.ID}}
		st, m, _ := e.post("/token"+tc.query, f, nil)
		if st != tc.status || (tc.errCode != "" && m["error"] != tc.errCode) {
			t.Errorf("query %q: %d %v, want %d %s", tc.query, st, m, tc.status, tc.errCode)
		}
	}
}
