package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/conformance"
	"github.com/mcpgate/mcpgate/internal/store/sqlite"
)

func openTemp(t testing.TB) *sqlite.Store {
	t.Helper()
	s, _ := openFile(t)
	return s
}

// openFile opens a new database file and returns its path too.
func openFile(t testing.TB) (*sqlite.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mcpgate.db")
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s, path
}

func TestConformance(t *testing.T) {
	conformance.Run(t, func(t *testing.T) store.Store { return openTemp(t) })
}

func TestConformanceInMemory(t *testing.T) {
	conformance.Run(t, func(t *testing.T) store.Store {
		s, err := sqlite.Open(context.Background(), sqlite.MemoryDSN)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

// issue returns an IssueFunc that creates g and rt.
func issue(g *store.Grant, rt *store.RefreshToken) store.IssueFunc {
	return func(*store.AuthCode) (*store.Grant, *store.RefreshToken, error) { return g, rt, nil }
}

func TestStateSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state", "mcpgate.db")
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	now := store.NormTime(time.Now())
	g := &store.Grant{ID: "grant-1", ClientID: "c", UserKey: "u", Scopes: []string{"a"}, UpstreamTokens: []byte("sealed"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	rt := &store.RefreshToken{Hash: store.HashKey("rt"), GrantID: g.ID, ClientID: "c", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	code := &store.AuthCode{Hash: store.HashKey("code"), ClientID: "c", GrantID: g.ID, ExpiresAt: now.Add(time.Minute)}
	key := &store.SigningKey{ID: "kid", Algorithm: "ES256", Private: []byte("sealed-key"), Status: store.KeyActive, CreatedAt: now}
	for _, err := range []error{
		s.CreateAuthCode(ctx, code),
		s.CreateSigningKey(ctx, key),
	} {
		if err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	if _, err := s.RedeemAuthCode(ctx, code.Hash, issue(g, rt)); err != nil {
		t.Fatalf("RedeemAuthCode: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	gotG, err := s.GetGrant(ctx, g.ID)
	if err != nil {
		t.Fatalf("GetGrant after restart: %v", err)
	}
	if d := cmp.Diff(g, gotG); d != "" {
		t.Errorf("grant after restart (-want +got):\n%s", d)
	}
	gotRT, err := s.GetRefreshToken(ctx, rt.Hash)
	if err != nil {
		t.Fatalf("GetRefreshToken after restart: %v", err)
	}
	if d := cmp.Diff(rt, gotRT); d != "" {
		t.Errorf("refresh token after restart (-want +got):\n%s", d)
	}
	// A code used before the restart stays used.
	if _, err := s.RedeemAuthCode(ctx, code.Hash, issue(g, rt)); !errors.Is(err, store.ErrAlreadyUsed) {
		t.Errorf("RedeemAuthCode after restart: error = %v, want ErrAlreadyUsed", err)
	}
	keys, err := s.ListSigningKeys(ctx)
	if err != nil || len(keys) != 1 || keys[0].ID != "kid" {
		t.Errorf("ListSigningKeys after restart = %v, %v", keys, err)
	}
}

func TestOpenPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "mcpgate.db")
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got&^want != 0 {
			t.Errorf("%s mode = %v, want at most %v", p, got, want)
		}
	}
}

func TestOpenRejectsBadDSN(t *testing.T) {
	for _, dsn := range []string{"", "db.sqlite?_pragma=foreign_keys(0)", "file:db.sqlite", "a#b"} {
		if s, err := sqlite.Open(context.Background(), dsn); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded, want error", dsn)
		}
	}
}

func TestMigrations(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "mcpgate.db")
	for range 2 { // reopening must not re-apply a migration (it would fail on CREATE TABLE)
		s, err := sqlite.Open(ctx, path)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		s.Close()
	}
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	var n, v int
	if err := db.QueryRow(`SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	if n != 3 || v != 3 {
		t.Errorf("schema_migrations: %d rows, max version %d; want 3, 3", n, v)
	}
	var at int64
	if err := db.QueryRow(`SELECT applied_at FROM schema_migrations WHERE version = 1`).Scan(&at); err != nil ||
		time.Since(time.Unix(at, 0)).Abs() > time.Minute {
		t.Errorf("applied_at = %d (%v), want the unix time of the migration", at, err)
	}
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q (%v), want wal", mode, err)
	}
	// A database migrated by a newer binary is refused rather than misread.
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err := sqlite.Open(ctx, path); err == nil {
		s.Close()
		t.Fatal("Open of a database with a newer schema succeeded")
	}
}

// openTwo opens two independent handles on one new database file, as the
// server and the `mcpgate` CLI would.
func openTwo(t *testing.T) (a, b *sqlite.Store) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mcpgate.db")
	a, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b, err = sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return a, b
}

// oneWins races op on 6 goroutines, alternating between a and b, and fails
// unless exactly one succeeds and every other fails with lost.
func oneWins(t *testing.T, what string, a, b *sqlite.Store, lost error, op func(i int, s *sqlite.Store) error) {
	t.Helper()
	errs := conformance.Race(6, func(i int) error {
		if i%2 == 1 {
			return op(i, b)
		}
		return op(i, a)
	})
	conformance.ExactlyOne(t, what, errs, lost)
}

// TestTwoProcessesRotate has two independent handles on one file race to
// rotate the same refresh token.
func TestTwoProcessesRotate(t *testing.T) {
	ctx := context.Background()
	a, b := openTwo(t)
	now := store.NormTime(time.Now())
	for round := range 60 {
		old := store.HashKey(fmt.Sprintf("old-%d", round))
		code := &store.AuthCode{Hash: store.HashKey(fmt.Sprintf("code-%d", round)), GrantID: fmt.Sprintf("g-%d", round)}
		if err := a.CreateAuthCode(ctx, code); err != nil {
			t.Fatal(err)
		}
		g := &store.Grant{ID: code.GrantID, CreatedAt: now}
		if _, err := a.RedeemAuthCode(ctx, code.Hash, issue(g, &store.RefreshToken{Hash: old, GrantID: g.ID, CreatedAt: now})); err != nil {
			t.Fatal(err)
		}
		oneWins(t, fmt.Sprintf("round %d: RotateRefreshToken", round), a, b, store.ErrConflict, func(i int, s *sqlite.Store) error {
			return s.RotateRefreshToken(ctx, old, &store.RefreshToken{Hash: store.HashKey(fmt.Sprintf("new-%d-%d", round, i)), GrantID: g.ID, CreatedAt: now}, now)
		})
	}
}

// TestTwoProcessesRedeem has two handles on one file race to redeem the
// same code: exactly one creates the grant; every other caller sees the
// code used and the grant already in place.
func TestTwoProcessesRedeem(t *testing.T) {
	ctx := context.Background()
	a, b := openTwo(t)
	now := store.NormTime(time.Now())
	for round := range 40 {
		code := &store.AuthCode{Hash: store.HashKey(fmt.Sprintf("code-%d", round)), GrantID: fmt.Sprintf("g-%d", round)}
		if err := a.CreateAuthCode(ctx, code); err != nil {
			t.Fatal(err)
		}
		oneWins(t, fmt.Sprintf("round %d: RedeemAuthCode", round), a, b, store.ErrAlreadyUsed, func(i int, s *sqlite.Store) error {
			g := &store.Grant{ID: code.GrantID, CreatedAt: now}
			rt := &store.RefreshToken{Hash: store.HashKey(fmt.Sprintf("rt-%d-%d", round, i)), GrantID: g.ID, CreatedAt: now}
			got, err := s.RedeemAuthCode(ctx, code.Hash, issue(g, rt))
			if errors.Is(err, store.ErrAlreadyUsed) {
				if _, gerr := s.GetGrant(ctx, got.GrantID); gerr != nil {
					err = fmt.Errorf("replay saw no grant: %w", gerr)
				}
			}
			return err
		})
	}
}

// TestBackgroundCheckpoint: committed pages reach the database file without
// a commit crossing SQLite's own checkpoint threshold.
func TestBackgroundCheckpoint(t *testing.T) {
	ctx := context.Background()
	s, path := openFile(t)
	defer s.Close()
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	// Copy the migration's pages into the file now, so that the growth
	// measured below comes from the background checkpoint of the rows
	// written after, not from pages still in the WAL.
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var busy, logPages, checkpointed int
	if err := db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logPages, &checkpointed); err != nil || busy != 0 {
		t.Fatalf("checkpoint: busy %d, %v", busy, err)
	}
	before := size()
	for i := range 200 {
		c := &store.Client{ID: fmt.Sprintf("client-%d", i), Metadata: make([]byte, 2000), CreatedAt: time.Now()}
		if err := s.CreateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); size() <= before; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("database file still %d bytes: the WAL was not checkpointed", before)
		}
	}
}

// TestWALStaysBounded: under writes with readers always active the WAL
// grows past the limit, and after the load the background checkpoint
// brings the -wal file back under sqlite.WALSizeLimit (a PASSIVE
// checkpoint alone never shrinks it).
func TestWALStaysBounded(t *testing.T) {
	s, path := openFile(t)
	defer s.Close()
	stopReads := sqlite.ReadWhile(s)
	var peak int64
	sqlite.WriteClients(t, s, 800, func() { peak = max(peak, sqlite.WALSize(path)) })
	stopReads()
	t.Logf("WAL peak %d bytes", peak)
	sqlite.WaitWALBounded(t, path)
}
