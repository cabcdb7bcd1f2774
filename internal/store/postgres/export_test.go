package postgres

// SweepBatch lets tests make DeleteExpired's batches small.
var SweepBatch = &sweepBatch

// AfterSweepBatch lets tests run code between two of DeleteExpired's batches.
var AfterSweepBatch = &afterSweepBatch
