package ratelimit

import (
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestInFlightBoundPerKey(t *testing.T) {
	l := NewInFlight(2, 1000)
	a1, ok1 := l.Acquire("a")
	a2, ok2 := l.Acquire("a")
	if !ok1 || !ok2 {
		t.Fatal("the first two requests of a key must be allowed")
	}
	if _, ok := l.Acquire("a"); ok {
		t.Fatal("a third request in flight was allowed")
	}
	if _, ok := l.Acquire("b"); !ok {
		t.Fatal("another key was refused because of a busy one")
	}
	a1.Release()
	a3, ok := l.Acquire("a")
	if !ok {
		t.Fatal("a released slot was not given back")
	}
	if got := l.InFlight("a"); got != 2 {
		t.Errorf("InFlight(a) = %d, want 2", got)
	}
	a2.Release()
	a3.Release()
	if got := l.InFlight("a"); got != 0 {
		t.Errorf("InFlight(a) after release = %d, want 0", got)
	}
}

func TestInFlightLongKeysAreHashed(t *testing.T) {
	l := NewInFlight(1, 100)
	long := strings.Repeat("x", 10_000)
	if _, ok := l.Acquire(long); !ok {
		t.Fatal("refused")
	}
	if _, ok := l.Acquire(long); ok {
		t.Error("the same long key got a second slot")
	}
	if got := l.InFlight(long); got != 1 {
		t.Errorf("InFlight = %d, want 1", got)
	}
}

// TestInFlightTableBounded: a flood of distinct keys never grows the table
// past its bound; idle counters make room for new keys, busy ones do not.
func TestInFlightTableBounded(t *testing.T) {
	const maxKeys = 64 // 2 per shard
	l := NewInFlight(1, maxKeys)
	var held []*Slot
	refused := 0
	for i := range 10_000 {
		s, ok := l.Acquire("k" + strconv.Itoa(i))
		if !ok {
			refused++
			continue
		}
		held = append(held, s)
	}
	if n := l.Keys(); n > maxKeys {
		t.Fatalf("table holds %d keys, bound %d", n, maxKeys)
	}
	if refused == 0 || len(held) > maxKeys {
		t.Fatalf("busy table: %d refused, %d held", refused, len(held))
	}
	for _, s := range held {
		s.Release()
	}
	// Every counter is now zero: new keys take their place.
	for i := range 1000 {
		s, ok := l.Acquire("new" + strconv.Itoa(i))
		if !ok {
			t.Fatalf("new key %d refused although every old key is idle", i)
		}
		s.Release()
	}
	if n := l.Keys(); n > maxKeys {
		t.Fatalf("table holds %d keys, bound %d", n, maxKeys)
	}
}

func TestInFlightConcurrent(t *testing.T) {
	const bound = 5
	l := NewInFlight(bound, 1000)
	var wg sync.WaitGroup
	var mu sync.Mutex
	cur, peak := 0, 0
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				s, ok := l.Acquire("u")
				if !ok {
					continue
				}
				mu.Lock()
				cur++
				peak = max(peak, cur)
				mu.Unlock()
				mu.Lock()
				cur--
				mu.Unlock()
				s.Release()
			}
		}()
	}
	wg.Wait()
	if peak > bound {
		t.Errorf("peak in flight = %d, bound %d", peak, bound)
	}
	if got := l.InFlight("u"); got != 0 {
		t.Errorf("InFlight after all released = %d", got)
	}
}

func TestInFlightNilAllows(t *testing.T) {
	var l *InFlight
	s, ok := l.Acquire("x")
	if !ok {
		t.Fatal("nil limiter refused")
	}
	s.Release() // no panic
}

// TestInFlightNoAllocation: a key already in the table costs no allocation
// per request (the gateway's hot path).
func TestInFlightNoAllocation(t *testing.T) {
	l := NewInFlight(10, 1000)
	key := "https://issuer.example#alice"
	s, _ := l.Acquire(key)
	s.Release()
	if n := testing.AllocsPerRun(1000, func() {
		s, _ := l.Acquire(key)
		s.Release()
	}); n != 0 {
		t.Errorf("Acquire+Release allocates %v times", n)
	}
}
