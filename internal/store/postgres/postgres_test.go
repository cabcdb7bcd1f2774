package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/conformance"
	"github.com/mcpgate/mcpgate/internal/store/postgres"
)

// DSNEnv names the variable holding a PostgreSQL DSN for these tests. Each
// test gets its own schema, dropped afterwards.
const DSNEnv = "MCPGATE_TEST_POSTGRES_DSN"

func baseDSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv(DSNEnv)
	if dsn == "" {
		t.Skip(DSNEnv + " is not set: skipping PostgreSQL tests (set it to a DSN of a throwaway database to run them)")
	}
	return dsn
}

// schemaDSN creates a fresh schema and returns a DSN whose search_path points at it.
func schemaDSN(t *testing.T) string {
	t.Helper()
	dsn := baseDSN(t)
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

func open(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	baseDSN(t)
	conformance.Run(t, func(t *testing.T) store.Store { return open(t, schemaDSN(t)) })
}

func TestStateSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	dsn := schemaDSN(t)
	s := open(t, dsn)
	now := store.NormTime(time.Now())
	if err := s.CreateSigningKey(ctx, &store.SigningKey{ID: "kid", Algorithm: "ES256", Private: []byte("sealed"), Status: store.KeyActive, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dsn) // migrations already applied: must not fail
	defer s.Close()
	keys, err := s.ListSigningKeys(ctx)
	if err != nil || len(keys) != 1 || keys[0].ID != "kid" || !keys[0].CreatedAt.Equal(now) {
		t.Errorf("ListSigningKeys after reopen = %+v, %v", keys, err)
	}
}

func TestOpenErrorHidesPassword(t *testing.T) {
	_, err := postgres.Open(context.Background(), "postgres://u:s3cret-password@[::1/db")
	if err == nil {
		t.Fatal("Open with a malformed DSN succeeded")
	}
	if strings.Contains(err.Error(), "s3cret-password") {
		t.Errorf("error leaks the password: %v", err)
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	dsn := schemaDSN(t)
	s := open(t, dsn)
	s.Close()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (99, now())`); err != nil {
		t.Fatal(err)
	}
	if s, err := postgres.Open(ctx, dsn); err == nil {
		s.Close()
		t.Fatal("Open of a database with a newer schema succeeded")
	}
}
