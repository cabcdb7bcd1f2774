-- Refresh tokens are looked up only by k: keep them in a WITHOUT ROWID
-- table clustered on k, so a rotation writes one b-tree fewer (no separate
-- rowid table beside the primary key index) and a lookup walks one b-tree.
-- Rows are small (hashes, ids), as WITHOUT ROWID wants.
CREATE TABLE refresh_tokens_v2 (
	k           TEXT NOT NULL PRIMARY KEY,
	hash        TEXT NOT NULL,
	grant_k     TEXT NOT NULL REFERENCES grants (k) ON DELETE CASCADE,
	grant_id    TEXT NOT NULL,
	client_id   TEXT NOT NULL,
	created_at  INTEGER NOT NULL,
	expires_at  INTEGER NOT NULL,
	rotated_at  INTEGER NOT NULL DEFAULT 0,
	replaced_by TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
INSERT INTO refresh_tokens_v2 (k, hash, grant_k, grant_id, client_id, created_at, expires_at, rotated_at, replaced_by)
	SELECT k, hash, grant_k, grant_id, client_id, created_at, expires_at, rotated_at, replaced_by FROM refresh_tokens;
DROP TABLE refresh_tokens;
ALTER TABLE refresh_tokens_v2 RENAME TO refresh_tokens;
CREATE INDEX refresh_tokens_by_grant ON refresh_tokens (grant_k);
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at) WHERE expires_at > 0;
