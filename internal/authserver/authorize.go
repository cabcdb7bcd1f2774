package authserver

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/idp"
	"github.com/mcpgate/mcpgate/internal/netguard"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/web"
)

// Caps on what /authorize stores per pending request (RFC 6749 sets none;
// these are far above what real clients send).
const (
	maxAuthorizeQuery = 8 << 10 // the whole query string or form
	maxStateLen       = 512
	maxRedirectURILen = 2048 // as at registration (validateRedirectURI)
	maxScopeLen       = 1024
	maxResourceLen    = 2048
	maxClientIDLen    = 2048 // CIMD URLs
)

// authorizeParamLimits are checked before anything is looked up or stored.
var authorizeParamLimits = []struct {
	name string
	max  int
}{
	{"client_id", maxClientIDLen}, {"redirect_uri", maxRedirectURILen}, {"state", maxStateLen},
	{"scope", maxScopeLen}, {"resource", maxResourceLen}, {"code_challenge", 128},
	{"code_challenge_method", 16}, {"response_type", 64}, {"prompt", 64},
}

const (
	maxFormBytes     = 64 << 10
	maxLoginFailures = 5
	offlineAccess    = "offline_access"
)

// flowState is our private part of a pending AuthRequest, stored as JSON in
// AuthRequest.Identity (opaque to the store).
type flowState struct {
	Browser   string        `json:"b"`           // SHA-256 of the browser-binding cookie
	Consented bool          `json:"c,omitempty"` // the user approved the client in this flow
	Failures  int           `json:"f,omitempty"` // failed password attempts
	Identity  *idp.Identity `json:"id,omitempty"`
}

// flow is a pending authorization request loaded for the browser that
// started it.
type flow struct {
	ar          *store.AuthRequest
	fs          flowState
	client      *store.Client
	skipConsent bool
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, page string, data any) {
	if err := s.pages.Render(w, status, page, data); err != nil {
		s.log.ErrorContext(r.Context(), "render page", "page", page, "err", err)
	}
}

// errorPage reports a failure that cannot safely go back to the client
// (unknown client, bad redirect URI, expired request): it never redirects.
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	s.render(w, r, status, web.PageError, web.Error{Title: title, Message: msg})
}

func (s *Server) internalErrorPage(w http.ResponseWriter, r *http.Request, err error) {
	s.log.ErrorContext(r.Context(), "authorization flow error", "path", r.URL.Path, "err", err)
	s.errorPage(w, r, http.StatusInternalServerError, "Something went wrong", "The sign-in could not be completed. Please try again later.")
}

// redirectToClient sends the browser to the client's redirect URI with the
// authorization response parameters and `iss` (RFC 9207). Custom-scheme
// URIs get an interstitial page, since a bare redirect to an application
// leaves the browser on a blank page.
func (s *Server) redirectToClient(w http.ResponseWriter, r *http.Request, redirectURI string, params url.Values, clientName string) {
	failed := params.Has("error")
	u, err := s.clientRedirectURL(redirectURI, params)
	if err != nil {
		s.internalErrorPage(w, r, err)
		return
	}
	web.SetSecurityHeaders(w.Header(), "")
	if u.Scheme == "http" || u.Scheme == "https" {
		status := http.StatusFound
		if r.Method == http.MethodPost {
			status = http.StatusSeeOther
		}
		http.Redirect(w, r, u.String(), status)
		return
	}
	s.render(w, r, http.StatusOK, web.PageRedirect, web.Redirect{URL: u.String(), ClientName: clientName, Failed: failed})
}

// clientRedirectURL is redirectURI with the response parameters and `iss`
// (RFC 9207) added to its registered query component (RFC 6749 §3.1.2).
func (s *Server) clientRedirectURL(redirectURI string, params url.Values) (*url.URL, error) {
	u, err := url.Parse(redirectURI)
	if err != nil { // validated when registered and at /authorize
		return nil, err
	}
	params.Set("iss", s.issuer)
	if u.RawQuery != "" {
		u.RawQuery += "&" + params.Encode()
	} else {
		u.RawQuery = params.Encode()
	}
	return u, nil
}

// emailNotVerifiedPage ends flow f with access_denied for a user whose email
// the upstream IdP has not verified while allowed_email_domains needs it.
// Unlike other refusals this is a page first: the user can fix it at the
// IdP, and clients rarely show error_description. Its button hands the
// error to the client.
func (s *Server) emailNotVerifiedPage(w http.ResponseWriter, r *http.Request, f *flow) {
	if err := s.st.DeleteAuthRequest(r.Context(), f.ar.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.WarnContext(r.Context(), "delete auth request", "err", err)
	}
	p := url.Values{"error": {errAccessDenied}, "error_description": {"the email address is not verified at the identity provider"}}
	if f.ar.State != "" {
		p.Set("state", f.ar.State)
	}
	u, err := s.clientRedirectURL(f.ar.RedirectURI, p)
	if err != nil {
		s.internalErrorPage(w, r, err)
		return
	}
	s.render(w, r, http.StatusForbidden, web.PageError, web.Error{
		Title: "Email address not verified",
		Message: "You signed in, but your identity provider has not verified your email address, and this service " +
			"admits users by the domain of a verified email. Verify the address with your identity provider (look for " +
			"a verification email, or ask its administrator), then sign in again.",
		ReturnURL: u.String(), ClientName: displayName(f.client),
	})
}

// redirectError returns an authorization error to the client (RFC 6749
// §4.1.2.1). Only called once client and redirect URI are known to match.
func (s *Server) redirectError(w http.ResponseWriter, r *http.Request, redirectURI, state string, oe *oauthError) {
	s.log.DebugContext(r.Context(), "authorization error", "error", oe.Code, "description", oe.Description)
	p := url.Values{"error": {oe.Code}}
	if oe.Description != "" {
		p.Set("error_description", oe.Description)
	}
	if state != "" {
		p.Set("state", state)
	}
	s.redirectToClient(w, r, redirectURI, p, "")
}

func (s *Server) redirectFlowError(w http.ResponseWriter, r *http.Request, f *flow, oe *oauthError) {
	if err := s.st.DeleteAuthRequest(r.Context(), f.ar.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.WarnContext(r.Context(), "delete auth request", "err", err)
	}
	s.redirectError(w, r, f.ar.RedirectURI, f.ar.State, oe)
}

func (s *Server) cookieName(name string) string {
	if s.secure {
		return "__Host-mcpgate-" + name
	}
	return "mcpgate-" + name
}

func (s *Server) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name:     s.cookieName(name),
		Value:    value,
		Path:     "/", // required by the __Host- prefix
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   s.secure,
		SameSite: http.SameSiteLaxMode,
	})
}

// browserBinding returns the hash of the browser's binding cookie, setting
// a new cookie if there is none. Every step of a flow checks it, so a
// request ID leaked or planted in another browser is useless (login CSRF,
// consent CSRF, callback injection).
func (s *Server) browserBinding(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(s.cookieName("browser")); err == nil && len(c.Value) >= 32 && len(c.Value) <= 64 {
		return store.HashKey(c.Value)
	}
	v := randomToken()
	s.setCookie(w, "browser", v, 0)
	return store.HashKey(v)
}

func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	if len(r.URL.RawQuery) > maxAuthorizeQuery {
		s.errorPage(w, r, http.StatusBadRequest, "Invalid request", "The authorization request is too long.")
		return
	}
	q := r.URL.Query()
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxAuthorizeQuery)
		if err := r.ParseForm(); err != nil {
			s.errorPage(w, r, http.StatusBadRequest, "Invalid request", "The authorization request could not be read.")
			return
		}
		q = r.PostForm
	}
	// Bounded before anything is fetched or stored: the state and the
	// other parameters live in the store until login_timeout. Not reported
	// to the redirect URI, which is not verified yet.
	for _, l := range authorizeParamLimits {
		for _, v := range q[l.name] {
			if len(v) > l.max {
				s.errorPage(w, r, http.StatusBadRequest, "Invalid request",
					fmt.Sprintf("The authorization request's %s is longer than %d bytes.", l.name, l.max))
				return
			}
		}
	}
	clientID, oe := singleValue(q, "client_id")
	if oe != nil || clientID == "" {
		s.errorPage(w, r, http.StatusBadRequest, "Invalid request", "The authorization request does not name exactly one client_id.")
		return
	}
	cl, skip, err := s.getClient(r.Context(), clientID)
	if errors.Is(err, errUnknownClient) {
		s.unknownClientPage(w, r, clientID, err)
		return
	}
	if errors.Is(err, errCIMDBusy) {
		w.Header().Set("Retry-After", "5")
		s.errorPage(w, r, http.StatusServiceUnavailable, "Temporarily unavailable",
			"The application's description could not be fetched right now. Please try again in a few seconds.")
		return
	}
	if err != nil {
		s.internalErrorPage(w, r, err)
		return
	}
	redirectURI, oe := singleValue(q, "redirect_uri")
	if oe != nil || redirectURI == "" || !matchRedirectURI(cl.RedirectURIs, redirectURI) {
		// Never redirect to an unverified URI (open redirector, code theft).
		s.errorPage(w, r, http.StatusBadRequest, "Invalid redirect URI",
			"The redirect URI of this request is missing or is not registered for the application.")
		return
	}
	state, oe := singleValue(q, "state")
	if oe != nil {
		s.redirectError(w, r, redirectURI, "", oe)
		return
	}
	ar, oe := s.parseAuthorizeRequest(q, cl)
	if oe != nil {
		s.redirectError(w, r, redirectURI, state, oe)
		return
	}
	if ok, retry := s.pendingAllowed(r); !ok {
		s.tooManyRequests(w, r, routePage, retry, "too many pending authorization requests from this address")
		return
	}
	ar.ID = newID()
	ar.ClientID, ar.RedirectURI, ar.State = cl.ID, redirectURI, state
	ar.ConsentCSRF = randomToken()
	ar.ExpiresAt = s.now().Add(s.cfg.LoginTimeout)
	f := &flow{ar: ar, fs: flowState{Browser: s.browserBinding(w, r)}, client: cl, skipConsent: skip}
	if ar.Identity, err = json.Marshal(f.fs); err != nil {
		s.internalErrorPage(w, r, err)
		return
	}
	if err := s.st.CreateAuthRequest(r.Context(), ar); err != nil {
		s.internalErrorPage(w, r, err)
		return
	}
	s.advance(w, r, f)
}

// parseAuthorizeRequest validates everything that is reported to the
// client by redirect (RFC 6749 §4.1.2.1).
func (s *Server) parseAuthorizeRequest(q url.Values, cl *store.Client) (*store.AuthRequest, *oauthError) {
	for _, k := range []string{"response_type", "code_challenge", "code_challenge_method", "scope", "prompt"} {
		if _, oe := singleValue(q, k); oe != nil {
			return nil, oe
		}
	}
	if rt := q.Get("response_type"); rt != "code" || !slices.Contains(cl.ResponseTypes, "code") {
		return nil, newError(errUnsupportedResponseType, http.StatusBadRequest, "response_type must be code")
	}
	// OAuth 2.1 §4.1.1 and MCP: PKCE is mandatory, and only S256 (a missing
	// method means "plain", RFC 7636 §4.3).
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	if challenge == "" {
		return nil, invalidRequest("code_challenge is required (PKCE)")
	}
	if method != "S256" {
		return nil, invalidRequest("code_challenge_method must be S256")
	}
	if !validPKCEValue(challenge) || len(challenge) != 43 {
		return nil, invalidRequest("code_challenge is malformed")
	}
	resource, oe := s.resolveResource(q["resource"], "")
	if oe != nil {
		return nil, oe
	}
	scopes, oe := s.resolveScopes(q.Get("scope"), cl)
	if oe != nil {
		return nil, oe
	}
	if slices.Contains(strings.Fields(q.Get("prompt")), "none") {
		// We keep no login session, so we can never answer without interaction.
		return nil, newError("login_required", http.StatusBadRequest, "interactive login is required")
	}
	return &store.AuthRequest{
		Resource:            resource,
		Scopes:              scopes,
		CodeChallenge:       challenge,
		CodeChallengeMethod: method,
	}, nil
}

// validPKCEValue checks the RFC 7636 §4.1 character set.
func validPKCEValue(v string) bool {
	for _, c := range []byte(v) {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// resolveResource validates RFC 8707 resource indicators. None means the
// default resource (tokens always carry an audience); more than one is
// refused since a token has exactly one audience. bound, when set, is the
// resource the code or grant is already bound to.
func (s *Server) resolveResource(values []string, bound string) (string, *oauthError) {
	switch len(values) {
	case 0:
		if bound != "" {
			return bound, nil
		}
		return s.resources[0], nil
	case 1:
	default:
		return "", newError(errInvalidTarget, http.StatusBadRequest, "only one resource may be requested")
	}
	c, err := canonicalResource(values[0])
	if err != nil || !slices.Contains(s.resources, c) {
		return "", newError(errInvalidTarget, http.StatusBadRequest, "the requested resource is not served by this authorization server")
	}
	if bound != "" && c != bound {
		return "", newError(errInvalidTarget, http.StatusBadRequest, "resource does not match the authorization grant")
	}
	return c, nil
}

// resolveScopes validates a scope parameter: empty means the default set,
// unknown scopes are refused, offline_access is accepted (MCP 2026-07-28
// says not to advertise it, but clients such as mcp-remote send it).
//
// Only operator-configured (static) clients are limited to their registered
// scope. A self-registered client (DCR or CIMD) names the scope it wanted
// at registration time, but must be able to step up later to a scope from
// an insufficient_scope challenge (MCP authorization, step-up); the user's
// consent, which is asked again for scopes not yet approved, is the limit.
func (s *Server) resolveScopes(raw string, cl *store.Client) ([]string, *oauthError) {
	var clientScopes []string
	if cl != nil && cl.Kind == store.ClientKindStatic {
		clientScopes = strings.Fields(cl.Scope)
	}
	req := strings.Fields(raw)
	if len(req) == 0 {
		out := slices.Clone(s.cfg.DefaultScopes)
		if len(clientScopes) > 0 {
			out = slices.DeleteFunc(out, func(sc string) bool { return !slices.Contains(clientScopes, sc) })
		}
		return out, nil
	}
	var out []string
	for _, sc := range req {
		if slices.Contains(out, sc) {
			continue
		}
		if sc != offlineAccess && !slices.Contains(s.cfg.Scopes, sc) {
			if len(sc) > 64 {
				sc = sc[:64]
			}
			return nil, newError(errInvalidScope, http.StatusBadRequest, "unknown scope %q", sc)
		}
		if sc != offlineAccess && len(clientScopes) > 0 && !slices.Contains(clientScopes, sc) {
			return nil, newError(errInvalidScope, http.StatusBadRequest, "scope %q was not registered by the client", sc)
		}
		out = append(out, sc)
	}
	return out, nil
}

// loadFlow fetches a pending request for the browser that started it. It
// writes an error page and returns nil on failure.
func (s *Server) loadFlow(w http.ResponseWriter, r *http.Request, ar *store.AuthRequest) *flow {
	f := &flow{ar: ar}
	if err := json.Unmarshal(ar.Identity, &f.fs); err != nil {
		s.internalErrorPage(w, r, err)
		return nil
	}
	c, err := r.Cookie(s.cookieName("browser"))
	if err != nil || subtle.ConstantTimeCompare([]byte(store.HashKey(c.Value)), []byte(f.fs.Browser)) != 1 {
		s.errorPage(w, r, http.StatusBadRequest, "Sign-in not valid here",
			"This sign-in was started in another browser or window. Start again from your application.")
		return nil
	}
	cl, skip, err := s.getClient(r.Context(), ar.ClientID)
	if errors.Is(err, errUnknownClient) || (err == nil && !matchRedirectURI(cl.RedirectURIs, ar.RedirectURI)) {
		s.errorPage(w, r, http.StatusBadRequest, "Unknown application", "This application is no longer registered with this server.")
		return nil
	}
	if err != nil {
		s.internalErrorPage(w, r, err)
		return nil
	}
	f.client, f.skipConsent = cl, skip
	return f
}

func (s *Server) loadFlowByID(w http.ResponseWriter, r *http.Request, id string) *flow {
	if id == "" || len(id) > 64 {
		s.errorPage(w, r, http.StatusBadRequest, "Sign-in expired", "This sign-in request is unknown. Start again from your application.")
		return nil
	}
	ar, err := s.st.GetAuthRequest(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		s.errorPage(w, r, http.StatusBadRequest, "Sign-in expired",
			"This sign-in request has expired or was already used. Start again from your application.")
		return nil
	}
	if err != nil {
		s.internalErrorPage(w, r, err)
		return nil
	}
	return s.loadFlow(w, r, ar)
}

// parsePost reads a form post of a flow step and checks its CSRF token
// (bound to the auth request, which is bound to the browser).
func (s *Server) parsePost(w http.ResponseWriter, r *http.Request) *flow {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "Invalid request", "The form could not be read.")
		return nil
	}
	f := s.loadFlowByID(w, r, r.PostForm.Get("req"))
	if f == nil {
		return nil
	}
	if csrf := r.PostForm.Get("csrf"); csrf == "" || subtle.ConstantTimeCompare([]byte(csrf), []byte(f.ar.ConsentCSRF)) != 1 {
		s.errorPage(w, r, http.StatusForbidden, "Invalid form submission",
			"The form was not submitted from this sign-in page. Start again from your application.")
		return nil
	}
	return f
}

func (s *Server) saveFlow(r *http.Request, f *flow) error {
	b, err := json.Marshal(f.fs)
	if err != nil {
		return err
	}
	f.ar.Identity = b
	if f.fs.Identity != nil {
		f.ar.UserKey = f.fs.Identity.Key()
	}
	return s.st.UpdateAuthRequest(r.Context(), f.ar)
}

func (s *Server) redirectStep(w http.ResponseWriter, r *http.Request, step string, f *flow) {
	http.Redirect(w, r, s.issuer+"/"+step+"?req="+url.QueryEscape(f.ar.ID), http.StatusSeeOther)
}

// advance moves a flow to its next step: login, consent (before the
// upstream redirect for first-time clients, per the MCP confused-deputy
// rules), upstream redirect, or code issuance.
func (s *Server) advance(w http.ResponseWriter, r *http.Request, f *flow) {
	if f.fs.Identity == nil {
		switch c := s.conn.(type) {
		case idp.PasswordConnector:
			s.redirectStep(w, r, "login", f)
		case idp.CallbackConnector:
			if s.upstreamUnavailable(w, r, f) {
				return
			}
			if f.fs.Consented || f.skipConsent || s.browserConsented(r, consentKey(f.ar), f.ar.Scopes) {
				s.startUpstream(w, r, f, c)
			} else {
				s.redirectStep(w, r, "consent", f)
			}
		default:
			s.internalErrorPage(w, r, errors.New("connector is neither password nor callback"))
		}
		return
	}
	if s.noAccess(w, r, f) {
		return
	}
	if !f.fs.Consented && !f.skipConsent {
		ok, err := s.consentCovers(r, f.fs.Identity.Key(), consentKey(f.ar), f.ar.Scopes)
		if err != nil {
			s.internalErrorPage(w, r, err)
			return
		}
		if !ok {
			if err := s.saveFlow(r, f); err != nil {
				s.internalErrorPage(w, r, err)
				return
			}
			s.redirectStep(w, r, "consent", f)
			return
		}
	}
	s.issueCode(w, r, f)
}

// noAccess ends a sign-in, before consent and before any code is issued,
// with a page saying that the policy gives the user nothing: a grant would
// only show the client an empty tool list and leave the user guessing. The
// page names the groups the identity provider sent, since a groups claim
// that never arrives (a scope not requested) is the usual cause.
func (s *Server) noAccess(w http.ResponseWriter, r *http.Request, f *flow) bool {
	id := f.fs.Identity
	if s.grantsNothing == nil || !s.grantsNothing(s.principalOf(id)) {
		return false
	}
	who := (&identity.Principal{Subject: id.Subject, Username: id.Username, Email: id.Email}).DisplayName()
	s.log.WarnContext(r.Context(), "signed-in user has no role", "client_id", f.ar.ClientID, "user", id.Key(), "groups", id.Groups)
	s.auditLoginFailed(r, f, "", "no role grants the user any tool")
	groups := "The identity provider sent no groups for you."
	if len(id.Groups) > 0 {
		groups = fmt.Sprintf("The identity provider sent the groups %s; none of them maps to a role.", bounded(strings.Join(id.Groups, ", "), 512))
	}
	s.errorPage(w, r, http.StatusForbidden, "No access",
		fmt.Sprintf("Signed in as %s; no role grants you any tool. %s Ask an administrator to give you a role.", who, groups))
	return true
}

// principalOf is the principal that tokens for id will carry (verifyAccess).
func (s *Server) principalOf(id *idp.Identity) *identity.Principal {
	return &identity.Principal{
		Issuer: s.issuer, Subject: id.Subject, Username: id.Username,
		Email: id.Email, EmailVerified: id.EmailVerified && id.Email != "", Groups: id.Groups,
	}
}

// upstreamUnavailable ends a sign-in with a 503 page, before consent, when
// the upstream IdP has not been reached (it was down at start-up and
// WatchDiscovery has not found it yet, and one attempt now fails too).
func (s *Server) upstreamUnavailable(w http.ResponseWriter, r *http.Request, f *flow) bool {
	wt, ok := s.conn.(idp.Watcher)
	if !ok {
		return false
	}
	if err := wt.Discover(r.Context()); err != nil {
		s.log.WarnContext(r.Context(), "sign-in refused: upstream identity provider unavailable", "client_id", f.ar.ClientID, "err", err)
		s.unavailablePage(w, r, f)
		return true
	}
	return false
}

// unavailablePage tells the user that the identity provider cannot be
// reached. The pending request is dropped; reloading /authorize or starting
// again from the application makes a new one.
func (s *Server) unavailablePage(w http.ResponseWriter, r *http.Request, f *flow) {
	if err := s.st.DeleteAuthRequest(r.Context(), f.ar.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.WarnContext(r.Context(), "delete auth request", "err", err)
	}
	w.Header().Set("Retry-After", "5")
	s.errorPage(w, r, http.StatusServiceUnavailable, "Sign-in unavailable",
		"The identity provider "+s.cfg.Upstream.Issuer+" cannot be reached right now, so nobody can sign in. "+
			"The gateway keeps trying: reload this page in a few seconds.")
}

func (s *Server) startUpstream(w http.ResponseWriter, r *http.Request, f *flow, c idp.CallbackConnector) {
	state, nonce, verifier := randomToken(), randomToken(), oauth2.GenerateVerifier()
	u, err := c.AuthCodeURL(r.Context(), state, nonce, verifier)
	if err != nil {
		s.log.ErrorContext(r.Context(), "upstream identity provider unavailable", "err", err)
		s.unavailablePage(w, r, f)
		return
	}
	sealed, err := s.sealer.Seal([]byte(verifier), aad("upstream-verifier", f.ar.ID))
	if err != nil {
		s.internalErrorPage(w, r, err)
		return
	}
	// The upstream state is stored only now, after consent (MCP security
	// best practices), hashed, and single-use (TakeAuthRequestByUpstreamState).
	f.ar.UpstreamStateHash = store.HashKey(state)
	f.ar.UpstreamNonce = nonce
	f.ar.UpstreamVerifier = sealed
	if err := s.saveFlow(r, f); err != nil {
		s.internalErrorPage(w, r, err)
		return
	}
	web.SetSecurityHeaders(w.Header(), "")
	http.Redirect(w, r, u, http.StatusSeeOther)
}

func (s *Server) handleCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" || len(state) > 256 {
		s.errorPage(w, r, http.StatusBadRequest, "Sign-in failed", "The identity provider's response is not valid.")
		return
	}
	ar, err := s.st.TakeAuthRequestByUpstreamState(r.Context(), store.HashKey(state))
	if errors.Is(err, store.ErrNotFound) {
		s.errorPage(w, r, http.StatusBadRequest, "Sign-in expired",
			"This sign-in response has expired or was already used. Start again from your application.")
		return
	}
	if err != nil {
		s.internalErrorPage(w, r, err)
		return
	}
	var ls linkState
	if json.Unmarshal(ar.Identity, &ls) == nil && ls.Provider != "" {
		s.linkSignInCallback(w, r, ar, &ls)
		return
	}
	f := s.loadFlow(w, r, ar)
	if f == nil {
		return
	}
	c, ok := s.conn.(idp.CallbackConnector)
	if !ok {
		s.internalErrorPage(w, r, errors.New("callback without a callback connector"))
		return
	}
	verifier, err := s.sealer.Open(ar.UpstreamVerifier, aad("upstream-verifier", ar.ID))
	if err != nil {
		s.internalErrorPage(w, r, err)
		return
	}
	id, toks, err := c.HandleCallback(r.Context(), q, ar.UpstreamNonce, string(verifier))
	if err != nil {
		s.log.WarnContext(r.Context(), "upstream login failed", "client_id", ar.ClientID, "err", err)
		s.auditLoginFailed(r, f, "", upstreamFailure(err))
		var ce *idp.CallbackError
		switch {
		case errors.As(err, &ce):
			s.redirectFlowError(w, r, f, newError(errAccessDenied, http.StatusForbidden, "the identity provider did not authorize the sign-in"))
		case errors.Is(err, idp.ErrEmailNotVerified):
			s.emailNotVerifiedPage(w, r, f)
		case errors.Is(err, idp.ErrNotAllowed):
			s.redirectFlowError(w, r, f, newError(errAccessDenied, http.StatusForbidden, "the user is not allowed to use this service"))
		default:
			s.redirectFlowError(w, r, f, newError(errServerError, http.StatusBadGateway, "sign-in at the identity provider failed"))
		}
		return
	}
	if f.ar.UpstreamTokens, err = s.sealJSON(toks, aad("authreq-upstream", ar.ID)); err != nil {
		s.internalErrorPage(w, r, err)
		return
	}
	f.fs.Identity = id
	if s.auditLogin(w, r, f, "upstream identity provider "+id.Issuer) {
		s.advance(w, r, f)
	}
}

func (s *Server) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.conn.(idp.PasswordConnector); !ok {
		http.NotFound(w, r)
		return
	}
	f := s.loadFlowByID(w, r, r.URL.Query().Get("req"))
	if f == nil {
		return
	}
	if f.fs.Identity != nil {
		s.advance(w, r, f)
		return
	}
	s.render(w, r, http.StatusOK, web.PageLogin, web.Login{RequestID: f.ar.ID, CSRF: f.ar.ConsentCSRF, ClientName: displayName(f.client)})
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	pc, ok := s.conn.(idp.PasswordConnector)
	if !ok {
		http.NotFound(w, r)
		return
	}
	f := s.parsePost(w, r)
	if f == nil {
		return
	}
	if f.fs.Identity != nil {
		s.advance(w, r, f)
		return
	}
	username := r.PostForm.Get("username")
	id, retry, err := s.passwordLogin(w, r, pc, username, r.PostForm.Get("password"))
	switch {
	case errors.Is(err, errBackingOff):
		s.loginBackingOff(w, r, f, username, retry)
		return
	case errors.Is(err, idp.ErrInvalidCredentials):
		s.log.InfoContext(r.Context(), "login failed", "client_id", f.ar.ClientID)
		f.fs.Failures++
		s.auditLoginFailed(r, f, username, fmt.Sprintf("invalid username or password (attempt %d of %d)", f.fs.Failures, maxLoginFailures))
		if f.fs.Failures >= maxLoginFailures {
			s.redirectFlowError(w, r, f, newError(errAccessDenied, http.StatusForbidden, "too many failed sign-in attempts"))
			return
		}
		if err := s.saveFlow(r, f); err != nil {
			s.internalErrorPage(w, r, err)
			return
		}
		if len(username) > 256 {
			username = ""
		}
		s.render(w, r, http.StatusUnauthorized, web.PageLogin, web.Login{
			RequestID: f.ar.ID, CSRF: f.ar.ConsentCSRF, ClientName: displayName(f.client),
			Username: username, Error: "Invalid username or password.",
		})
		return
	case errors.Is(err, idp.ErrNotAllowed):
		s.auditLoginFailed(r, f, username, "the user is not allowed to use this service")
		s.redirectFlowError(w, r, f, newError(errAccessDenied, http.StatusForbidden, "the user is not allowed to use this service"))
		return
	case err != nil:
		s.auditLoginFailed(r, f, username, "internal error")
		s.internalErrorPage(w, r, err)
		return
	}
	f.fs.Identity = id
	if s.auditLogin(w, r, f, "built-in user") {
		s.advance(w, r, f)
	}
}

// errBackingOff: passwordLogin did not check the password, the username
// is backing off after failed attempts.
var errBackingOff = errors.New("too many failed sign-in attempts")

// passwordLogin checks one sign-in of a built-in user. The username's
// backoff holds across flows and addresses; the attempt counts as a failure
// before the password is checked. While backing off it answers
// errBackingOff and the wait.
func (s *Server) passwordLogin(w http.ResponseWriter, r *http.Request, pc idp.PasswordConnector, username, password string) (*idp.Identity, time.Duration, error) {
	backoffKey := loginKey(username, s.knownBrowser(r, username))
	if ok, retry := s.limits.logins.begin(backoffKey, s.now()); !ok {
		return nil, retry, errBackingOff
	}
	id, err := pc.Login(r.Context(), username, password)
	if err == nil {
		s.limits.logins.succeeded(backoffKey)
		s.rememberKnownBrowser(w, r, username)
	}
	return id, 0, err
}

// retryAfter is a Retry-After value in whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}

// loginBackingOff answers a sign-in attempt for a username that is backing
// off after failed passwords: 429 with Retry-After, the form again, and the
// password not checked (a guess during the wait learns nothing).
func (s *Server) loginBackingOff(w http.ResponseWriter, r *http.Request, f *flow, username string, retry time.Duration) {
	secs := retryAfter(retry)
	rec := s.flowRecord(f, audit.EventASRateLimited, audit.ResultError,
		"too many failed sign-in attempts for this username; retry after "+secs+"s")
	rec.Status = http.StatusTooManyRequests
	rec.Username = cleanName(bounded(username, 256))
	rec.User = rec.Username
	_ = s.audit(r.Context(), rec)
	if len(username) > 256 {
		username = ""
	}
	w.Header().Set("Retry-After", secs)
	s.render(w, r, http.StatusTooManyRequests, web.PageLogin, web.Login{
		RequestID: f.ar.ID, CSRF: f.ar.ConsentCSRF, ClientName: displayName(f.client), Username: username,
		Error: "Too many failed sign-in attempts for this user. Try again in " + secs + " seconds.",
	})
}

func displayName(c *store.Client) string {
	if c.Name != "" {
		return c.Name
	}
	if c.Kind == store.ClientKindCIMD {
		if h := cimdHost(c.ID); h != "" {
			return h
		}
	}
	return "Unnamed application"
}

// unknownClientPage explains why a client_id cannot be used. For a client
// ID metadata document it says whether the document could not be fetched
// (often: this server has no internet access) or was not acceptable; the
// details are in the log only.
func (s *Server) unknownClientPage(w http.ResponseWriter, r *http.Request, clientID string, err error) {
	where := "at its web address"
	if h := cimdHost(clientID); h != "" && len(h) <= 260 {
		where = "at " + h
	}
	switch {
	case !isURLClientID(clientID):
		s.errorPage(w, r, http.StatusBadRequest, "Unknown application", "This application is not registered with this server.")
	case s.cimd == nil:
		s.errorPage(w, r, http.StatusBadRequest, "Unknown application",
			"This application identifies itself by a web address, which this server does not accept. Ask the administrator to register the application.")
	case errors.Is(err, errCIMDUnreachable):
		s.errorPage(w, r, http.StatusBadRequest, "Application could not be verified",
			"This application is described by a document "+where+", which this server could not retrieve. The server may have no access to the internet, or that site may be down. Try again later, or ask the administrator to register the application.")
	default:
		s.errorPage(w, r, http.StatusBadRequest, "Application not accepted",
			"The document "+where+" that describes this application does not meet this server's requirements. Contact the application's publisher or the administrator.")
	}
}

func (s *Server) handleConsentPage(w http.ResponseWriter, r *http.Request) {
	f := s.loadFlowByID(w, r, r.URL.Query().Get("req"))
	if f == nil {
		return
	}
	if _, ok := s.conn.(idp.PasswordConnector); ok && f.fs.Identity == nil {
		s.redirectStep(w, r, "login", f)
		return
	}
	data := web.Consent{
		RequestID:     f.ar.ID,
		CSRF:          f.ar.ConsentCSRF,
		ClientName:    displayName(f.client),
		ClientID:      f.client.ID,
		ClientHost:    cimdHost(f.client.ID),
		ClientKind:    f.client.Kind,
		NameFromHost:  f.client.Kind == store.ClientKindCIMD && f.client.Name == "",
		RedirectHost:  redirectHost(f.ar.RedirectURI),
		Resource:      displayURI(f.ar.Resource),
		ResourceName:  s.resNames[f.ar.Resource],
		LoopbackOnly:  loopbackOnly(f.client.RedirectURIs),
		UpstreamLogin: f.fs.Identity == nil,
	}
	if u, err := url.Parse(f.ar.RedirectURI); err == nil {
		data.CustomScheme = u.Scheme != "http" && u.Scheme != "https"
	}
	if id := f.fs.Identity; id != nil {
		data.User = id.Username
		if data.User == "" {
			data.User = id.Email
		}
	}
	for _, sc := range f.ar.Scopes {
		desc := s.cfg.ScopeDescriptions[sc]
		if desc == "" {
			desc = defaultScopeDescriptions[sc]
		}
		data.Scopes = append(data.Scopes, web.Scope{Name: sc, Description: desc})
	}
	s.render(w, r, http.StatusOK, web.PageConsent, data)
}

// defaultScopeDescriptions explain the scopes a quick start uses when the
// operator wrote no scope_descriptions.
var defaultScopeDescriptions = map[string]string{
	"mcp":         "use the MCP tools, prompts and resources your roles allow",
	offlineAccess: "stay signed in",
}

func loopbackOnly(uris []string) bool {
	for _, raw := range uris {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "http" || !netguard.IsLoopbackHost(u.Hostname()) {
			return false
		}
	}
	return len(uris) > 0
}

func (s *Server) handleConsent(w http.ResponseWriter, r *http.Request) {
	f := s.parsePost(w, r)
	if f == nil {
		return
	}
	if _, ok := s.conn.(idp.PasswordConnector); ok && f.fs.Identity == nil {
		s.redirectStep(w, r, "login", f)
		return
	}
	if r.PostForm.Get("decision") != "approve" {
		_ = s.audit(r.Context(), s.flowRecord(f, audit.EventASConsentRefused, audit.ResultError, "the user denied the request"))
		s.redirectFlowError(w, r, f, newError(errAccessDenied, http.StatusForbidden, "the user denied the request"))
		return
	}
	if err := s.audit(r.Context(), s.flowRecord(f, audit.EventASConsentGiven, audit.ResultSuccess, "")); err != nil {
		s.auditUnavailablePage(w, r)
		return
	}
	f.fs.Consented = true
	if f.fs.Identity == nil {
		// Remember the approval in this browser so the next sign-in with this
		// client goes straight to the identity provider.
		s.rememberBrowserConsent(w, r, consentKey(f.ar), f.ar.Scopes)
	}
	s.advance(w, r, f)
}

// issueCode finishes a flow: it stores the code (hashed) with everything
// the token endpoint needs, records consent and redirects to the client.
func (s *Server) issueCode(w http.ResponseWriter, r *http.Request, f *flow) {
	ctx := r.Context()
	var upstream *idp.Tokens
	if len(f.ar.UpstreamTokens) > 0 {
		upstream = new(idp.Tokens)
		if err := s.openJSON(f.ar.UpstreamTokens, aad("authreq-upstream", f.ar.ID), upstream); err != nil {
			s.internalErrorPage(w, r, err)
			return
		}
	}
	code, grantID, err := s.storeCode(ctx, f.ar, f.fs.Identity, upstream)
	if err != nil {
		s.internalErrorPage(w, r, err)
		return
	}
	if f.fs.Consented {
		if err := s.saveConsent(r, f.fs.Identity.Key(), consentKey(f.ar), f.ar.Scopes); err != nil {
			s.internalErrorPage(w, r, err)
			return
		}
	}
	if err := s.st.DeleteAuthRequest(ctx, f.ar.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.WarnContext(ctx, "delete auth request", "err", err)
	}
	s.log.InfoContext(ctx, "authorization code issued", "client_id", f.ar.ClientID, "user", f.fs.Identity.Key(), "tsid", grantID)
	rec := s.flowRecord(f, audit.EventASCodeIssued, audit.ResultSuccess, "")
	rec.SessionID = grantID
	if err := s.audit(ctx, rec); err != nil {
		// The code was never sent: it expires unused.
		s.auditUnavailablePage(w, r)
		return
	}
	p := url.Values{"code": {code}}
	if f.ar.State != "" {
		p.Set("state", f.ar.State)
	}
	s.redirectToClient(w, r, f.ar.RedirectURI, p, displayName(f.client))
}

// storeCode stores the authorization code that ends request ar for the
// signed-in user id: hashed, with the grant's sealed secrets (a new
// refresh-successor key and the upstream tokens, if any). It returns the
// code and the grant (tsid) the code creates.
func (s *Server) storeCode(ctx context.Context, ar *store.AuthRequest, id *idp.Identity, upstream *idp.Tokens) (code, grantID string, err error) {
	now := s.now()
	code, grantID = newToken(now), newGrantID(now)
	sealed, err := s.sealJSON(&grantSecrets{RefreshKey: randomToken(), Upstream: upstream}, aad("grant", grantID))
	if err != nil {
		return "", "", err
	}
	identity, err := json.Marshal(id)
	if err != nil {
		return "", "", err
	}
	err = s.st.CreateAuthCode(ctx, &store.AuthCode{
		Hash:           store.TokenHash(code),
		ClientID:       ar.ClientID,
		RedirectURI:    ar.RedirectURI,
		Resource:       ar.Resource,
		UserKey:        id.Key(),
		Scopes:         ar.Scopes,
		CodeChallenge:  ar.CodeChallenge,
		GrantID:        grantID,
		Identity:       identity,
		UpstreamTokens: sealed,
		ExpiresAt:      now.Add(s.cfg.CodeLifetime),
	})
	if err != nil {
		return "", "", err
	}
	return code, grantID, nil
}

// IssueCode stores an authorization code for user id and the public or
// confidential client clientID, as the end of an /authorize flow does
// (after sign-in and consent), for the default resource, and returns the
// code. It skips sign-in and consent, so it is for programs that already
// hold the store and the encryption key: the benchmark harness seeds
// grants with it through the token endpoint. No request path calls it.
func (s *Server) IssueCode(ctx context.Context, clientID, redirectURI, codeChallenge string, scopes []string, id *idp.Identity) (string, error) {
	code, _, err := s.storeCode(ctx, &store.AuthRequest{
		ClientID: clientID, RedirectURI: redirectURI, Resource: s.resources[0], Scopes: scopes,
		CodeChallenge: codeChallenge, CodeChallengeMethod: "S256",
	}, id, nil)
	return code, err
}

// aad builds the additional authenticated data binding a sealed value to
// its purpose and record.
func aad(kind, id string) []byte { return []byte("mcpgate/authserver/" + kind + "/" + id) }

func (s *Server) sealJSON(v any, ad []byte) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return s.sealer.Seal(b, ad)
}

func (s *Server) openJSON(sealed, ad []byte, v any) error {
	b, err := s.sealer.Open(sealed, ad)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
