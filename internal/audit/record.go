package audit

import (
	"encoding/json"
	"math"
	"time"
)

// Decision is the authorization outcome recorded for a request.
type Decision string

// Decisions.
const (
	DecisionAllow Decision = "allow"
	DecisionDeny  Decision = "deny"
	// DecisionWouldDeny is a denial that was not enforced (dry-run / audit-only policy mode).
	DecisionWouldDeny Decision = "would_deny"
)

// Events. The first three keep the vocabulary of the seed gateway's audit log.
const (
	EventPermissionDenied = "PERMISSION_DENIED"
	EventAuthFailed       = "AUTH_FAILED"
	EventRateLimited      = "RATE_LIMITED"
	// EventCheckpoint is written by the Logger itself: at start ("start"),
	// after every CheckpointEvery records or CheckpointInterval ("interval"),
	// as the first record of a rotated file ("rotate") and at Close
	// ("shutdown"). Count is the number of records this process has written,
	// the checkpoint included.
	EventCheckpoint = "CHECKPOINT"
	// EventForward is the decision record of a request the gateway forwards
	// to its backend, written before forwarding; the request's outcome record
	// (status, duration, same request_id) follows once the backend answered.
	// A single list request's FORWARD record is written with its outcome
	// record, in one append after the answer.
	EventForward = "FORWARD"
	// EventRecordsLost is written by the Logger before the first record that
	// succeeds after write failures (on_error: continue); Count is how many
	// records were lost.
	EventRecordsLost = "RECORDS_LOST"
	// EventBackendCredential is one request of the gateway to a security
	// token service for a backend's credential (credential types
	// token_exchange and client_credentials): Method is the flow, Backend
	// the backend, Resource its audience, Result and Reason the outcome.
	// Cache hits are not recorded; token values never are.
	EventBackendCredential = "BACKEND_CREDENTIAL"
	// Linked accounts (credential type linked_token): a user links an
	// account at a provider besides the sign-in IdP. Method is
	// "link/<provider>", SessionID the grant the link belongs to; Reason
	// says why a link failed or was dropped. Token values are never written.
	EventLinkStarted   = "LINK_STARTED"   // a tool call needed a link: the client got the link URL
	EventLinkCompleted = "LINK_COMPLETED" // the provider's token is stored with the grant
	EventLinkFailed    = "LINK_FAILED"    // the user declined, the provider refused, a state was replayed or came from another browser, or a refresh was refused (the link is dropped)
)

// Authorization-server events: records with Source SourceAuthServer, written
// by the built-in authorization server (internal/authserver) into the same
// chain as the gateway's. docs/configuration.md lists what each one carries.
const (
	EventASClientRegistered          = "AS_CLIENT_REGISTERED"           // RFC 7591 dynamic registration
	EventASClientRegistrationRefused = "AS_CLIENT_REGISTRATION_REFUSED" // closed, bad initial access token, over the per-IP limit, invalid metadata
	EventASClientMetadataFetched     = "AS_CLIENT_METADATA_FETCHED"     // first use of a client ID metadata document client (and each re-fetch after its cache lifetime)
	EventASClientMetadataRejected    = "AS_CLIENT_METADATA_REJECTED"    // a client ID metadata document that could not be fetched or used
	EventASLoginSuccess              = "AS_LOGIN_SUCCESS"
	EventASLoginFailed               = "AS_LOGIN_FAILED"
	EventASConsentGiven              = "AS_CONSENT_GIVEN"
	EventASConsentRefused            = "AS_CONSENT_REFUSED"
	EventASCodeIssued                = "AS_CODE_ISSUED"
	EventASCodeRedeemed              = "AS_CODE_REDEEMED"
	EventASCodeReplayed              = "AS_CODE_REPLAYED" // the grant issued from the code is revoked
	EventASTokenIssued               = "AS_TOKEN_ISSUED"
	EventASTokenRefreshed            = "AS_TOKEN_REFRESHED"
	EventASTokenRefused              = "AS_TOKEN_REFUSED"
	EventASRefreshTokenReused        = "AS_REFRESH_TOKEN_REUSED" // the token family (grant) is revoked
	EventASTokenRevoked              = "AS_TOKEN_REVOKED"
	EventASRevocationRefused         = "AS_REVOCATION_REFUSED"
	EventASTokenIntrospected         = "AS_TOKEN_INTROSPECTED"
	EventASIntrospectionRefused      = "AS_INTROSPECTION_REFUSED"
	EventASSigningKeyRotated         = "AS_SIGNING_KEY_ROTATED"
	EventASUpstreamRefreshFailed     = "AS_UPSTREAM_REFRESH_FAILED"
	EventASRateLimited               = "AS_RATE_LIMITED"        // per-address limit, pending-request cap or a username's password backoff
	EventASSigningKeyRevoked         = "AS_SIGNING_KEY_REVOKED" // a signing key left the store before its time (`mcpgate keys revoke`)
)

// Internal token endpoint events: records with Source SourceInternal, one
// per retrieval of a stored upstream token by a backend over mTLS
// (internal/tokenendpoint), and one per client certificate refused in the
// TLS handshake. They never carry a token.
const (
	EventInternalTokenRetrieved = "INTERNAL_TOKEN_RETRIEVED"
	EventInternalTokenRefused   = "INTERNAL_TOKEN_REFUSED"
)

// Results, as in the seed gateway's audit log.
const (
	ResultSuccess = "success"
	ResultError   = "error"
)

// Sources.
const (
	// SourceMCP is the default Source of a record.
	SourceMCP = "mcp"
	// SourceAuthServer marks records of the built-in authorization server.
	SourceAuthServer = "authserver"
	// SourceInternal marks records of the internal token endpoint.
	SourceInternal = "internal"
)

// sourceAudit marks records the Logger writes about itself.
const sourceAudit = "audit"

// timeLayout is RFC 3339 in UTC with a fixed microsecond fraction.
const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

// Record is one audit event, written as one JSON line. Zero fields are
// omitted. Args holds the raw JSON arguments of the call; the Logger redacts
// and bounds them before writing, so callers pass them unmodified.
//
// Seq, Prev and Hash are the hash-chain fields. The Logger sets them on the
// written line and ignores them on input; they exist here so that a line can
// be decoded back into a Record.
type Record struct {
	Time time.Time `json:"time"` // set to now when zero
	// Replica names the gateway process that wrote the record (audit.replica);
	// the Logger sets it. Each replica keeps its own chain.
	Replica   string `json:"replica,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	Source    string `json:"source,omitempty"` // SourceMCP when empty
	ClientIP  string `json:"client_ip,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`

	// Identity: always issuer and subject, never only a display name
	// (identity.Principal: Issuer, Subject, DisplayName(), Username, Email,
	// Groups, ClientID, TokenID, SessionID).
	Issuer    string   `json:"issuer,omitempty"`
	Subject   string   `json:"subject,omitempty"`
	User      string   `json:"user,omitempty"` // display name (seed 000's "user")
	Username  string   `json:"username,omitempty"`
	Email     string   `json:"email,omitempty"`
	Groups    []string `json:"groups,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	TokenID   string   `json:"token_id,omitempty"`
	SessionID string   `json:"session_id,omitempty"` // token session (tsid) of tokens from the built-in authorization server

	MCPSessionID string `json:"mcp_session_id,omitempty"` // Mcp-Session-Id of the request
	TraceID      string `json:"trace_id,omitempty"`       // W3C trace id of the request's span (only when tracing is on)

	Method   string          `json:"method,omitempty"`   // MCP method, e.g. tools/call
	Tool     string          `json:"tool,omitempty"`     // tool or prompt name
	Resource string          `json:"resource,omitempty"` // resource URI (authorization server: the RFC 8707 resource of the grant)
	Scope    string          `json:"scope,omitempty"`    // authorization server: scopes requested, consented or granted
	Args     json.RawMessage `json:"args,omitempty"`

	Decision           Decision `json:"decision,omitempty"`
	Rule               string   `json:"rule,omitempty"`
	Reason             string   `json:"reason,omitempty"`
	RequiredPermission string   `json:"required_permission,omitempty"`
	Event              string   `json:"event,omitempty"`

	Status     int     `json:"status,omitempty"`    // HTTP status
	RPCError   int     `json:"rpc_error,omitempty"` // JSON-RPC error code
	DurationMS float64 `json:"duration_ms,omitempty"`
	Backend    string  `json:"backend,omitempty"`
	Workload   string  `json:"workload,omitempty"` // internal token endpoint: the caller's SPIFFE ID (client certificate)
	Result     string  `json:"result,omitempty"`   // ResultSuccess or ResultError
	Count      uint64  `json:"count,omitempty"`    // CHECKPOINT and RECORDS_LOST only

	Seq  uint64 `json:"seq,omitempty"`
	Prev string `json:"prev,omitempty"`
	Hash string `json:"hash,omitempty"`
}

// Millis converts d to milliseconds rounded to the microsecond, for DurationMS.
func Millis(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}

// MarshalJSON writes Time as RFC 3339 UTC with microseconds, then the other
// fields in declaration order (see appendJSON).
func (r Record) MarshalJSON() ([]byte, error) {
	return r.appendJSON(make([]byte, 0, 512+len(r.Args)), false)
}
