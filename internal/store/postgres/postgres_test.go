package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/conformance"
	"github.com/mcpgate/mcpgate/internal/store/postgres"
	"github.com/mcpgate/mcpgate/internal/store/postgres/pgtest"
)

var (
	baseDSN   = pgtest.BaseDSN
	schemaDSN = pgtest.SchemaDSN
)

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

// DeleteExpired removes everything expired however many batches it takes,
// and counts it.
func TestDeleteExpiredInBatches(t *testing.T) {
	defer func(b int) { *postgres.SweepBatch = b }(*postgres.SweepBatch)
	*postgres.SweepBatch = 3
	ctx := context.Background()
	s := open(t, schemaDSN(t))
	defer s.Close()
	now := store.NormTime(time.Now())
	past, future := now.Add(-time.Hour), now.Add(time.Hour)
	for i := range 10 { // 5 expired grants with one token each, 5 live grants with one expired token each
		id := string(rune('a' + i))
		exp, rtExp := future, past
		if i%2 == 0 {
			exp, rtExp = past, future
		}
		if err := s.CreateAuthCode(ctx, &store.AuthCode{Hash: "code-" + id, GrantID: id, ExpiresAt: future}); err != nil {
			t.Fatal(err)
		}
		_, err := s.RedeemAuthCode(ctx, "code-"+id, func(*store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
			return &store.Grant{ID: id, CreatedAt: now, ExpiresAt: exp},
				&store.RefreshToken{Hash: "rt-" + id, GrantID: id, CreatedAt: now, ExpiresAt: rtExp}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	removed, err := s.DeleteExpired(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if removed != 15 {
		t.Errorf("removed %d, want 15 (5 grants, 10 refresh tokens)", removed)
	}
	if removed, err := s.DeleteExpired(ctx, now); err != nil || removed != 0 {
		t.Errorf("second sweep removed %d (%v), want 0", removed, err)
	}
}

// Each sweep batch is its own transaction: another connection sees every
// batch's deletions as soon as it returns, so no sweep holds the rows'
// locks (or one snapshot) for the whole sweep.
func TestSweepCommitsEachBatch(t *testing.T) {
	defer func(b int, f func()) { *postgres.SweepBatch, *postgres.AfterSweepBatch = b, f }(*postgres.SweepBatch, *postgres.AfterSweepBatch)
	*postgres.SweepBatch = 10
	ctx := context.Background()
	dsn := schemaDSN(t)
	s := open(t, dsn)
	defer s.Close()
	other, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	past := store.NormTime(time.Now().Add(-time.Hour))
	const n = 45
	for i := range n {
		if err := s.CreateAuthCode(ctx, &store.AuthCode{Hash: fmt.Sprint("code-", i), ExpiresAt: past}); err != nil {
			t.Fatal(err)
		}
	}
	var left []int
	*postgres.AfterSweepBatch = func() {
		var c int
		if err := other.QueryRow(ctx, `SELECT COUNT(*) FROM auth_codes`).Scan(&c); err != nil {
			t.Error(err)
		}
		left = append(left, c)
	}
	if removed, err := s.DeleteExpired(ctx, time.Now()); err != nil || removed != n {
		t.Fatalf("DeleteExpired = %d, %v; want %d", removed, err, n)
	}
	if got, want := slices.Compact(slices.Clone(left)), []int{n, 35, 25, 15, 5, 0}; !slices.Equal(got, want) {
		t.Errorf("codes left after each batch: %v, want %v", left, want)
	}
}
