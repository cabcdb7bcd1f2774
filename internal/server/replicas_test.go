package server_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/keys"
	"github.com/mcpgate/mcpgate/internal/server"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/backends"
	"github.com/mcpgate/mcpgate/internal/store/postgres/pgtest"
)

// replica is one running gateway.
type replica struct {
	url string
	srv *server.Server
}

// TestTwoReplicas is the start of issue 14's acceptance: two gateways on one
// PostgreSQL behind a round-robin proxy without stickiness.
//   - A client signs in through the proxy (so across both replicas),
//     initializes through A, calls tools through B and through the proxy:
//     its MCP session continues, and the backend only ever sees its own id.
//   - Another user's use of that session id gets 404 on both replicas.
//   - A refresh through A gives a token that works on B.
//   - A revocation on B is refused on A within the documented second,
//     although A's grant cache trusts an active grant for a minute.
//   - After `mcpgate keys rotate` (twice, so that the new key was never
//     published before), a token signed by the new key verifies on B at once.
func TestTwoReplicas(t *testing.T) {
	dsn := pgtest.SchemaDSN(t)
	var backendSessions sync.Map // the session ids the backend received
	backend := httptest.NewServer(demo.Handler(demo.Options{OnRequest: func(r *http.Request) {
		if id := r.Header.Get("Mcp-Session-Id"); id != "" {
			backendSessions.Store(id, true)
		}
	}}))
	t.Cleanup(backend.Close)

	// The round-robin proxy is the public URL; replicas get its Host.
	var targets []*url.URL
	var next atomic.Uint64
	lb := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(targets[next.Add(1)%uint64(len(targets))])
		pr.Out.Host = pr.In.Host
	}})
	t.Cleanup(lb.Close)
	base := lb.URL

	key := make([]byte, 32)
	rand.Read(key)
	var users []string
	for _, u := range []string{"alice", "bob"} {
		hash, err := bcrypt.GenerateFromPassword([]byte(u+"-password"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, fmt.Sprintf("{ username: %s, email: %s@example.test, groups: [mcp-admins], password_hash: %q }", u, u, hash))
	}
	yaml := fmt.Sprintf(`
public_url: %s
encryption_key: %s
auth:
  mode: authorization_server
  authorization_server:
    scopes: [mcp]
    revocation_cache_ttl: 1m
    upstream: { type: static, users: [ %s ] }
policy:
  roles: { admin: { tools: ["*"] } }
  groups: { mcp-admins: [admin] }
backends: [ { name: demo, url: %s/mcp } ]
store: { driver: postgres, dsn: %q }
audit: { sink: none }
`, base, base64.StdEncoding.EncodeToString(key), strings.Join(users, ", "), backend.URL, dsn)
	cfg, err := config.Parse([]byte(yaml), func(string) (string, bool) { return "", false }, config.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var replicas []replica
	var wg sync.WaitGroup
	for range 2 {
		srv, err := server.New(ctx, cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); srv.Run(ctx, ln) }()
		u, _ := url.Parse("http://" + ln.Addr().String())
		targets = append(targets, u)
		replicas = append(replicas, replica{url: u.String(), srv: srv})
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		for _, r := range replicas {
			r.srv.Close()
		}
	})
	a, b := replicas[0], replicas[1]
	host := strings.TrimPrefix(base, "http://")

	// mcp posts body to the replica at target (or the proxy), as a client
	// of the public URL would.
	mcp := func(target, token, sid, body string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, target+"/mcp", strings.NewReader(body))
		req.Host = host
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+token)
		if sid != "" {
			req.Header.Set("Mcp-Session-Id", sid)
			req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body2, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(body2)
	}
	form := func(target, path string, f url.Values) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, target+path, strings.NewReader(f.Encode()))
		req.Host = host
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return decodeOK(t, resp)
	}
	const (
		initBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"replicas","version":"1"}}}`
		initated = `{"jsonrpc":"2.0","method":"notifications/initialized"}`
		callBody = `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_vms","arguments":{}}}`
	)

	// Sign-in through the proxy: each step may land on either replica.
	clientID, _, tok := signIn(t, base, "alice", "alice-password", "")
	at, _ := tok["access_token"].(string)
	rt, _ := tok["refresh_token"].(string)
	_, _, bobTok := signIn(t, base, "bob", "bob-password", "")
	bobAT, _ := bobTok["access_token"].(string)

	// The session starts on A and continues on B and through the proxy.
	code, h, body := mcp(a.url, at, "", initBody)
	sid := h.Get("Mcp-Session-Id")
	if code != 200 || sid == "" {
		t.Fatalf("initialize on A: %d %q %s", code, sid, body)
	}
	if code, _, body := mcp(b.url, at, sid, initated); code != 202 {
		t.Fatalf("initialized on B: %d %s", code, body)
	}
	for i, target := range []string{b.url, base, base, a.url} {
		if code, _, body := mcp(target, at, sid, callBody); code != 200 || !strings.Contains(body, "prod-db") {
			t.Fatalf("tools/call %d in the session: %d %s", i, code, body)
		}
	}
	n := 0
	backendSessions.Range(func(k, _ any) bool {
		n++
		if k == sid {
			t.Error("the backend received the gateway's sealed id")
		}
		return true
	})
	if n != 1 {
		t.Errorf("the backend saw %d sessions, want the one", n)
	}

	// bob presents alice's session id, on each replica.
	for _, r := range replicas {
		if code, _, _ := mcp(r.url, bobAT, sid, callBody); code != 404 {
			t.Errorf("bob with alice's session at %s: %d, want 404", r.url, code)
		}
	}

	// Refresh through A; the new token works on B.
	refreshed := form(a.url, "/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {clientID}})
	at2, _ := refreshed["access_token"].(string)
	if code, _, body := mcp(b.url, at2, sid, callBody); code != 200 {
		t.Fatalf("refreshed token on B: %d %s", code, body)
	}

	// Revocation on B, refused on A: A's grant cache is warm (1m TTL).
	if code, _, _ := mcp(a.url, at2, sid, callBody); code != 200 {
		t.Fatalf("A before the revocation: %d", code)
	}
	start := time.Now()
	form(b.url, "/revoke", url.Values{"token": {at2}, "client_id": {clientID}})
	var refusedAfter time.Duration
	for {
		if code, _, _ := mcp(a.url, at2, sid, callBody); code == 401 {
			refusedAfter = time.Since(start)
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("A still accepts the token 5s after its revocation on B")
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("revoked on B, refused on A after %v", refusedAfter)
	if refusedAfter > time.Second {
		t.Errorf("revocation reached A after %v, documented bound 1s", refusedAfter)
	}

	// `mcpgate keys rotate` (its code path: its own store and key manager),
	// twice: the active key is then one that B never saw published.
	st, err := backends.Open(ctx, store.Config{Driver: store.DriverPostgres, DSN: dsn}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sealer, _ := keys.NewSealer(key)
	cli, err := keys.NewManager(ctx, st, sealer, keys.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := cli.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	newKID := cli.ActiveKeyID()
	// A signs with the new key once it reloaded (notified); then B must
	// accept that token on the first try.
	cid3, _, tok3 := signIn(t, base, "alice", "alice-password", "")
	rt3, _ := tok3["refresh_token"].(string)
	deadline := time.Now().Add(5 * time.Second)
	for {
		fresh := form(a.url, "/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt3}, "client_id": {cid3}})
		at3, _ := fresh["access_token"].(string)
		rt3, _ = fresh["refresh_token"].(string)
		if kidOf(t, at3) == newKID {
			if code, _, body := mcp(b.url, at3, "", callBody); code != 200 {
				t.Fatalf("a token signed by the new key on B: %d %s", code, body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("A did not sign with the rotated key within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// `mcpgate policy reload`: every replica runs its reload (SIGHUP's).
	reloads := make(chan int, 2)
	for i, r := range replicas {
		r.srv.OnPolicyReloadRequest(func() { reloads <- i })
	}
	if err := st.Notify(ctx, store.Change{Kind: store.ChangePolicy}); err != nil {
		t.Fatal(err)
	}
	got := map[int]bool{}
	for len(got) < 2 {
		select {
		case i := <-reloads:
			got[i] = true
		case <-time.After(time.Second):
			t.Fatalf("policy reload requested; replicas that reloaded within 1s: %v", got)
		}
	}
}

// kidOf returns the kid in a JWT's protected header.
func kidOf(t *testing.T, token string) string {
	t.Helper()
	head, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}
