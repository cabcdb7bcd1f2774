package proxy

import (
	"fmt"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/credential"
	"github.com/mcpgate/mcpgate/internal/stdio"
	"github.com/mcpgate/mcpgate/internal/validate"
)

// BackendConfig describes one MCP server behind the gateway.
type BackendConfig struct {
	// Name identifies the backend in policy rules, audit records and logs.
	Name string `yaml:"name"`
	// URL of the backend's streamable-HTTP MCP endpoint. Exactly one of
	// url and command is set. MCPGATE_BACKEND_URL and --backend set it for
	// a single backend.
	URL string `yaml:"url"`
	// Stdio runs a stdio MCP server instead (command, env, dir, run_as,
	// max_sessions, max_sessions_per_user, idle_timeout,
	// max_message_bytes): the gateway serves it
	// on an internal loopback listener, one child process per MCP session,
	// and proxies to it like any other backend.
	Stdio stdio.Config `yaml:",inline"`
	// Path is where the gateway serves this backend; the canonical resource
	// URI is public_url + path. Defaults to /mcp for the first backend and
	// /<name>/mcp for the others.
	Path string `yaml:"path"`
	// Credential is what the gateway presents to the backend. The client's own
	// token is never forwarded.
	Credential CredentialConfig `yaml:"credential"`
	// IdentityHeaders, when set, passes the caller's identity to the backend
	// (e.g. user: X-MCP-User, groups: X-MCP-Groups). Off by default.
	// Client-sent copies of these headers are always removed.
	IdentityHeaders IdentityHeaders `yaml:"identity_headers"`
	// ForwardHeaders adds client request headers, e.g. [Accept-Language,
	// X-Tenant], to the fixed set the gateway forwards (see "Headers to the
	// backend" in docs/configuration.md); every other client header is
	// dropped. Refused: hop-by-hop headers (Connection, Keep-Alive,
	// Proxy-Connection, Proxy-Authenticate, TE, Trailer, Transfer-Encoding,
	// Upgrade), Authorization, Proxy-Authorization, Cookie, the headers the
	// gateway sets (Host, Content-Length, Accept-Encoding, Forwarded,
	// X-Forwarded-For/Host/Proto), this backend's identity_headers and
	// static credential header, and names that are not header tokens. Not
	// for stdio backends (the child sees no headers). Whatever is listed is
	// the client's word: do not list a header the backend trusts for
	// identity.
	ForwardHeaders []string `yaml:"forward_headers"`
	// ResponseHeaderTimeout bounds the wait for the backend's response headers.
	// Tool calls can be slow, so the default is long (10m); streams, once
	// started, are never cut by the gateway.
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout"`
	// DialTimeout bounds connection set-up (default 10s), so a dead backend
	// yields a 502 quickly instead of a hang.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// MaxIdleConns is the keep-alive pool size toward this backend (default 256).
	// Go's default of 2 idle connections per host churns under load.
	MaxIdleConns int `yaml:"max_idle_conns"`
}

// IdentityHeaders names the request headers carrying the caller's identity.
type IdentityHeaders struct {
	// User names the header that carries the user's display name.
	User string `yaml:"user"`
	// Email names the header that carries the user's email address.
	Email string `yaml:"email"`
	// Groups names the header that carries the user's groups, comma-separated.
	Groups string `yaml:"groups"`
	// Subject names the header that carries the user's subject (sub).
	Subject string `yaml:"subject"`
}

// CredentialConfig selects the credential presented to the backend; see
// package credential.
type CredentialConfig = credential.Config

// IsStdio reports whether the backend is a stdio command.
func (c *BackendConfig) IsStdio() bool { return len(c.Stdio.Command) > 0 }

// SetDefaults fills in defaults; index is the backend's position in the
// list, or -1 for a backend served only through an aggregated endpoint
// (its path then stays empty).
func (c *BackendConfig) SetDefaults(index int) {
	if c.Path == "" && index >= 0 {
		if index == 0 {
			c.Path = "/mcp"
		} else {
			c.Path = "/" + c.Name + "/mcp"
		}
	}
	c.Credential.SetDefaults()
	if c.IsStdio() {
		c.Stdio.SetDefaults()
	}
	if c.ResponseHeaderTimeout == 0 {
		c.ResponseHeaderTimeout = 10 * time.Minute
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 10 * time.Second
	}
	if c.MaxIdleConns == 0 {
		c.MaxIdleConns = 256
	}
}

// Validate reports every problem with the backend's configuration.
func (c *BackendConfig) Validate(path string, p *validate.Problems) {
	if c.Name == "" {
		p.Add(path+".name", "is required")
	} else if strings.ContainsAny(c.Name, "/ :*") {
		p.Add(path+".name", "must not contain '/', ':', '*' or spaces")
	}
	switch {
	case c.IsStdio() && c.URL != "":
		p.Add(path+".url", "cannot be combined with command (a backend is either HTTP or stdio)")
	case c.IsStdio():
		c.Stdio.Validate(path, p)
		if c.Credential.Type != "none" {
			p.Add(path+".credential.type", "must be none for a stdio backend (the child gets its secrets through env)")
		}
		if c.IdentityHeaders != (IdentityHeaders{}) {
			p.Add(path+".identity_headers", "cannot be used with a stdio backend (the child sees no HTTP headers)")
		}
		if len(c.ForwardHeaders) > 0 {
			p.Add(path+".forward_headers", "cannot be used with a stdio backend (the child sees no HTTP headers)")
		}
	case c.URL == "":
		p.Add(path+".url", "is required (or command, for a stdio server)")
	default:
		if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.Add(path+".url", "must be an absolute http(s) URL")
		}
	}
	// An empty path (a backend served only through an aggregated endpoint)
	// is checked by the configuration as a whole.
	if c.Path != "" && !ValidPath(c.Path) {
		p.Add(path+".path", "must start with '/', not end with '/', and not be under /.well-known")
	}
	c.Credential.Validate(path+".credential", p)
	c.validateForwardHeaders(path+".forward_headers", p)
	if c.ResponseHeaderTimeout < 0 || c.DialTimeout < 0 || c.MaxIdleConns < 0 {
		p.Add(path, "timeouts and pool sizes must not be negative")
	}
}

// ValidPath reports whether p can be an MCP endpoint path: it starts with
// '/', does not end with '/' (unless it is "/"), and is not under
// /.well-known.
func ValidPath(p string) bool {
	return strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "/.well-known") && (!strings.HasSuffix(p, "/") || p == "/")
}

// neverForwarded are headers that forward_headers may not name: hop-by-hop
// headers (RFC 9110 §7.6.1), the client's credentials (the MCP authorization
// spec forbids token passthrough), and headers the gateway sets itself.
var neverForwarded = func() map[string]string {
	m := map[string]string{}
	for reason, names := range map[string][]string{
		"hop-by-hop": {"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Te", "Trailer",
			"Transfer-Encoding", "Upgrade"},
		"a client credential": {"Authorization", "Proxy-Authorization", "Cookie"},
		"set by the gateway": {"Host", "Content-Length", "Accept-Encoding", "Forwarded", "X-Forwarded-For",
			"X-Forwarded-Host", "X-Forwarded-Proto"},
	} {
		for _, n := range names {
			m[n] = reason
		}
	}
	return m
}()

func (c *BackendConfig) validateForwardHeaders(path string, p *validate.Problems) {
	own := map[string]string{}
	ih := c.IdentityHeaders
	for _, h := range []string{ih.User, ih.Email, ih.Groups, ih.Subject} {
		if h != "" {
			own[textproto.CanonicalMIMEHeaderKey(h)] = "an identity header of this backend"
		}
	}
	if c.Credential.Type == "static" && c.Credential.Header != "" {
		own[textproto.CanonicalMIMEHeaderKey(c.Credential.Header)] = "this backend's credential header"
	}
	for i, h := range c.ForwardHeaders {
		k := textproto.CanonicalMIMEHeaderKey(h)
		switch {
		case !isToken(h):
			p.Add(fmt.Sprintf("%s[%d]", path, i), "%q is not a header name (RFC 9110 §5.1)", h)
		case neverForwarded[k] != "":
			p.Add(fmt.Sprintf("%s[%d]", path, i), "%s must not be forwarded: it is %s", k, neverForwarded[k])
		case own[k] != "":
			p.Add(fmt.Sprintf("%s[%d]", path, i), "%s must not be forwarded: it is %s", k, own[k])
		}
	}
}

// isToken reports whether s is an RFC 9110 §5.6.2 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}
