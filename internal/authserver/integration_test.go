package authserver

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/keys"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/sqlite"
)

// The production dependencies satisfy the interfaces.
var (
	_ Signer = (*keys.Manager)(nil)
	_ Sealer = (*keys.Sealer)(nil)
)

// realDeps opens the sqlite store at path and builds the real key manager.
func realDeps(t testing.TB, path string, sealKey []byte) (store.Store, *keys.Manager, *keys.Sealer) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := keys.NewSealer(sealKey)
	if err != nil {
		t.Fatal(err)
	}
	m, err := keys.NewManager(context.Background(), st, sealer, keys.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return st, m, sealer
}

// Tokens, refresh tokens and consents survive a restart with a durable store.
func TestSQLiteAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mcpgate.db")
	sealKey := make([]byte, 32)
	rand.Read(sealKey)

	st, m, sealer := realDeps(t, path, sealKey)
	e := newEnv(t, envOpt{st: st, deps: func(d *Deps) { d.Signer, d.Sealer = m, sealer }})
	c := e.register("http://127.0.0.1:3000/cb", true)
	tok := e.tokens(c)
	if err := e.authn("/mcp", tok["access_token"].(string)); err != nil {
		t.Fatal(err)
	}
	_, r1 := e.refresh(c, tok["refresh_token"].(string))
	if r1["refresh_token"] == nil {
		t.Fatal(r1)
	}
	st.Close()

	// "Restart": new store handle, new key manager, new server; same issuer.
	st2, m2, sealer2 := realDeps(t, path, sealKey)
	defer st2.Close()
	cfg := e.srv.cfg
	srv2, err := New(cfg, Deps{Store: st2, Signer: m2, Sealer: sealer2, Clock: e.clock.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	e.srv, e.st = srv2, st2
	swap(e, srv2.Handler())

	if err := e.authn("/mcp", r1["access_token"].(string)); err != nil {
		t.Errorf("access token after restart: %v", err)
	}
	if st, m := e.refresh(c, r1["refresh_token"].(string)); st != http.StatusOK {
		t.Errorf("refresh after restart: %d %v", st, m)
	}
	// Reuse detection survives the restart too.
	e.clock.Add(time.Minute)
	if st, _ := e.refresh(c, tok["refresh_token"].(string)); st != http.StatusBadRequest {
		t.Errorf("reuse after restart accepted: %d", st)
	}
	// Key rotation: tokens signed by the old key keep verifying, new ones too.
	if err := m2.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	c2 := e.register("http://127.0.0.1:3000/cb", true)
	at := e.tokens(c2)["access_token"].(string)
	if err := e.authn("/mcp", at); err != nil {
		t.Errorf("token from the rotated key: %v", err)
	}
}

// swap replaces the handler behind the env's test server.
func swap(e *env, h http.Handler) { e.handler.Store(&h) }

// TestGoSDKClient runs the MCP Go SDK's OAuth client (DCR, PKCE, resource,
// RFC 9207 iss check) against the authorization server.
func TestGoSDKClient(t *testing.T) {
	e := newEnv(t, envOpt{})
	asHandler := e.srv.Handler()
	resource := e.iss + "/mcp"
	mux := http.NewServeMux()
	mux.Handle("/", asHandler)
	mux.HandleFunc("GET /.well-known/oauth-protected-resource/mcp", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"resource": resource, "authorization_servers": []string{e.iss}, "scopes_supported": []string{"mcp:read"},
		})
	})
	mux.HandleFunc("POST /mcp", func(w http.ResponseWriter, r *http.Request) {
		if _, err := e.srv.Authenticate(r); err != nil {
			status, code, _ := authn.Describe(err)
			ch := fmt.Sprintf(`Bearer resource_metadata="%s/.well-known/oauth-protected-resource/mcp"`, e.iss)
			if code != "" {
				ch += fmt.Sprintf(`, error=%q`, code)
			}
			w.Header().Set("WWW-Authenticate", ch)
			w.WriteHeader(status)
			return
		}
		w.Write([]byte("ok"))
	})
	swap(e, mux)

	b := e.browser()
	redirect := "http://127.0.0.1:45678/callback"
	h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			ClientName: "Go SDK test", RedirectURIs: []string{redirect}, GrantTypes: []string{"authorization_code", "refresh_token"},
			TokenEndpointAuthMethod: "none",
		}},
		RedirectURL: redirect,
		AuthorizationCodeFetcher: func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
			if !strings.Contains(args.URL, "resource=") || !strings.Contains(args.URL, "code_challenge_method=S256") {
				return nil, fmt.Errorf("authorize URL lacks resource or PKCE: %s", args.URL)
			}
			p := b.get(args.URL)
			for range 5 {
				if p.loc == nil {
					return nil, fmt.Errorf("flow stopped: %d %s", p.status, p.body)
				}
				switch {
				case strings.HasPrefix(p.loc.String(), e.iss+"/login"):
					p = e.signIn(b, p, testUser, testPassword)
				case strings.HasPrefix(p.loc.String(), e.iss+"/consent"):
					p = e.decide(b, p, "approve")
				case strings.HasPrefix(p.loc.String(), redirect):
					q := p.loc.Query()
					return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
				default:
					return nil, fmt.Errorf("unexpected redirect %s", p.loc)
				}
			}
			return nil, errors.New("flow did not finish")
		},
		Client: e.ts.Client(),
	})
	if err != nil {
		t.Fatal(err)
	}
	// First call: 401 with the challenge.
	req, _ := http.NewRequest(http.MethodPost, resource, nil)
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unauthenticated: %d", resp.StatusCode)
	}
	if err := h.Authorize(t.Context(), req, resp); err != nil {
		t.Fatalf("Go SDK authorization: %v", err)
	}
	ts, err := h.TokenSource(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	req, _ = http.NewRequest(http.MethodPost, resource, nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err = e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("authenticated call: %d", resp.StatusCode)
	}
	if tok.RefreshToken == "" {
		t.Error("no refresh token for a client registered with the refresh_token grant")
	}
}
