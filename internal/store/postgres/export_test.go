package postgres

// SweepBatch lets tests make DeleteExpired's batches small.
var SweepBatch = &sweepBatch
