package authserver

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/credential"
	"github.com/mcpgate/mcpgate/internal/idp"
	"github.com/mcpgate/mcpgate/internal/netguard"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/web"
)

// Linked accounts: a backend with credential type linked_token gets the
// user's token at a provider other than the sign-in IdP. The flow
// (docs/linked-accounts.md has the threat model):
//
//  1. A tool call finds no token for the provider in the grant's sealed
//     secrets. LinkedToken stores a pending link — an authorization request
//     row marked as a link, keyed by a 256-bit random ID, bound to the
//     grant and the provider, expiring after link_timeout — and returns a
//     *credential.LinkRequiredError; the client gets its URL
//     <issuer>/link/<provider>?id=<ID> (MCP URL-mode elicitation).
//  2. The first open of the URL spends it and binds the link to that
//     browser; the browser must be signed in to mcpgate as the grant's user
//     (or sign in first), anyone else is refused. The page names the
//     provider and the mcpgate user it will be linked to, and asks for
//     confirmation (a form with a CSRF token). linkpages.go has the steps.
//  3. Confirming sends the browser to the provider's authorization endpoint
//     (authorization code with PKCE S256, a fresh single-use state whose
//     hash only is stored).
//  4. The callback takes the pending link by its state once, checks the
//     browser cookie and the provider, redeems the code as a confidential
//     client and stores the tokens sealed with the grant.
//
// Later calls get the token; a token near its expiry is refreshed at the
// provider, and one the provider will not refresh is dropped, so the next
// call asks for a new link. A revoked or expired grant takes its links with
// it.

// linkState is the JSON kept in a pending link's AuthRequest.Identity. Its
// keys differ from flowState's, so a pending link is never a valid
// authorization flow (no browser binding there) and vice versa.
type linkState struct {
	Provider string `json:"link"`
	Grant    string `json:"grant"`
	// Browser is the SHA-256 of the browser-binding cookie of the browser
	// that opened the link URL; empty in the row the URL names.
	Browser string `json:"lb,omitempty"`
	// Step is where the browser was sent: linkStepSignIn (mcpgate's sign-in
	// IdP) or linkStepProvider. Each callback takes only its own, so a state
	// of one is useless at the other.
	Step     string `json:"st,omitempty"`
	Failures int    `json:"lf,omitempty"` // failed passwords at the link's sign-in
}

const (
	linkStepSignIn   = "signin"
	linkStepProvider = "provider"
)

// linkedProvider is a configured linked provider and its OAuth client.
type linkedProvider struct {
	cfg      LinkedProvider
	redirect string
	client   *http.Client

	mu sync.Mutex
	ep *oauth2.Endpoint // configured, or discovered from the issuer on first use
}

func newLinkedProvider(cfg LinkedProvider, issuer string, base *http.Client) *linkedProvider {
	lp := &linkedProvider{
		cfg:      cfg,
		redirect: issuer + "/link/" + cfg.Name + "/callback",
		client:   netguard.GuardedClient(base, cfg.AllowPrivateNetwork, cfg.Timeout),
	}
	if cfg.AuthorizationEndpoint != "" {
		lp.ep = lp.endpoint(cfg.AuthorizationEndpoint, cfg.TokenEndpoint)
	}
	return lp
}

func (lp *linkedProvider) endpoint(auth, token string) *oauth2.Endpoint {
	style := oauth2.AuthStyleInHeader
	if lp.cfg.ClientAuth == "client_secret_post" {
		style = oauth2.AuthStyleInParams
	}
	return &oauth2.Endpoint{AuthURL: auth, TokenURL: token, AuthStyle: style}
}

// maxDiscovery bounds a discovery document.
const maxDiscovery = 256 << 10

// config returns the OAuth client configuration, discovering the endpoints
// from the issuer first if they are not configured.
func (lp *linkedProvider) config(ctx context.Context) (*oauth2.Config, error) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if lp.ep == nil {
		ep, err := lp.discover(ctx)
		if err != nil {
			return nil, err
		}
		lp.ep = ep
	}
	return &oauth2.Config{ClientID: lp.cfg.ClientID, ClientSecret: lp.cfg.ClientSecret, Endpoint: *lp.ep,
		RedirectURL: lp.redirect, Scopes: lp.cfg.Scopes}, nil
}

// discover reads the issuer's OpenID Connect discovery document (OpenID
// Connect Discovery 1.0 §4); its issuer must be the configured one.
func (lp *linkedProvider) discover(ctx context.Context) (*oauth2.Endpoint, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(lp.cfg.Issuer, "/")+"/.well-known/openid-configuration", nil)
	if err != nil {
		return nil, err
	}
	resp, err := lp.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("linked provider %s: discovery: %w", lp.cfg.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("linked provider %s: discovery: status %d", lp.cfg.Name, resp.StatusCode)
	}
	var doc struct {
		Issuer string `json:"issuer"`
		Auth   string `json:"authorization_endpoint"`
		Token  string `json:"token_endpoint"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxDiscovery)).Decode(&doc); err != nil {
		return nil, fmt.Errorf("linked provider %s: discovery: %w", lp.cfg.Name, err)
	}
	if doc.Issuer != lp.cfg.Issuer || doc.Auth == "" || doc.Token == "" {
		return nil, fmt.Errorf("linked provider %s: discovery document of another issuer or without endpoints", lp.cfg.Name)
	}
	return lp.endpoint(doc.Auth, doc.Token), nil
}

func (lp *linkedProvider) ctx(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, lp.client)
}

// exchange redeems an authorization code (RFC 6749 §4.1.3, RFC 7636 §4.5).
func (lp *linkedProvider) exchange(ctx context.Context, code, verifier string) (*idp.Tokens, error) {
	c, err := lp.config(ctx)
	if err != nil {
		return nil, err
	}
	t, err := c.Exchange(lp.ctx(ctx), code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, err
	}
	return tokensOf(t), nil
}

// refresh obtains a new access token with t's refresh token (RFC 6749 §6);
// the result keeps t's refresh token when the provider does not rotate it.
func (lp *linkedProvider) refresh(ctx context.Context, t *idp.Tokens) (*idp.Tokens, error) {
	c, err := lp.config(ctx)
	if err != nil {
		return nil, err
	}
	nt, err := c.TokenSource(lp.ctx(ctx), &oauth2.Token{RefreshToken: t.RefreshToken}).Token()
	if err != nil {
		return nil, err
	}
	out := tokensOf(nt)
	if out.RefreshToken == "" {
		out.RefreshToken = t.RefreshToken
	}
	return out, nil
}

func tokensOf(t *oauth2.Token) *idp.Tokens {
	return &idp.Tokens{AccessToken: t.AccessToken, TokenType: t.TokenType, RefreshToken: t.RefreshToken, Expiry: t.Expiry}
}

// refusedByProvider reports whether a token endpoint error says that the
// refresh token is no longer good (RFC 6749 §5.2 invalid_grant; GitHub
// answers bad_refresh_token) rather than that the provider or the
// gateway's client is failing: only then is a link dropped.
func refusedByProvider(err error) bool {
	var re *oauth2.RetrieveError
	return errors.As(err, &re) && (re.ErrorCode == "invalid_grant" || re.ErrorCode == "bad_refresh_token")
}

// LinkedToken implements credential.LinkedTokens: the user's access token at
// the linked provider for the active grant tsid, refreshed when near its
// expiry; without one, a *credential.LinkRequiredError with a link URL when
// start is set, credential.ErrNotLinked otherwise.
func (s *Server) LinkedToken(ctx context.Context, tsid, provider string, start bool) (string, error) {
	lp := s.linked[provider]
	if lp == nil {
		return "", fmt.Errorf("authserver: unknown linked provider %q", provider)
	}
	g, secrets, err := s.loadLinkedSecrets(ctx, tsid)
	if err != nil {
		return "", err
	}
	switch t := secrets.Linked[provider]; {
	case t != nil && s.linkFresh(t):
		return t.AccessToken, nil
	case t == nil && !start:
		return "", credential.ErrNotLinked
	}
	unlock := s.upLocks.lock(tsid)
	defer unlock()
	// Another caller may have refreshed or linked while we waited.
	if g, secrets, err = s.loadLinkedSecrets(ctx, tsid); err != nil {
		return "", err
	}
	t := secrets.Linked[provider]
	if t != nil && s.linkFresh(t) {
		return t.AccessToken, nil
	}
	if t != nil {
		reason := "the linked token expired and has no refresh token; the link is dropped"
		if t.RefreshToken != "" {
			nt, rerr := lp.refresh(ctx, t)
			if rerr == nil {
				if err := s.storeLinked(ctx, tsid, provider, nt); err != nil {
					return "", err
				}
				return nt.AccessToken, nil
			}
			s.log.WarnContext(ctx, "linked token refresh failed", "tsid", tsid, "provider", provider, "err", rerr)
			if !refusedByProvider(rerr) {
				// An outage is not the user's doing: the link stays.
				return "", fmt.Errorf("%w: linked provider %s: %w", credential.ErrUnavailable, provider, rerr)
			}
			reason = "the provider refused to refresh the linked token; the link is dropped"
		}
		if err := s.storeLinked(ctx, tsid, provider, nil); err != nil {
			return "", err
		}
		_ = s.audit(ctx, s.withStoredIdentity(&audit.Record{Event: audit.EventLinkFailed, Result: audit.ResultError, Method: "link/" + provider,
			ClientID: g.ClientID, SessionID: tsid, Resource: g.Resource, Reason: reason}, g.Identity))
	}
	if !start {
		return "", credential.ErrNotLinked
	}
	return "", s.startLink(ctx, g, lp)
}

func (s *Server) linkFresh(t *idp.Tokens) bool {
	return t.AccessToken != "" && (t.Expiry.IsZero() || s.now().Add(s.cfg.UpstreamRefreshSkew).Before(t.Expiry))
}

// loadLinkedSecrets reads the active grant tsid and its sealed secrets
// (which need no upstream token: built-in users link accounts too).
func (s *Server) loadLinkedSecrets(ctx context.Context, tsid string) (*store.Grant, *grantSecrets, error) {
	g, secrets, err := s.activeGrant(ctx, tsid)
	if errors.Is(err, errGrantInactive) {
		return nil, nil, ErrSessionInvalid
	}
	return g, secrets, err
}

// storeLinked sets (t != nil) or drops (t == nil) the grant's token at
// provider. The caller holds s.upLocks for tsid; another replica's write in
// between (a refresh of the sign-in tokens) is merged by reading again.
func (s *Server) storeLinked(ctx context.Context, tsid, provider string, t *idp.Tokens) error {
	for range 3 {
		g, secrets, err := s.loadLinkedSecrets(ctx, tsid)
		if err != nil {
			return err
		}
		if t != nil {
			if secrets.Linked == nil {
				secrets.Linked = map[string]*idp.Tokens{}
			}
			secrets.Linked[provider] = t
		} else {
			if secrets.Linked[provider] == nil {
				return nil
			}
			delete(secrets.Linked, provider)
		}
		sealed, err := s.sealJSON(secrets, aad("grant", tsid))
		if err != nil {
			return err
		}
		err = s.st.UpdateGrantUpstream(ctx, tsid, nil, sealed, g.UpstreamExpiry, g.Version)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, store.ErrNotFound):
			return ErrSessionInvalid
		case !errors.Is(err, store.ErrConflict):
			return err
		}
	}
	return errors.New("authserver: the grant kept changing while storing a linked token")
}

// pendingLinks remembers each grant's latest pending link per provider,
// so that repeated calls before the user opens the link hand out the same
// URL instead of storing (and auditing) a new one each time. Bounded; a
// derived cache, per process.
type pendingLinks struct {
	mu sync.Mutex
	m  map[string]pendingLink
}

type pendingLink struct {
	id      string
	expires time.Time
}

const maxPendingLinks = 10_000

func (p *pendingLinks) get(key string) (pendingLink, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.m[key]
	return l, ok
}

func (p *pendingLinks) put(key string, l pendingLink, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]pendingLink{}
	}
	if len(p.m) >= maxPendingLinks {
		for k, v := range p.m {
			if !v.expires.After(now) {
				delete(p.m, k)
			}
		}
		if len(p.m) >= maxPendingLinks {
			clear(p.m)
		}
	}
	p.m[key] = l
}

// reusableLink returns the grant's pending link at lp if no browser has
// opened it yet and it has at least a minute left.
func (s *Server) reusableLink(ctx context.Context, key string) (string, bool) {
	l, ok := s.pending.get(key)
	if !ok || !l.expires.After(s.now().Add(time.Minute)) {
		return "", false
	}
	ar, err := s.st.GetAuthRequest(ctx, l.id)
	if err != nil {
		return "", false
	}
	// Opening the URL deletes its row: one that is still there is unopened.
	var ls linkState
	if json.Unmarshal(ar.Identity, &ls) != nil || ls.Browser != "" {
		return "", false
	}
	return l.id, true
}

// startLink returns the error that carries a link URL for grant g at lp to
// the client: the grant's unclaimed pending link, or a new one.
func (s *Server) startLink(ctx context.Context, g *store.Grant, lp *linkedProvider) error {
	key := g.ID + "\x00" + lp.cfg.Name
	if id, ok := s.reusableLink(ctx, key); ok {
		return s.linkRequired(lp, id)
	}
	id := randomToken()
	b, err := json.Marshal(linkState{Provider: lp.cfg.Name, Grant: g.ID})
	if err != nil {
		return err
	}
	ar := &store.AuthRequest{ID: id, UserKey: g.UserKey, Identity: b, ExpiresAt: s.now().Add(lp.cfg.LinkTimeout)}
	if err := s.st.CreateAuthRequest(ctx, ar); err != nil {
		return err
	}
	rec := &audit.Record{Event: audit.EventLinkStarted, Method: "link/" + lp.cfg.Name, ClientID: g.ClientID, SessionID: g.ID, Resource: g.Resource,
		Reason: "the user has no " + lp.cfg.Name + " account linked: the client is sent the link URL"}
	if err := s.audit(ctx, s.withStoredIdentity(rec, g.Identity)); err != nil {
		return err
	}
	s.pending.put(key, pendingLink{id: id, expires: ar.ExpiresAt}, s.now())
	return s.linkRequired(lp, id)
}

func (s *Server) linkRequired(lp *linkedProvider, id string) error {
	return &credential.LinkRequiredError{
		Provider:    lp.cfg.Name,
		DisplayName: lp.cfg.DisplayName,
		URL:         s.issuer + "/link/" + url.PathEscape(lp.cfg.Name) + "?id=" + url.QueryEscape(id),
		// Not the ID itself: the elicitation ID may be logged by clients.
		ElicitationID: store.HashKey(id)[:32],
	}
}

// handleLinkCallback redeems the provider's code and stores the tokens with
// the grant.
func (s *Server) handleLinkCallback(w http.ResponseWriter, r *http.Request) {
	lp := s.linked[r.PathValue("provider")]
	if lp == nil {
		http.NotFound(w, r)
		return
	}
	ctx := r.Context()
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" || len(state) > 256 {
		s.linkFailedPage(w, r, http.StatusBadRequest, "The response of "+lp.cfg.DisplayName+" is not valid.")
		return
	}
	ar, err := s.st.TakeAuthRequestByUpstreamState(ctx, store.HashKey(state))
	if errors.Is(err, store.ErrNotFound) {
		s.auditLinkFailed(ctx, &linkState{Provider: lp.cfg.Name}, "unknown, expired or replayed state at the callback")
		s.linkFailedPage(w, r, http.StatusBadRequest, "This response has expired or was already used. Call the tool again from your application to get a new link.")
		return
	}
	if err != nil {
		s.internalErrorPage(w, r, err)
		return
	}
	// Spent whatever happens next.
	defer func() { _ = s.st.DeleteAuthRequest(context.WithoutCancel(ctx), ar.ID) }()
	var ls linkState
	if json.Unmarshal(ar.Identity, &ls) != nil || ls.Provider != lp.cfg.Name || ls.Grant == "" || ls.Step != linkStepProvider {
		s.auditLinkFailed(ctx, &linkState{Provider: lp.cfg.Name}, "the state belongs to no link sent to this provider")
		s.linkFailedPage(w, r, http.StatusBadRequest, "This response is not valid here.")
		return
	}
	if c, err := r.Cookie(s.cookieName("browser")); err != nil || ls.Browser == "" ||
		subtle.ConstantTimeCompare([]byte(store.HashKey(c.Value)), []byte(ls.Browser)) != 1 {
		s.auditLinkFailed(ctx, &ls, "the callback came to another browser than the one that confirmed the link")
		s.linkFailedPage(w, r, http.StatusBadRequest, "This link was started in another browser. Call the tool again from your application to get a new one.")
		return
	}
	if code := q.Get("error"); code != "" {
		s.auditLinkFailed(ctx, &ls, "the provider did not authorize the link ("+oauthCode(code)+")")
		s.linkFailedPage(w, r, http.StatusForbidden, lp.cfg.DisplayName+" did not authorize linking the account.")
		return
	}
	// RFC 9207 §2.4: a provider that names itself must be the one the
	// browser was sent to (mix-up defence).
	if iss := q.Get("iss"); iss != "" && lp.cfg.Issuer != "" && iss != lp.cfg.Issuer {
		s.auditLinkFailed(ctx, &ls, "the callback names another issuer")
		s.linkFailedPage(w, r, http.StatusBadRequest, "The response did not come from "+lp.cfg.DisplayName+".")
		return
	}
	code := q.Get("code")
	if code == "" || len(code) > 2048 {
		s.auditLinkFailed(ctx, &ls, "callback without a valid code")
		s.linkFailedPage(w, r, http.StatusBadRequest, "The response of "+lp.cfg.DisplayName+" is not valid.")
		return
	}
	verifier, err := s.sealer.Open(ar.UpstreamVerifier, aad("link-verifier", ar.ID))
	if err != nil {
		s.internalErrorPage(w, r, err)
		return
	}
	t, err := lp.exchange(ctx, code, string(verifier))
	if err != nil || t.AccessToken == "" {
		s.log.WarnContext(ctx, "linked provider code exchange failed", "provider", lp.cfg.Name, "err", err)
		s.auditLinkFailed(ctx, &ls, "the provider's token endpoint did not issue a token for the code")
		s.linkFailedPage(w, r, http.StatusBadGateway, lp.cfg.DisplayName+" did not complete the link. Call the tool again from your application to retry.")
		return
	}
	unlock := s.upLocks.lock(ls.Grant)
	err = s.storeLinked(ctx, ls.Grant, lp.cfg.Name, t)
	unlock()
	if errors.Is(err, ErrSessionInvalid) {
		s.auditLinkFailed(ctx, &ls, "the grant ended before the link completed")
		s.linkFailedPage(w, r, http.StatusBadRequest, "Your session with this server has ended. Sign in again from your application.")
		return
	}
	if err != nil {
		s.internalErrorPage(w, r, err)
		return
	}
	if err := s.audit(ctx, s.withGrant(ctx, &audit.Record{Event: audit.EventLinkCompleted, Method: "link/" + lp.cfg.Name,
		Reason: "the " + lp.cfg.Name + " account is linked"}, ls.Grant)); err != nil {
		// Not recorded, not handed out: undo the link.
		unlock := s.upLocks.lock(ls.Grant)
		_ = s.storeLinked(context.WithoutCancel(ctx), ls.Grant, lp.cfg.Name, nil)
		unlock()
		s.internalErrorPage(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, web.PageLink, linkPage{Provider: lp.cfg.DisplayName, Done: true})
}

func (s *Server) auditLinkFailed(ctx context.Context, ls *linkState, reason string) {
	rec := &audit.Record{Event: audit.EventLinkFailed, Result: audit.ResultError, Method: "link/" + ls.Provider, Reason: reason}
	if ls.Grant != "" {
		s.withGrant(ctx, rec, ls.Grant)
	}
	_ = s.audit(ctx, rec)
}

// oauthCode returns an OAuth error code from a redirect for the audit
// record, or "invalid" when it is not one (RFC 6749 §4.1.2.1: a short
// ASCII word; the provider's words, like the description, are not kept).
func oauthCode(c string) string {
	if len(c) > 64 {
		return "invalid"
	}
	for _, r := range c {
		if (r < 'a' || r > 'z') && r != '_' {
			return "invalid"
		}
	}
	return c
}
