package credential

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/identity"
)

// TestTokenExchangeRequest: an RFC 8693 request carries the user's token as
// subject_token with its type, the configured audience, resource, scope and
// requested type, and the client authenticated per RFC 6749 §2.3.1; the
// answer becomes "Authorization: Bearer <issued token>", and the exchange is
// audited without a token value.
func TestTokenExchangeRequest(t *testing.T) {
	for _, tc := range []struct {
		name        string
		subject     SubjectSource
		up          UpstreamTokens
		wantSubject string
	}{
		// authorization_server mode: the upstream token stored with the
		// grant, never the gateway's own token the client presented.
		{"authorization_server: the upstream token", SubjectUpstream, upstreamMap{"tsid-a": "upstream-at-alice"}, "upstream-at-alice"},
		// jwt mode: the token the client presented.
		{"jwt: the incoming token", SubjectIncoming, nil, "incoming-token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSTS(t, okExchange("exchanged.for-db", 3600))
			f := newFixture(t, exchangeConfig(s.url()), tc.subject, tc.up)
			h, err := f.p.Get(context.Background(), Subject{Principal: alice, Token: "incoming-token"})
			if err != nil {
				t.Fatal(err)
			}
			if h != (Header{Name: "Authorization", Value: "Bearer exchanged.for-db"}) {
				t.Errorf("header %+v", h)
			}
			want := url.Values{
				"grant_type":           {"urn:ietf:params:oauth:grant-type:token-exchange"},
				"subject_token":        {tc.wantSubject},
				"subject_token_type":   {"urn:ietf:params:oauth:token-type:access_token"},
				"requested_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
				"audience":             {"db-api"},
				"resource":             {"https://db.example/mcp"},
				"scope":                {"db.read db.write"},
			}
			if got := s.lastForm(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("form\n got %v\nwant %v", got, want)
			}
			// client_secret_basic with both parts form-encoded first.
			wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("mcpgate+gw:s3cret%3A%26"))
			if s.auths[0] != wantAuth {
				t.Errorf("Authorization %q, want %q", s.auths[0], wantAuth)
			}
			recs := f.audit.records()
			if len(recs) != 1 {
				t.Fatalf("%d audit records", len(recs))
			}
			r := recs[0]
			if r.Event != audit.EventBackendCredential || r.Result != audit.ResultSuccess || r.Backend != "db" || r.Method != "token_exchange" ||
				r.Subject != "alice" || r.SessionID != "tsid-a" || r.Resource != "db-api" {
				t.Errorf("audit record %+v", r)
			}
			line, _ := r.MarshalJSON()
			mustNotLeak(t, "audit record", string(line), "exchanged.for-db", tc.wantSubject, "incoming-token", "s3cret")
		})
	}
}

// TestOnBehalfOfRequest: Entra's variant is a jwt-bearer grant with the
// user's token as assertion, requested_token_use=on_behalf_of and the scope;
// no RFC 8693 parameters. client_secret_post puts the client in the form.
func TestOnBehalfOfRequest(t *testing.T) {
	s := newSTS(t, issue(map[string]any{"access_token": "obo-token", "token_type": "Bearer", "expires_in": 3599}))
	cfg := Config{Type: TypeTokenExchange, Protocol: ProtocolOnBehalfOf, TokenEndpoint: s.url(), AllowPrivateNetwork: true,
		ClientID: "app", ClientSecret: "sec", ClientAuth: AuthClientSecretPost, Scopes: []string{"api://db/.default"}}
	f := newFixture(t, cfg, SubjectIncoming, nil)
	h, err := f.p.Get(context.Background(), Subject{Principal: alice, Token: "user-jwt"})
	if err != nil || h.Value != "Bearer obo-token" {
		t.Fatalf("%+v, %v", h, err)
	}
	want := url.Values{
		"grant_type":          {"urn:ietf:params:oauth:grant-type:jwt-bearer"},
		"assertion":           {"user-jwt"},
		"requested_token_use": {"on_behalf_of"},
		"scope":               {"api://db/.default"},
		"client_id":           {"app"},
		"client_secret":       {"sec"},
	}
	if got := s.lastForm(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("form\n got %v\nwant %v", got, want)
	}
	if s.auths[0] != "" {
		t.Errorf("client_secret_post also sent Authorization %q", s.auths[0])
	}
	if r := f.audit.records(); len(r) != 1 || r[0].Method != "on_behalf_of" {
		t.Errorf("audit %+v", r)
	}
}

// TestPrivateKeyJWT: client_auth private_key_jwt sends a one-minute
// assertion signed with the configured key, iss = sub = client_id, aud =
// the token endpoint, a jti, and the kid.
func TestPrivateKeyJWT(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	file := filepath.Join(t.TempDir(), "key.pem")
	os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)

	s := newSTS(t, okExchange("t1", 600))
	cfg := exchangeConfig(s.url())
	cfg.ClientSecret, cfg.ClientAuth, cfg.PrivateKeyFile, cfg.KeyID = "", AuthPrivateKeyJWT, file, "k1"
	f := newFixture(t, cfg, SubjectIncoming, nil)
	if _, err := f.p.Get(context.Background(), Subject{Principal: alice, Token: "in"}); err != nil {
		t.Fatal(err)
	}
	form := s.lastForm()
	if form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" || form.Get("client_id") != cfg.ClientID || s.auths[0] != "" {
		t.Fatalf("form %v, Authorization %q", form, s.auths[0])
	}
	tok, err := jwt.ParseSigned(form.Get("client_assertion"), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if tok.Headers[0].KeyID != "k1" {
		t.Errorf("kid %q", tok.Headers[0].KeyID)
	}
	var c jwt.Claims
	if err := tok.Claims(&key.PublicKey, &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(jwt.Expected{Issuer: cfg.ClientID, Subject: cfg.ClientID, AnyAudience: jwt.Audience{s.url()}, Time: f.clock.Now()}); err != nil || c.ID == "" {
		t.Errorf("claims %+v: %v", c, err)
	}
	if c.Expiry.Time().Sub(c.IssuedAt.Time()) != time.Minute {
		t.Errorf("assertion lives %v", c.Expiry.Time().Sub(c.IssuedAt.Time()))
	}

	// A key that cannot be used stops the start.
	bad := filepath.Join(t.TempDir(), "bad.pem")
	os.WriteFile(bad, []byte("not a key"), 0o600)
	cfg.PrivateKeyFile = bad
	if _, err := New(cfg, Options{Subject: SubjectIncoming, Auditor: &auditLog{}}); err == nil {
		t.Error("unreadable private key accepted")
	}
}

// TestExchangeFailures: every way the security token service can fail
// ends in an error of the right kind, a client message that names the
// backend and nothing of the service's answer, an audit record with result
// error, the error counted, and nothing cached.
func TestExchangeFailures(t *testing.T) {
	huge := strings.Repeat("a", maxResponseBytes)
	good := map[string]any{"access_token": "issued-tok-value", "issued_token_type": "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer", "expires_in": 300}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for a, b := range good {
			m[a] = b
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	oauthErr := func(status int, code string) func(http.ResponseWriter, url.Values) {
		return func(w http.ResponseWriter, _ url.Values) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"error":%q,"error_description":"subject token sub=alice secret-detail"}`, code)
		}
	}
	for _, tc := range []struct {
		name       string
		answer     func(http.ResponseWriter, url.Values) // nil: the service is down
		want       error
		wantStatus int
		wantReason string
	}{
		{"down", nil, ErrUnavailable, 502, "unavailable"},
		{"400 invalid_grant", oauthErr(400, "invalid_grant"), ErrRefused, 403, "refused the request: invalid_grant"},
		{"400 invalid_target", oauthErr(400, "invalid_target"), ErrRefused, 403, "invalid_target"},
		{"400 interaction_required (Entra conditional access)", oauthErr(400, "interaction_required"), ErrRefused, 403, "interaction_required"},
		{"401 invalid_client (gateway misconfigured)", oauthErr(401, "invalid_client"), ErrUnavailable, 502, "unavailable: invalid_client"},
		{"400 unsupported_grant_type", oauthErr(400, "unsupported_grant_type"), ErrUnavailable, 502, "unsupported_grant_type"},
		{"500", func(w http.ResponseWriter, _ url.Values) { http.Error(w, "boom secret-detail", 500) }, ErrUnavailable, 502, "unavailable"},
		{"error code with a quote is not repeated", oauthErr(400, `bad"code`), ErrUnavailable, 502, "is unavailable"},
		{"bad JSON", func(w http.ResponseWriter, _ url.Values) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"access_token":`))
		}, ErrUnavailable, 502, "unavailable"},
		{"not JSON", func(w http.ResponseWriter, _ url.Values) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte(`<html>secret-detail</html>`))
		}, ErrUnavailable, 502, "unavailable"},
		{"missing access_token", issue(with("access_token", nil)), ErrUnavailable, 502, "unavailable"},
		{"empty access_token", issue(with("access_token", "")), ErrUnavailable, 502, "unavailable"},
		{"access_token that would inject a header", issue(with("access_token", "issued-tok-value\r\nX-Admin: 1")), ErrUnavailable, 502, "unavailable"},
		{"access_token with padding inside (RFC 6750 §2.1)", issue(with("access_token", "issued=tok")), ErrUnavailable, 502, "unavailable"},
		{"access_token too long", issue(with("access_token", strings.Repeat("a", maxTokenBytes+1))), ErrUnavailable, 502, "unavailable"},
		{"huge body", func(w http.ResponseWriter, _ url.Values) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"access_token":"tok","pad":"%s"}`, huge)
		}, ErrUnavailable, 502, "unavailable"},
		{"huge body, chunked", func(w http.ResponseWriter, _ url.Values) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"access_token":"tok","pad":"`))
			w.(http.Flusher).Flush()
			w.Write([]byte(huge))
			w.Write([]byte(`"}`))
		}, ErrUnavailable, 502, "unavailable"},
		{"wrong issued_token_type (an ID token)", issue(with("issued_token_type", "urn:ietf:params:oauth:token-type:id_token")), ErrUnavailable, 502, "unavailable"},
		{"missing issued_token_type", issue(with("issued_token_type", nil)), ErrUnavailable, 502, "unavailable"},
		{"token_type N_A", issue(with("token_type", "N_A")), ErrUnavailable, 502, "unavailable"},
		{"token_type DPoP", issue(with("token_type", "DPoP")), ErrUnavailable, 502, "unavailable"},
		{"missing token_type", issue(with("token_type", nil)), ErrUnavailable, 502, "unavailable"},
		{"negative expires_in", issue(with("expires_in", -1)), ErrUnavailable, 502, "unavailable"},
		{"expires_in beyond a day", issue(with("expires_in", 86401)), ErrUnavailable, 502, "unavailable"},
		{"expires_in not a number", issue(with("expires_in", "soon")), ErrUnavailable, 502, "unavailable"},
		{"timeout", func(w http.ResponseWriter, _ url.Values) { time.Sleep(1500 * time.Millisecond) }, ErrTimeout, 504, "timed out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSTS(t, func(w http.ResponseWriter, f url.Values) { tc.answer(w, f) })
			endpoint := s.url()
			if tc.answer == nil {
				s.srv.Close()
			}
			cfg := exchangeConfig(endpoint)
			cfg.Timeout = time.Second
			f := newFixture(t, cfg, SubjectIncoming, nil)
			_, err := f.p.Get(context.Background(), Subject{Principal: alice, Token: "incoming-token"})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			status, msg := Describe("db", err)
			if status != tc.wantStatus || !strings.HasPrefix(msg, "backend db: could not get a credential") {
				t.Errorf("Describe: %d %q", status, msg)
			}
			mustNotLeak(t, "client message", msg, "secret-detail", "invalid_grant", "incoming-token", "issued-tok-value")
			recs := f.audit.records()
			if len(recs) != 1 || recs[0].Result != audit.ResultError || !strings.Contains(recs[0].Reason, tc.wantReason) {
				t.Fatalf("audit %+v, want reason with %q", recs, tc.wantReason)
			}
			line, _ := recs[0].MarshalJSON()
			mustNotLeak(t, "audit record", string(line), "secret-detail", "incoming-token")
			if f.count(resultError) != 1 || f.count(resultExchanged) != 0 {
				t.Errorf("metrics: %v errors, %v exchanged", f.count(resultError), f.count(resultExchanged))
			}
			if n := f.p.(*exchanger).cache.len(); n != 0 {
				t.Errorf("%d cached after a failure", n)
			}
		})
	}
}

// TestExchangeCache: a credential is reused per user (and session or
// presented token) until refreshBefore its expiry; another user, another
// token or an expired entry exchanges again; a token living no longer than
// refreshBefore serves one call; a token without expires_in is kept for
// assumedLifetime.
func TestExchangeCache(t *testing.T) {
	t.Run("per user session, until shortly before expiry", func(t *testing.T) {
		s := newSTS(t, func(w http.ResponseWriter, f url.Values) {
			okExchange("for-"+f.Get("subject_token"), 300)(w, f)
		})
		f := newFixture(t, exchangeConfig(s.url()), SubjectUpstream, upstreamMap{"tsid-a": "up-a", "tsid-b": "up-b", "tsid-a2": "up-a2"})
		get := func(p *identity.Principal) string {
			t.Helper()
			h, err := f.p.Get(context.Background(), Subject{Principal: p})
			if err != nil {
				t.Fatal(err)
			}
			return h.Value
		}
		for range 3 {
			if v := get(alice); v != "Bearer for-up-a" {
				t.Fatal(v)
			}
		}
		if v := get(bob); v != "Bearer for-up-b" {
			t.Fatal(v)
		}
		alice2 := *alice
		alice2.SessionID = "tsid-a2" // alice's other grant
		if v := get(&alice2); v != "Bearer for-up-a2" {
			t.Fatal(v)
		}
		if n := s.calls.Load(); n != 3 {
			t.Fatalf("%d exchanges for 3 sessions", n)
		}
		f.clock.Add(300*time.Second - refreshBefore - time.Second)
		get(alice)
		if n := s.calls.Load(); n != 3 {
			t.Fatalf("exchanged again before refresh time (%d)", n)
		}
		f.clock.Add(2 * time.Second)
		get(alice)
		if n := s.calls.Load(); n != 4 {
			t.Fatalf("not exchanged again after refresh time (%d)", n)
		}
		if f.count(resultCacheHit) != 3 || f.count(resultExchanged) != 4 {
			t.Errorf("metrics: %v hits, %v exchanged", f.count(resultCacheHit), f.count(resultExchanged))
		}
		if len(f.audit.records()) != 4 {
			t.Errorf("%d audit records for 4 exchanges", len(f.audit.records()))
		}
	})
	t.Run("per presented token, not past its expiry", func(t *testing.T) {
		s := newSTS(t, okExchange("x", 3600))
		f := newFixture(t, exchangeConfig(s.url()), SubjectIncoming, nil)
		p := *alice
		p.ExpiresAt = f.clock.Now().Add(time.Minute)
		for _, tok := range []string{"t1", "t1", "t2", "t1"} {
			if _, err := f.p.Get(context.Background(), Subject{Principal: &p, Token: tok}); err != nil {
				t.Fatal(err)
			}
		}
		if n := s.calls.Load(); n != 2 {
			t.Fatalf("%d exchanges for 2 tokens", n)
		}
		f.clock.Add(time.Minute)
		f.p.Get(context.Background(), Subject{Principal: &p, Token: "t1"})
		if n := s.calls.Load(); n != 3 {
			t.Fatalf("an entry outlived the token it was exchanged for (%d exchanges)", n)
		}
	})
	t.Run("expires quickly: used once, not cached", func(t *testing.T) {
		s := newSTS(t, okExchange("short", int(refreshBefore/time.Second)))
		f := newFixture(t, exchangeConfig(s.url()), SubjectIncoming, nil)
		for range 3 {
			if h, err := f.p.Get(context.Background(), Subject{Principal: alice, Token: "t"}); err != nil || h.Value != "Bearer short" {
				t.Fatal(h, err)
			}
		}
		if n := s.calls.Load(); n != 3 {
			t.Fatalf("%d exchanges, want one per call", n)
		}
	})
	t.Run("no expires_in: kept for the assumed lifetime", func(t *testing.T) {
		s := newSTS(t, issue(map[string]any{"access_token": "x", "issued_token_type": "urn:ietf:params:oauth:token-type:jwt", "token_type": "bearer"}))
		f := newFixture(t, exchangeConfig(s.url()), SubjectIncoming, nil)
		f.p.Get(context.Background(), Subject{Principal: alice, Token: "t"})
		f.clock.Add(assumedLifetime - refreshBefore - time.Second)
		f.p.Get(context.Background(), Subject{Principal: alice, Token: "t"})
		f.clock.Add(2 * time.Second)
		f.p.Get(context.Background(), Subject{Principal: alice, Token: "t"})
		if n := s.calls.Load(); n != 2 {
			t.Fatalf("%d exchanges, want 2", n)
		}
	})
	t.Run("bounded", func(t *testing.T) {
		s := newSTS(t, okExchange("x", 3600))
		cfg := exchangeConfig(s.url())
		cfg.CacheSize = 10
		f := newFixture(t, cfg, SubjectIncoming, nil)
		for i := range 25 {
			f.p.Get(context.Background(), Subject{Principal: alice, Token: fmt.Sprint("t", i)})
		}
		if n := f.p.(*exchanger).cache.len(); n > 10 {
			t.Fatalf("cache holds %d entries, bound 10", n)
		}
	})
	t.Run("audit log down: nothing handed out or cached", func(t *testing.T) {
		s := newSTS(t, okExchange("x", 3600))
		f := newFixture(t, exchangeConfig(s.url()), SubjectIncoming, nil)
		f.audit.fail.Store(true)
		if _, err := f.p.Get(context.Background(), Subject{Principal: alice, Token: "t"}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err %v", err)
		}
		f.audit.fail.Store(false)
		f.p.Get(context.Background(), Subject{Principal: alice, Token: "t"})
		if n := s.calls.Load(); n != 2 {
			t.Fatalf("%d exchanges: the unaudited token was cached", n)
		}
	})
}

// TestNoSubject: without the user's token there is nothing to exchange;
// the security token service is not asked.
func TestNoSubject(t *testing.T) {
	s := newSTS(t, okExchange("x", 3600))
	up := newFixture(t, exchangeConfig(s.url()), SubjectUpstream, upstreamMap{})
	in := newFixture(t, exchangeConfig(s.url()), SubjectIncoming, nil)
	for name, tc := range map[string]struct {
		p Provider
		s Subject
	}{
		"no principal":                   {up.p, Subject{}},
		"no token session":               {up.p, Subject{Principal: &identity.Principal{Subject: "x"}}},
		"session without upstream token": {up.p, Subject{Principal: alice}},
		"jwt mode without a token":       {in.p, Subject{Principal: alice}},
	} {
		if _, err := tc.p.Get(context.Background(), tc.s); !errors.Is(err, ErrNoSubject) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if s.calls.Load() != 0 {
		t.Errorf("%d requests to the STS", s.calls.Load())
	}
	if _, err := New(exchangeConfig(s.url()), Options{Subject: SubjectNone, Auditor: &auditLog{}}); err == nil {
		t.Error("token_exchange without a user token source accepted")
	}
}

// TestSingleFlight: N concurrent calls for one key make one exchange and
// all get its token; a waiter whose request ends returns at once without
// cancelling the exchange the others wait for.
func TestSingleFlight(t *testing.T) {
	const n = 50
	release := make(chan struct{})
	s := newSTS(t, func(w http.ResponseWriter, f url.Values) {
		<-release
		okExchange("shared", 3600)(w, f)
	})
	f := newFixture(t, exchangeConfig(s.url()), SubjectIncoming, nil)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			h, err := f.p.Get(context.Background(), Subject{Principal: alice, Token: "t"})
			if err == nil && h.Value != "Bearer shared" {
				err = fmt.Errorf("got %q", h.Value)
			}
			errs <- err
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() {
		_, err := f.p.Get(ctx, Subject{Principal: alice, Token: "t"})
		gone <- err
	}()
	for s.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let every caller join the flight
	cancel()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled waiter: %v", err)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if c := s.calls.Load(); c != 1 {
		t.Fatalf("%d exchanges for %d concurrent calls", c, n+1)
	}
}

// TestClientCredentials: one service-account token (RFC 6749 §4.4, through
// golang.org/x/oauth2) for every user, cached until near expiry; its
// response is checked as strictly as an exchange's.
func TestClientCredentials(t *testing.T) {
	s := newSTS(t, issue(map[string]any{"access_token": "svc", "token_type": "Bearer", "expires_in": 600}))
	cfg := Config{Type: TypeClientCredentials, TokenEndpoint: s.url(), AllowPrivateNetwork: true, ClientID: "gw", ClientSecret: "sec",
		Scopes: []string{"k8s.read"}, Audience: "k8s", Resource: "https://k8s.example/mcp"}
	f := newFixture(t, cfg, SubjectUpstream, nil)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			p := alice
			if i%2 == 1 {
				p = bob
			}
			if h, err := f.p.Get(context.Background(), Subject{Principal: p, Token: "client-token"}); err != nil || h.Value != "Bearer svc" {
				t.Error(h, err)
			}
		})
	}
	wg.Wait()
	if c := s.calls.Load(); c != 1 {
		t.Fatalf("%d token requests", c)
	}
	want := url.Values{"grant_type": {"client_credentials"}, "scope": {"k8s.read"}, "audience": {"k8s"}, "resource": {"https://k8s.example/mcp"}}
	if got := s.lastForm(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("form %v, want %v", got, want)
	}
	if s.auths[0] != "Basic "+base64.StdEncoding.EncodeToString([]byte("gw:sec")) {
		t.Errorf("Authorization %q", s.auths[0])
	}
	f.clock.Add(600*time.Second - refreshBefore)
	f.p.Get(context.Background(), Subject{Principal: alice})
	if c := s.calls.Load(); c != 2 {
		t.Fatalf("%d token requests after expiry", c)
	}
	if r := f.audit.records(); len(r) != 2 || r[0].Method != "client_credentials" || r[0].Result != audit.ResultSuccess {
		t.Errorf("audit %+v", r)
	}

	for _, tc := range []struct {
		name   string
		answer func(http.ResponseWriter, url.Values)
		want   error
	}{
		{"invalid_client", func(w http.ResponseWriter, _ url.Values) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(401)
			w.Write([]byte(`{"error":"invalid_client"}`))
		}, ErrUnavailable},
		{"invalid_scope", func(w http.ResponseWriter, _ url.Values) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			w.Write([]byte(`{"error":"invalid_scope"}`))
		}, ErrRefused},
		{"missing access_token", issue(map[string]any{"token_type": "Bearer", "expires_in": 60}), ErrUnavailable},
		{"token_type N_A", issue(map[string]any{"access_token": "a", "token_type": "N_A", "expires_in": 60}), ErrUnavailable},
		{"expires_in beyond a day", issue(map[string]any{"access_token": "a", "token_type": "Bearer", "expires_in": 100000}), ErrUnavailable},
		{"huge body", func(w http.ResponseWriter, _ url.Values) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"access_token":"a","token_type":"Bearer","pad":"%s"}`, strings.Repeat("a", maxResponseBytes))
		}, ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSTS(t, tc.answer)
			cfg.TokenEndpoint = s.url()
			f := newFixture(t, cfg, SubjectUpstream, nil)
			if _, err := f.p.Get(context.Background(), Subject{Principal: alice}); !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if r := f.audit.records(); len(r) != 1 || r[0].Result != audit.ResultError {
				t.Errorf("audit %+v", r)
			}
		})
	}
}

// TestDiscovery: with issuer instead of token_endpoint, the token
// endpoint comes from the issuer's discovery document (read once); a
// document for another issuer is refused.
func TestDiscovery(t *testing.T) {
	s := newSTS(t, okExchange("x", 3600))
	var docs int
	issuer := s.srv.URL
	s.srv.Config.Handler = func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/.well-known/openid-configuration" {
				docs++
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"issuer":%q,"token_endpoint":%q,"authorization_endpoint":"%s/auth","jwks_uri":"%s/jwks","response_types_supported":["code"],"subject_types_supported":["public"],"id_token_signing_alg_values_supported":["RS256"]}`,
					issuer, issuer+"/token", issuer, issuer)
				return
			}
			next.ServeHTTP(w, r)
		})
	}(s.srv.Config.Handler)
	cfg := exchangeConfig("")
	cfg.TokenEndpoint, cfg.Issuer = "", issuer
	f := newFixture(t, cfg, SubjectIncoming, nil)
	for _, tok := range []string{"a", "b"} {
		if _, err := f.p.Get(context.Background(), Subject{Principal: alice, Token: tok}); err != nil {
			t.Fatal(err)
		}
	}
	if docs != 1 || s.calls.Load() != 2 {
		t.Errorf("%d discovery fetches, %d exchanges", docs, s.calls.Load())
	}
	issuer = "https://other.example"
	cfg.Issuer = s.srv.URL
	f = newFixture(t, cfg, SubjectIncoming, nil)
	if _, err := f.p.Get(context.Background(), Subject{Principal: alice, Token: "a"}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("discovery document of another issuer: %v", err)
	}
}

// TestSSRFGuard: without allow_private_network the security token service
// is reached only on public addresses.
func TestSSRFGuard(t *testing.T) {
	s := newSTS(t, okExchange("x", 3600))
	cfg := exchangeConfig(s.url())
	cfg.AllowPrivateNetwork = false
	prov, err := New(cfg, Options{Backend: "db", Subject: SubjectIncoming, Auditor: &auditLog{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prov.Get(context.Background(), Subject{Principal: alice, Token: "t"}); !errors.Is(err, ErrUnavailable) || s.calls.Load() != 0 {
		t.Fatalf("loopback STS reached without allow_private_network: %v", err)
	}
}

// TestCacheHitRatio measures the cache over 1,000 calls by 10 users (10
// concurrent callers, each user with one session and one token): one
// exchange per user, every other call a hit. Run with -v for the figure.
func TestCacheHitRatio(t *testing.T) {
	s := newSTS(t, func(w http.ResponseWriter, f url.Values) {
		time.Sleep(5 * time.Millisecond) // a real STS is not instant: concurrent misses must share the flight
		okExchange("for-"+f.Get("subject_token"), 3600)(w, f)
	})
	up := upstreamMap{}
	users := make([]*identity.Principal, 10)
	for i := range users {
		users[i] = &identity.Principal{Issuer: "https://idp.example", Subject: fmt.Sprint("user", i), SessionID: fmt.Sprint("tsid", i)}
		up[users[i].SessionID] = fmt.Sprint("upstream", i)
	}
	f := newFixture(t, exchangeConfig(s.url()), SubjectUpstream, up)
	const calls = 1000
	var wg sync.WaitGroup
	for w := range 10 {
		wg.Go(func() {
			for i := range calls / 10 {
				u := (w + i) % len(users) // every worker calls for every user
				h, err := f.p.Get(context.Background(), Subject{Principal: users[u]})
				if err != nil || h.Value != fmt.Sprint("Bearer for-upstream", u) {
					t.Error(h, err)
					return
				}
			}
		})
	}
	wg.Wait()
	hits, exchanged := f.count(resultCacheHit), f.count(resultExchanged)
	t.Logf("%d calls by %d users: %v exchanges, %v cache hits, hit ratio %.3f", calls, len(users), exchanged, hits, hits/calls)
	if exchanged != 10 || s.calls.Load() != 10 || hits != calls-10 {
		t.Errorf("%v exchanges (%d at the STS), %v hits; want 10, 10, %d", exchanged, s.calls.Load(), hits, calls-10)
	}
}

// BenchmarkCacheHit is the hot path of a token_exchange backend: a cached
// credential for a user session (authorization_server mode) and for a
// presented token (jwt mode).
func BenchmarkCacheHit(b *testing.B) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { okExchange("x", 3600)(w, nil) }))
	defer s.Close()
	token := strings.Repeat("t", 900) // a typical JWT's length
	for _, tc := range []struct {
		name    string
		subject SubjectSource
	}{{"session", SubjectUpstream}, {"token", SubjectIncoming}} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := exchangeConfig(s.URL)
			p, err := New(cfg, Options{Backend: "db", Subject: tc.subject, Upstream: upstreamMap{"tsid-a": "up"}, Auditor: &auditLog{}})
			if err != nil {
				b.Fatal(err)
			}
			sub := Subject{Principal: alice, Token: token}
			if _, err := p.Get(context.Background(), sub); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Get(context.Background(), sub); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
