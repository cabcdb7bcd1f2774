package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func render(t *testing.T, b Branding, page string, data any) *httptest.ResponseRecorder {
	t.Helper()
	r, err := NewRenderer(b)
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	if err := r.Render(w, http.StatusOK, page, data); err != nil {
		t.Fatal(err)
	}
	return w
}

func TestSecurityHeaders(t *testing.T) {
	for _, page := range []struct {
		name string
		data any
	}{
		{PageLogin, Login{RequestID: "r", CSRF: "c"}},
		{PageConsent, Consent{RequestID: "r", CSRF: "c", ClientName: "x", RedirectHost: "h"}},
		{PageError, Error{Title: "t", Message: "m"}},
		{PageRedirect, Redirect{URL: "cursor://cb?code=1"}},
		{PageHome, Home{Endpoints: []Endpoint{{Name: "demo", URL: "http://x/mcp", MetadataURL: "http://x/m"}}, DocsURL: DocsURL}},
	} {
		w := render(t, Branding{}, page.name, page.data)
		h := w.Header()
		if h.Get("X-Frame-Options") != "DENY" || !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Errorf("%s: framing not denied: %v", page.name, h)
		}
		if h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control = %q", page.name, h.Get("Cache-Control"))
		}
		// The only style element carries the CSP nonce.
		csp := h.Get("Content-Security-Policy")
		_, nonce, _ := strings.Cut(csp, "'nonce-")
		nonce, _, _ = strings.Cut(nonce, "'")
		if nonce == "" || !strings.Contains(w.Body.String(), `<style nonce="`+nonce+`">`) {
			t.Errorf("%s: style nonce mismatch (csp %q)", page.name, csp)
		}
	}
}

func TestConsentEscapesAndShowsHost(t *testing.T) {
	w := render(t, Branding{Title: "Acme <MCP>", PrimaryColor: "#123456"}, PageConsent, Consent{
		ClientName:   `<script>alert(1)</script>`,
		RedirectHost: "evil.example.com",
		ClientKind:   "dynamic",
		LoopbackOnly: true,
		Scopes:       []Scope{{Name: "mcp:tools", Description: "call tools"}},
	})
	body := w.Body.String()
	if strings.Contains(body, "<script>alert(1)") {
		t.Error("client name not escaped")
	}
	for _, want := range []string{"evil.example.com", "mcp:tools", "registered itself", "localhost", "Acme &lt;MCP&gt;", "--primary: #123456"} {
		if !strings.Contains(body, want) {
			t.Errorf("consent page lacks %q", want)
		}
	}
}

func TestRedirectInterstitialKeepsCustomScheme(t *testing.T) {
	w := render(t, Branding{}, PageRedirect, Redirect{URL: "cursor://anysphere.cursor-mcp/oauth/callback?code=abc&state=x", ClientName: "Cursor"})
	body := w.Body.String()
	if !strings.Contains(body, `href="cursor://anysphere.cursor-mcp/oauth/callback?code=abc&amp;state=x"`) {
		t.Errorf("link missing or sanitised:\n%s", body)
	}
	if !strings.Contains(body, `http-equiv="refresh" content="0;url=cursor://`) {
		t.Errorf("meta refresh missing:\n%s", body)
	}
}

func TestBadColourIsNeutralised(t *testing.T) {
	// Config validation rejects such values; the template escaper is the second line.
	w := render(t, Branding{PrimaryColor: "red; } body { background: url(http://evil)"}, PageError, Error{Title: "t", Message: "m"})
	if strings.Contains(w.Body.String(), "url(http://evil)") {
		t.Error("CSS injection through branding colour")
	}
}

func TestRedirectInterstitialError(t *testing.T) {
	w := render(t, Branding{}, PageRedirect, Redirect{URL: "cursor://x/cb?error=access_denied", Failed: true})
	if body := w.Body.String(); strings.Contains(body, "You are signed in") || !strings.Contains(body, "Sign-in not completed") {
		t.Errorf("error interstitial:\n%s", body)
	}
}

func TestConsentShowsResource(t *testing.T) {
	body := render(t, Branding{}, PageConsent, Consent{
		ClientName: "x", RedirectHost: "h", Resource: "https://gw.example/mcp", ResourceName: "<vsphere>",
	}).Body.String()
	if !strings.Contains(body, "https://gw.example/mcp") || !strings.Contains(body, "&lt;vsphere&gt;") {
		t.Errorf("consent page does not name the resource (escaped):\n%s", body)
	}
	if body := render(t, Branding{}, PageConsent, Consent{ClientName: "x", RedirectHost: "h"}).Body.String(); strings.Contains(body, "asks for access to") {
		t.Error("resource line without a resource")
	}
}
