package authserver

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// loginCounting drives a built-in-user flow like env.login and counts the
// consent pages shown.
func (e *env) loginCounting(b *browser, params url.Values) (q url.Values, consents int, consentPage string) {
	e.t.Helper()
	q = e.walk(b, params, testUser, testPassword, func(p *page) {
		consents++
		consentPage = p.body
	})
	return q, consents, consentPage
}

// TestConsentBinding: a stored consent covers only the client, resource
// and redirect URI it was given for, and expires after consent_ttl.
func TestConsentBinding(t *testing.T) {
	var other string
	e := newEnv(t, envOpt{cfg: func(c *Config) {
		c.Resources = []string{c.PublicURL + "/mcp", c.PublicURL + "/other/mcp"}
		other = c.PublicURL + "/other/mcp"
		c.ConsentTTL = 24 * time.Hour
	}})
	st, m := e.registerRaw(map[string]any{
		"client_name": "Two Redirects", "token_endpoint_auth_method": "none",
		"redirect_uris": []string{"http://127.0.0.1:3000/a", "http://127.0.0.1:3000/b"},
	}, nil)
	if st != http.StatusCreated {
		t.Fatal(m)
	}
	a := regClient{ID: m["client_id"].(string), Redirect: "http://127.0.0.1:3000/a"}
	bRedirect := a
	bRedirect.Redirect = "http://127.0.0.1:3000/b"
	withResource := func(v url.Values, r string) url.Values { v.Set("resource", r); return v }
	b := e.browser()

	steps := []struct {
		name   string
		params url.Values
		want   int
	}{
		{"first sign-in", authorizeParams(a), 1},
		{"same client, resource and redirect URI", authorizeParams(a), 0},
		{"another redirect URI", authorizeParams(bRedirect), 1},
		{"the other redirect URI again", authorizeParams(bRedirect), 0},
		{"another resource", withResource(authorizeParams(a), other), 1},
		{"the first resource again", authorizeParams(a), 0},
	}
	for _, s := range steps {
		q, n, _ := e.loginCounting(b, s.params)
		if n != s.want || q.Get("code") == "" {
			t.Errorf("%s: %d consent pages (want %d), %v", s.name, n, s.want, q)
		}
	}
	// consent_ttl passes: asked again, then remembered again.
	e.clock.Add(25 * time.Hour)
	for _, want := range []int{1, 0} {
		if _, n, _ := e.loginCounting(b, authorizeParams(a)); n != want {
			t.Errorf("after consent_ttl: %d consent pages, want %d", n, want)
		}
	}
}

// TestConsentPageNamesResourceInPunycode: the consent page says which
// backend the tokens are for, and shows internationalised hosts in their
// ASCII form so that a look-alike name cannot pass for another.
func TestConsentPageNamesResourceInPunycode(t *testing.T) {
	var iss string
	e := newEnv(t, envOpt{
		cfg:  func(c *Config) { iss = c.PublicURL; c.Resources = []string{c.PublicURL + "/mcp"} },
		deps: func(d *Deps) { d.ResourceNames = map[string]string{iss + "/mcp": "vsphere"} },
	})
	// аpple.example with a Cyrillic "а", and an umlaut.
	for _, tc := range []struct{ redirect, ascii, unicode string }{
		{"https://\u0430pple.example/cb", "xn--pple-43d.example", "\u0430pple"},
		{"https://b\u00fccher.example:8443/cb", "xn--bcher-kva.example:8443", "b\u00fccher"},
	} {
		c := e.register(tc.redirect, true)
		_, n, body := e.loginCounting(e.browser(), authorizeParams(c))
		if n != 1 {
			t.Fatalf("%d consent pages", n)
		}
		if !strings.Contains(body, tc.ascii) || strings.Contains(body, tc.unicode) {
			t.Errorf("%s: consent page does not show the host as %s only:\n%s", tc.redirect, tc.ascii, body)
		}
		if !strings.Contains(body, "vsphere") || !strings.Contains(body, iss+"/mcp") {
			t.Errorf("consent page does not name the backend and resource:\n%s", body)
		}
	}
}

func TestASCIIHost(t *testing.T) {
	for in, want := range map[string]string{
		"example.com":         "example.com",
		"EXAMPLE.com:8080":    "example.com:8080",
		"b\u00fccher.example": "xn--bcher-kva.example",
		"\u0430pple.com:443":  "xn--pple-43d.com:443",
		"[::1]:80":            "[::1]:80",
		"127.0.0.1:3000":      "127.0.0.1:3000",
		"\u2024evil.example":  "xn--evil-fc7a.example", // not valid IDNA: still no non-ASCII shown
	} {
		got := asciiHost(in)
		if got != want {
			t.Errorf("asciiHost(%q) = %q, want %q", in, got, want)
		}
		for _, r := range got {
			if r > 0x7e {
				t.Errorf("asciiHost(%q) = %q has non-ASCII", in, got)
			}
		}
	}
	if got := displayURI("https://b\u00fccher.example/mcp?x=1"); got != "https://xn--bcher-kva.example/mcp" {
		t.Errorf("displayURI = %q", got)
	}
}
