package authserver

import (
	"net/http"
	"testing"
)

// TestSelfRegisteredClientCanStepUp: a client that registered with scope
// "mcp:read" (the 401 challenge's scope, as the TypeScript SDK does) can
// later ask for "mcp:read mcp:write" after an insufficient_scope challenge;
// the user is asked to consent again for the new scope.
func TestSelfRegisteredClientCanStepUp(t *testing.T) {
	e := newEnv(t, envOpt{})
	st, m := e.registerRaw(map[string]any{
		"client_name": "SDK client", "redirect_uris": []string{"http://127.0.0.1:9999/cb"},
		"token_endpoint_auth_method": "none", "scope": "mcp:read",
	}, nil)
	if st != http.StatusCreated {
		t.Fatalf("register: %d %v", st, m)
	}
	c := regClient{ID: m["client_id"].(string), Redirect: "http://127.0.0.1:9999/cb"}
	b := e.browser()
	if q := e.login(b, authorizeParams(c)); q.Get("code") == "" {
		t.Fatalf("first login: %v", q)
	}

	v := authorizeParams(c)
	v.Set("scope", "mcp:read mcp:write")
	p := b.get(e.iss + "/authorize?" + v.Encode())
	if p.status != http.StatusSeeOther && p.status != http.StatusFound {
		t.Fatalf("step-up authorize: %d %s", p.status, p.body)
	}
	if p.loc.Query().Get("error") != "" {
		t.Fatalf("step-up refused: %v", p.loc.Query())
	}
	q := e.login(b, v)
	st, tok := e.exchange(c, q.Get("code"), nil)
	if st != http.StatusOK || tok["scope"] != "mcp:read mcp:write" {
		t.Fatalf("step-up token: %d %v", st, tok)
	}
}
