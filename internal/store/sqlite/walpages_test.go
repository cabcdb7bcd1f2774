package sqlite

import (
	"context"
	"encoding/binary"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// BenchmarkWALFramesByBtree counts which b-trees the WAL frames of 2000
// exchanges and then 2000 rotations (batches of 4, ordered keys and grant
// IDs) belong to, per grant: the frames read back from the -wal file, each
// page mapped to its b-tree with dbstat. Exact; run with -benchtime 1x -v.
func BenchmarkWALFramesByBtree(b *testing.B) {
	for range b.N {
		walFramesByBtree(b)
	}
}

func walFramesByBtree(t *testing.B) {
	ctx := context.Background()
	s := openGroupTest(t)
	s.stopCkpt()
	<-s.ckptDone
	s.w.ExecContext(ctx, `PRAGMA wal_autocheckpoint = 1000000`)
	keys := newTokenKeys(true)
	const n, batch = 2000, 4
	now := time.Now()
	codes, rts, nexts := seedCodes(t, s, n, keys)
	path := s.walPath
	pages := func(label string) {
		t.Helper()
		b, _ := os.ReadFile(path)
		cnt := map[uint32]int{}
		frames := 0
		for off := 32; off+24+4096 <= len(b); off += 24 + 4096 {
			cnt[binary.BigEndian.Uint32(b[off:])]++
			frames++
		}
		rows, _ := s.w.Query(`SELECT name, pageno FROM dbstat`)
		owner := map[uint32]string{}
		for rows.Next() {
			var name string
			var p uint32
			rows.Scan(&name, &p)
			owner[p] = name
		}
		rows.Close()
		by := map[string]int{}
		for p, c := range cnt {
			by[owner[p]] += c
		}
		var names []string
		for k := range by {
			names = append(names, k)
		}
		sort.Strings(names)
		t.Logf("%s: %d frames (%.2f per grant)", label, frames, float64(frames)/n)
		t.ReportMetric(float64(frames)/n, "frames/"+label)
		for _, k := range names {
			t.Logf("   %-32s %.2f", k, float64(by[k])/n)
		}
	}
	run := func(op func(c *store.AuthCode) error) {
		var x int
		s.w.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&x, &x, &x)
		for i := 0; i < n; i += batch {
			release := holdLead(t, s, batch)
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
	}
	run(func(c *store.AuthCode) error {
		_, err := s.RedeemAuthCode(ctx, c.Hash, func(c *store.AuthCode) (*store.Grant, *store.RefreshToken, error) {
			g, rt, err := grantFor(c)
			rt.Hash = rts[c.GrantID]
			return g, rt, err
		})
		return err
	})
	pages("exchange")
	run(func(c *store.AuthCode) error {
		return s.RotateRefreshToken(ctx, rts[c.GrantID], &store.RefreshToken{Hash: nexts[c.GrantID],
			GrantID: c.GrantID, ClientID: c.ClientID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, now)
	})
	pages("rotation")
}
