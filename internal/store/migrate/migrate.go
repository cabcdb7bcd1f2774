// Package migrate applies a store's embedded SQL migrations: one runner for
// SQLite and PostgreSQL, which differ only in the SQL of its bookkeeping
// (Dialect) and in their transaction types (Tx).
package migrate

import (
	"context"
	"fmt"
	"io/fs"
	"strings"
)

// Tx is the one transaction all migrations run in, so that concurrent
// starts of several processes apply each migration exactly once.
type Tx interface {
	// Exec runs sql. Without args it may hold several statements (a
	// migration file); drivers must run them all.
	Exec(ctx context.Context, sql string, args ...any) error
	// QueryInt runs sql, which yields one integer.
	QueryInt(ctx context.Context, sql string) (int, error)
}

// Committer is a Tx that Apply ends: committed when every migration
// applied, rolled back otherwise.
type Committer interface {
	Tx
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// Apply runs Run over the directory "migrations" of fsys (a store's
// embedded files) in a transaction from begin, and commits it.
func Apply(ctx context.Context, d Dialect, fsys fs.FS, begin func(context.Context) (Committer, error)) error {
	dir, err := fs.Sub(fsys, "migrations")
	if err != nil {
		return fmt.Errorf("%s: read migrations: %w", d.Name, err)
	}
	tx, err := begin(ctx)
	if err != nil {
		return fmt.Errorf("%s: begin migration: %w", d.Name, err)
	}
	defer tx.Rollback(ctx)
	if err := Run(ctx, d, tx, dir); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("%s: commit migration: %w", d.Name, err)
	}
	return nil
}

// Dialect is the SQL that differs between databases.
type Dialect struct {
	// Name prefixes errors ("sqlite", "postgres").
	Name string
	// Lock, if set, runs first: it serialises concurrent migrators where
	// the transaction itself does not (a PostgreSQL advisory lock; SQLite's
	// write transaction already excludes the others).
	Lock string
	// CreateTable creates schema_migrations (version, applied_at) if missing.
	CreateTable string
	// Record inserts a row into schema_migrations; its one argument is the version.
	Record string
}

// Run applies the migrations in dir newer than the schema_migrations
// high-water mark, in tx; the caller commits. Files are named
// NNNN_description.sql, numbered 1, 2, … without gaps. A database whose
// version is newer than the last file is refused rather than misread.
func Run(ctx context.Context, d Dialect, tx Tx, dir fs.FS) error {
	files, err := fs.ReadDir(dir, ".")
	if err != nil {
		return fmt.Errorf("%s: read migrations: %w", d.Name, err)
	}
	if d.Lock != "" {
		if err := tx.Exec(ctx, d.Lock); err != nil {
			return fmt.Errorf("%s: lock for migration: %w", d.Name, err)
		}
	}
	if err := tx.Exec(ctx, d.CreateTable); err != nil {
		return fmt.Errorf("%s: create schema_migrations: %w", d.Name, err)
	}
	current, err := tx.QueryInt(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("%s: read schema version: %w", d.Name, err)
	}
	latest := 0
	for _, f := range files { // ReadDir returns names sorted
		var v int
		if _, err := fmt.Sscanf(f.Name(), "%d_", &v); err != nil || v != latest+1 || !strings.HasSuffix(f.Name(), ".sql") {
			return fmt.Errorf("%s: bad migration file name %q", d.Name, f.Name())
		}
		latest = v
		if v <= current {
			continue
		}
		body, err := fs.ReadFile(dir, f.Name())
		if err != nil {
			return fmt.Errorf("%s: read migration %d: %w", d.Name, v, err)
		}
		if err := tx.Exec(ctx, string(body)); err != nil {
			return fmt.Errorf("%s: apply migration %d: %w", d.Name, v, err)
		}
		if err := tx.Exec(ctx, d.Record, v); err != nil {
			return fmt.Errorf("%s: record migration %d: %w", d.Name, v, err)
		}
	}
	if current > latest {
		return fmt.Errorf("%s: database schema version %d is newer than this binary supports (%d)", d.Name, current, latest)
	}
	return nil
}
