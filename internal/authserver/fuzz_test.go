package authserver

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/mcpgate/mcpgate/internal/store"
)

// redirectURIOracle restates the registration rules for redirect URIs
// (OAuth 2.1 §2.3.1, RFC 8252 §7) independently of validateRedirectURI:
// what it refuses, neither DCR nor a CIMD document may register.
func redirectURIOracle(raw string, trusted []string) bool {
	if raw == "" || len(raw) > 2048 || strings.ContainsAny(raw, "#*\\ ") {
		return false
	}
	for _, b := range []byte(raw) {
		if b < 0x20 || b == 0x7f {
			return false
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.User != nil {
		return false
	}
	switch s := strings.ToLower(u.Scheme); s {
	case "http":
		h := strings.ToLower(u.Hostname())
		return h == "127.0.0.1" || h == "::1" || h == "localhost"
	case "https":
		return u.Hostname() != ""
	case "javascript", "data", "vbscript", "file", "blob", "about", "filesystem", "view-source", "ftp",
		"ws", "wss", "chrome", "chrome-extension", "moz-extension", "resource", "jar", "mailto", "tel":
		return false
	default:
		return slices.Contains(trusted, s) || strings.Contains(s, ".")
	}
}

// checkDisplayName: names shown on the consent page carry no control or
// bidi-override characters and are at most 100 runes.
func checkDisplayName(t *testing.T, what, s string) {
	t.Helper()
	if utf8.RuneCountInString(s) > 100 {
		t.Fatalf("%s %q is longer than 100 runes", what, s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			t.Fatalf("%s %q keeps control character %U", what, s, r)
		}
	}
}

// cimdTransport serves one document for every URL.
type cimdTransport struct {
	body         []byte
	cacheControl string
}

func (c *cimdTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	h := http.Header{"Content-Type": {"application/json"}}
	if c.cacheControl != "" {
		h.Set("Cache-Control", c.cacheControl)
	}
	return &http.Response{StatusCode: http.StatusOK, Header: h, Body: io.NopCloser(bytes.NewReader(c.body)), Request: r}, nil
}

type member struct {
	name  string
	value jsontext.Value
}

// topLevelMembers lists an object's members in order, duplicates included.
func topLevelMembers(b []byte) ([]member, bool) {
	dec := jsontext.NewDecoder(bytes.NewReader(b), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return nil, false
	}
	var out []member
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil || tok.Kind() != '"' {
			return nil, false
		}
		name := tok.String() // before the next read invalidates tok
		v, err := dec.ReadValue()
		if err != nil {
			return nil, false
		}
		out = append(out, member{name, v.Clone()})
	}
	return out, true
}

// FuzzCIMDDocument: a Client ID Metadata Document is accepted only if every
// member naming client_id equals the URL it was fetched from, its redirect
// URIs pass the registration rules, its name (if any) is clean, it holds no
// secret and asks for nothing but a public authorization-code client; its
// cache lifetime stays within the configured cap.
func FuzzCIMDDocument(f *testing.F) {
	const id = "https://client.example.com/oauth/client.json"
	doc := func(over map[string]any) []byte {
		m := map[string]any{"client_id": id, "client_name": "Doc Client", "redirect_uris": []string{"http://127.0.0.1:7777/cb"}}
		for k, v := range over {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		b, _ := json.Marshal(m)
		return b
	}
	type seed struct {
		id   string
		body []byte
		cc   string
	}
	for _, s := range []seed{
		{id, doc(nil), "max-age=60"},
		{id, doc(map[string]any{"client_id": "https://evil.example.com/client.json"}), ""},
		{id, doc(map[string]any{"client_id": id + "/"}), ""},
		{id, doc(map[string]any{"client_id": "HTTPS://client.example.com/oauth/client.json"}), ""},
		{id, doc(map[string]any{"client_name": nil}), ""},
		{id, doc(map[string]any{"client_name": " \u202e\u0000 "}), ""},
		{id, doc(map[string]any{"client_name": strings.Repeat("é", 200)}), ""},
		{id, doc(map[string]any{"client_secret": "s"}), ""},
		{id, doc(map[string]any{"token_endpoint_auth_method": "client_secret_basic"}), ""},
		{id, doc(map[string]any{"grant_types": []string{"implicit"}}), ""},
		{id, doc(map[string]any{"grant_types": []string{"refresh_token"}}), ""},
		{id, doc(map[string]any{"response_types": []string{"token"}}), ""},
		{id, doc(map[string]any{"redirect_uris": []string{"http://evil.example.com/cb"}}), ""},
		{id, doc(map[string]any{"redirect_uris": []string{"javascript:alert(1)"}}), ""},
		{id, doc(map[string]any{"redirect_uris": []string{"https://app.example.com/cb", "cursor://anysphere.cursor-mcp/cb", "com.example.app:/cb"}}), "no-store"},
		{id, doc(map[string]any{"redirect_uris": []string{}}), ""},
		{id, doc(map[string]any{"redirect_uris": "http://127.0.0.1/cb"}), ""},
		{id, []byte(`{"client_id":"https://evil.example.com/c.json","client_id":"` + id + `","client_name":"x","redirect_uris":["http://127.0.0.1/cb"]}`), ""},
		{id, []byte(`{"CLIENT_ID":"` + id + `","client_name":"x","redirect_uris":["http://127.0.0.1/cb"]}`), ""},
		{id, []byte(`{"client_id":"` + id + `","client_name":"x","redirect_uris":["http://127.0.0.1/cb"],"Client_Secret":"s"}`), ""},
		{id, []byte(`{"client_id":"` + id + `","client_name":"x","redirect_uris":["http://127.0.0.1/cb"]} trailing`), ""},
		{id, doc(nil), "max-age=999999999999"},
		{id, doc(nil), `max-age="60", no-cache`},
		{id, doc(nil), "max-age=-1"},
		{"https://client.example.com/", doc(map[string]any{"client_id": "https://client.example.com/"}), ""},
		{"http://client.example.com/c.json", doc(map[string]any{"client_id": "http://client.example.com/c.json"}), ""},
		{"https://client.example.com/a/../c.json", doc(map[string]any{"client_id": "https://client.example.com/a/../c.json"}), ""},
		{"https://u@client.example.com/c.json", doc(map[string]any{"client_id": "https://u@client.example.com/c.json"}), ""},
		{"https://client.example.com/c.json#x", doc(map[string]any{"client_id": "https://client.example.com/c.json#x"}), ""},
	} {
		f.Add(s.id, s.body, s.cc)
	}
	cfg := CIMDConfig{Timeout: 5 * time.Second, MaxBytes: 16 << 10, CacheTTL: 5 * time.Minute, MaxCacheTTL: 24 * time.Hour}
	trusted := []string{"cursor", "vscode"}
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, id string, body []byte, cacheControl string) {
		tr := &cimdTransport{body: body, cacheControl: cacheControl}
		cf := &cimdFetcher{
			client: &http.Client{Transport: tr}, cfg: cfg, trusted: trusted,
			now: func() time.Time { return now }, cache: map[string]cimdEntry{},
		}
		c, ttl, err := cf.fetch(context.Background(), id)
		if err != nil {
			if c != nil {
				t.Fatalf("client returned with error %v", err)
			}
			return
		}
		u, perr := url.Parse(id)
		if perr != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || strings.Contains(id, "#") ||
			u.Path == "" || u.Path == "/" || slices.Contains(strings.Split(u.Path, "/"), "..") {
			t.Fatalf("accepted client_id URL %q", id)
		}
		if int64(len(body)) > cfg.MaxBytes {
			t.Fatalf("accepted a %d-byte document", len(body))
		}
		// Every member that encoding/json could read as client_id (names
		// match case-insensitively, duplicates are allowed) must equal the
		// URL: a document cannot name two clients.
		members, ok := topLevelMembers(body)
		if !ok {
			t.Fatalf("accepted a document that is not a JSON object: %q", body)
		}
		for _, m := range members {
			if strings.EqualFold(m.name, "client_id") {
				var s string
				if json.Unmarshal(m.value, &s) != nil || s != id {
					t.Fatalf("document member %q = %s accepted for URL %q", m.name, m.value, id)
				}
			}
			if strings.EqualFold(m.name, "client_secret") && string(m.value) != `""` && string(m.value) != "null" {
				t.Fatalf("document with %s = %s accepted", m.name, m.value)
			}
		}
		if c.ID != id || c.Kind != store.ClientKindCIMD || c.TokenEndpointAuthMethod != authNone || c.SecretHash != "" {
			t.Fatalf("client %+v", c)
		}
		checkDisplayName(t, "client name", c.Name)
		if len(c.RedirectURIs) == 0 {
			t.Fatalf("client without redirect URIs: %+v", c)
		}
		for _, r := range c.RedirectURIs {
			if !redirectURIOracle(r, trusted) {
				t.Fatalf("redirect URI %q accepted", r)
			}
		}
		for _, g := range c.GrantTypes {
			if g != grantCode && g != grantRT {
				t.Fatalf("grant type %q accepted", g)
			}
		}
		if !slices.Equal(c.ResponseTypes, []string{"code"}) {
			t.Fatalf("response types %v", c.ResponseTypes)
		}
		if ttl < 0 || ttl > cfg.MaxCacheTTL {
			t.Fatalf("cache lifetime %v", ttl)
		}
		for d := range strings.SplitSeq(strings.ToLower(cacheControl), ",") {
			if d = strings.TrimSpace(d); ttl != 0 && (d == "no-store" || d == "no-cache") {
				t.Fatalf("Cache-Control %q cached for %v", cacheControl, ttl)
			}
		}
	})
}

// FuzzRegistration: a dynamic client registration (RFC 7591) succeeds only
// for an application/json body whose redirect URIs all pass the
// registration rules; the registered and echoed metadata hold only values
// we support, a secret exactly for confidential clients, and clean names.
// Every refusal is a 400 with an OAuth error body, never a 5xx.
func FuzzRegistration(f *testing.F) {
	e := newEnv(f, envOpt{cfg: func(c *Config) { c.Registration.MaxClientsPerIP = -1 }})
	h := e.srv.Handler()
	trusted := []string{"cursor", "vscode", "vscode-insiders", "windsurf"}
	for _, s := range []string{
		`{"client_name":"My Client","redirect_uris":["http://localhost:33418/oauth/callback"],"scope":"mcp:read bogus offline_access"}`,
		`{"redirect_uris":["https://app.example.com/cb"],"token_endpoint_auth_method":"none"}`,
		`{"redirect_uris":["cursor://anysphere.cursor-mcp/oauth/callback"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"application_type":"native"}`,
		`{"redirect_uris":["http://[::1]:8080/cb","com.example.app:/oauth"],"client_uri":"javascript:alert(1)","software_id":"\u202eevil"}`,
		`{"redirect_uris":["http://evil.example.com/cb"]}`,
		`{"redirect_uris":["javascript:alert(1)//"]}`,
		`{"redirect_uris":["JAVASCRIPT:alert(1)"]}`,
		`{"redirect_uris":["https://app.example.com/cb#frag"]}`,
		`{"redirect_uris":["https://*.example.com/cb"]}`,
		`{"redirect_uris":["http://127.0.0.1.evil.com/cb"]}`,
		`{"redirect_uris":["http://user@127.0.0.1/cb"]}`,
		`{"redirect_uris":["https:/\\evil.com"]}`,
		`{"redirect_uris":["myapp:/cb"]}`,
		`{"redirect_uris":[]}`,
		`{"redirect_uris":"https://app.example.com/cb"}`,
		`{"redirect_uris":["https://app.example.com/cb"],"grant_types":["client_credentials"]}`,
		`{"redirect_uris":["https://app.example.com/cb"],"grant_types":["refresh_token"]}`,
		`{"redirect_uris":["https://app.example.com/cb"],"response_types":["code","token"]}`,
		`{"redirect_uris":["https://app.example.com/cb"],"token_endpoint_auth_method":"private_key_jwt"}`,
		`{"redirect_uris":["https://app.example.com/cb"],"application_type":"service"}`,
		`{"redirect_uris":["https://app.example.com/cb"],"REDIRECT_URIS":["http://evil.example.com/"]}`,
		`{"redirect_uris":["https://app.example.com/cb"],"client_name":"` + strings.Repeat("x", 500) + `"}`,
		`{"redirect_uris":["https://app.example.com/cb"]}{"redirect_uris":["http://evil.example.com/"]}`,
		``, `null`, `[]`, `{`, "\xff",
	} {
		f.Add([]byte(s), "application/json")
	}
	f.Add([]byte(`{"redirect_uris":["https://app.example.com/cb"]}`), "Application/JSON; charset=utf-8")
	f.Add([]byte(`{"redirect_uris":["https://app.example.com/cb"]}`), "text/plain")
	f.Add([]byte(`{"redirect_uris":["https://app.example.com/cb"]}`), "")
	f.Fuzz(func(t *testing.T, body []byte, ct string) {
		req := httptest.NewRequest(http.MethodPost, "/register", bytes.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var resp map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("status %d, non-JSON body %q", rec.Code, rec.Body.Bytes())
		}
		if rec.Code != http.StatusCreated {
			if rec.Code != http.StatusBadRequest || resp["error"] == nil {
				t.Fatalf("refusal %d %v", rec.Code, resp)
			}
			return
		}
		// Malformed parameters are tolerated; the media type is not.
		if mt, _, _ := mime.ParseMediaType(ct); mt != "application/json" {
			t.Fatalf("registered with Content-Type %q", ct)
		}
		id, _ := resp["client_id"].(string)
		c, err := e.st.GetClient(context.Background(), id)
		if err != nil {
			t.Fatalf("registered client %q not stored: %v", id, err)
		}
		defer func() { _ = e.st.DeleteClient(context.Background(), id) }()
		if len(c.RedirectURIs) == 0 || len(c.RedirectURIs) > 20 {
			t.Fatalf("%d redirect URIs registered", len(c.RedirectURIs))
		}
		for _, r := range c.RedirectURIs {
			if !redirectURIOracle(r, trusted) {
				t.Fatalf("redirect URI %q registered", r)
			}
		}
		echoed, _ := resp["redirect_uris"].([]any)
		if len(echoed) != len(c.RedirectURIs) {
			t.Fatalf("echoed redirect_uris %v, registered %v", echoed, c.RedirectURIs)
		}
		if !slices.Contains(c.GrantTypes, grantCode) {
			t.Fatalf("grant types %v lack authorization_code", c.GrantTypes)
		}
		for _, g := range c.GrantTypes {
			if g != grantCode && g != grantRT {
				t.Fatalf("grant type %q registered", g)
			}
		}
		if !slices.Equal(c.ResponseTypes, []string{"code"}) {
			t.Fatalf("response types %v", c.ResponseTypes)
		}
		switch c.TokenEndpointAuthMethod {
		case authNone:
			if c.SecretHash != "" || resp["client_secret"] != nil {
				t.Fatal("public client got a secret")
			}
		case authBasic, authPost:
			if c.SecretHash == "" || resp["client_secret"] == nil {
				t.Fatal("confidential client without a secret")
			}
		default:
			t.Fatalf("auth method %q registered", c.TokenEndpointAuthMethod)
		}
		if c.ApplicationType != "web" && c.ApplicationType != "native" {
			t.Fatalf("application type %q", c.ApplicationType)
		}
		for sc := range strings.FieldsSeq(c.Scope) {
			if sc != "mcp:read" && sc != "mcp:write" && sc != offlineAccess {
				t.Fatalf("scope %q registered", sc)
			}
		}
		checkDisplayName(t, "client name", c.Name)
		for _, k := range []string{"software_id", "software_version"} {
			s, _ := resp[k].(string)
			checkDisplayName(t, k, s)
		}
		if cu, _ := resp["client_uri"].(string); cu != "" && !strings.HasPrefix(strings.ToLower(cu), "https:") {
			t.Fatalf("client_uri %q kept", cu)
		}
		if c.Kind != store.ClientKindDynamic {
			t.Fatalf("kind %q", c.Kind)
		}
	})
}
