-- Grants and refresh tokens lose their partial expiry indexes: every
-- exchange and every rotation inserted an entry into each (one more b-tree
-- per row, and a WAL frame per batch), only for the sweeper. The sweeper
-- now walks these two tables in rowid order from a read connection, in
-- bounded windows, and deletes what it found expired by rowid on the
-- writer in small batches (DeleteExpired). Codes, requests and clients keep
-- theirs: no token request inserts into them.
DROP INDEX grants_by_expiry;
DROP INDEX refresh_tokens_by_expiry;
-- From this version on, new refresh token rows leave the hash column empty
-- (a token is read by its key, which the hash maps to one-to-one) and store
-- a time-ordered successor's hash in replaced_by as its 40 bytes; rows
-- written before keep theirs and read back the same.
