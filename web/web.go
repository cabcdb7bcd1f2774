// Package web holds the authorization server's HTML pages (login, consent,
// error, redirect interstitial) as embedded html/template files, and renders
// them with the security headers every page needs.
package web

import (
	"bytes"
	"crypto/rand"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
)

//go:embed templates/*.html
var files embed.FS

// Page names.
const (
	PageLogin    = "login.html"
	PageConsent  = "consent.html"
	PageError    = "error.html"
	PageRedirect = "redirect.html"
	PageHome     = "home.html"
	PageLink     = "link.html"
)

// DocsURL is where the gateway's documentation lives, linked from its pages.
const DocsURL = "https://github.com/mcpgate/mcpgate/tree/main/docs"

// Branding customises the pages (`auth.authorization_server.branding`).
type Branding struct {
	Title           string `yaml:"title"`            // product name shown in headings and <title>
	LogoURL         string `yaml:"logo_url"`         // https or data: URL
	PrimaryColor    string `yaml:"primary_color"`    // CSS hex colour, e.g. #4f46e5
	BackgroundColor string `yaml:"background_color"` // CSS hex colour
}

// SetDefaults fills in unset fields.
func (b *Branding) SetDefaults() {
	if b.Title == "" {
		b.Title = "mcpgate"
	}
	if b.PrimaryColor == "" {
		b.PrimaryColor = "#2563eb"
	}
	if b.BackgroundColor == "" {
		b.BackgroundColor = "#f3f4f6"
	}
}

// Login is the data of the static-users login form.
type Login struct {
	RequestID  string
	CSRF       string
	ClientName string
	Username   string
	Error      string
	// Purpose, instead of ClientName, says why (a link's sign-in: "to link
	// your GitHub account"); Action is the form's target (default "login").
	Purpose string
	Action  string
}

// Scope is one scope shown on the consent page.
type Scope struct {
	Name        string
	Description string
}

// Consent is the data of the consent page. RedirectHost MUST be shown
// (MCP security best practices: the user must see where the code goes).
type Consent struct {
	RequestID    string
	CSRF         string
	ClientName   string
	ClientID     string
	ClientKind   string // dynamic | static | cimd
	ClientHost   string // cimd: the host that publishes the client's metadata document
	NameFromHost bool   // cimd: the document gave no client_name; ClientName is ClientHost
	RedirectHost string
	// Resource is what the tokens will be for (RFC 8707), with its host
	// in ASCII (punycode); ResourceName names the backend serving it.
	Resource      string
	ResourceName  string
	LoopbackOnly  bool // every redirect URI of the client is on this machine
	CustomScheme  bool // the redirect opens a local application
	Scopes        []Scope
	User          string // empty before upstream login
	UpstreamLogin bool   // approving continues to the identity provider
}

// Error is the data of the error page.
type Error struct {
	Title   string
	Message string
	// ReturnURL, if set, is the client's redirect URI carrying the error
	// (RFC 6749 §4.1.2.1): a page the user must read comes first, and this
	// link then hands the error to the application waiting for it.
	ReturnURL  string
	ClientName string
}

// Home is the data of the page at "/": what a person who opens the
// gateway's address in a browser needs to connect a client. Only public
// URLs: the page is served without authentication.
type Home struct {
	Endpoints                      []Endpoint
	AuthorizationServerMetadataURL string // empty unless mcpgate is the authorization server
	DocsURL                        string
}

// Endpoint is one MCP endpoint on the home page.
type Endpoint struct {
	Name        string // the backend's name
	URL         string // the MCP URL (the resource URI)
	MetadataURL string // its protected resource metadata (RFC 9728)
}

// Redirect is the interstitial shown before handing the browser to a
// custom-scheme (application) redirect URI.
type Redirect struct {
	URL        string // the full redirect URI with code (or error), state and iss
	ClientName string
	Failed     bool // the redirect carries an error, not a sign-in
}

// Renderer renders pages.
type Renderer struct {
	t     *template.Template
	brand Branding
}

// NewRenderer parses the embedded templates.
func NewRenderer(b Branding) (*Renderer, error) {
	b.SetDefaults()
	t, err := template.New("").Funcs(template.FuncMap{
		// A URL that is neither http nor https must not be sanitised to
		// "#ZgotmplZ": the caller validated it as a registered redirect URI.
		"appURL": func(s string) template.URL { return template.URL(s) }, //nolint:gosec // validated redirect URI
	}).ParseFS(files, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("web: parse templates: %w", err)
	}
	return &Renderer{t: t, brand: b}, nil
}

type pageData struct {
	Brand Branding
	Nonce string
	D     any
}

// headerData is what the shared header template sees.
type headerData struct {
	Title   string
	Brand   Branding
	Nonce   string
	Refresh string // URL for an automatic meta refresh, if any
}

// With is called from templates to build the header for a page title.
func (p pageData) With(title string) headerData {
	return headerData{Title: title, Brand: p.Brand, Nonce: p.Nonce}
}

// WithRefresh is With plus an automatic redirect to url.
func (p pageData) WithRefresh(title, url string) headerData {
	h := p.With(title)
	h.Refresh = url
	return h
}

// SetSecurityHeaders sets the headers every authorization-server page
// carries: no framing (clickjacking on the consent page), no caching, no
// referrer (URLs carry request IDs), and a CSP allowing only our own
// nonce-tagged styles. There is deliberately no form-action directive:
// browsers apply it to the redirect that follows a form post, which goes to
// the client's redirect URI.
func SetSecurityHeaders(h http.Header, nonce string) {
	csp := "default-src 'none'; img-src 'self' https: data:; base-uri 'none'; frame-ancestors 'none'"
	if nonce != "" {
		csp += "; style-src 'nonce-" + nonce + "'"
	}
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}

// Render writes page with data and the given status.
func (r *Renderer) Render(w http.ResponseWriter, status int, page string, data any) error {
	nonce := rand.Text()
	var buf bytes.Buffer
	if err := r.t.ExecuteTemplate(&buf, page, pageData{Brand: r.brand, Nonce: nonce, D: data}); err != nil {
		return fmt.Errorf("web: render %s: %w", page, err)
	}
	SetSecurityHeaders(w.Header(), nonce)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}
