package idp

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/flight"
	"github.com/mcpgate/mcpgate/internal/netguard"
)

// oidcConnector federates login to an OpenID Connect provider as a
// confidential client, with PKCE and a nonce toward the IdP.
type oidcConnector struct {
	cfg    Config
	o      Options
	client *http.Client

	// provider is set once discovery succeeds; until then sign-ins get
	// ErrUnavailable and WatchDiscovery retries in the background, so
	// mcpgate starts, and reports not ready, while the IdP is down.
	provider atomic.Pointer[oidc.Provider]
	lastErr  atomic.Pointer[error]
	flight   flight.Group[*oidc.Provider]
}

func newOIDC(cfg Config, o Options) (*oidcConnector, error) {
	if cfg.AllowPrivateIssuer {
		o.Logger.Warn("upstream IdP may use http and private or loopback addresses (allow_private_issuer); use only for local testing",
			"issuer", cfg.Issuer)
	}
	c := &oidcConnector{
		cfg:    cfg,
		o:      o,
		client: netguard.GuardedClient(o.HTTPClient, cfg.AllowPrivateIssuer, 15*time.Second),
	}
	c.flight.Timeout = 15 * time.Second
	notYet := errors.New("discovery not attempted yet")
	c.lastErr.Store(&notYet)
	return c, nil
}

func (c *oidcConnector) Type() string { return TypeOIDC }

func (c *oidcConnector) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, c.client)
}

// discover returns the IdP's provider, fetching its OIDC discovery
// document first if that has not succeeded yet. Concurrent callers share
// one attempt (flight): sign-ins that arrive meanwhile wait for its outcome
// (or their own request's end), so a down IdP sees one request at a time.
// The attempt is not bound to the request beyond its own timeout: its
// result serves every later sign-in.
func (c *oidcConnector) discover(ctx context.Context) (*oidc.Provider, error) {
	if p := c.provider.Load(); p != nil {
		return p, nil
	}
	p, err := c.flight.Do(ctx, "", func(dctx context.Context) (*oidc.Provider, error) {
		if p := c.provider.Load(); p != nil {
			return p, nil // found by the attempt that just ended
		}
		p, err := oidc.NewProvider(c.ctx(dctx), c.cfg.Issuer)
		if err != nil {
			err = fmt.Errorf("oidc discovery for %s: %w", c.cfg.Issuer, err)
			c.lastErr.Store(&err)
			return nil, err
		}
		c.provider.Store(p)
		return p, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, *c.lastErr.Load())
	}
	return p, nil
}

// Discover implements Watcher.
func (c *oidcConnector) Discover(ctx context.Context) error {
	_, err := c.discover(ctx)
	return err
}

// Ready implements Watcher: nil once the discovery document has been read.
func (c *oidcConnector) Ready() error {
	if c.provider.Load() != nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, *c.lastErr.Load())
}

// WatchDiscovery implements Watcher: it retries discovery with
// authn.RetryBackoff (250ms doubling to 2s) until it succeeds or ctx ends,
// so the first sign-in after the IdP comes back finds it discovered.
func (c *oidcConnector) WatchDiscovery(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for failures := 0; ; failures++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := c.Discover(ctx)
		if err == nil {
			if failures > 0 {
				c.o.Logger.Info("upstream identity provider reachable again", "issuer", c.cfg.Issuer)
			}
			return
		}
		if failures == 0 {
			c.o.Logger.Warn("upstream identity provider unreachable: sign-ins get 503 until it is; retrying", "issuer", c.cfg.Issuer, "err", err)
		}
		t.Reset(authn.RetryBackoff(failures + 1))
	}
}

func (c *oidcConnector) oauth2Config(p *oidc.Provider) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     c.cfg.ClientID,
		ClientSecret: c.cfg.ClientSecret,
		Endpoint:     p.Endpoint(),
		RedirectURL:  c.o.RedirectURL,
		Scopes:       c.cfg.Scopes,
	}
}

func (c *oidcConnector) AuthCodeURL(ctx context.Context, state, nonce, verifier string) (string, error) {
	p, err := c.discover(ctx)
	if err != nil {
		return "", err
	}
	return c.oauth2Config(p).AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), nil
}

func (c *oidcConnector) HandleCallback(ctx context.Context, q url.Values, nonce, verifier string) (*Identity, *Tokens, error) {
	if code := q.Get("error"); code != "" {
		return nil, nil, &CallbackError{Code: code, Description: q.Get("error_description")}
	}
	// RFC 9207 §2.4: when the IdP names itself, it must be the one we sent
	// the user to (mix-up defence).
	if iss := q.Get("iss"); iss != "" && iss != c.cfg.Issuer {
		return nil, nil, fmt.Errorf("callback iss %q does not match the configured issuer", iss)
	}
	code := q.Get("code")
	if code == "" {
		return nil, nil, errors.New("callback without code")
	}
	p, err := c.discover(ctx)
	if err != nil {
		return nil, nil, err
	}
	ctx = c.ctx(ctx)
	tok, err := c.oauth2Config(p).Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, nil, fmt.Errorf("code exchange: %w", err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return nil, nil, errors.New("token response has no id_token")
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: c.cfg.ClientID, Now: c.o.Now}).Verify(ctx, rawID)
	if err != nil {
		return nil, nil, fmt.Errorf("id_token: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 || nonce == "" {
		return nil, nil, errors.New("id_token nonce mismatch")
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return nil, nil, fmt.Errorf("id_token at_hash: %w", err)
		}
	}
	var idClaims map[string]any
	if err := idt.Claims(&idClaims); err != nil {
		return nil, nil, fmt.Errorf("id_token claims: %w", err)
	}
	uiClaims, err := c.userinfo(ctx, p, tok.AccessToken, idt.Subject)
	if err != nil {
		return nil, nil, err
	}
	id := c.identity(idt.Issuer, idt.Subject, idClaims, uiClaims, unverifiedJWTClaims(tok.AccessToken))
	if err := checkAllowed(&c.cfg, id); err != nil {
		return nil, nil, err
	}
	return id, &Tokens{
		AccessToken:  tok.AccessToken,
		TokenType:    tok.TokenType,
		RefreshToken: tok.RefreshToken,
		IDToken:      rawID,
		Expiry:       tok.Expiry,
	}, nil
}

// identity merges the id_token, userinfo and access-token claims: groups
// are unioned (IdPs put them in any of the three), other fields come from
// the first source that has them.
func (c *oidcConnector) identity(iss, sub string, id, ui, at map[string]any) *Identity {
	out := &Identity{Issuer: iss, Subject: sub}
	for _, src := range []map[string]any{id, ui, at} {
		if out.Username == "" {
			out.Username = stringAt(src, c.cfg.UsernameClaim)
		}
		if out.Name == "" {
			out.Name = stringAt(src, "name")
		}
	}
	// Email only from the OIDC sources, together with its own verification flag.
	for _, src := range []map[string]any{id, ui} {
		if e := stringAt(src, c.cfg.EmailClaim); e != "" {
			out.Email = e
			out.EmailVerified = boolAt(src, "email_verified") || c.cfg.InsecureSkipEmailVerified
			break
		}
	}
	out.Groups = mergeGroups(stringsAt(id, c.cfg.GroupsClaim), stringsAt(ui, c.cfg.GroupsClaim), stringsAt(at, c.cfg.GroupsClaim))
	return out
}

func (c *oidcConnector) Refresh(ctx context.Context, t *Tokens) (*Tokens, error) {
	if t.RefreshToken == "" {
		return nil, fmt.Errorf("%w: no refresh token", ErrRefreshRejected)
	}
	p, err := c.discover(ctx)
	if err != nil {
		return nil, err
	}
	// An expiry in the past forces the token source to refresh now.
	ts := c.oauth2Config(p).TokenSource(c.ctx(ctx), &oauth2.Token{RefreshToken: t.RefreshToken, Expiry: time.Unix(1, 0)})
	nt, err := ts.Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			return nil, fmt.Errorf("%w: %s", ErrRefreshRejected, re.ErrorCode)
		}
		return nil, fmt.Errorf("upstream refresh: %w", err)
	}
	out := &Tokens{
		AccessToken:  nt.AccessToken,
		TokenType:    nt.TokenType,
		RefreshToken: nt.RefreshToken, // x/oauth2 keeps the old one when the IdP does not rotate
		IDToken:      t.IDToken,
		Expiry:       nt.Expiry,
	}
	if rawID, ok := nt.Extra("id_token").(string); ok && rawID != "" {
		out.IDToken = rawID
	}
	return out, nil
}

// userinfo reads the claims of the userinfo endpoint with accessToken; nil
// when the IdP has no such endpoint. OIDC Core §5.3.2: they must describe
// subject.
func (c *oidcConnector) userinfo(ctx context.Context, p *oidc.Provider, accessToken, subject string) (map[string]any, error) {
	if p.UserInfoEndpoint() == "" {
		return nil, nil
	}
	ui, err := p.UserInfo(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: accessToken, TokenType: "Bearer"}))
	if err != nil {
		return nil, fmt.Errorf("userinfo: %w", err)
	}
	if ui.Subject != subject {
		return nil, fmt.Errorf("%w: userinfo subject does not match", ErrUserGone)
	}
	var claims map[string]any
	if err := ui.Claims(&claims); err != nil {
		return nil, fmt.Errorf("userinfo claims: %w", err)
	}
	return claims, nil
}

// Reidentify refreshes at the IdP and builds the identity again from what
// the IdP says now: the id_token of the refresh response (if it sent one),
// userinfo read with the new access token, and the access token's claims.
// Claims are never carried over from an earlier id_token, so a group the
// IdP took away is gone even when it sends no new id_token (an IdP that
// puts groups only in id_tokens and sends none on refresh loses them:
// fail closed).
//
// Without an upstream refresh token the session cannot be refreshed: until
// the access token expires its userinfo is read again (the grant itself
// ends then, see Tokens.SessionEnd); after that the session is over.
func (c *oidcConnector) Reidentify(ctx context.Context, prev *Identity, t *Tokens) (*Identity, *Tokens, error) {
	if prev == nil || prev.Issuer != c.cfg.Issuer || t == nil || t.AccessToken == "" {
		return nil, nil, ErrUserGone
	}
	cur := t
	var fresh *Tokens
	if t.RefreshToken != "" {
		nt, err := c.Refresh(ctx, t)
		if err != nil {
			return nil, nil, err
		}
		cur, fresh = nt, nt
	} else if !t.Expiry.IsZero() && !c.o.Now().Before(t.Expiry) {
		return nil, nil, fmt.Errorf("%w: no refresh token and the access token expired", ErrRefreshRejected)
	}
	id, err := c.reread(ctx, prev, t, cur)
	return id, fresh, err
}

// reread builds prev's identity from the tokens cur (the id_token only if
// it is not old's).
func (c *oidcConnector) reread(ctx context.Context, prev *Identity, old, cur *Tokens) (*Identity, error) {
	p, err := c.discover(ctx)
	if err != nil {
		return nil, err
	}
	ctx = c.ctx(ctx)
	var idClaims map[string]any
	if cur.IDToken != "" && cur.IDToken != old.IDToken {
		idt, err := p.Verifier(&oidc.Config{ClientID: c.cfg.ClientID, Now: c.o.Now}).Verify(ctx, cur.IDToken)
		if err != nil {
			return nil, fmt.Errorf("refreshed id_token: %w", err)
		}
		// OIDC Core §12.2: a refreshed id_token names the same user.
		if idt.Subject != prev.Subject {
			return nil, fmt.Errorf("%w: refreshed id_token names another subject", ErrUserGone)
		}
		if err := idt.Claims(&idClaims); err != nil {
			return nil, fmt.Errorf("refreshed id_token claims: %w", err)
		}
	}
	uiClaims, err := c.userinfo(ctx, p, cur.AccessToken, prev.Subject)
	if err != nil {
		return nil, err
	}
	id := c.identity(prev.Issuer, prev.Subject, idClaims, uiClaims, unverifiedJWTClaims(cur.AccessToken))
	if err := checkAllowed(&c.cfg, id); err != nil {
		return nil, err
	}
	return id, nil
}
