package server

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/web"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// authorizationServers is what the metadata advertises: explicit config, our
// own issuer, or the trusted external issuers.
func authorizationServers(cfg *config.Config) []string {
	if len(cfg.Auth.AuthorizationServers) > 0 {
		return cfg.Auth.AuthorizationServers
	}
	switch cfg.Auth.Mode {
	case config.ModeAuthorizationServer:
		return []string{cfg.PublicURL}
	case config.ModeJWT:
		var out []string
		for _, i := range cfg.Auth.JWT.Issuers {
			out = append(out, i.Issuer)
		}
		return out
	case config.ModeIntrospection:
		if cfg.Auth.Introspection.Issuer != "" {
			return []string{cfg.Auth.Introspection.Issuer}
		}
	case config.ModeTrustedHeader:
		return []string{"https://" + cfg.Auth.TrustedHeader.TeamDomain}
	}
	return []string{}
}

// prmURL is where the metadata for the resource served at path lives
// (RFC 9728 §3.1: the well-known suffix is inserted before the path).
func prmURL(publicURL, path string) string {
	return publicURL + "/.well-known/oauth-protected-resource" + path
}

// homePage is "/": the MCP URLs and where to read on, for a person who
// opens the gateway's address in a browser. It shows only public URLs.
func homePage(cfg *config.Config) (http.Handler, error) {
	r, err := web.NewRenderer(cfg.Auth.AuthorizationServer.Branding)
	if err != nil {
		return nil, err
	}
	data := web.Home{DocsURL: web.DocsURL}
	for _, bc := range cfg.Backends {
		data.Endpoints = append(data.Endpoints, web.Endpoint{Name: bc.Name, URL: cfg.PublicURL + bc.Path, MetadataURL: prmURL(cfg.PublicURL, bc.Path)})
	}
	if cfg.Auth.Mode == config.ModeAuthorizationServer {
		data.AuthorizationServerMetadataURL = cfg.PublicURL + "/.well-known/oauth-authorization-server"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		r.Render(w, http.StatusOK, web.PageHome, data)
	}), nil
}

// prmHandler serves the RFC 9728 protected resource metadata document, its
// bytes encoded once. oauthex omits empty members: with no authorization
// server to name (auth.mode none), authorization_servers is absent.
func prmHandler(doc oauthex.ProtectedResourceMetadata) http.Handler {
	body, _ := json.Marshal(doc)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Write(body)
	})
}

// challenge builds a WWW-Authenticate value (RFC 6750 §3, RFC 9728 §5.1).
// errCode and desc are fixed strings chosen by the gateway; internal error
// text never reaches a client.
func challenge(metadataURL string, scopes []string, errCode, desc string) string {
	var b strings.Builder
	b.WriteString(`Bearer resource_metadata="`)
	b.WriteString(metadataURL)
	b.WriteByte('"')
	if len(scopes) > 0 {
		b.WriteString(`, scope="`)
		b.WriteString(strings.Join(scopes, " "))
		b.WriteByte('"')
	}
	if errCode != "" {
		b.WriteString(`, error="`)
		b.WriteString(errCode)
		b.WriteByte('"')
		if desc != "" {
			b.WriteString(`, error_description="`)
			b.WriteString(desc)
			b.WriteByte('"')
		}
	}
	return b.String()
}
