-- Grants and refresh tokens lose their partial expiry indexes: every
-- exchange and every rotation inserted an entry into each (one more b-tree
-- per row, and a WAL frame per batch), only for the sweeper. The sweeper
-- now walks these two tables in rowid order from a read connection, in
-- bounded windows, and deletes what it found expired by rowid on the
-- writer in small batches (DeleteExpired). Codes, requests and clients keep
-- theirs: no token request inserts into them.
DROP INDEX grants_by_expiry;
DROP INDEX refresh_tokens_by_expiry;
