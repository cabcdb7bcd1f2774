-- Every caller-supplied key is stored as k = hex(sha256(key)) with the raw
-- value in a separate column, so long identifiers never become index keys
-- (btree entries are limited to about 2.7 kB). NULL times mean "unset".

CREATE TABLE clients (
	k                          text PRIMARY KEY,
	id                         text NOT NULL,
	secret_hash                text NOT NULL,
	name                       text NOT NULL,
	redirect_uris              text[] NOT NULL,
	grant_types                text[] NOT NULL,
	response_types             text[] NOT NULL,
	token_endpoint_auth_method text NOT NULL,
	scope                      text NOT NULL,
	application_type           text NOT NULL,
	kind                       text NOT NULL,
	registered_ip              text NOT NULL,
	metadata                   bytea,
	created_at                 timestamptz,
	expires_at                 timestamptz
);
CREATE INDEX clients_by_ip ON clients (registered_ip, created_at);
CREATE INDEX clients_by_expiry ON clients (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE auth_requests (
	k                     text PRIMARY KEY,
	id                    text NOT NULL,
	client_id             text NOT NULL,
	redirect_uri          text NOT NULL,
	state                 text NOT NULL,
	resource              text NOT NULL,
	scopes                text[] NOT NULL,
	code_challenge        text NOT NULL,
	code_challenge_method text NOT NULL,
	upstream_state_k      text, -- NULL once taken
	upstream_state_hash   text NOT NULL,
	upstream_nonce        text NOT NULL,
	upstream_verifier     bytea,
	user_key              text NOT NULL,
	identity              bytea,
	upstream_tokens       bytea,
	consent_csrf          text NOT NULL,
	expires_at            timestamptz
);
CREATE INDEX auth_requests_by_upstream_state ON auth_requests (upstream_state_k) WHERE upstream_state_k IS NOT NULL;
CREATE INDEX auth_requests_by_expiry ON auth_requests (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE auth_codes (
	k               text PRIMARY KEY,
	hash            text NOT NULL,
	client_id       text NOT NULL,
	redirect_uri    text NOT NULL,
	resource        text NOT NULL,
	user_key        text NOT NULL,
	scopes          text[] NOT NULL,
	code_challenge  text NOT NULL,
	grant_id        text NOT NULL,
	identity        bytea,
	upstream_tokens bytea,
	used            boolean NOT NULL DEFAULT false,
	expires_at      timestamptz
);
CREATE INDEX auth_codes_by_expiry ON auth_codes (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE grants (
	k               text PRIMARY KEY,
	id              text NOT NULL,
	client_id       text NOT NULL,
	user_key        text NOT NULL,
	resource        text NOT NULL,
	scopes          text[] NOT NULL,
	identity        bytea,
	upstream_tokens bytea,
	upstream_expiry timestamptz,
	version         bigint NOT NULL,
	created_at      timestamptz,
	expires_at      timestamptz,
	revoked         boolean NOT NULL DEFAULT false
);
CREATE INDEX grants_by_expiry ON grants (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE refresh_tokens (
	k           text PRIMARY KEY,
	hash        text NOT NULL,
	grant_k     text NOT NULL REFERENCES grants (k) ON DELETE CASCADE,
	grant_id    text NOT NULL,
	client_id   text NOT NULL,
	created_at  timestamptz,
	expires_at  timestamptz,
	rotated_at  timestamptz,
	replaced_by text NOT NULL DEFAULT ''
);
CREATE INDEX refresh_tokens_by_grant ON refresh_tokens (grant_k);
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE consents (
	user_k     text NOT NULL,
	client_k   text NOT NULL,
	user_key   text NOT NULL,
	client_id  text NOT NULL,
	scopes     text[] NOT NULL,
	created_at timestamptz,
	PRIMARY KEY (user_k, client_k)
);

CREATE TABLE signing_keys (
	k          text PRIMARY KEY,
	id         text NOT NULL,
	algorithm  text NOT NULL,
	private    bytea,
	public     bytea,
	status     text NOT NULL,
	created_at timestamptz,
	retire_at  timestamptz
);
