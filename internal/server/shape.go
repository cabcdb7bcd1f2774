package server

import (
	"mime"
	"net/http"
	"strings"
)

// methodOverrideHeaders would let a client make a backend (or a framework
// in front of it) see another method than the one mcpgate authorized.
var methodOverrideHeaders = []string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}

// refusedShape names what makes a request one the gateway does not forward,
// whatever its credentials, or returns "":
//   - Upgrade (RFC 9110 §7.8): a switched protocol would tunnel messages no
//     policy decides and no audit record covers;
//   - method-override headers: the backend must act on the method that was
//     authorized;
//   - a body on GET or DELETE (RFC 9110 §9.3.1, §9.3.5: no defined
//     semantics): it is not decoded, so it must not reach a backend that
//     might read it. A length of -1 (chunked, or an HTTP/2 stream left
//     open) may carry one, so it is refused too.
func refusedShape(r *http.Request) string {
	if _, ok := r.Header["Upgrade"]; ok {
		return "protocol upgrades are not supported"
	}
	for _, h := range methodOverrideHeaders {
		if _, ok := r.Header[h]; ok {
			return "method override headers are not supported"
		}
	}
	if (r.Method == http.MethodGet || r.Method == http.MethodDelete) && r.ContentLength != 0 {
		return r.Method + " must not have a body"
	}
	return ""
}

// isJSON reports whether the request's one Content-Type is application/json
// (RFC 8259 §11; the type compared case-insensitively, RFC 9110 §8.3.1).
// Parameters are allowed, but a charset other than UTF-8 is refused: JSON
// exchanged between systems is UTF-8 (RFC 8259 §8.1), and the decoder reads
// nothing else.
func isJSON(h http.Header) bool {
	v := h["Content-Type"]
	if len(v) != 1 {
		return false
	}
	if strings.EqualFold(v[0], "application/json") {
		return true // what the official SDKs send: no parsing, no allocation
	}
	mt, params, err := mime.ParseMediaType(v[0])
	if err != nil || mt != "application/json" {
		return false
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return false
	}
	return true
}
