package authserver

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/oauth2"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/idp"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/web"
)

// The browser side of a link (docs/linked-accounts.md):
//
//  1. GET /link/<provider>?id=<ID> takes the pending link the URL names
//     (deleted on first use, so the URL works once) and moves it into a new
//     row bound to this browser, then redirects to ?req=<row>.
//  2. GET /link/<provider>?req=<row> needs a fresh mcpgate sign-in in this
//     browser (the sign-in cookie) by the user the grant belongs to. Without
//     one the browser signs in first: the built-in users' form (POST
//     /link/<provider>/login) or the login IdP (its callback is /callback,
//     the one registered there). Another user is refused.
//  3. The confirm page names the provider and the mcpgate user; its form
//     (POST /link/<provider>, CSRF token of the row) sends the browser to
//     the provider, and handleLinkCallback finishes.

// linkPage is the data of web.PageLink.
type linkPage struct {
	Provider  string
	User      string
	Action    string
	RequestID string
	CSRF      string
	Done      bool
}

func (s *Server) linkFailedPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.errorPage(w, r, status, "Account not linked", msg)
}

const (
	msgLinkInvalid = "This link is not valid. Call the tool again from your application to get a new one."
	msgLinkUsed    = "This link has expired or was already used. Call the tool again from your application to get a new one."
	msgLinkEnded   = "Your session with this server has ended. Sign in again from your application."
)

func (s *Server) linkURL(lp *linkedProvider, req string) string {
	return s.issuer + "/link/" + url.PathEscape(lp.cfg.Name) + "?req=" + url.QueryEscape(req)
}

// handleLinkPage serves GET /link/<provider>: the link URL (?id=) or a
// step of a link opened in this browser (?req=).
func (s *Server) handleLinkPage(w http.ResponseWriter, r *http.Request) {
	lp := s.linked[r.PathValue("provider")]
	if lp == nil {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	if q.Has("id") {
		s.openLink(w, r, lp, q.Get("id"))
		return
	}
	ar, ls := s.loadLinkReq(w, r, lp, q.Get("req"))
	if ar == nil {
		return
	}
	g := s.linkGrant(w, r, ar, ls)
	if g == nil {
		return
	}
	switch user, ok := s.signedIn(r); {
	case ok && user == g.UserKey:
		var id idp.Identity
		_ = json.Unmarshal(g.Identity, &id)
		s.render(w, r, http.StatusOK, web.PageLink, linkPage{
			Provider: lp.cfg.DisplayName,
			User:     (&identity.Principal{Subject: id.Subject, Username: id.Username, Email: id.Email}).DisplayName(),
			Action:   s.basePath + "/link/" + lp.cfg.Name, RequestID: ar.ID, CSRF: ar.ConsentCSRF,
		})
	case ok:
		s.linkOtherUser(w, r, ar, ls, "the browser is signed in to mcpgate as another user")
	default:
		s.linkSignIn(w, r, lp, ar, ls)
	}
}

// openLink takes the pending link id (once: the URL is single use) and
// continues it in a row bound to this browser.
func (s *Server) openLink(w http.ResponseWriter, r *http.Request, lp *linkedProvider, id string) {
	ctx := r.Context()
	if id == "" || len(id) > 64 {
		s.linkFailedPage(w, r, http.StatusBadRequest, msgLinkInvalid)
		return
	}
	ar, err := s.st.GetAuthRequest(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		s.linkFailedPage(w, r, http.StatusBadRequest, msgLinkUsed)
		return
	}
	if err != nil {
		s.internalErrorPage(w, r, err)
		return
	}
	var ls linkState
	if json.Unmarshal(ar.Identity, &ls) != nil || ls.Provider != lp.cfg.Name || ls.Grant == "" || ls.Browser != "" {
		s.linkFailedPage(w, r, http.StatusBadRequest, msgLinkInvalid)
		return
	}
	// The delete succeeds for one caller only, across replicas: the take.
	if err := s.st.DeleteAuthRequest(ctx, id); errors.Is(err, store.ErrNotFound) {
		s.linkFailedPage(w, r, http.StatusBadRequest, msgLinkUsed)
		return
	} else if err != nil {
		s.internalErrorPage(w, r, err)
		return
	}
	if _, _, err := s.loadLinkedSecrets(ctx, ls.Grant); err != nil {
		s.linkGrantFailed(w, r, &ls, err)
		return
	}
	ls.Browser = s.browserBinding(w, r)
	next := &store.AuthRequest{ID: randomToken(), UserKey: ar.UserKey, ConsentCSRF: randomToken(), ExpiresAt: ar.ExpiresAt}
	if next.Identity, err = json.Marshal(ls); err == nil {
		err = s.st.CreateAuthRequest(ctx, next)
	}
	if err != nil {
		s.internalErrorPage(w, r, err)
		return
	}
	web.SetSecurityHeaders(w.Header(), "")
	http.Redirect(w, r, s.linkURL(lp, next.ID), http.StatusSeeOther)
}

// loadLinkReq reads the link row id opened in this browser (never a link
// URL's row, never another browser's). It writes an error page and returns
// nil on failure.
func (s *Server) loadLinkReq(w http.ResponseWriter, r *http.Request, lp *linkedProvider, id string) (*store.AuthRequest, *linkState) {
	if id == "" || len(id) > 64 {
		s.linkFailedPage(w, r, http.StatusBadRequest, msgLinkInvalid)
		return nil, nil
	}
	ar, err := s.st.GetAuthRequest(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		s.linkFailedPage(w, r, http.StatusBadRequest, msgLinkUsed)
		return nil, nil
	}
	if err != nil {
		s.internalErrorPage(w, r, err)
		return nil, nil
	}
	var ls linkState
	if json.Unmarshal(ar.Identity, &ls) != nil || ls.Provider != lp.cfg.Name || ls.Grant == "" || ls.Browser == "" {
		s.linkFailedPage(w, r, http.StatusBadRequest, msgLinkInvalid)
		return nil, nil
	}
	if !s.sameBrowser(r, ls.Browser) {
		s.linkFailedPage(w, r, http.StatusBadRequest, "This link was opened in another browser. Call the tool again from your application to get a new one.")
		return nil, nil
	}
	return ar, &ls
}

// sameBrowser reports whether the request carries the browser-binding
// cookie whose hash is want.
func (s *Server) sameBrowser(r *http.Request, want string) bool {
	c, err := r.Cookie(s.cookieName("browser"))
	return err == nil && want != "" && subtle.ConstantTimeCompare([]byte(store.HashKey(c.Value)), []byte(want)) == 1
}

// linkGrant returns the link's grant if it is still active.
func (s *Server) linkGrant(w http.ResponseWriter, r *http.Request, ar *store.AuthRequest, ls *linkState) *store.Grant {
	g, _, err := s.loadLinkedSecrets(r.Context(), ls.Grant)
	if err != nil {
		_ = s.st.DeleteAuthRequest(r.Context(), ar.ID)
		s.linkGrantFailed(w, r, ls, err)
		return nil
	}
	return g
}

func (s *Server) linkGrantFailed(w http.ResponseWriter, r *http.Request, ls *linkState, err error) {
	if errors.Is(err, ErrSessionInvalid) {
		s.auditLinkFailed(r.Context(), ls, "the grant ended before the link was opened")
		s.linkFailedPage(w, r, http.StatusBadRequest, msgLinkEnded)
		return
	}
	s.internalErrorPage(w, r, err)
}

// linkOtherUser ends a link whose browser is signed in as someone else
// than the grant's user: a link URL sent to another person links nothing.
func (s *Server) linkOtherUser(w http.ResponseWriter, r *http.Request, ar *store.AuthRequest, ls *linkState, reason string) {
	_ = s.st.DeleteAuthRequest(r.Context(), ar.ID)
	s.auditLinkFailed(r.Context(), ls, reason)
	s.linkFailedPage(w, r, http.StatusForbidden, "This link was made for another user of this server than the one signed in here. "+
		"Only open links from your own application; if it is yours, call the tool again to get a new one.")
}

// linkLoginPage is the built-in users' sign-in form of a link (with msg
// after a failed attempt).
func (s *Server) linkLoginPage(w http.ResponseWriter, r *http.Request, lp *linkedProvider, ar *store.AuthRequest, status int, msg string) {
	s.render(w, r, status, web.PageLogin, web.Login{RequestID: ar.ID, CSRF: ar.ConsentCSRF, Error: msg,
		Purpose: "to link your " + lp.cfg.DisplayName + " account", Action: s.basePath + "/link/" + lp.cfg.Name + "/login"})
}

// linkSignIn asks the browser to sign in to mcpgate first: the built-in
// users' form or the login IdP.
func (s *Server) linkSignIn(w http.ResponseWriter, r *http.Request, lp *linkedProvider, ar *store.AuthRequest, ls *linkState) {
	switch c := s.conn.(type) {
	case idp.PasswordConnector:
		s.linkLoginPage(w, r, lp, ar, http.StatusOK, "")
	case idp.CallbackConnector:
		state, nonce, verifier := randomToken(), randomToken(), oauth2.GenerateVerifier()
		u, err := c.AuthCodeURL(r.Context(), state, nonce, verifier)
		if err != nil {
			s.log.WarnContext(r.Context(), "upstream identity provider unavailable", "err", err)
			w.Header().Set("Retry-After", "5")
			s.linkFailedPage(w, r, http.StatusServiceUnavailable, "The identity provider cannot be reached right now. Reload this page in a few seconds.")
			return
		}
		if ar.UpstreamVerifier, err = s.sealer.Seal([]byte(verifier), aad("link-signin-verifier", ar.ID)); err != nil {
			s.internalErrorPage(w, r, err)
			return
		}
		ar.UpstreamStateHash, ar.UpstreamNonce = store.HashKey(state), nonce
		ls.Step = linkStepSignIn
		if err := s.saveLink(r.Context(), ar, ls); err != nil {
			s.internalErrorPage(w, r, err)
			return
		}
		web.SetSecurityHeaders(w.Header(), "")
		http.Redirect(w, r, u, http.StatusSeeOther)
	default:
		s.internalErrorPage(w, r, errors.New("connector is neither password nor callback"))
	}
}

func (s *Server) saveLink(ctx context.Context, ar *store.AuthRequest, ls *linkState) error {
	b, err := json.Marshal(ls)
	if err != nil {
		return err
	}
	ar.Identity = b
	return s.st.UpdateAuthRequest(ctx, ar)
}

// handleLinkLogin is the built-in users' sign-in of a link.
func (s *Server) handleLinkLogin(w http.ResponseWriter, r *http.Request) {
	lp := s.linked[r.PathValue("provider")]
	pc, ok := s.conn.(idp.PasswordConnector)
	if lp == nil || !ok {
		http.NotFound(w, r)
		return
	}
	ar, ls := s.linkForm(w, r, lp)
	if ar == nil {
		return
	}
	username := r.PostForm.Get("username")
	id, retry, err := s.passwordLogin(w, r, pc, username, r.PostForm.Get("password"))
	switch {
	case errors.Is(err, errBackingOff):
		w.Header().Set("Retry-After", retryAfter(retry))
		s.linkLoginPage(w, r, lp, ar, http.StatusTooManyRequests, "Too many failed sign-in attempts for this user. Try again in "+retryAfter(retry)+" seconds.")
	case errors.Is(err, idp.ErrInvalidCredentials):
		ls.Failures++
		s.auditLinkFailed(r.Context(), ls, "invalid username or password at the link's sign-in")
		if ls.Failures >= maxLoginFailures {
			_ = s.st.DeleteAuthRequest(r.Context(), ar.ID)
			s.linkFailedPage(w, r, http.StatusForbidden, "Too many failed sign-in attempts. Call the tool again from your application to get a new link.")
			return
		}
		if err := s.saveLink(r.Context(), ar, ls); err != nil {
			s.internalErrorPage(w, r, err)
			return
		}
		s.linkLoginPage(w, r, lp, ar, http.StatusUnauthorized, "Invalid username or password.")
	case err != nil:
		s.linkSignInFailed(w, r, ar, ls, err)
	default:
		s.linkSignedIn(w, r, lp, ar, ls, id, "built-in user")
	}
}

// linkSignInCallback is the login IdP's callback for a link's sign-in
// (handleCallback hands over requests that are links).
func (s *Server) linkSignInCallback(w http.ResponseWriter, r *http.Request, ar *store.AuthRequest, ls *linkState) {
	lp := s.linked[ls.Provider]
	c, ok := s.conn.(idp.CallbackConnector)
	if lp == nil || !ok || ls.Step != linkStepSignIn || ls.Browser == "" {
		s.auditLinkFailed(r.Context(), ls, "the sign-in response belongs to no link sign-in")
		s.linkFailedPage(w, r, http.StatusBadRequest, msgLinkInvalid)
		return
	}
	if !s.sameBrowser(r, ls.Browser) {
		s.auditLinkFailed(r.Context(), ls, "the sign-in response came to another browser than the one that opened the link")
		s.linkFailedPage(w, r, http.StatusBadRequest, "This link was opened in another browser. Call the tool again from your application to get a new one.")
		return
	}
	verifier, err := s.sealer.Open(ar.UpstreamVerifier, aad("link-signin-verifier", ar.ID))
	if err != nil {
		s.internalErrorPage(w, r, err)
		return
	}
	id, _, err := c.HandleCallback(r.Context(), r.URL.Query(), ar.UpstreamNonce, string(verifier))
	if err != nil {
		s.log.WarnContext(r.Context(), "link sign-in failed", "err", err)
		s.linkSignInFailed(w, r, ar, ls, err)
		return
	}
	ar.UpstreamNonce, ar.UpstreamVerifier, ls.Step = "", nil, ""
	s.linkSignedIn(w, r, lp, ar, ls, id, "upstream identity provider "+id.Issuer)
}

func (s *Server) linkSignInFailed(w http.ResponseWriter, r *http.Request, ar *store.AuthRequest, ls *linkState, err error) {
	_ = s.st.DeleteAuthRequest(r.Context(), ar.ID)
	s.auditLinkFailed(r.Context(), ls, "sign-in before the link failed: "+upstreamFailure(err))
	if errors.Is(err, idp.ErrNotAllowed) || errors.Is(err, idp.ErrEmailNotVerified) || errors.As(err, new(*idp.CallbackError)) {
		s.linkFailedPage(w, r, http.StatusForbidden, "The sign-in was refused. Call the tool again from your application to get a new link.")
		return
	}
	s.linkFailedPage(w, r, http.StatusBadGateway, "The sign-in could not be completed. Call the tool again from your application to get a new link.")
}

// linkSignedIn goes on after the browser signed in as id: to the confirm
// page if id is the grant's user, else nowhere.
func (s *Server) linkSignedIn(w http.ResponseWriter, r *http.Request, lp *linkedProvider, ar *store.AuthRequest, ls *linkState, id *idp.Identity, how string) {
	if id.Key() != ar.UserKey {
		s.linkOtherUser(w, r, ar, ls, "signed in as another user than the grant's to link the account")
		return
	}
	rec := s.withIdentity(&audit.Record{Event: audit.EventASLoginSuccess, Result: audit.ResultSuccess, Method: "link/" + ls.Provider,
		SessionID: ls.Grant, Reason: how + ", to link an account"}, id)
	if err := s.audit(r.Context(), rec); err != nil {
		s.auditUnavailablePage(w, r)
		return
	}
	s.rememberSignIn(w, r, id)
	if err := s.saveLink(r.Context(), ar, ls); err != nil {
		s.internalErrorPage(w, r, err)
		return
	}
	web.SetSecurityHeaders(w.Header(), "")
	http.Redirect(w, r, s.linkURL(lp, ar.ID), http.StatusSeeOther)
}

// linkForm reads a form post of a link step: its row, opened in this
// browser, and its CSRF token.
func (s *Server) linkForm(w http.ResponseWriter, r *http.Request, lp *linkedProvider) (*store.AuthRequest, *linkState) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "Invalid request", "The form could not be read.")
		return nil, nil
	}
	ar, ls := s.loadLinkReq(w, r, lp, r.PostForm.Get("req"))
	if ar == nil {
		return nil, nil
	}
	if csrf := r.PostForm.Get("csrf"); csrf == "" || subtle.ConstantTimeCompare([]byte(csrf), []byte(ar.ConsentCSRF)) != 1 {
		s.errorPage(w, r, http.StatusForbidden, "Invalid form submission", "The form was not submitted from this page. Call the tool again from your application.")
		return nil, nil
	}
	return ar, ls
}

// handleLinkConfirm answers the confirmation form: on approval it sends the
// browser to the provider.
func (s *Server) handleLinkConfirm(w http.ResponseWriter, r *http.Request) {
	lp := s.linked[r.PathValue("provider")]
	if lp == nil {
		http.NotFound(w, r)
		return
	}
	ar, ls := s.linkForm(w, r, lp)
	if ar == nil {
		return
	}
	g := s.linkGrant(w, r, ar, ls)
	if g == nil {
		return
	}
	// The page was shown to the grant's user; the sign-in may have ended or
	// changed since.
	if user, ok := s.signedIn(r); !ok || user != g.UserKey {
		s.linkOtherUser(w, r, ar, ls, "the confirmation came without a sign-in of the grant's user")
		return
	}
	if r.PostForm.Get("decision") != "approve" {
		_ = s.st.DeleteAuthRequest(r.Context(), ar.ID)
		s.auditLinkFailed(r.Context(), ls, "the user declined to link the account")
		s.linkFailedPage(w, r, http.StatusOK, "You declined to link the account.")
		return
	}
	c, err := lp.config(r.Context())
	if err != nil {
		s.log.WarnContext(r.Context(), "linked provider unavailable", "provider", lp.cfg.Name, "err", err)
		s.linkFailedPage(w, r, http.StatusServiceUnavailable, lp.cfg.DisplayName+" cannot be reached right now. Try again later.")
		return
	}
	state, verifier := randomToken(), oauth2.GenerateVerifier()
	if ar.UpstreamVerifier, err = s.sealer.Seal([]byte(verifier), aad("link-verifier", ar.ID)); err != nil {
		s.internalErrorPage(w, r, err)
		return
	}
	// Only the hash of the state is stored, and taken once at the callback.
	ar.UpstreamStateHash = store.HashKey(state)
	ls.Step = linkStepProvider
	if err := s.saveLink(r.Context(), ar, ls); err != nil {
		s.internalErrorPage(w, r, err)
		return
	}
	web.SetSecurityHeaders(w.Header(), "")
	http.Redirect(w, r, c.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), http.StatusSeeOther)
}

// signInCookie is the sealed cookie a browser gets when someone signs in
// to mcpgate in it (an authorization flow or a link's sign-in): who, and
// when. Only the link pages read it, to know that the person at the
// browser is the grant's user. Its seal is bound to the browser-binding
// cookie, so it is worthless without it.
type signInCookie struct {
	User string `json:"u"` // identity key, issuer#subject
	At   int64  `json:"t"`
}

// rememberSignIn marks the browser as signed in as id, now, when linked
// providers are configured (nothing reads it otherwise).
func (s *Server) rememberSignIn(w http.ResponseWriter, r *http.Request, id *idp.Identity) {
	c, err := r.Cookie(s.cookieName("browser"))
	if len(s.linked) == 0 || err != nil {
		return
	}
	v, err := s.sealCookie(&signInCookie{User: id.Key(), At: s.now().Unix()}, aad("sign-in", store.HashKey(c.Value)))
	if err != nil || len(v) > 2048 {
		return // an identity this large signs in again at the next link
	}
	s.setCookie(w, "signin", v, int(s.cfg.LinkSignInMaxAge.Seconds()))
}

// signedIn returns the user signed in to mcpgate in this browser within
// link_sign_in_max_age.
func (s *Server) signedIn(r *http.Request) (string, bool) {
	b, err := r.Cookie(s.cookieName("browser"))
	if err != nil {
		return "", false
	}
	c, err := r.Cookie(s.cookieName("signin"))
	if err != nil || len(c.Value) > 2048 {
		return "", false
	}
	var sc signInCookie
	if s.openCookie(c.Value, aad("sign-in", store.HashKey(b.Value)), &sc) != nil || sc.User == "" {
		return "", false
	}
	at, now := time.Unix(sc.At, 0), s.now()
	if now.Sub(at) > s.cfg.LinkSignInMaxAge || at.After(now.Add(time.Minute)) {
		return "", false
	}
	return sc.User, true
}
