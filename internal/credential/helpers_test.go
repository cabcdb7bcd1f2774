package credential

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/identity"
	gtestutil "github.com/mcpgate/mcpgate/internal/testutil"
	"github.com/mcpgate/mcpgate/internal/validate"
)

// sts is an httptest security token service. Each request's form and
// headers are recorded; answer writes the response.
type sts struct {
	srv    *httptest.Server
	calls  atomic.Int64
	mu     sync.Mutex
	forms  []url.Values
	auths  []string
	answer func(w http.ResponseWriter, form url.Values)
}

func newSTS(t *testing.T, answer func(w http.ResponseWriter, form url.Values)) *sts {
	t.Helper()
	s := &sts{answer: answer}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/token" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", 400)
			return
		}
		s.calls.Add(1)
		s.mu.Lock()
		s.forms = append(s.forms, r.PostForm)
		s.auths = append(s.auths, r.Header.Get("Authorization"))
		s.mu.Unlock()
		s.answer(w, r.PostForm)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sts) url() string { return s.srv.URL + "/token" }

func (s *sts) lastForm() url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.forms) == 0 {
		return nil
	}
	return s.forms[len(s.forms)-1]
}

// issue answers with a token response of the given fields.
func issue(fields map[string]any) func(http.ResponseWriter, url.Values) {
	return func(w http.ResponseWriter, _ url.Values) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(fields)
	}
}

// okExchange is a well-formed RFC 8693 answer carrying token.
func okExchange(token string, expiresIn int) func(http.ResponseWriter, url.Values) {
	return issue(map[string]any{"access_token": token, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
		"token_type": "Bearer", "expires_in": expiresIn})
}

// auditLog collects records; fail makes Log fail.
type auditLog struct {
	mu   sync.Mutex
	recs []audit.Record
	fail atomic.Bool
}

func (a *auditLog) Log(_ context.Context, r *audit.Record) error {
	if a.fail.Load() {
		return errors.New("audit sink down")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = append(a.recs, *r)
	return nil
}

func (a *auditLog) records() []audit.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]audit.Record(nil), a.recs...)
}

type upstreamMap map[string]string

func (u upstreamMap) UpstreamToken(_ context.Context, tsid string) (string, error) {
	if t, ok := u[tsid]; ok {
		return t, nil
	}
	return "", errors.New("session not active")
}

// clock is a settable Now.
type clock = gtestutil.Clock

// fixture builds an exchanger against s.
type fixture struct {
	p       Provider
	audit   *auditLog
	metrics *Metrics
	clock   *clock
}

func exchangeConfig(endpoint string) Config {
	c := Config{Type: TypeTokenExchange, TokenEndpoint: endpoint, AllowPrivateNetwork: true, ClientID: "mcpgate gw",
		ClientSecret: "s3cret:&", Audience: "db-api", Resource: "https://db.example/mcp", Scopes: []string{"db.read", "db.write"}}
	c.SetDefaults()
	return c
}

func newFixture(t *testing.T, cfg Config, subject SubjectSource, up UpstreamTokens) *fixture {
	t.Helper()
	f := &fixture{audit: &auditLog{}, metrics: NewMetrics(), clock: gtestutil.NewClock(time.Unix(1_800_000_000, 0))}
	cfg.SetDefaults()
	var p validate.Problems
	cfg.Validate("credential", &p)
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	prov, err := New(cfg, Options{Backend: "db", Subject: subject, Upstream: up, Auditor: f.audit, Metrics: f.metrics,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.p = prov
	return f
}

func (f *fixture) count(result string) float64 {
	x := f.p.(*exchanger)
	return testutil.ToFloat64(f.metrics.total.WithLabelValues("db", x.kind, result))
}

var (
	alice = &identity.Principal{Issuer: "https://idp.example", Subject: "alice", Username: "alice", SessionID: "tsid-a", ClientID: "c1"}
	bob   = &identity.Principal{Issuer: "https://idp.example", Subject: "bob", SessionID: "tsid-b"}
)

// mustNotLeak fails if any of secrets occurs in s.
func mustNotLeak(t *testing.T, what, s string, secrets ...string) {
	t.Helper()
	for _, x := range secrets {
		if x != "" && strings.Contains(s, x) {
			t.Errorf("%s contains %q: %s", what, x, s)
		}
	}
}
