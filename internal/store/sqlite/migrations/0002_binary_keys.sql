-- Keys are the 32 bytes of SHA-256 (BLOB) instead of their 64 hex
-- characters: every index entry and every row is 32+ bytes shorter, so more
-- entries fit a page, the b-trees are shallower and split less often
-- (issue 15: WAL frames per grant, refresh at 100k grants).
--
-- A refresh token references its grant by the grant's row number
-- (grants.n, an alias of the rowid) instead of a second 64-character key
-- and the grant's ID: refresh_tokens_by_grant holds small integers, the
-- first token of a new grant is appended at its end, and reading a token
-- with its grant follows the rowid. The grant's ID is read from grants.
--
-- Tables are rebuilt (SQLite cannot change a column's type); rows keep
-- their order. Dropping a table drops its indexes, so the names are reused.

CREATE TABLE clients_new (
	k                          BLOB PRIMARY KEY,
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
INSERT INTO clients_new SELECT unhex(k), id, secret_hash, name, redirect_uris, grant_types, response_types,
	token_endpoint_auth_method, scope, application_type, kind, registered_ip, metadata, created_at, expires_at
	FROM clients ORDER BY rowid;
DROP TABLE clients;
ALTER TABLE clients_new RENAME TO clients;
CREATE INDEX clients_by_ip ON clients (registered_ip, created_at);
CREATE INDEX clients_by_expiry ON clients (expires_at) WHERE expires_at > 0;

CREATE TABLE auth_requests_new (
	k                     BLOB PRIMARY KEY,
	id                    TEXT NOT NULL,
	client_id             TEXT NOT NULL,
	redirect_uri          TEXT NOT NULL,
	state                 TEXT NOT NULL,
	resource              TEXT NOT NULL,
	scopes                TEXT NOT NULL,
	code_challenge        TEXT NOT NULL,
	code_challenge_method TEXT NOT NULL,
	upstream_state_k      BLOB, -- NULL once taken
	upstream_state_hash   TEXT NOT NULL,
	upstream_nonce        TEXT NOT NULL,
	upstream_verifier     BLOB,
	user_key              TEXT NOT NULL,
	identity              BLOB,
	upstream_tokens       BLOB,
	consent_csrf          TEXT NOT NULL,
	expires_at            INTEGER NOT NULL
);
INSERT INTO auth_requests_new SELECT unhex(k), id, client_id, redirect_uri, state, resource, scopes, code_challenge,
	code_challenge_method, unhex(upstream_state_k), upstream_state_hash, upstream_nonce, upstream_verifier, user_key,
	identity, upstream_tokens, consent_csrf, expires_at
	FROM auth_requests ORDER BY rowid;
DROP TABLE auth_requests;
ALTER TABLE auth_requests_new RENAME TO auth_requests;
CREATE INDEX auth_requests_by_upstream_state ON auth_requests (upstream_state_k) WHERE upstream_state_k IS NOT NULL;
CREATE INDEX auth_requests_by_expiry ON auth_requests (expires_at) WHERE expires_at > 0;

CREATE TABLE auth_codes_new (
	k               BLOB PRIMARY KEY,
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
INSERT INTO auth_codes_new SELECT unhex(k), hash, client_id, redirect_uri, resource, user_key, scopes, code_challenge,
	grant_id, identity, upstream_tokens, used, expires_at
	FROM auth_codes ORDER BY rowid;
DROP TABLE auth_codes;
ALTER TABLE auth_codes_new RENAME TO auth_codes;
CREATE INDEX auth_codes_by_expiry ON auth_codes (expires_at) WHERE expires_at > 0;

CREATE TABLE grants_new (
	n               INTEGER PRIMARY KEY, -- the rowid: what refresh tokens reference
	k               BLOB NOT NULL UNIQUE,
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
INSERT INTO grants_new SELECT rowid, unhex(k), id, client_id, user_key, resource, scopes, identity, upstream_tokens,
	upstream_expiry, version, created_at, expires_at, revoked
	FROM grants ORDER BY rowid;

CREATE TABLE refresh_tokens_new (
	k           BLOB PRIMARY KEY,
	hash        TEXT NOT NULL,
	grant_n     INTEGER NOT NULL REFERENCES grants_new (n) ON DELETE CASCADE,
	client_id   TEXT NOT NULL,
	created_at  INTEGER NOT NULL,
	expires_at  INTEGER NOT NULL,
	rotated_at  INTEGER NOT NULL DEFAULT 0,
	replaced_by TEXT NOT NULL DEFAULT ''
);
INSERT INTO refresh_tokens_new SELECT unhex(t.k), t.hash, g.rowid, t.client_id, t.created_at, t.expires_at, t.rotated_at,
	t.replaced_by
	FROM refresh_tokens t JOIN grants g ON g.k = t.grant_k ORDER BY t.rowid;

-- The tokens first: dropping grants deletes its rows, which would cascade.
DROP TABLE refresh_tokens;
DROP TABLE grants;
ALTER TABLE grants_new RENAME TO grants; -- refresh_tokens_new's reference follows
ALTER TABLE refresh_tokens_new RENAME TO refresh_tokens;
CREATE INDEX grants_by_expiry ON grants (expires_at) WHERE expires_at > 0;
CREATE INDEX refresh_tokens_by_grant ON refresh_tokens (grant_n);
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at) WHERE expires_at > 0;

CREATE TABLE consents_new (
	user_k     BLOB NOT NULL,
	client_k   BLOB NOT NULL,
	user_key   TEXT NOT NULL,
	client_id  TEXT NOT NULL,
	scopes     TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (user_k, client_k)
);
INSERT INTO consents_new SELECT unhex(user_k), unhex(client_k), user_key, client_id, scopes, created_at
	FROM consents ORDER BY rowid;
DROP TABLE consents;
ALTER TABLE consents_new RENAME TO consents;

CREATE TABLE signing_keys_new (
	k          BLOB PRIMARY KEY,
	id         TEXT NOT NULL,
	algorithm  TEXT NOT NULL,
	private    BLOB,
	public     BLOB,
	status     TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	retire_at  INTEGER NOT NULL
);
INSERT INTO signing_keys_new SELECT unhex(k), id, algorithm, private, public, status, created_at, retire_at
	FROM signing_keys ORDER BY rowid;
DROP TABLE signing_keys;
ALTER TABLE signing_keys_new RENAME TO signing_keys;
