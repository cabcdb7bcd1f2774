package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
)

// The authorization server's sign-in, spoken as an MCP client and its
// browser do: dynamic registration (RFC 7591), authorization code with
// PKCE (RFC 7636) through mcpgate's login and consent forms, the token
// endpoint, and refresh (RFC 6749 §6).

// errNoAnswer is a request no replica answered (the proxy's 502, or a
// transport error): its outcome is unknown to the client.
var errNoAnswer = errors.New("no answer")

// httpError is a replica's answer with an unexpected status.
type httpError struct {
	Path   string
	Status int
	Body   string
}

func (e *httpError) Error() string {
	return fmt.Sprintf("%s: HTTP %d %.200s", e.Path, e.Status, e.Body)
}

var hiddenField = regexp.MustCompile(`name="(req|csrf)" value="([^"]+)"`)

// oauthClient is one registered public client.
type oauthClient struct {
	http     *http.Client
	base     string
	ID       string
	redirect string
}

// do sends req and reads the body; errNoAnswer when no replica answered.
func do(c *http.Client, req *http.Request) (*http.Response, []byte, error) {
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s %s: %v", errNoAnswer, req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s %s: %v", errNoAnswer, req.Method, req.URL.Path, err)
	}
	if resp.StatusCode == http.StatusBadGateway && resp.Header.Get(proxyHeader) != "" {
		return nil, nil, fmt.Errorf("%w: %s %s: %s", errNoAnswer, req.Method, req.URL.Path, strings.TrimSpace(string(body)))
	}
	return resp, body, nil
}

// register registers a public client named name.
func register(ctx context.Context, hc *http.Client, base, name string) (*oauthClient, error) {
	redirect := "http://127.0.0.1:9/cb"
	reg, _ := json.Marshal(map[string]any{
		"client_name": name, "redirect_uris": []string{redirect}, "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"},
	})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/register", strings.NewReader(string(reg)))
	req.Header.Set("Content-Type", "application/json")
	resp, body, err := do(hc, req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusCreated {
		return nil, &httpError{"/register", resp.StatusCode, string(body)}
	}
	var out struct {
		ClientID string `json:"client_id"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.ClientID == "" {
		return nil, fmt.Errorf("/register: no client_id in %.200s", body)
	}
	return &oauthClient{http: hc, base: base, ID: out.ClientID, redirect: redirect}, nil
}

// tokens is a token endpoint answer.
type tokens struct {
	Access  string `json:"access_token"`
	Refresh string `json:"refresh_token"`
}

// signIn walks /authorize → login → consent as user and exchanges the code.
func (c *oauthClient) signIn(ctx context.Context, user, password string) (tokens, error) {
	vb := make([]byte, 32)
	rand.Read(vb)
	verifier := base64.RawURLEncoding.EncodeToString(vb)
	sum := sha256.Sum256([]byte(verifier))
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Transport: c.http.Transport, Jar: jar, Timeout: c.http.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	q := url.Values{"response_type": {"code"}, "client_id": {c.ID}, "redirect_uri": {c.redirect}, "state": {"s"}, "scope": {"mcp"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	loc, _ := url.Parse(c.base + "/authorize?" + q.Encode())
	code := ""
	for i := 0; i < 8 && code == ""; i++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, loc.String(), nil)
		resp, body, err := do(browser, req)
		if err != nil {
			return tokens{}, err
		}
		if l := resp.Header.Get("Location"); l != "" {
			loc, _ = loc.Parse(l)
			code = loc.Query().Get("code")
			continue
		}
		if resp.StatusCode != http.StatusOK {
			return tokens{}, &httpError{loc.Path, resp.StatusCode, string(body)}
		}
		form := url.Values{}
		for _, m := range hiddenField.FindAllStringSubmatch(string(body), -1) {
			form.Set(m[1], m[2])
		}
		target := c.base + "/consent"
		if loc.Path == "/login" {
			target = c.base + "/login"
			form.Set("username", user)
			form.Set("password", password)
		} else {
			form.Set("decision", "approve")
		}
		req, _ = http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, body, err = do(browser, req)
		if err != nil {
			return tokens{}, err
		}
		l := resp.Header.Get("Location")
		if l == "" {
			return tokens{}, &httpError{target, resp.StatusCode, string(body)}
		}
		loc, _ = loc.Parse(l)
		code = loc.Query().Get("code")
	}
	if code == "" {
		return tokens{}, errors.New("no authorization code after 8 pages")
	}
	return c.token(ctx, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {c.redirect},
		"code_verifier": {verifier}, "client_id": {c.ID}})
}

// refresh uses a refresh token once (it rotates).
func (c *oauthClient) refresh(ctx context.Context, rt string) (tokens, error) {
	return c.token(ctx, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {c.ID}})
}

func (c *oauthClient) token(ctx context.Context, form url.Values) (tokens, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body, err := do(c.http, req)
	if err != nil {
		return tokens{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return tokens{}, &httpError{"/token", resp.StatusCode, string(body)}
	}
	var t tokens
	if err := json.Unmarshal(body, &t); err != nil || t.Access == "" || t.Refresh == "" {
		return tokens{}, fmt.Errorf("/token: no tokens in %.200s", body)
	}
	return t, nil
}
