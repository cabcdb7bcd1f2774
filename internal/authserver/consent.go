package authserver

import (
	"encoding/base64"
	"errors"
	"net/http"
	"slices"

	"github.com/mcpgate/mcpgate/internal/store"
)

// consentCookie records, in one browser, which clients the user approved
// before being sent to the upstream IdP (whose identity we do not know yet).
// It is sealed (AES-GCM: confidential and tamper-proof) and keyed by
// client_id, so an approval for one client never covers another.
type consentCookie struct {
	Clients map[string]consentEntry `json:"c"`
}

type consentEntry struct {
	Scopes  []string `json:"s"`
	Expires int64    `json:"e"` // unix seconds
}

const maxConsentCookieBytes = 3000

func (s *Server) readConsentCookie(r *http.Request) consentCookie {
	cc := consentCookie{Clients: map[string]consentEntry{}}
	c, err := r.Cookie(s.cookieName("consent"))
	if err != nil {
		return cc
	}
	var got consentCookie
	if s.openCookie(c.Value, aad("consent-cookie", ""), &got) != nil || got.Clients == nil {
		return cc
	}
	now := s.now().Unix()
	for id, e := range got.Clients {
		if e.Expires > now {
			cc.Clients[id] = e
		}
	}
	return cc
}

// browserConsented reports whether this browser approved the client for
// at least the given scopes.
func (s *Server) browserConsented(r *http.Request, clientID string, scopes []string) bool {
	e, ok := s.readConsentCookie(r).Clients[clientID]
	return ok && subset(scopes, e.Scopes)
}

func (s *Server) rememberBrowserConsent(w http.ResponseWriter, r *http.Request, clientID string, scopes []string) {
	cc := s.readConsentCookie(r)
	e := cc.Clients[clientID]
	e.Scopes = union(e.Scopes, scopes)
	e.Expires = s.now().Add(s.cfg.ConsentTTL).Unix()
	cc.Clients[clientID] = e
	for {
		v, err := s.sealCookie(&cc, aad("consent-cookie", ""))
		if err != nil {
			s.log.ErrorContext(r.Context(), "seal consent cookie", "err", err)
			return
		}
		if len(v) <= maxConsentCookieBytes || len(cc.Clients) <= 1 {
			if len(v) <= maxConsentCookieBytes {
				s.setCookie(w, "consent", v, int(s.cfg.ConsentTTL.Seconds()))
			}
			return
		}
		// Too big: forget the approval that expires first (never the new one).
		oldest := ""
		for id, e := range cc.Clients {
			if id != clientID && (oldest == "" || e.Expires < cc.Clients[oldest].Expires) {
				oldest = id
			}
		}
		delete(cc.Clients, oldest)
	}
}

// consentCovers reports whether the user already approved the client for
// the scopes (the per-user registry the MCP security best practices ask for).
func (s *Server) consentCovers(r *http.Request, userKey, clientID string, scopes []string) (bool, error) {
	c, err := s.st.GetConsent(r.Context(), userKey, clientID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return subset(scopes, c.Scopes), nil
}

func (s *Server) saveConsent(r *http.Request, userKey, clientID string, scopes []string) error {
	prev, err := s.st.GetConsent(r.Context(), userKey, clientID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		prev = &store.Consent{}
	case err != nil:
		return err
	}
	return s.st.SaveConsent(r.Context(), &store.Consent{
		UserKey:   userKey,
		ClientID:  clientID,
		Scopes:    union(prev.Scopes, scopes),
		CreatedAt: s.now(),
	})
}

// sealCookie seals v as a cookie value (AES-GCM: confidential and
// tamper-proof; ad binds it to its purpose).
func (s *Server) sealCookie(v any, ad []byte) (string, error) {
	sealed, err := s.sealJSON(v, ad)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(sealed), nil
}

// openCookie is the inverse of sealCookie.
func (s *Server) openCookie(value string, ad []byte, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil {
		return err
	}
	return s.openJSON(raw, ad, v)
}

func subset(sub, super []string) bool {
	for _, s := range sub {
		if !slices.Contains(super, s) {
			return false
		}
	}
	return true
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
