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
// It is sealed (AES-GCM: confidential and tamper-proof) and keyed like the
// stored consents (consentKey), so an approval for one client, resource or
// redirect URI never covers another.
type consentCookie struct {
	Clients map[string]consentEntry `json:"c"` // by store.HashKey(consentKey)
}

// consentKey is what a consent is bound to: the client, the resource
// (RFC 8707) the tokens will be for, and the redirect URI the code goes
// to. It is the ClientID under which consents are stored (the store keeps
// it opaque; resource and redirect URI are validated URIs without line
// breaks, so the key is unambiguous). The scopes are checked against the
// stored set, and the consent expires consent_ttl after it was given.
func consentKey(ar *store.AuthRequest) string {
	return ar.ClientID + "\n" + ar.Resource + "\n" + ar.RedirectURI
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

// browserConsented reports whether this browser approved the consent key
// for at least the given scopes.
func (s *Server) browserConsented(r *http.Request, key string, scopes []string) bool {
	e, ok := s.readConsentCookie(r).Clients[store.HashKey(key)]
	return ok && subset(scopes, e.Scopes)
}

func (s *Server) rememberBrowserConsent(w http.ResponseWriter, r *http.Request, key string, scopes []string) {
	key = store.HashKey(key) // bounded size per entry
	cc := s.readConsentCookie(r)
	e := cc.Clients[key]
	e.Scopes = union(e.Scopes, scopes)
	e.Expires = s.now().Add(s.cfg.ConsentTTL).Unix()
	cc.Clients[key] = e
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
			if id != key && (oldest == "" || e.Expires < cc.Clients[oldest].Expires) {
				oldest = id
			}
		}
		delete(cc.Clients, oldest)
	}
}

// consentCovers reports whether the user already approved the consent key
// (client, resource, redirect URI) for the scopes, within consent_ttl (the
// per-user registry the MCP security best practices ask for).
func (s *Server) consentCovers(r *http.Request, userKey, key string, scopes []string) (bool, error) {
	c, err := s.getConsent(r, userKey, key)
	if c == nil || err != nil {
		return false, err
	}
	return subset(scopes, c.Scopes), nil
}

// getConsent returns the user's unexpired consent for key, or nil.
func (s *Server) getConsent(r *http.Request, userKey, key string) (*store.Consent, error) {
	c, err := s.st.GetConsent(r.Context(), userKey, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !s.now().Before(c.CreatedAt.Add(s.cfg.ConsentTTL)) {
		return nil, nil // expired: ask again
	}
	return c, nil
}

// saveConsent records the approval, adding to an unexpired earlier one's
// scopes; approving again starts a new consent_ttl.
func (s *Server) saveConsent(r *http.Request, userKey, key string, scopes []string) error {
	prev, err := s.getConsent(r, userKey, key)
	if err != nil {
		return err
	}
	if prev == nil {
		prev = &store.Consent{}
	}
	return s.st.SaveConsent(r.Context(), &store.Consent{
		UserKey:   userKey,
		ClientID:  key,
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
