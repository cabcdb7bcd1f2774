package sqlite

import (
	"context"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// Helpers shared by this package's internal and external tests.

// ReadWhile keeps two readers looking up a client on s, as the token
// endpoint does, until the returned stop is called; stop waits for them.
func ReadWhile(s *Store) (stop func()) {
	done := make(chan struct{})
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
					s.GetClient(context.Background(), "client-0")
				}
			}
		})
	}
	return func() {
		close(done)
		readers.Wait()
	}
}

// WriteClients creates n clients with 16 KiB of metadata each (800: about
// 13 MB, several times WALSizeLimit), calling after once each is written.
func WriteClients(tb testing.TB, s *Store, n int, after func()) {
	tb.Helper()
	WriteClientsFrom(tb, s, 0, n, after)
}

// WriteClientsFrom is WriteClients for the clients numbered from first on.
func WriteClientsFrom(tb testing.TB, s *Store, first, n int, after func()) {
	tb.Helper()
	meta := make([]byte, 16<<10)
	for i := first; i < first+n; i++ {
		if err := s.CreateClient(context.Background(), &store.Client{ID: "client-" + strconv.Itoa(i), Metadata: meta, CreatedAt: time.Now()}); err != nil {
			tb.Fatal(err)
		}
		after()
	}
}

// WALSize is the size of the -wal file of the database at path (0 when
// there is none).
func WALSize(path string) int64 {
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		return 0
	}
	return fi.Size()
}

// WaitWALBounded fails tb unless the -wal file of the database at path is
// back under WALSizeLimit within 10 s.
func WaitWALBounded(tb testing.TB, path string) {
	tb.Helper()
	for deadline := time.Now().Add(10 * time.Second); WALSize(path) > WALSizeLimit; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("-wal file still %d bytes after the writes, limit %d", WALSize(path), WALSizeLimit)
		}
	}
}
