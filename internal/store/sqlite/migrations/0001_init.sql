-- Every caller-supplied key is stored as k = hex(sha256(key)) with the raw
-- value in a separate column, so long identifiers never become index keys.
-- Times are unix microseconds, 0 = unset. Lists are JSON arrays.

CREATE TABLE clients (
	k                          TEXT PRIMARY KEY,
	id                         TEXT NOT NULL,
	secret_hash                TEXT NOT NULL,
	name                       TEXT NOT NULL,
	redirect_uris              TEXT NOT NULL,
	grant_types                TEXT NOT NULL,
	response_types             TEXT NOT NULL,
	token_endpoint_auth_method TEXT NOT NULL,
	scope                      TEXT NOT NULL,
	application_type           TEXT NOT NULL,
	kind                       TEXT NOT NULL,
	registered_ip              TEXT NOT NULL,
	metadata                   BLOB,
	created_at                 INTEGER NOT NULL,
	expires_at                 INTEGER NOT NULL
);
CREATE INDEX clients_by_ip ON clients (registered_ip, created_at);
CREATE INDEX clients_by_expiry ON clients (expires_at) WHERE expires_at > 0;

CREATE TABLE auth_requests (
	k                     TEXT PRIMARY KEY,
	id                    TEXT NOT NULL,
	client_id             TEXT NOT NULL,
	redirect_uri          TEXT NOT NULL,
	state                 TEXT NOT NULL,
	resource              TEXT NOT NULL,
	scopes                TEXT NOT NULL,
	code_challenge        TEXT NOT NULL,
	code_challenge_method TEXT NOT NULL,
	upstream_state_k      TEXT, -- NULL once taken
	upstream_state_hash   TEXT NOT NULL,
	upstream_nonce        TEXT NOT NULL,
	upstream_verifier     BLOB,
	user_key              TEXT NOT NULL,
	identity              BLOB,
	upstream_tokens       BLOB,
	consent_csrf          TEXT NOT NULL,
	expires_at            INTEGER NOT NULL
);
CREATE INDEX auth_requests_by_upstream_state ON auth_requests (upstream_state_k) WHERE upstream_state_k IS NOT NULL;
CREATE INDEX auth_requests_by_expiry ON auth_requests (expires_at) WHERE expires_at > 0;

CREATE TABLE auth_codes (
	k               TEXT PRIMARY KEY,
	hash            TEXT NOT NULL,
	client_id       TEXT NOT NULL,
	redirect_uri    TEXT NOT NULL,
	resource        TEXT NOT NULL,
	user_key        TEXT NOT NULL,
	scopes          TEXT NOT NULL,
	code_challenge  TEXT NOT NULL,
	grant_id        TEXT NOT NULL,
	identity        BLOB,
	upstream_tokens BLOB,
	used            INTEGER NOT NULL DEFAULT 0,
	expires_at      INTEGER NOT NULL
);
CREATE INDEX auth_codes_by_expiry ON auth_codes (expires_at) WHERE expires_at > 0;

CREATE TABLE grants (
	k               TEXT PRIMARY KEY,
	id              TEXT NOT NULL,
	client_id       TEXT NOT NULL,
	user_key        TEXT NOT NULL,
	resource        TEXT NOT NULL,
	scopes          TEXT NOT NULL,
	identity        BLOB,
	upstream_tokens BLOB,
	upstream_expiry INTEGER NOT NULL,
	version         INTEGER NOT NULL,
	created_at      INTEGER NOT NULL,
	expires_at      INTEGER NOT NULL,
	revoked         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX grants_by_expiry ON grants (expires_at) WHERE expires_at > 0;

CREATE TABLE refresh_tokens (
	k           TEXT PRIMARY KEY,
	hash        TEXT NOT NULL,
	grant_k     TEXT NOT NULL REFERENCES grants (k) ON DELETE CASCADE,
	grant_id    TEXT NOT NULL,
	client_id   TEXT NOT NULL,
	created_at  INTEGER NOT NULL,
	expires_at  INTEGER NOT NULL,
	rotated_at  INTEGER NOT NULL DEFAULT 0,
	replaced_by TEXT NOT NULL DEFAULT ''
);
CREATE INDEX refresh_tokens_by_grant ON refresh_tokens (grant_k);
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at) WHERE expires_at > 0;

CREATE TABLE consents (
	user_k     TEXT NOT NULL,
	client_k   TEXT NOT NULL,
	user_key   TEXT NOT NULL,
	client_id  TEXT NOT NULL,
	scopes     TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (user_k, client_k)
);

CREATE TABLE signing_keys (
	k          TEXT PRIMARY KEY,
	id         TEXT NOT NULL,
	algorithm  TEXT NOT NULL,
	private    BLOB,
	public     BLOB,
	status     TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	retire_at  INTEGER NOT NULL
);
