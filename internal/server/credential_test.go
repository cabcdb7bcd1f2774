package server_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/mcpgate/mcpgate/internal/demo"
)

// TestTokenExchangeCredential: in jwt mode a token_exchange backend gets
// the token the security token service issued for it in exchange for the
// client's token — never the client's token — one exchange per token,
// audited; when the service refuses, the call fails with a JSON-RPC error
// that names the backend and the backend is not reached.
func TestTokenExchangeCredential(t *testing.T) {
	var mu sync.Mutex
	var subjects []string
	refuse := false
	sts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		mu.Lock()
		subjects = append(subjects, r.PostForm.Get("subject_token"))
		no := refuse
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if no || r.PostForm.Get("audience") != "demo-api" {
			w.WriteHeader(400)
			w.Write([]byte(`{"error":"invalid_grant","error_description":"user may not use demo-api"}`))
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"access_token": "exchanged-for-demo", "token_type": "Bearer", "expires_in": 600,
			"issued_token_type": "urn:ietf:params:oauth:token-type:access_token"})
	}))
	defer sts.Close()
	env := startGateway(t, "", demo.Options{}, func(y string) string {
		return strings.Replace(y, "    url: ", "    credential: { type: token_exchange, token_endpoint: '"+sts.URL+"/token', allow_private_network: true, client_id: gw, client_secret: s, audience: demo-api }\n    url: ", 1)
	})
	token := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-admins"}})
	cs := connect(t, env.url, token)
	for range 3 {
		if got, err := callText(t, cs, "echo", map[string]any{"text": "hi"}); err != nil || got != "hi" {
			t.Fatalf("echo = %q, %v", got, err)
		}
	}
	cs.Close()
	env.mu.Lock()
	for _, a := range env.seenAuth {
		if a != "Bearer exchanged-for-demo" {
			t.Errorf("backend received %q", a)
		}
	}
	n := len(env.seenAuth)
	env.mu.Unlock()
	mu.Lock()
	if n == 0 || len(subjects) != 1 || subjects[0] != token {
		t.Errorf("%d backend requests, STS subjects %d (the client's token: %v)", n, len(subjects), len(subjects) > 0 && subjects[0] == token)
	}
	refuse = true
	mu.Unlock()

	// Another token of the same user: a new exchange, refused.
	other := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-admins"}, "jti": "other"})
	before := env.seenCount.Load()
	req, _ := http.NewRequest("POST", env.url, strings.NewReader(`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`))
	req.Header.Set("Authorization", "Bearer "+other)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		ID    int `json:"id"`
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != 403 || body.ID != 4 || body.Error.Message != "backend demo: could not get a credential: the security token service refused it for this user" {
		t.Errorf("refused exchange: %d %+v", resp.StatusCode, body)
	}
	if env.seenCount.Load() != before {
		t.Error("the backend was reached without a credential")
	}

	log, err := os.ReadFile(env.auditPath)
	if err != nil {
		t.Fatal(err)
	}
	var ok, failed int
	for line := range strings.SplitSeq(strings.TrimSpace(string(log)), "\n") {
		var r struct{ Event, Result, Backend, Method, Reason string }
		json.Unmarshal([]byte(line), &r)
		if r.Event == "BACKEND_CREDENTIAL" && r.Backend == "demo" && r.Method == "token_exchange" {
			if r.Result == "success" {
				ok++
			} else if strings.Contains(r.Reason, "invalid_grant") && !strings.Contains(r.Reason, "demo-api") {
				failed++
			}
		}
	}
	if ok != 1 || failed != 1 {
		t.Errorf("BACKEND_CREDENTIAL records: %d success, %d refused", ok, failed)
	}
	for _, secret := range []string{token, other, "exchanged-for-demo"} {
		if strings.Contains(string(log), secret) {
			t.Error("a token is in the audit log")
		}
	}
}
