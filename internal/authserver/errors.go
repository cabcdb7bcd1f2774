package authserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// OAuth error codes (RFC 6749 §4.1.2.1, §5.2; RFC 7591 §3.2.2; RFC 8707 §2).
const (
	errInvalidRequest          = "invalid_request"
	errInvalidClient           = "invalid_client"
	errInvalidGrant            = "invalid_grant"
	errUnauthorizedClient      = "unauthorized_client"
	errUnsupportedGrantType    = "unsupported_grant_type"
	errUnsupportedResponseType = "unsupported_response_type"
	errInvalidScope            = "invalid_scope"
	errInvalidTarget           = "invalid_target"
	errAccessDenied            = "access_denied"
	errServerError             = "server_error"
	errTemporarilyUnavailable  = "temporarily_unavailable"
	errInvalidRedirectURI      = "invalid_redirect_uri"
	errInvalidClientMetadata   = "invalid_client_metadata"
	errUnsupportedTokenType    = "unsupported_token_type"
)

// oauthError is an OAuth error as a value: handlers return it and one
// function renders it, so every endpoint answers the same way. Description
// is shown to clients and must never carry internal detail or secrets.
type oauthError struct {
	Code        string
	Description string
	Status      int
	// basicChallenge asks for HTTP Basic credentials (RFC 6749 §5.2: a 401
	// invalid_client when the client tried Basic authentication).
	basicChallenge bool
}

func (e *oauthError) Error() string {
	if e.Description == "" {
		return e.Code
	}
	return e.Code + ": " + e.Description
}

func newError(code string, status int, format string, args ...any) *oauthError {
	return &oauthError{Code: code, Description: fmt.Sprintf(format, args...), Status: status}
}

func invalidRequest(format string, args ...any) *oauthError {
	return newError(errInvalidRequest, http.StatusBadRequest, format, args...)
}

func invalidGrant(format string, args ...any) *oauthError {
	return newError(errInvalidGrant, http.StatusBadRequest, format, args...)
}

var errServer = &oauthError{Code: errServerError, Description: "internal error", Status: http.StatusInternalServerError}

// writeJSON writes v as a JSON response that must not be cached (RFC 6749 §5.1).
func writeJSON(w http.ResponseWriter, status int, v any) {
	writeJSONCache(w, status, v, "no-store")
}

func writeJSONCache(w http.ResponseWriter, status int, v any, cacheControl string) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":"server_error"}`)
	}
	writeJSONBody(w, status, body, cacheControl)
}

// writeJSONBody writes body, a JSON document, with the headers of
// writeJSONCache.
func writeJSONBody(w http.ResponseWriter, status int, body []byte, cacheControl string) {
	h := w.Header()
	h["Content-Type"] = headerJSON
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if cacheControl == "no-store" {
		h["Cache-Control"], h["Pragma"] = headerNoStore, headerNoCache
	} else {
		h.Set("Cache-Control", cacheControl)
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// Header values every JSON answer carries, shared: http.Header.Set would
// allocate a one-element slice per response. Nothing writes into a header
// value slice (Set replaces it, Add appends to a copy: len == cap).
var (
	headerJSON    = []string{"application/json"}
	headerNoStore = []string{"no-store"}
	headerNoCache = []string{"no-cache"}
	// headerAnyOrigin is CORS's "*" (see cors).
	headerAnyOrigin = []string{"*"}
)

// writeError renders err as an OAuth JSON error. Errors that are not
// *oauthError are internal: logged in full, reported as server_error.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var oe *oauthError
	if !errors.As(err, &oe) {
		s.log.ErrorContext(r.Context(), "authorization server error", "path", r.URL.Path, "err", err)
		oe = errServer
	} else if oe.Status >= 500 {
		s.log.ErrorContext(r.Context(), "authorization server error", "path", r.URL.Path, "err", oe.Error())
	} else {
		s.log.DebugContext(r.Context(), "oauth error", "path", r.URL.Path, "error", oe.Code, "description", oe.Description)
	}
	if oe.basicChallenge {
		w.Header().Set("WWW-Authenticate", `Basic realm="mcpgate", charset="UTF-8"`)
	}
	writeJSON(w, oe.Status, struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{oe.Code, oe.Description})
}
