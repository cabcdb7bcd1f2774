// Package audit writes one JSON line per MCP request decision, and per
// event of the built-in authorization server (Source "authserver", the
// EventAS* events), to stdout or to a size-rotated file, hash-chained so that
// edits can be detected by `mcpgate audit verify`.
//
// The gateway calls Logger.Log from its outermost middleware, so requests
// refused with 401, 403 or 429, backend errors and denials are all recorded.
// Records are never dropped silently: a write failure either fails the
// request (on_error: fail, the default) or is counted in
// mcpgate_audit_write_failures_total, logged, and followed by a RECORDS_LOST
// record (on_error: continue). See Config for the fsync trade-off.
//
// Arguments are redacted by Redactor before they are written, and bounded to
// max_args_bytes.
//
// The chain: every line carries seq (1, 2, …), prev (the previous line's
// hash) and hash = SHA-256(prev ‖ line without its hash member), or
// HMAC-SHA256 under hmac_key_env. The chain continues across restarts (the
// tail of the existing file is read at start) and across rotation (the first
// record of a new file is a "rotate" checkpoint linked to the old file's last
// hash). See verify.go for exactly what verification can and cannot detect.
package audit
