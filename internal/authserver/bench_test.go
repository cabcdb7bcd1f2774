package authserver

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/idp"
	"github.com/mcpgate/mcpgate/internal/keys"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/memory"
	"github.com/mcpgate/mcpgate/internal/store/sqlite"
	"github.com/mcpgate/mcpgate/internal/testutil"
)

// timedSigner and timedStore measure where token endpoint time goes.
type timedSigner struct {
	Signer
	ns atomic.Int64
}

func (t *timedSigner) SignJWT(ctx context.Context, typ string, claims any) (string, error) {
	start := time.Now()
	defer func() { t.ns.Add(int64(time.Since(start))) }()
	return t.Signer.SignJWT(ctx, typ, claims)
}

type timedStore struct {
	store.Store
	ns atomic.Int64
}

func (t *timedStore) since(start time.Time) { t.ns.Add(int64(time.Since(start))) }

// RedeemAuthCode's time includes the token endpoint's checks that run
// inside it (PKCE, unsealing the grant secrets: a few microseconds).
func (t *timedStore) RedeemAuthCode(ctx context.Context, h string, issue store.IssueFunc) (*store.AuthCode, error) {
	defer t.since(time.Now())
	return t.Store.RedeemAuthCode(ctx, h, issue)
}

func (t *timedStore) GetGrant(ctx context.Context, id string) (*store.Grant, error) {
	defer t.since(time.Now())
	return t.Store.GetGrant(ctx, id)
}

func (t *timedStore) GetClient(ctx context.Context, id string) (*store.Client, error) {
	defer t.since(time.Now())
	return t.Store.GetClient(ctx, id)
}

func (t *timedStore) GetRefreshToken(ctx context.Context, h string) (*store.RefreshToken, error) {
	defer t.since(time.Now())
	return t.Store.GetRefreshToken(ctx, h)
}

func (t *timedStore) GetRefreshTokenGrant(ctx context.Context, h string) (*store.RefreshToken, *store.Grant, error) {
	defer t.since(time.Now())
	return t.Store.GetRefreshTokenGrant(ctx, h)
}

func (t *timedStore) RotateRefreshToken(ctx context.Context, old string, next *store.RefreshToken, now time.Time) error {
	defer t.since(time.Now())
	return t.Store.RotateRefreshToken(ctx, old, next, now)
}

type benchEnv struct {
	srv    *Server
	st     *timedStore
	signer *timedSigner
	client *store.Client
}

func newBenchEnv(b *testing.B, alg string) *benchEnv {
	return newBenchEnvWith(b, alg, "sqlite", false)
}

// newBenchEnvWith is newBenchEnv on the given store ("sqlite" or
// "memory"), with a file audit log (the product's default sink settings)
// when withAudit is set.
func newBenchEnvWith(b testing.TB, alg, storeKind string, withAudit bool) *benchEnv {
	b.Helper()
	ctx := context.Background()
	var raw store.Store
	switch storeKind {
	case "memory":
		raw = memory.New()
	default:
		db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		raw = db
	}
	var auditor Auditor
	if withAudit {
		l, err := audit.New(audit.Config{Sink: audit.SinkFile, Path: filepath.Join(b.TempDir(), "audit.log")},
			audit.WithSlog(slog.New(slog.DiscardHandler)))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { l.Close() })
		auditor = l
	}
	key := make([]byte, 32)
	rand.Read(key)
	sealer, _ := keys.NewSealer(key)
	m, err := keys.NewManager(ctx, raw, sealer, keys.Options{Algorithm: alg})
	if err != nil {
		b.Fatal(err)
	}
	be := &benchEnv{st: &timedStore{Store: raw}, signer: &timedSigner{Signer: m}}
	cfg := Config{PublicURL: "https://gw.example.com", SigningAlg: alg, Upstream: idp.Config{Type: idp.TypeStatic,
		Users: []idp.User{{Username: testUser, PasswordHash: testUserHash}}}}
	cfg.SetDefaults()
	// The load comes from one address: measure the endpoint, not the
	// per-address limiter (which would answer 429 past its burst).
	off := false
	cfg.RateLimit.Enabled = &off
	be.srv, err = New(cfg, Deps{Store: be.st, Signer: be.signer, Sealer: sealer, Auditor: auditor,
		Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		b.Fatal(err)
	}
	be.client = &store.Client{ID: "bench-client", Name: "bench", RedirectURIs: []string{"http://127.0.0.1:9/cb"},
		GrantTypes: []string{grantCode, grantRT}, ResponseTypes: []string{"code"}, TokenEndpointAuthMethod: authNone,
		Kind: store.ClientKindDynamic, CreatedAt: time.Now()}
	if err := raw.CreateClient(ctx, be.client); err != nil {
		b.Fatal(err)
	}
	return be
}

// newCode stores a code as the authorize flow would.
func (be *benchEnv) newCode(b testing.TB) string {
	code, grantID := newToken(time.Now()), newID()
	id, _ := json.Marshal(&idp.Identity{Issuer: "https://gw.example.com#static", Subject: testUser, Username: testUser, Groups: []string{"admins"}})
	sealed, err := be.srv.sealJSON(&grantSecrets{RefreshKey: randomToken()}, aad("grant", grantID))
	if err != nil {
		b.Fatal(err)
	}
	err = be.st.Store.CreateAuthCode(context.Background(), &store.AuthCode{
		Hash: store.TokenHash(code), ClientID: be.client.ID, RedirectURI: be.client.RedirectURIs[0], Resource: be.srv.resources[0],
		UserKey: "https://gw.example.com#static#" + testUser, Scopes: []string{"mcp"}, CodeChallenge: pkceS256(testVerifier),
		GrantID: grantID, Identity: id, UpstreamTokens: sealed, ExpiresAt: time.Now().Add(time.Hour),
	})
	if err != nil {
		b.Fatal(err)
	}
	return code
}

func (be *benchEnv) post(b testing.TB, form url.Values) map[string]any {
	req := httptest.NewRequest(http.MethodPost, "https://gw.example.com/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	be.srv.Handler().ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		b.Fatalf("token: %d %s", w.Code, w.Body)
	}
	var m map[string]any
	json.Unmarshal(w.Body.Bytes(), &m)
	return m
}

// measure resets the counters and starts the timer; the returned func
// stops it and reports throughput, CPU time per operation, and the time
// spent signing and in the store (per operation, and as a share of the
// wall time of the given number of concurrent workers).
func (be *benchEnv) measure(b *testing.B, workers int) (report func()) {
	be.signer.ns.Store(0)
	be.st.ns.Store(0)
	b.ResetTimer()
	start, cpu := time.Now(), testutil.ProcessCPU()
	return func() {
		b.StopTimer()
		total := float64(time.Since(start)) * float64(workers)
		n := float64(b.N)
		sign, st := float64(be.signer.ns.Load()), float64(be.st.ns.Load())
		b.ReportMetric(n/time.Since(start).Seconds(), "ops/s")
		if c := testutil.ProcessCPU() - cpu; c > 0 {
			b.ReportMetric(float64(c)/n, "cpu-ns/op")
		}
		b.ReportMetric(sign/n, "sign-ns/op")
		b.ReportMetric(st/n, "store-ns/op")
		b.ReportMetric(100*sign/total, "sign-%")
		b.ReportMetric(100*st/total, "store-%")
	}
}

// BenchmarkCodeExchange measures authorization_code → tokens through the
// token endpoint handler with the SQLite store and the real key manager.
func BenchmarkCodeExchange(b *testing.B) {
	for _, alg := range []string{"ES256", "RS256"} {
		b.Run(alg, func(b *testing.B) {
			be := newBenchEnv(b, alg)
			codes := make([]string, b.N)
			for i := range codes {
				codes[i] = be.newCode(b)
			}
			report := be.measure(b, 1)
			for i := range b.N {
				be.post(b, url.Values{"grant_type": {grantCode}, "code": {codes[i]}, "redirect_uri": {be.client.RedirectURIs[0]},
					"code_verifier": {testVerifier}, "client_id": {be.client.ID}})
			}
			report()
		})
	}
}

// BenchmarkCodeExchangeParallel measures exchange throughput with as many
// concurrent requests as GOMAXPROCS (a server's situation): signing and
// request handling overlap the single SQLite writer.
func BenchmarkCodeExchangeParallel(b *testing.B) {
	be := newBenchEnv(b, "ES256")
	codes := make(chan string, b.N)
	for range b.N {
		codes <- be.newCode(b)
	}
	close(codes)
	report := be.measure(b, runtime.GOMAXPROCS(0))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			be.post(b, url.Values{"grant_type": {grantCode}, "code": {<-codes}, "redirect_uri": {be.client.RedirectURIs[0]},
				"code_verifier": {testVerifier}, "client_id": {be.client.ID}})
		}
	})
	report()
}

// BenchmarkRefresh measures refresh_token rotation (one chain, sequential).
func BenchmarkRefresh(b *testing.B) {
	for _, alg := range []string{"ES256", "RS256"} {
		b.Run(alg, func(b *testing.B) {
			be := newBenchEnv(b, alg)
			m := be.post(b, url.Values{"grant_type": {grantCode}, "code": {be.newCode(b)}, "redirect_uri": {be.client.RedirectURIs[0]},
				"code_verifier": {testVerifier}, "client_id": {be.client.ID}})
			rt := m["refresh_token"].(string)
			report := be.measure(b, 1)
			for range b.N {
				m := be.post(b, url.Values{"grant_type": {grantRT}, "refresh_token": {rt}, "client_id": {be.client.ID}})
				rt = m["refresh_token"].(string)
			}
			report()
		})
	}
}

// BenchmarkAuthenticate measures verifying an access token per request
// (grant check cached).
func BenchmarkAuthenticate(b *testing.B) {
	be := newBenchEnv(b, "ES256")
	m := be.post(b, url.Values{"grant_type": {grantCode}, "code": {be.newCode(b)}, "redirect_uri": {be.client.RedirectURIs[0]},
		"code_verifier": {testVerifier}, "client_id": {be.client.ID}})
	at := m["access_token"].(string)
	req := httptest.NewRequest(http.MethodPost, "https://gw.example.com/mcp", nil)
	req.Header.Set("Authorization", "Bearer "+at)
	b.Run("cached", func(b *testing.B) {
		for range b.N {
			if _, err := be.srv.Authenticate(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("signature", func(b *testing.B) {
		for range b.N {
			if _, err := be.srv.verifier.SignedClaims(context.Background(), at); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkTokenEndpoint measures the token endpoint's handler (form,
// client, grant checks, signing, audit records to a file, JSON answer) per
// grant, on the in-memory store (what the endpoint costs outside the store)
// and on SQLite, with allocations.
func BenchmarkTokenEndpoint(b *testing.B) {
	for _, storeKind := range []string{"memory", "sqlite"} {
		b.Run("exchange/"+storeKind, func(b *testing.B) {
			be := newBenchEnvWith(b, "ES256", storeKind, true)
			codes := make([]string, b.N)
			for i := range codes {
				codes[i] = be.newCode(b)
			}
			report := be.measure(b, 1)
			b.ReportAllocs()
			for i := range b.N {
				be.post(b, url.Values{"grant_type": {grantCode}, "code": {codes[i]}, "redirect_uri": {be.client.RedirectURIs[0]},
					"code_verifier": {testVerifier}, "client_id": {be.client.ID}})
			}
			report()
		})
		b.Run("refresh/"+storeKind, func(b *testing.B) {
			be := newBenchEnvWith(b, "ES256", storeKind, true)
			m := be.post(b, url.Values{"grant_type": {grantCode}, "code": {be.newCode(b)}, "redirect_uri": {be.client.RedirectURIs[0]},
				"code_verifier": {testVerifier}, "client_id": {be.client.ID}})
			rt := m["refresh_token"].(string)
			report := be.measure(b, 1)
			b.ReportAllocs()
			for range b.N {
				m := be.post(b, url.Values{"grant_type": {grantRT}, "refresh_token": {rt}, "client_id": {be.client.ID}})
				rt = m["refresh_token"].(string)
			}
			report()
		})
	}
}

// BenchmarkTokenParallel measures code exchange and refresh with 8 and 32
// concurrent requests (the bench's token scenarios, in process): each
// refresh worker rotates its own grants in turn. cpu-ns/op is the figure
// to compare on a shared machine.
func BenchmarkTokenParallel(b *testing.B) {
	for _, c := range []int{8, 32} {
		par := max(1, c/runtime.GOMAXPROCS(0))
		b.Run(fmt.Sprintf("exchange/c=%d", c), func(b *testing.B) {
			be := newBenchEnv(b, "ES256")
			codes := make(chan string, b.N)
			for range b.N {
				codes <- be.newCode(b)
			}
			close(codes)
			report := be.measure(b, par*runtime.GOMAXPROCS(0))
			b.SetParallelism(par)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					be.post(b, url.Values{"grant_type": {grantCode}, "code": {<-codes}, "redirect_uri": {be.client.RedirectURIs[0]},
						"code_verifier": {testVerifier}, "client_id": {be.client.ID}})
				}
			})
			report()
		})
		b.Run(fmt.Sprintf("refresh/c=%d", c), func(b *testing.B) {
			be := newBenchEnv(b, "ES256")
			rts := make(chan string, 4*c)
			for range cap(rts) {
				m := be.post(b, url.Values{"grant_type": {grantCode}, "code": {be.newCode(b)}, "redirect_uri": {be.client.RedirectURIs[0]},
					"code_verifier": {testVerifier}, "client_id": {be.client.ID}})
				rts <- m["refresh_token"].(string)
			}
			report := be.measure(b, par*runtime.GOMAXPROCS(0))
			b.SetParallelism(par)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					m := be.post(b, url.Values{"grant_type": {grantRT}, "refresh_token": {<-rts}, "client_id": {be.client.ID}})
					rts <- m["refresh_token"].(string)
				}
			})
			report()
		})
	}
}
