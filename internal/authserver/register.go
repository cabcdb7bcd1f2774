package authserver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/netguard"
	"github.com/mcpgate/mcpgate/internal/store"
)

// registrationRequest is the RFC 7591 §2 client metadata we accept.
type registrationRequest struct {
	RedirectURIs            []string `json:"redirect_uris"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method,omitempty"`
	GrantTypes              []string `json:"grant_types,omitempty"`
	ResponseTypes           []string `json:"response_types,omitempty"`
	ClientName              string   `json:"client_name,omitempty"`
	ClientURI               string   `json:"client_uri,omitempty"`
	Scope                   string   `json:"scope,omitempty"`
	SoftwareID              string   `json:"software_id,omitempty"`
	SoftwareVersion         string   `json:"software_version,omitempty"`
	ApplicationType         string   `json:"application_type,omitempty"`
}

// registrationResponse is RFC 7591 §3.2.1: the registered metadata is
// echoed (clients such as the TypeScript SDK require redirect_uris back).
type registrationResponse struct {
	registrationRequest
	ClientID              string `json:"client_id"`
	ClientSecret          string `json:"client_secret,omitempty"`
	ClientIDIssuedAt      int64  `json:"client_id_issued_at"`
	ClientSecretExpiresAt *int64 `json:"client_secret_expires_at,omitempty"`
}

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	resp, err := s.register(w, r)
	if err != nil {
		if !isAudited(err) {
			_ = s.audit(r.Context(), refused(&audit.Record{Event: audit.EventASClientRegistrationRefused}, err))
		}
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, resp)
}

func (s *Server) register(w http.ResponseWriter, r *http.Request) (*registrationResponse, error) {
	ctx := r.Context()
	switch s.cfg.Registration.Mode {
	case RegistrationClosed:
		return nil, newError(errAccessDenied, http.StatusForbidden, "dynamic client registration is disabled")
	case RegistrationToken:
		// RFC 7591 §3: the initial access token is a bearer token. Compare
		// digests in constant time (no length or prefix leak).
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		got, want := sha256.Sum256([]byte(tok)), sha256.Sum256([]byte(s.cfg.Registration.Token))
		if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			return nil, newError("invalid_token", http.StatusUnauthorized, "a valid initial access token is required")
		}
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return nil, newError(errInvalidClientMetadata, http.StatusBadRequest, "the request body must be application/json")
	}
	ip := s.clientIP(r)
	// Counted per /64 for IPv6 (ipKey), so one subscriber cannot register
	// from each of its addresses.
	regKey := ipKey(ip)
	now := s.now()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFormBytes))
	if err != nil {
		return nil, newError(errInvalidClientMetadata, http.StatusBadRequest, "the request body is too large")
	}
	var req registrationRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, newError(errInvalidClientMetadata, http.StatusBadRequest, "the request body is not valid client metadata JSON")
	}
	c, oe := s.validateRegistration(&req)
	if oe != nil {
		return nil, oe
	}
	c.Kind = store.ClientKindDynamic
	c.RegisteredIP = regKey
	c.CreatedAt = now
	c.ID = newID()
	if c.TokenEndpointAuthMethod == authNone {
		// A public client registering again with the same metadata from the
		// same source (mcp-remote and Inspector do on every start) gets the
		// client it registered before: it does not count against the cap and
		// leaves no new row. Confidential clients are not reused, because
		// their secret cannot be returned again without rotating it.
		c.ID = dedupeID(c.RegisteredIP, &req)
		if prev, err := s.st.GetClient(ctx, c.ID); err == nil {
			return s.reuseRegistration(ctx, prev)
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	if limit := s.cfg.Registration.MaxClientsPerIP; limit > 0 {
		n, err := s.st.CountClientsByIP(ctx, c.RegisteredIP, now.Add(-s.cfg.Registration.Window))
		if err != nil {
			return nil, err
		}
		if n >= limit {
			s.log.WarnContext(ctx, "client registration limit reached", "ip", ip)
			w.Header().Set("Retry-After", strconv.Itoa(s.registrationRetryAfter(r, c.RegisteredIP, now, n, limit)))
			return nil, newError("too_many_requests", http.StatusTooManyRequests, "too many client registrations from this address")
		}
	}
	if s.cfg.Registration.ClientLifetime > 0 {
		c.ExpiresAt = now.Add(s.cfg.Registration.ClientLifetime)
	}
	resp := &registrationResponse{registrationRequest: req, ClientID: c.ID, ClientIDIssuedAt: now.Unix()}
	if c.TokenEndpointAuthMethod != authNone {
		secret := randomToken()
		c.SecretHash = secretSHA + store.HashKey(secret)
		resp.ClientSecret = secret
		var never int64
		resp.ClientSecretExpiresAt = &never // RFC 7591 §3.2.1: required with a secret; 0 = never
	}
	if c.Metadata, err = json.Marshal(&resp.registrationRequest); err != nil {
		return nil, err
	}
	if err := s.st.CreateClient(ctx, c); err != nil {
		if !errors.Is(err, store.ErrConflict) {
			return nil, err
		}
		if c.TokenEndpointAuthMethod != authNone {
			return nil, errServer
		}
		// The same public client was registered concurrently, or its earlier
		// row expired but is not yet swept: read it, else register anew.
		if prev, gerr := s.st.GetClient(ctx, c.ID); gerr == nil {
			return s.reuseRegistration(ctx, prev)
		}
		c.ID = newID()
		resp.ClientID = c.ID
		if err := s.st.CreateClient(ctx, c); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return nil, errServer
			}
			return nil, err
		}
	}
	s.log.InfoContext(ctx, "client registered", "client_id", c.ID, "client_name", c.Name, "ip", ip, "auth_method", c.TokenEndpointAuthMethod)
	if err := s.audit(ctx, &audit.Record{
		Event: audit.EventASClientRegistered, ClientID: c.ID, Scope: c.Scope, Status: http.StatusCreated,
		Reason: fmt.Sprintf("client_name %q, token_endpoint_auth_method %s", c.Name, c.TokenEndpointAuthMethod),
	}); err != nil {
		// Unrecorded clients must not exist: nobody has learnt this one's ID yet.
		if derr := s.st.DeleteClient(ctx, c.ID); derr != nil {
			s.log.ErrorContext(ctx, "delete unrecorded client", "client_id", c.ID, "err", derr)
		}
		s.clients.evict(c.ID)
		return nil, errAuditUnavailable
	}
	return resp, nil
}

// dedupeID is the client_id of a public client registered from source
// (the address the registration cap counts) with the normalized metadata
// req: identical registrations from one source get one client. Public
// client IDs are not secrets (RFC 6749 §2.2), so a derived ID gives nothing
// away; another source gets another ID.
func dedupeID(source string, req *registrationRequest) string {
	meta, _ := json.Marshal(req) // a struct of strings: cannot fail
	h := sha256.New()
	h.Write([]byte("mcpgate dcr v1\x00" + source + "\x00"))
	h.Write(meta)
	return "dcr-" + base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:20])
}

// reuseRegistration answers a repeated public registration with the client
// registered before (RFC 7591 §3.2.1: the registered metadata is echoed).
func (s *Server) reuseRegistration(ctx context.Context, c *store.Client) (*registrationResponse, error) {
	resp := &registrationResponse{ClientID: c.ID, ClientIDIssuedAt: c.CreatedAt.Unix()}
	if err := json.Unmarshal(c.Metadata, &resp.registrationRequest); err != nil {
		return nil, fmt.Errorf("stored client metadata: %w", err)
	}
	s.log.InfoContext(ctx, "client registration reused", "client_id", c.ID, "client_name", c.Name)
	return resp, nil
}

// registrationRetryAfter is the Retry-After, in seconds, of a registration
// refused at the cap: the time until enough of the n registrations in the
// window age out of it to leave a free slot, that is until the
// (n-limit+1)-th oldest leaves. The whole window if that cannot be read.
func (s *Server) registrationRetryAfter(r *http.Request, ip string, now time.Time, n, limit int) int {
	window := s.cfg.Registration.Window
	wait := window
	if t, err := s.st.NthClientTimeByIP(r.Context(), ip, now.Add(-window), n-limit); err == nil {
		wait = t.Add(window).Sub(now)
	} else {
		s.log.WarnContext(r.Context(), "registration limit: oldest registration not readable", "err", err)
	}
	return max(1, int(math.Ceil(min(wait, window).Seconds())))
}

// validateRegistration applies our policy to the requested metadata and
// fills in defaults; req is updated to what was registered (echoed back).
func (s *Server) validateRegistration(req *registrationRequest) (*store.Client, *oauthError) {
	if len(req.RedirectURIs) == 0 {
		return nil, newError(errInvalidRedirectURI, http.StatusBadRequest, "at least one redirect URI is required")
	}
	if len(req.RedirectURIs) > 20 {
		return nil, newError(errInvalidRedirectURI, http.StatusBadRequest, "too many redirect URIs")
	}
	for _, u := range req.RedirectURIs {
		if err := validateRedirectURI(u, s.cfg.Registration.TrustedSchemes); err != nil {
			return nil, newError(errInvalidRedirectURI, http.StatusBadRequest, "%s", err.Error())
		}
	}
	switch req.TokenEndpointAuthMethod {
	case "":
		req.TokenEndpointAuthMethod = authBasic // RFC 7591 §2 default
	case authNone, authBasic, authPost:
	default:
		return nil, newError(errInvalidClientMetadata, http.StatusBadRequest, "token_endpoint_auth_method must be none, client_secret_basic or client_secret_post")
	}
	if len(req.GrantTypes) == 0 {
		// RFC 7591 defaults to authorization_code only; MCP clients that omit
		// the field still expect to refresh, and rotation keeps that safe.
		req.GrantTypes = []string{grantCode, grantRT}
	}
	for _, g := range req.GrantTypes {
		if g != grantCode && g != grantRT {
			return nil, newError(errInvalidClientMetadata, http.StatusBadRequest, "grant_types may only contain authorization_code and refresh_token")
		}
	}
	if !slices.Contains(req.GrantTypes, grantCode) {
		return nil, newError(errInvalidClientMetadata, http.StatusBadRequest, "grant_types must include authorization_code")
	}
	if len(req.ResponseTypes) == 0 {
		req.ResponseTypes = []string{"code"}
	}
	if !slices.Equal(req.ResponseTypes, []string{"code"}) {
		return nil, newError(errInvalidClientMetadata, http.StatusBadRequest, "response_types must be [\"code\"]")
	}
	switch req.ApplicationType {
	case "":
		req.ApplicationType = "web"
		if allNative(req.RedirectURIs) {
			req.ApplicationType = "native"
		}
	case "web", "native":
	default:
		return nil, newError(errInvalidClientMetadata, http.StatusBadRequest, "application_type must be web or native")
	}
	// Keep only scopes we know (RFC 7591 §2 lets the server narrow them).
	var scopes []string
	for _, sc := range strings.Fields(req.Scope) {
		if (slices.Contains(s.cfg.Scopes, sc) || sc == offlineAccess) && !slices.Contains(scopes, sc) {
			scopes = append(scopes, sc)
		}
	}
	req.Scope = strings.Join(scopes, " ")
	req.ClientName = cleanName(req.ClientName)
	if u, err := url.Parse(req.ClientURI); req.ClientURI != "" && (err != nil || u.Scheme != "https") {
		req.ClientURI = "" // only ever displayed as text, but keep junk out
	}
	req.SoftwareID, req.SoftwareVersion = cleanName(req.SoftwareID), cleanName(req.SoftwareVersion)
	return &store.Client{
		Name:                    req.ClientName,
		RedirectURIs:            req.RedirectURIs,
		GrantTypes:              req.GrantTypes,
		ResponseTypes:           req.ResponseTypes,
		TokenEndpointAuthMethod: req.TokenEndpointAuthMethod,
		Scope:                   req.Scope,
		ApplicationType:         req.ApplicationType,
	}, nil
}

// allNative: loopback or private-use scheme redirect URIs only.
func allNative(uris []string) bool {
	for _, raw := range uris {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme == "https" || (u.Scheme == "http" && !netguard.IsLoopbackHost(u.Hostname())) {
			return false
		}
	}
	return true
}
