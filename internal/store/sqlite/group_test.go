package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

func openGroupTest(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "mcpgate.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// holdLead makes the next n callers of write queue up behind a write that
// holds the lead (an empty transaction), and returns a func that waits for
// them and lets that write commit: the n writes then run in one
// transaction.
func holdLead(t testing.TB, s *Store, n int) (release func()) {
	t.Helper()
	entered, gate, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- s.write(context.Background(), func(context.Context, *rawConn) error {
			close(entered)
			<-gate
			return nil
		})
	}()
	<-entered
	return func() {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); s.group.Queued() != n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d writes queued", s.group.Queued(), n)
			}
		}
		close(gate)
		if err := <-done; err != nil {
			t.Fatalf("the write holding the lead: %v", err)
		}
	}
}

func newCode(t *testing.T, s *Store, name string) *store.AuthCode {
	t.Helper()
	c := &store.AuthCode{Hash: store.HashKey("code-" + name), ClientID: "client", GrantID: "grant-" + name,
		ExpiresAt: time.Now().Add(time.Minute)}
	if err := s.CreateAuthCode(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return c
}

func grantFor(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
	now := time.Now()
	g := &store.Grant{ID: c.GrantID, ClientID: c.ClientID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	return g, &store.RefreshToken{Hash: store.HashKey("rt-" + c.GrantID), GrantID: g.ID, ClientID: c.ClientID,
		CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, nil
}

// Concurrent redemptions of one code in one transaction: exactly one
// creates the grant; the others get ErrAlreadyUsed with the code, and the
// grant they would replay-revoke is in place.
func TestGroupCommitOneRedemptionWins(t *testing.T) {
	for _, batched := range []bool{true, false} {
		t.Run(fmt.Sprintf("batched=%v", batched), func(t *testing.T) {
			s := openGroupTest(t)
			c := newCode(t, s, "x")
			const n = 8
			release := func() {}
			if batched {
				release = holdLead(t, s, n)
			}
			var mu sync.Mutex
			issued := 0
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got, err := s.RedeemAuthCode(context.Background(), c.Hash, func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
						mu.Lock()
						issued++
						mu.Unlock()
						return grantFor(c)
					})
					if got == nil || got.GrantID != c.GrantID {
						err = fmt.Errorf("code %+v with %w", got, err)
					}
					errs[i] = err
				}()
			}
			release()
			wg.Wait()
			won := 0
			for _, err := range errs {
				switch {
				case err == nil:
					won++
				case !errors.Is(err, store.ErrAlreadyUsed):
					t.Errorf("redeem: %v", err)
				}
			}
			if won != 1 || issued != 1 {
				t.Fatalf("%d redemptions won, issue called %d times; want 1 and 1", won, issued)
			}
			if _, err := s.GetGrant(context.Background(), c.GrantID); err != nil {
				t.Fatalf("GetGrant: %v", err)
			}
		})
	}
}

// One request's failure in a batch rolls back its own writes only.
func TestGroupCommitFailureStaysInItsRequest(t *testing.T) {
	ctx := context.Background()
	s := openGroupTest(t)
	codes := []*store.AuthCode{newCode(t, s, "a"), newCode(t, s, "b"), newCode(t, s, "c"), newCode(t, s, "d")}
	refused := errors.New("refused")
	// a succeeds. b: issue refuses (its code is spent, nothing stored).
	// c: its grant ID exists (ErrConflict; nothing of c stays, its code
	// stays unused). d: its request was cancelled before its turn.
	if _, err := s.RedeemAuthCode(ctx, newCode(t, s, "taken").Hash, func(*store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
		return &store.Grant{ID: codes[2].GrantID, ClientID: "client"}, nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	release := holdLead(t, s, len(codes))
	errs := make([]error, len(codes))
	var wg sync.WaitGroup
	for i, c := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx := ctx
			if i == 3 {
				rctx = cancelled
			}
			_, errs[i] = s.RedeemAuthCode(rctx, c.Hash, func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
				if i == 1 {
					return nil, nil, refused
				}
				return grantFor(c)
			})
		}()
	}
	release()
	wg.Wait()
	if errs[0] != nil || !errors.Is(errs[1], refused) || !errors.Is(errs[2], store.ErrConflict) || !errors.Is(errs[3], context.Canceled) {
		t.Fatalf("errors %v; want nil, refused, conflict, canceled", errs)
	}
	if _, err := s.GetGrant(ctx, codes[0].GrantID); err != nil {
		t.Errorf("a's grant: %v", err)
	}
	if _, err := s.GetRefreshToken(ctx, store.HashKey("rt-"+codes[0].GrantID)); err != nil {
		t.Errorf("a's refresh token: %v", err)
	}
	if _, err := s.GetGrant(ctx, codes[1].GrantID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("b's grant: %v, want none", err)
	}
	if _, err := s.GetRefreshToken(ctx, store.HashKey("rt-"+codes[2].GrantID)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("c's refresh token: %v, want none (rolled back with its grant)", err)
	}
	// b was spent by its refusal; c and d were not.
	for i, want := range []error{store.ErrAlreadyUsed, store.ErrAlreadyUsed, nil, nil} {
		_, err := s.RedeemAuthCode(ctx, codes[i].Hash, func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
			c.GrantID += "-again"
			return grantFor(c)
		})
		if !errors.Is(err, want) {
			t.Errorf("code %d redeemed again: %v, want %v", i, err, want)
		}
	}
}

// A COMMIT that fails fails every request of its batch, stores none of
// their writes, and leaves the writer usable.
func TestGroupCommitErrorFailsTheBatch(t *testing.T) {
	ctx := context.Background()
	s := openGroupTest(t)
	// A deferred foreign key is checked at COMMIT: violating it makes the
	// COMMIT fail after every statement succeeded.
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE parent (id INTEGER PRIMARY KEY);
		CREATE TABLE child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)`); err != nil {
		t.Fatal(err)
	}
	codes := []*store.AuthCode{newCode(t, s, "a"), newCode(t, s, "b")}
	release := holdLead(t, s, len(codes)+1)
	errs := make([]error, len(codes)+1)
	var wg sync.WaitGroup
	for i, c := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.RedeemAuthCode(ctx, c.Hash, func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) { return grantFor(c) })
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		errs[2] = s.write(ctx, func(ctx context.Context, tx *rawConn) error {
			_, err := tx.exec(ctx, `INSERT INTO child (p) VALUES (42)`)
			return err
		})
	}()
	release()
	wg.Wait()
	for i, err := range errs {
		if err == nil {
			t.Errorf("request %d succeeded in a batch whose COMMIT failed", i)
		}
	}
	for _, c := range codes {
		if _, err := s.GetGrant(ctx, c.GrantID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("grant of a failed batch: %v, want none", err)
		}
	}
	// The codes were not spent, and the writer works.
	for _, c := range codes {
		if _, err := s.RedeemAuthCode(ctx, c.Hash, func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) { return grantFor(c) }); err != nil {
			t.Errorf("redeem after the failed batch: %v", err)
		}
	}
}

// Concurrent rotations of one refresh token in one batch: exactly one
// succeeds, the others get ErrConflict (reuse detection).
func TestGroupCommitOneRotationWins(t *testing.T) {
	ctx := context.Background()
	s := openGroupTest(t)
	c := newCode(t, s, "r")
	if _, err := s.RedeemAuthCode(ctx, c.Hash, func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) { return grantFor(c) }); err != nil {
		t.Fatal(err)
	}
	old := store.HashKey("rt-" + c.GrantID)
	const n = 6
	release := holdLead(t, s, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			now := time.Now()
			errs[i] = s.RotateRefreshToken(ctx, old, &store.RefreshToken{Hash: store.HashKey(fmt.Sprint("next-", i)),
				GrantID: c.GrantID, ClientID: c.ClientID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, now)
		}()
	}
	release()
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won < 0:
			won = i
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("rotation %d: %v", i, err)
		}
	}
	if won < 0 {
		t.Fatal("no rotation won")
	}
	rt, err := s.GetRefreshToken(ctx, old)
	if err != nil || rt.ReplacedBy != store.HashKey(fmt.Sprint("next-", won)) {
		t.Fatalf("old token %+v, %v; want replaced by the winner's", rt, err)
	}
	for i := range n {
		_, err := s.GetRefreshToken(ctx, store.HashKey(fmt.Sprint("next-", i)))
		if (i == won) != (err == nil) {
			t.Errorf("successor %d: %v", i, err)
		}
	}
}

// seedCodes stores n authorization codes with keys from keys, in issue
// order, and names each grant's first refresh token and its successor
// (by grant ID): the workload of walFramesPerOp and walFramesByBtree.
func seedCodes(t testing.TB, s *Store, n int, keys *tokenKeys) (codes []*store.AuthCode, rts, nexts map[string]string) {
	t.Helper()
	now := time.Now()
	codes = make([]*store.AuthCode, n)
	rts, nexts = map[string]string{}, map[string]string{}
	for i := range codes {
		codes[i] = &store.AuthCode{Hash: keys.hash(fmt.Sprint("code-", i)), ClientID: "client", RedirectURI: "http://127.0.0.1:9/cb",
			UserKey: "https://gw.example#static#bench", Scopes: []string{"mcp"}, CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
			GrantID: keys.grantID(fmt.Sprint("grant-", i)), Identity: make([]byte, 150), UpstreamTokens: make([]byte, 600), ExpiresAt: now.Add(time.Hour)}
		if err := s.CreateAuthCode(context.Background(), codes[i]); err != nil {
			t.Fatal(err)
		}
	}
	// All first tokens before all successors: their keys are issued in
	// that order.
	for _, c := range codes {
		rts[c.GrantID] = keys.hash("rt-" + c.GrantID)
	}
	for _, c := range codes {
		nexts[c.GrantID] = keys.hash("next-" + c.GrantID)
	}
	return codes, rts, nexts
}

// walFramesPerOp redeems n codes and then rotates their refresh tokens, in
// transactions of batch requests each, and returns the WAL frames (pages)
// written per exchange and per rotation. The tokens' keys come from keys
// in issue order: the codes, then the first refresh tokens, then their
// successors.
func walFramesPerOp(t testing.TB, n, batch int, keys *tokenKeys) (exchange, rotation float64) {
	t.Helper()
	ctx := context.Background()
	s := openGroupTest(t)
	s.stopCkpt() // the frame count must not be reset by a checkpoint
	<-s.ckptDone
	if _, err := s.w.ExecContext(ctx, `PRAGMA wal_autocheckpoint = 1000000`); err != nil {
		t.Fatal(err)
	}
	frames := func() int {
		var busy, log, done int
		if err := s.w.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &log, &done); err != nil {
			t.Fatal(err)
		}
		return log
	}
	now := time.Now()
	codes, rts, nexts := seedCodes(t, s, n, keys)
	run := func(op func(c *store.AuthCode) error) float64 {
		frames() // checkpoint and empty the WAL
		var before int
		if err := s.w.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(new(int), &before, new(int)); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i += batch {
			release := func() {}
			if batch > 1 {
				release = holdLead(t, s, batch)
			}
			var wg sync.WaitGroup
			for _, c := range codes[i : i+batch] {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := op(c); err != nil {
						t.Error(err)
					}
				}()
			}
			release()
			wg.Wait()
		}
		var after int
		if err := s.w.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(new(int), &after, new(int)); err != nil {
			t.Fatal(err)
		}
		return float64(after-before) / float64(n)
	}
	exchange = run(func(c *store.AuthCode) error {
		_, err := s.RedeemAuthCode(ctx, c.Hash, func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
			g, rt, err := grantFor(c)
			rt.Hash = rts[c.GrantID]
			return g, rt, err
		})
		return err
	})
	rotation = run(func(c *store.AuthCode) error {
		return s.RotateRefreshToken(ctx, rts[c.GrantID], &store.RefreshToken{Hash: nexts[c.GrantID],
			GrantID: c.GrantID, ClientID: c.ClientID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, now)
	})
	return exchange, rotation
}

// A batch of 8 writes the pages the requests share (b-tree interior pages,
// the appending leaves) once: clearly fewer WAL frames per request than one
// transaction each.
func TestGroupCommitWritesFewerPages(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a few thousand pages")
	}
	const n = 512
	ex1, rot1 := walFramesPerOp(t, n, 1, newTokenKeys(true))
	ex8, rot8 := walFramesPerOp(t, n, 8, newTokenKeys(true))
	t.Logf("WAL frames per exchange: %.2f alone, %.2f in batches of 8; per rotation: %.2f alone, %.2f in batches of 8", ex1, ex8, rot1, rot8)
	if ex8 > 0.7*ex1 || rot8 > 0.7*rot1 {
		t.Errorf("batches of 8 write %.2f and %.2f frames per exchange and rotation, alone %.2f and %.2f: want at most 0.7×", ex8, rot8, ex1, rot1)
	}
}

// A write that panics fails alone: its caller panics, the others in its
// batch commit, and later writes still get the lead.
func TestGroupCommitPanicStaysInItsRequest(t *testing.T) {
	ctx := context.Background()
	s := openGroupTest(t)
	codes := []*store.AuthCode{newCode(t, s, "a"), newCode(t, s, "b"), newCode(t, s, "c")}
	release := holdLead(t, s, len(codes))
	errs := make([]error, len(codes))
	var wg sync.WaitGroup
	for i, c := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if p := recover(); p != nil {
					errs[i] = fmt.Errorf("panic: %v", p)
				}
			}()
			_, errs[i] = s.RedeemAuthCode(ctx, c.Hash, func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
				if i == 1 {
					panic("issue bug")
				}
				return grantFor(c)
			})
		}()
	}
	release()
	answered := make(chan struct{})
	go func() { wg.Wait(); close(answered) }()
	select {
	case <-answered:
	case <-time.After(10 * time.Second):
		t.Fatal("the batch with a panicking write was never answered")
	}
	if errs[0] != nil || errs[2] != nil || errs[1] == nil || errs[1].Error() != "panic: issue bug" {
		t.Fatalf("errors %v; want nil, the panic, nil", errs)
	}
	if _, err := s.GetGrant(ctx, codes[1].GrantID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the panicking request's grant: %v, want none", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.RedeemAuthCode(ctx, codes[1].Hash, func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) { return grantFor(c) })
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("redeem after the panic: %v (the code must be unspent)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a write after the panic never got the lead")
	}
}

// inOrder starts each of fns in its own goroutine, each once the previous
// one's write is queued (behind holdLead), so they run in this order in
// one batch; wait waits for all of them.
func inOrder(t *testing.T, s *Store, fns ...func()) (wait func()) {
	t.Helper()
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Go(fn)
		for deadline := time.Now().Add(10 * time.Second); s.group.Queued() != i+1; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("write %d never queued", i)
			}
		}
	}
	return wg.Wait
}

// A batch runs without savepoints; when an op fails after writing, the
// batch runs again, so that the failed op's writes go and every other op's
// writes are committed exactly once.
func TestGroupCommitOptimisticBatch(t *testing.T) {
	ctx := context.Background()
	failed := errors.New("failed after writing")
	for _, tc := range []struct {
		name      string
		fail      int   // the op that fails after writing, or -1
		wantRuns  []int // how often each op ran
		wantSaved []int // the ops whose rows are stored
	}{
		{"no failure", -1, []int{1, 1, 1, 1}, []int{0, 1, 2, 3}},
		// Ops 0-2 run optimistically, then all four with savepoints.
		{"op 2 fails", 2, []int{2, 2, 2, 1}, []int{0, 1, 3}},
		{"op 0 fails", 0, []int{2, 1, 1, 1}, []int{1, 2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openGroupTest(t)
			if _, err := s.w.ExecContext(ctx, `CREATE TABLE rows_ (op INTEGER PRIMARY KEY);
				CREATE TABLE counter (n INTEGER NOT NULL); INSERT INTO counter VALUES (0)`); err != nil {
				t.Fatal(err)
			}
			const n = 4
			runs := make([]int, n)
			savepoint := make([]bool, n) // the op's last run was under a savepoint
			errs := make([]error, n)
			fns := make([]func(), n)
			for i := range n {
				fns[i] = func() {
					errs[i] = s.write(ctx, func(ctx context.Context, tx *rawConn) error {
						runs[i]++
						// ROLLBACK TO a savepoint opened just before this op
						// undoes nothing; without one it fails.
						_, err := tx.exec(ctx, qRollbackTo)
						savepoint[i] = err == nil
						if _, err := tx.exec(ctx, `INSERT INTO rows_ (op) VALUES (?)`, i); err != nil {
							return err
						}
						if _, err := tx.exec(ctx, `UPDATE counter SET n = n + 1`); err != nil {
							return err
						}
						if i == tc.fail {
							return failed
						}
						return nil
					})
				}
			}
			release := holdLead(t, s, n)
			wait := inOrder(t, s, fns...)
			release()
			wait()
			for i, err := range errs {
				if want := error(nil); i == tc.fail {
					if !errors.Is(err, failed) {
						t.Errorf("op %d: %v, want its own error", i, err)
					}
				} else if err != want {
					t.Errorf("op %d: %v", i, err)
				}
				if savepoint[i] != (tc.fail >= 0) {
					t.Errorf("op %d ran under a savepoint: %v, want %v", i, savepoint[i], tc.fail >= 0)
				}
			}
			if fmt.Sprint(runs) != fmt.Sprint(tc.wantRuns) {
				t.Errorf("runs %v, want %v", runs, tc.wantRuns)
			}
			var saved []int
			rows, err := s.w.QueryContext(ctx, `SELECT op FROM rows_ ORDER BY op`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var op int
				if err := rows.Scan(&op); err != nil {
					t.Fatal(err)
				}
				saved = append(saved, op)
			}
			rows.Close()
			if fmt.Sprint(saved) != fmt.Sprint(tc.wantSaved) {
				t.Errorf("rows of ops %v stored, want %v", saved, tc.wantSaved)
			}
			var count int
			if err := s.w.QueryRowContext(ctx, `SELECT n FROM counter`).Scan(&count); err != nil {
				t.Fatal(err)
			}
			if count != len(tc.wantSaved) {
				t.Errorf("counter %d, want %d: each committed op's writes once", count, len(tc.wantSaved))
			}
		})
	}
}

// A redemption and a rotation that run a second time, because a later op
// of their batch failed, answer as the first run would have: issue is
// called once, and the grant, the tokens and the spent code are stored
// once.
func TestGroupCommitRerunAnswersTheSame(t *testing.T) {
	ctx := context.Background()
	s := openGroupTest(t)
	rc := newCode(t, s, "rotated")
	if _, err := s.RedeemAuthCode(ctx, rc.Hash, func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) { return grantFor(c) }); err != nil {
		t.Fatal(err)
	}
	old, next := store.HashKey("rt-"+rc.GrantID), store.HashKey("rt-next")
	c := newCode(t, s, "x")
	var (
		issued    int
		got       *store.AuthCode
		redeemErr error
		rotateErr error
		failErr   error
	)
	failed := errors.New("failed after writing")
	release := holdLead(t, s, 3)
	wait := inOrder(t, s,
		func() {
			got, redeemErr = s.RedeemAuthCode(ctx, c.Hash, func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
				issued++
				c.Resource = "set by issue" // what the caller gets back
				return grantFor(c)
			})
		},
		func() {
			now := time.Now()
			rotateErr = s.RotateRefreshToken(ctx, old, &store.RefreshToken{Hash: next, GrantID: rc.GrantID, ClientID: rc.ClientID,
				CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, now)
		},
		func() {
			failErr = s.write(ctx, func(ctx context.Context, tx *rawConn) error {
				if _, err := tx.exec(ctx, qInsertCode, key("partial"), "partial", "client", "", "", "", "", "",
					"grant-partial", []byte{}, []byte{}, 0); err != nil {
					return err
				}
				return failed
			})
		})
	release()
	wait()
	if redeemErr != nil || got == nil || got.GrantID != c.GrantID || got.Resource != "set by issue" || issued != 1 {
		t.Fatalf("redeem: %+v, %v, issue called %d times; want the code as issue left it, nil, 1", got, redeemErr, issued)
	}
	if rotateErr != nil || !errors.Is(failErr, failed) {
		t.Fatalf("rotate: %v; failing op: %v", rotateErr, failErr)
	}
	if _, err := s.GetGrant(ctx, c.GrantID); err != nil {
		t.Errorf("the redemption's grant: %v", err)
	}
	if _, err := s.GetRefreshToken(ctx, store.HashKey("rt-"+c.GrantID)); err != nil {
		t.Errorf("the redemption's refresh token: %v", err)
	}
	if _, err := s.RedeemAuthCode(ctx, c.Hash, func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) { return grantFor(c) }); !errors.Is(err, store.ErrAlreadyUsed) {
		t.Errorf("the code redeemed again: %v, want ErrAlreadyUsed", err)
	}
	if rt, err := s.GetRefreshToken(ctx, old); err != nil || rt.ReplacedBy != next {
		t.Errorf("the rotated token: %+v, %v; want replaced by its successor", rt, err)
	}
	if _, err := s.GetRefreshToken(ctx, next); err != nil {
		t.Errorf("the successor: %v", err)
	}
	var partial int
	if err := s.w.QueryRowContext(ctx, `SELECT count(*) FROM auth_codes WHERE k = ?`, key("partial")).Scan(&partial); err != nil || partial != 0 {
		t.Errorf("the failed op's row: %d stored (%v), want none", partial, err)
	}
}
