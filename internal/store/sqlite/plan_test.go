package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// Every statement a request runs, and every sweep batch, finds its rows
// through an index, without a temporary b-tree: none scans or sorts a
// table, so its cost does not grow with the number of stored grants
// (issue 15: refresh at 100k grants as fast as at 1k). The operator's
// ListGrants, and the signing keys (a handful of rows, read when the key
// set reloads), may scan.
func TestQueryPlansUseIndexes(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "plan.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	queries := slices.Concat(writeQueries, tokenQueries, readQueries, sweepQueries, walkQueries)
	for _, q := range queries {
		rows, err := s.r.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q, placeholders(q)...)
		if err != nil {
			t.Fatalf("%.60q: %v", q, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		t.Logf("%.90s\n  %s", oneLine(q), strings.Join(plan, "\n  "))
		if q == qListKeys {
			continue
		}
		for _, step := range plan {
			// "SCAN x USING INDEX" walks an index range; a bare "SCAN x" reads the table.
			// json_each scans the sweep batch's bound array of rowids, not a table.
			if strings.HasPrefix(step, "SCAN ") && !strings.Contains(step, " USING ") && !strings.Contains(step, "CONSTANT ROW") &&
				!strings.HasPrefix(step, "SCAN json_each VIRTUAL TABLE") {
				t.Errorf("full scan in %q:\n  %s", oneLine(q), strings.Join(plan, "\n  "))
			}
			// A temporary b-tree sorts or de-duplicates every matching row.
			if strings.Contains(step, "TEMP B-TREE") {
				t.Errorf("temporary b-tree in %q:\n  %s", oneLine(q), strings.Join(plan, "\n  "))
			}
		}
	}
}

// placeholders returns dummy arguments for q's parameters.
func placeholders(q string) []any {
	n := strings.Count(q, "?")
	if m := numbered.FindAllStringSubmatch(q, -1); m != nil {
		n = 0
		for _, x := range m {
			k, _ := strconv.Atoi(x[1])
			n = max(n, k)
		}
	}
	args := make([]any, n)
	for i := range args {
		args[i] = 1
	}
	return args
}

var numbered = regexp.MustCompile(`\?(\d+)`)

func oneLine(q string) string { return strings.Join(strings.Fields(q), " ") }

// DeleteExpired removes everything expired however many batches it takes,
// and counts it.
func TestDeleteExpiredInBatches(t *testing.T) {
	defer func(b int) { sweepBatch = b }(sweepBatch)
	sweepBatch = 3
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "sweep.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	past, future := now.Add(-time.Hour), now.Add(time.Hour)
	const n = 10 // grants, each with two refresh tokens
	for i := range n {
		id := "g" + string(rune('a'+i))
		exp := future
		if i%2 == 0 {
			exp = past
		}
		if err := s.CreateAuthCode(ctx, &store.AuthCode{Hash: "code-" + id, GrantID: id, ExpiresAt: future}); err != nil {
			t.Fatal(err)
		}
		_, err := s.RedeemAuthCode(ctx, "code-"+id, func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
			return &store.Grant{ID: id, CreatedAt: now, ExpiresAt: exp},
				&store.RefreshToken{Hash: "rt1-" + id, GrantID: id, CreatedAt: now, ExpiresAt: future}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// The second token of each live grant is itself expired.
		next := &store.RefreshToken{Hash: "rt2-" + id, GrantID: id, CreatedAt: now, ExpiresAt: future}
		if exp == future {
			next.ExpiresAt = now.Add(time.Second)
		}
		if err := s.RotateRefreshToken(ctx, "rt1-"+id, next, now); err != nil {
			t.Fatal(err)
		}
	}
	// At now+2s: 5 expired grants with 2 tokens each, 5 expired tokens of
	// live grants; the codes (used) expire in an hour.
	removed, err := s.DeleteExpired(ctx, now.Add(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(5 + 5*2 + 5); removed != want {
		t.Errorf("removed %d, want %d", removed, want)
	}
	var grants, tokens int
	s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM grants`).Scan(&grants)
	s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM refresh_tokens`).Scan(&tokens)
	if grants != 5 || tokens != 5 {
		t.Errorf("left %d grants and %d refresh tokens, want 5 and 5", grants, tokens)
	}
}

// Each sweep batch is its own transaction: between two batches the one
// writer connection is free (a token request queued for it runs there, not
// after the whole sweep), and what the batch deleted is committed.
func TestSweepFreesTheWriterBetweenBatches(t *testing.T) {
	defer func(b int, f func()) { sweepBatch, afterSweepBatch = b, f }(sweepBatch, afterSweepBatch)
	sweepBatch = 10
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "sweep.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	past := time.Now().Add(-time.Hour)
	const n = 45
	for i := range n {
		if err := s.CreateAuthCode(ctx, &store.AuthCode{Hash: "code-" + strconv.Itoa(i), ExpiresAt: past}); err != nil {
			t.Fatal(err)
		}
	}
	var left []int
	afterSweepBatch = func() {
		// A write between batches gets the writer at once; a sweep holding
		// it (one long transaction) would make this wait out its timeout.
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		id := "between-" + strconv.Itoa(len(left))
		if err := s.CreateClient(wctx, &store.Client{ID: id, CreatedAt: time.Now()}); err != nil {
			t.Errorf("write between sweep batches: %v", err)
		}
		var c int
		if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM auth_codes`).Scan(&c); err != nil {
			t.Error(err)
		}
		left = append(left, c)
	}
	removed, err := s.DeleteExpired(ctx, time.Now())
	if err != nil || removed != n {
		t.Fatalf("DeleteExpired = %d, %v; want %d", removed, err, n)
	}
	// Readers see each batch committed: 35, 25, 15, 5, then 0 codes (the
	// tables swept after the codes have one empty batch each).
	if got, want := slices.Compact(slices.Clone(left)), []int{35, 25, 15, 5, 0}; !slices.Equal(got, want) {
		t.Errorf("codes left after each batch: %v, want %v", left, want)
	}
}

// While writes come, the checkpointer bounds the WAL with RESTART
// checkpoints, which keep the writer's page cache; it runs TRUNCATE, which
// makes every connection drop its cache, only once the writes stop.
func TestCheckpointKeepsWriterCacheUnderLoad(t *testing.T) {
	var mu sync.Mutex
	var writing bool
	modes := map[string][2]int{} // mode → runs while writing, runs after
	defer func(f func(string)) { checkpointRan = f }(checkpointRan)
	checkpointRan = func(mode string) {
		mu.Lock()
		defer mu.Unlock()
		m := modes[mode]
		if writing {
			m[0]++
		} else {
			m[1]++
		}
		modes[mode] = m
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ckpt.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	stopReads := ReadWhile(s)
	mu.Lock()
	writing = true
	mu.Unlock()
	// Write until the WAL has passed the limit at a checkpointer tick: how
	// many writes that takes depends on the machine's speed (a slow machine
	// checkpoints between its writes and keeps the WAL small).
	restarted := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return modes["RESTART"][0] > 0
	}
	for i, deadline := 0, time.Now().Add(20*time.Second); !restarted() && time.Now().Before(deadline); i++ {
		WriteClientsFrom(t, s, i*200, 200, func() {})
	}
	mu.Lock()
	writing = false
	mu.Unlock()
	stopReads()
	WaitWALBounded(t, path)
	mu.Lock()
	defer mu.Unlock()
	if modes["RESTART"][0] == 0 || modes["TRUNCATE"][0] != 0 {
		t.Errorf("checkpoints while writing: %d RESTART, %d TRUNCATE; want some RESTART and no TRUNCATE",
			modes["RESTART"][0], modes["TRUNCATE"][0])
	}
}

// TestWriterPageCacheSettings: the writer connection gets writerCacheKiB
// and writerMmapBytes (BenchmarkRefreshAtScale compares them by setting the
// variables), the read pool SQLite's defaults and no mmap.
func TestWriterPageCacheSettings(t *testing.T) {
	ctx := context.Background()
	pragmas := func(db *sql.DB) (cache, mmap int64) {
		t.Helper()
		if err := db.QueryRowContext(ctx, `PRAGMA cache_size`).Scan(&cache); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRowContext(ctx, `PRAGMA mmap_size`).Scan(&mmap); err != nil {
			t.Fatal(err)
		}
		return cache, mmap
	}
	// The defaults docs/configuration.md states.
	if writerCacheKiB != 8<<10 || writerMmapBytes != 0 {
		t.Errorf("writer defaults: cache %d KiB, mmap %d bytes; want 8192 KiB, 0", writerCacheKiB, writerMmapBytes)
	}
	defer func(c int, m int64) { writerCacheKiB, writerMmapBytes = c, m }(writerCacheKiB, writerMmapBytes)
	for _, tc := range []struct {
		cacheKiB int
		mmap     int64
	}{
		{8 << 10, 0},
		{1024, 1 << 20},
	} {
		writerCacheKiB, writerMmapBytes = tc.cacheKiB, tc.mmap
		s, err := Open(ctx, filepath.Join(t.TempDir(), "cache.db"))
		if err != nil {
			t.Fatal(err)
		}
		if c, m := pragmas(s.w); c != int64(-tc.cacheKiB) || m != tc.mmap {
			t.Errorf("writer: cache_size %d, mmap_size %d; want %d, %d", c, m, -tc.cacheKiB, tc.mmap)
		}
		if c, m := pragmas(s.r); c != -2000 || m != 0 {
			t.Errorf("reader: cache_size %d, mmap_size %d; want SQLite's -2000 and 0", c, m)
		}
		s.Close()
	}
}

// Grants and refresh tokens have no expiry index: the sweep walks them in
// rowid order, a window at a time. TTLs differ per client, so a row issued
// later can expire earlier: the walk must find every expired row wherever
// it is, across windows and batches, and leave every live one (and every
// row that never expires).
func TestSweepWalkFindsRowsExpiringOutOfOrder(t *testing.T) {
	defer func(b, w int) { sweepBatch, sweepWindow = b, w }(sweepBatch, sweepWindow)
	sweepBatch, sweepWindow = 2, 3
	ctx := context.Background()
	s := openGroupTest(t)
	now := store.NormTime(time.Now())
	// Grant i expires in 10-i minutes (the later, the sooner), grant 3
	// never; each has a token that expires with it, and grants 0 and 1 a
	// second one, issued last, that expires in a minute.
	const n = 10
	expiry := func(i int) time.Time {
		if i == 3 {
			return time.Time{}
		}
		return now.Add(time.Duration(n-i) * time.Minute)
	}
	for i := range n {
		id := "g" + strconv.Itoa(i)
		if err := s.CreateAuthCode(ctx, &store.AuthCode{Hash: "code-" + id, GrantID: id, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		_, err := s.RedeemAuthCode(ctx, "code-"+id, func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
			return &store.Grant{ID: id, CreatedAt: now, ExpiresAt: expiry(i)},
				&store.RefreshToken{Hash: "rt-" + id, GrantID: id, CreatedAt: now, ExpiresAt: expiry(i)}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, i := range []int{0, 1} {
		id := "g" + strconv.Itoa(i)
		next := &store.RefreshToken{Hash: "rt2-" + id, GrantID: id, CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
		if err := s.RotateRefreshToken(ctx, "rt-"+id, next, now); err != nil {
			t.Fatal(err)
		}
	}
	// At +5.5 min: grants 5..9 and their tokens, and the two short tokens.
	removed, err := s.DeleteExpired(ctx, now.Add(5*time.Minute+30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(5 + 5 + 2); removed != want {
		t.Errorf("removed %d, want %d", removed, want)
	}
	for i := range n {
		id := "g" + strconv.Itoa(i)
		_, gerr := s.GetGrant(ctx, id)
		var trow int
		s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM refresh_tokens WHERE k = ?`, key("rt-"+id)).Scan(&trow)
		var grow int
		s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM grants WHERE id = ?`, id).Scan(&grow)
		if live := i < 5; live != (gerr == nil) || live != (grow == 1) || live != (trow == 1) {
			t.Errorf("grant %s: GetGrant %v, grant rows %d, token rows %d; want live=%v", id, gerr, grow, trow, live)
		}
	}
	for _, h := range []string{"rt2-g0", "rt2-g1"} {
		var short int
		s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM refresh_tokens WHERE k = ?`, key(h)).Scan(&short)
		if short != 0 {
			t.Errorf("expired successor token %s left", h)
		}
	}
	// Nothing else is due: a second sweep at the same time removes nothing,
	// and grant 3 outlives any sweep.
	if removed, err := s.DeleteExpired(ctx, now.Add(5*time.Minute+30*time.Second)); err != nil || removed != 0 {
		t.Errorf("second sweep: %d, %v; want 0", removed, err)
	}
	if removed, err := s.DeleteExpired(ctx, now.Add(24*time.Hour)); err != nil || removed != 4+4+n {
		t.Errorf("sweep a day later: %d, %v; want 18 (grants 0, 1, 2, 4, their tokens, the codes)", removed, err)
	}
	if _, err := s.GetGrant(ctx, "g3"); err != nil {
		t.Errorf("the grant that never expires: %v", err)
	}
}
