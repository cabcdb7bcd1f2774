// Package pgtest gives tests a throwaway PostgreSQL schema. Tests that use
// it skip unless MCPGATE_TEST_POSTGRES_DSN names a database they may write
// to (scripts/test.sh starts one).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// DSNEnv names the variable holding a PostgreSQL DSN for tests.
const DSNEnv = "MCPGATE_TEST_POSTGRES_DSN"

// BaseDSN returns the DSN of the test database, or skips t.
func BaseDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(DSNEnv)
	if dsn == "" {
		t.Skip(DSNEnv + " is not set: skipping PostgreSQL tests (set it to a DSN of a throwaway database to run them)")
	}
	return dsn
}

// SchemaDSN creates a fresh schema, dropped when t ends, and returns a DSN
// whose search_path points at it.
func SchemaDSN(t testing.TB) string {
	t.Helper()
	dsn := BaseDSN(t)
	ctx := context.Background()
	b := make([]byte, 6)
	rand.Read(b)
	schema := "mcpgate_test_" + hex.EncodeToString(b)
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("connect for cleanup: %v", err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema: %v", err)
		}
	})
	switch {
	case !strings.Contains(dsn, "://"):
		return dsn + " search_path=" + schema
	case strings.Contains(dsn, "?"):
		return dsn + "&search_path=" + schema
	default:
		return dsn + "?search_path=" + schema
	}
}
