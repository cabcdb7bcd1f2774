package mcp

import (
	"encoding/json"
	"net/http"
)

// nullID is the id of an error that answers no identifiable request.
var nullID = json.RawMessage("null")

// WriteError answers an HTTP request with status and a JSON-RPC error body,
// encoded by ErrorResponse. An empty or invalid id is written as null:
// JSON-RPC 2.0 §5 wants Null when the request's id could not be determined.
// The answer is not cacheable: it speaks of one request.
func WriteError(w http.ResponseWriter, status int, id json.RawMessage, code int, message string) {
	WriteErrorData(w, status, id, code, message, nil)
}

// WriteErrorData is WriteError with the error's data member (omitted when
// nil or when it does not marshal).
func WriteErrorData(w http.ResponseWriter, status int, id json.RawMessage, code int, message string, data any) {
	if len(id) == 0 || !json.Valid(id) {
		id = nullID
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(ErrorResponse(id, code, message, data))
}
