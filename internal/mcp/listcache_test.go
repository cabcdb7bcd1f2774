package mcp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// cachedFilter is the gateway's setup: a filter for one tools/list request
// whose results go through c under (gen, scope). calls counts keep's calls.
func cachedFilter(t testing.TB, c *ListCache, gen uint64, scope string, keep func(string) bool, calls *int) *ListFilter {
	t.Helper()
	req, err := Decode([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	if err != nil {
		t.Fatal(err)
	}
	f := NewListFilter(req, func(_, name string) bool {
		if calls != nil {
			*calls++
		}
		return keep(name)
	})
	f.UseCache(c, gen, scope)
	return f
}

func rewriteOnce(t *testing.T, f *ListFilter, msg string) string {
	t.Helper()
	out := f.Rewrite([]byte(msg))
	if out == nil {
		t.Fatalf("Rewrite(%.80s…) refused", msg)
	}
	s := string(out)
	f.Release()
	return s
}

const (
	cacheList   = `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"list_a"},{"name":"delete_b"},{"name":"get_c"}],"nextCursor":"n"}}`
	cacheListed = `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"list_a"},{"name":"get_c"}],"nextCursor":"n"}}`
)

func readers(n string) bool { return !strings.HasPrefix(n, "delete_") }

// TestListCacheSharedByScope: a second caller with the same scope (the
// same roles) gets the first one's result without deciding any item, and a
// different request id is kept in the answer.
func TestListCacheSharedByScope(t *testing.T) {
	c := NewListCache(16, 1<<20)
	var first, second int
	if got := rewriteOnce(t, cachedFilter(t, c, 1, "r:readers", readers, &first), cacheList); got != cacheListed {
		t.Fatalf("first = %s", got)
	}
	if first != 3 {
		t.Fatalf("first caller decided %d items, want 3", first)
	}
	req, _ := Decode([]byte(`{"jsonrpc":"2.0","id":"x7","method":"tools/list"}`))
	f := NewListFilter(req, func(_, _ string) bool { second++; return true })
	f.UseCache(c, 1, "r:readers")
	msg := strings.Replace(cacheList, `"id":1`, `"id":"x7"`, 1)
	want := strings.Replace(cacheListed, `"id":1`, `"id":"x7"`, 1)
	if got := rewriteOnce(t, f, msg); got != want {
		t.Errorf("second = %s, want %s", got, want)
	}
	if second != 0 {
		t.Errorf("second caller decided %d items, want 0 (a cache hit)", second)
	}
	if st := c.Stats(); st.Hits != 1 || st.Entries != 1 {
		t.Errorf("stats = %+v, want 1 hit and 1 entry", st)
	}
}

// TestListCacheOtherScope: a caller with other roles never gets the
// entry, even for identical backend bytes.
func TestListCacheOtherScope(t *testing.T) {
	c := NewListCache(16, 1<<20)
	rewriteOnce(t, cachedFilter(t, c, 1, "r:admins", func(string) bool { return true }, nil), cacheList)
	var calls int
	got := rewriteOnce(t, cachedFilter(t, c, 1, "r:readers", readers, &calls), cacheList)
	if got != cacheListed || calls != 3 {
		t.Errorf("other scope: got %s after %d decisions, want %s after 3", got, calls, cacheListed)
	}
	if st := c.Stats(); st.Hits != 0 || st.Entries != 2 {
		t.Errorf("stats = %+v, want no hit and 2 entries", st)
	}
	// Another list method is another key too.
	req, _ := Decode([]byte(`{"jsonrpc":"2.0","id":1,"method":"prompts/list"}`))
	f := NewListFilter(req, func(_, _ string) bool { return false })
	f.UseCache(c, 1, "r:admins")
	if got := rewriteOnce(t, f, cacheList); got != cacheList {
		t.Errorf("prompts/list answered with a tools result: %s", got)
	}
	if st := c.Stats(); st.Hits != 0 {
		t.Errorf("a prompts/list filter hit a tools/list entry: %+v", st)
	}
}

// TestListCacheGeneration: a new policy generation misses and drops the
// old generation's entries; a filter still on the old generation neither
// hits nor stores.
func TestListCacheGeneration(t *testing.T) {
	c := NewListCache(16, 1<<20)
	rewriteOnce(t, cachedFilter(t, c, 1, "r:readers", func(string) bool { return true }, nil), cacheList)
	var calls int
	if got := rewriteOnce(t, cachedFilter(t, c, 2, "r:readers", readers, &calls), cacheList); got != cacheListed || calls != 3 {
		t.Errorf("new generation: got %s after %d decisions, want %s after 3", got, calls, cacheListed)
	}
	if st := c.Stats(); st.Entries != 1 || st.Hits != 0 {
		t.Errorf("stats after reload = %+v, want the new generation's entry only", st)
	}
	calls = 0
	if got := rewriteOnce(t, cachedFilter(t, c, 1, "r:readers", func(string) bool { return true }, &calls), cacheList); got != cacheList || calls != 3 {
		t.Errorf("old generation: got %s after %d decisions", got, calls)
	}
	if st := c.Stats(); st.Entries != 1 || st.Hits != 0 {
		t.Errorf("stats = %+v: the old generation must not be stored again", st)
	}
}

// TestListCacheChangedList: a backend list that changed is filtered anew.
func TestListCacheChangedList(t *testing.T) {
	c := NewListCache(16, 1<<20)
	rewriteOnce(t, cachedFilter(t, c, 1, "r:readers", readers, nil), cacheList)
	changed := strings.Replace(cacheList, `{"name":"get_c"}`, `{"name":"get_c"},{"name":"delete_d"},{"name":"get_e"}`, 1)
	var calls int
	got := rewriteOnce(t, cachedFilter(t, c, 1, "r:readers", readers, &calls), changed)
	want := strings.Replace(cacheListed, `{"name":"get_c"}`, `{"name":"get_c"},{"name":"get_e"}`, 1)
	if got != want || calls != 5 {
		t.Errorf("changed list: got %s after %d decisions, want %s after 5", got, calls, want)
	}
	// Both versions are kept: the old one still hits.
	calls = 0
	if got := rewriteOnce(t, cachedFilter(t, c, 1, "r:readers", readers, &calls), cacheList); got != cacheListed || calls != 0 {
		t.Errorf("old list: got %s after %d decisions", got, calls)
	}
}

// TestListCacheHitKeepsValidation: bytes around a cached result are still
// validated, and a prefix match never lets a broken body through.
func TestListCacheHitKeepsValidation(t *testing.T) {
	c := NewListCache(16, 1<<20)
	rewriteOnce(t, cachedFilter(t, c, 1, "s", readers, nil), cacheList)
	result := cacheList[strings.Index(cacheList, `{"tools"`) : len(cacheList)-1]
	for _, bad := range []string{
		`{"jsonrpc":"2.0","id":1,"result":` + result + `x}`,
		`{"jsonrpc":"2.0","id":1,"result":` + result + `,"result":{}}`,
		`{"jsonrpc":"2.0","id":1,"result":` + result + `,"Result":{}}`,
		`{"jsonrpc":"2.0","id":1,"result":` + result,
		`{"jsonrpc":"2.0","id":1,"result":` + result + `}}`,
		`{"jsonrpc":"2.0","id":1,"id":2,"result":` + result + `}`,
		`{"jsonrpc":"2.0","id":1,"result":` + result[:len(result)-1] + `}`, // one brace short
	} {
		f := cachedFilter(t, c, 1, "s", readers, nil)
		if got := f.Rewrite([]byte(bad)); got != nil {
			t.Errorf("Rewrite(%s) = %s, want nil", bad, got)
		}
		f.Release()
	}
	// A hit in a batch (one level deeper) still filters.
	f := cachedFilter(t, c, 1, "s", func(string) bool { t.Error("decided an item on a hit"); return false }, nil)
	got := string(f.Rewrite([]byte(`[` + cacheList + `,{"jsonrpc":"2.0","id":9,"result":{}}]`)))
	if want := `[` + cacheListed + `,{"jsonrpc":"2.0","id":9,"result":{}}]`; got != want {
		t.Errorf("batch hit = %s, want %s", got, want)
	}
}

// TestListCacheDepth: a result cached one level up is refused where the
// extra level takes it past MaxDepth, as a first scan would refuse it.
func TestListCacheDepth(t *testing.T) {
	nest := strings.Repeat(`[`, MaxDepth-3) + strings.Repeat(`]`, MaxDepth-3)
	msg := `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","x":` + nest + `}]}}`
	if err := validateJSON([]byte(msg), MaxDepth); err == nil {
		t.Fatal("test message is not too deep")
	}
	msg = `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","x":` + nest[1:len(nest)-1] + `}]}}`
	if err := validateJSON([]byte(msg), MaxDepth); err != nil {
		t.Fatalf("test message: %v", err)
	}
	c := NewListCache(16, 1<<20)
	rewriteOnce(t, cachedFilter(t, c, 1, "s", func(string) bool { return true }, nil), msg)
	batch := []byte(`[` + msg + `]`)
	if err := validateJSON(batch, MaxDepth); err == nil {
		t.Fatal("batch is not too deep")
	}
	f := cachedFilter(t, c, 1, "s", func(string) bool { return true }, nil)
	if got := f.Rewrite(batch); got != nil {
		t.Errorf("too deep batch accepted through the cache: %.100s", got)
	}
}

// TestListCacheBound: the cache never holds more than its entry and byte
// bounds; the least recently used entry goes first.
func TestListCacheBound(t *testing.T) {
	list := func(i int) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"t%03d","description":"%s"}]}}`, i, strings.Repeat("x", 200))
	}
	c := NewListCache(4, 1<<20)
	for i := range 10 {
		rewriteOnce(t, cachedFilter(t, c, 1, fmt.Sprintf("scope-%d", i%5), func(string) bool { return true }, nil), list(i))
		if i == 4 {
			// Touch scope-1's entry so that it outlives its elders.
			var calls int
			rewriteOnce(t, cachedFilter(t, c, 1, "scope-1", func(string) bool { return true }, &calls), list(1))
			if calls != 0 {
				t.Fatal("entry 1 was evicted early")
			}
		}
		if st := c.Stats(); st.Entries > 4 {
			t.Fatalf("after %d lists: %d entries, bound 4", i+1, st.Entries)
		}
	}
	st := c.Stats()
	if st.Entries != 4 || st.Evictions != 6 {
		t.Errorf("stats = %+v, want 4 entries and 6 evictions", st)
	}

	// Bytes: each entry is ~300 bytes of input plus overhead.
	c = NewListCache(1000, 8*(300+entryOverhead+64))
	for i := range 40 {
		rewriteOnce(t, cachedFilter(t, c, 1, "s", func(string) bool { return true }, nil), list(i))
		if st := c.Stats(); st.Bytes > 8*(300+entryOverhead+64) {
			t.Fatalf("after %d lists: %d bytes, bound %d", i+1, st.Bytes, 8*(300+entryOverhead+64))
		}
	}
	if st := c.Stats(); st.Evictions == 0 || st.Entries > maxPerKey {
		t.Errorf("stats = %+v, want evictions and at most %d entries for one key", st, maxPerKey)
	}

	// A result larger than an eighth of the bytes is not kept at all.
	c = NewListCache(1000, 1000)
	rewriteOnce(t, cachedFilter(t, c, 1, "s", func(string) bool { return true }, nil), list(0))
	if st := c.Stats(); st.Entries != 0 {
		t.Errorf("oversized result stored: %+v", st)
	}
}

// TestListCachePerKeyBound: the pages of one key replace each other
// beyond maxPerKey.
func TestListCachePerKeyBound(t *testing.T) {
	c := NewListCache(1000, 1<<20)
	for i := range maxPerKey + 3 {
		rewriteOnce(t, cachedFilter(t, c, 1, "s", func(string) bool { return true }, nil),
			fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"p%d"}],"nextCursor":"%d"}}`, i, i+1))
	}
	if st := c.Stats(); st.Entries != maxPerKey || st.Evictions != 3 {
		t.Errorf("stats = %+v, want %d entries, 3 evictions", st, maxPerKey)
	}
}

// TestListCacheStream: a stream filter's results are cached apart from a
// request's (they are filtered by every shape).
func TestListCacheStream(t *testing.T) {
	c := NewListCache(16, 1<<20)
	msg := `{"jsonrpc":"2.0","id":4,"result":{"tools":[{"name":"list_a"},{"name":"delete_b"}],"prompts":[{"name":"delete_p"}]}}`
	want := `{"jsonrpc":"2.0","id":4,"result":{"tools":[{"name":"list_a"}],"prompts":[]}}`
	for i := range 2 {
		var calls int
		f := NewStreamListFilter(func(_, n string) bool { calls++; return readers(n) })
		f.UseCache(c, 1, "s")
		if got := rewriteOnce(t, f, msg); got != want {
			t.Errorf("round %d: got %s, want %s", i, got, want)
		}
		if wantCalls := []int{3, 0}[i]; calls != wantCalls {
			t.Errorf("round %d: %d decisions, want %d", i, calls, wantCalls)
		}
	}
	// A request's filter (tools only) must not take the stream's entry.
	var calls int
	got := rewriteOnce(t, cachedFilter(t, c, 1, "s", readers, &calls), strings.Replace(msg, `"id":4`, `"id":1`, 1))
	if want := `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"list_a"}],"prompts":[{"name":"delete_p"}]}}`; got != want || calls != 2 {
		t.Errorf("request after stream: got %s after %d decisions", got, calls)
	}
}

// TestListCacheMixedBatchUncached: a batch asking for two kinds of list has
// no single method to key results by; it is filtered without the cache.
func TestListCacheMixedBatchUncached(t *testing.T) {
	c := NewListCache(16, 1<<20)
	req, _ := Decode([]byte(`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"prompts/list"}]`))
	f := NewListFilter(req, func(_, n string) bool { return readers(n) })
	f.UseCache(c, 1, "s")
	got := rewriteOnce(t, f, `[`+cacheList+`,{"jsonrpc":"2.0","id":2,"result":{"prompts":[{"name":"delete_p"}]}}]`)
	if want := `[` + cacheListed + `,{"jsonrpc":"2.0","id":2,"result":{"prompts":[]}}]`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if st := c.Stats(); st.Entries != 0 || st.Hits+st.Misses != 0 {
		t.Errorf("stats = %+v, want the cache untouched", st)
	}
}

// TestListCacheUnchangedServesInput: a list nothing is removed from is
// cached as "unchanged" and answered with the backend's own bytes.
func TestListCacheUnchangedServesInput(t *testing.T) {
	c := NewListCache(16, 1<<20)
	for range 2 {
		f := cachedFilter(t, c, 1, "all", func(string) bool { return true }, nil)
		in := []byte(cacheList)
		out := f.Rewrite(in)
		if &out[0] != &in[0] || len(out) != len(in) {
			t.Errorf("unchanged list was copied: %s", out)
		}
		f.Release()
	}
	if st := c.Stats(); st.Hits != 1 {
		t.Errorf("stats = %+v, want 1 hit", st)
	}
}

// FuzzFilterListDifferential: the one-pass filter agrees with the filter it
// replaced (validate, then navigate) on every input, with and without the
// cache, for a request's filter and a stream's.
func FuzzFilterListDifferential(f *testing.F) {
	f.Add([]byte(cacheList), "list_a", uint8(0))
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"Result":{"Tools":[{"Name":"a"},{"name":"b"}],"tools ":1}}`), "b", uint8(0))
	f.Add([]byte(`[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}]}},{"id":1,"result":{"tools":7}}]`), "a", uint8(1))
	f.Add([]byte(`{"id":"1","result":{"resources":[{"uri":"a"},{"uri":"b","name":"a"}],"prompts":[{"name":"a"}]},"method":"x"}`), "a", uint8(2))
	f.Add([]byte(`{"id":1.0,"result":{"resourceTemplates":[{"uriTemplate":"a"},{"uriTemplate":1}]}}`), "a", uint8(3))
	f.Fuzz(func(t *testing.T, msg []byte, allowed string, which uint8) {
		method := shapes[which%numShapes].method
		keep := func(n string) bool { return n == allowed }
		got, err := FilterList(msg, method, keep)
		want, werr := refFilterList(msg, method, keep)
		if (err == nil) != (werr == nil) || err == nil && !bytes.Equal(got, want) {
			t.Fatalf("FilterList(%q) = %q, %v; before: %q, %v", msg, got, err, want, werr)
		}

		req, derr := Decode([]byte(`{"jsonrpc":"2.0","id":1,"method":"` + method + `"}`))
		if derr != nil {
			t.Fatal(derr)
		}
		keep2 := func(_, n string) bool { return n == allowed }
		ref := &refListFilter{pending: map[string]string{"1": method}, keep: keep2}
		refStream := &refListFilter{all: true, keep: keep2}
		c := NewListCache(16, 1<<20)
		for round := range 2 { // the second round hits the cache where the first stored
			for _, stream := range []bool{false, true} {
				lf, r := NewListFilter(req, keep2), ref
				if stream {
					lf, r = NewStreamListFilter(keep2), refStream
				}
				lf.UseCache(c, 1, "s")
				got, want := lf.Rewrite(msg), r.Rewrite(msg)
				if !sameJSON(got, want) {
					t.Fatalf("round %d stream=%v: Rewrite(%q) = %q; before: %q", round, stream, msg, got, want)
				}
				lf.Release()
			}
		}
	})
}

// sameJSON: both nil, or both the same JSON text up to insignificant
// whitespace (the old filter trimmed it around a message).
func sameJSON(a, b []byte) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return false
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

// TestListCacheKeepsListsOnly: a stream replays other responses too; only
// list results are kept.
func TestListCacheKeepsListsOnly(t *testing.T) {
	c := NewListCache(16, 1<<20)
	f := NewStreamListFilter(func(_, _ string) bool { return true })
	f.UseCache(c, 1, "s")
	rewriteOnce(t, f, `{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"hello"}]}}`)
	if st := c.Stats(); st.Entries != 0 {
		t.Errorf("a tools/call result was cached: %+v", st)
	}
}

// TestListCacheConcurrent: callers of several scopes filtering several lists
// at once, with evictions, always get their own correct answer (run with
// -race).
func TestListCacheConcurrent(t *testing.T) {
	c := NewListCache(3, 1<<20)
	lists := []string{cacheList, strings.Replace(cacheList, `"get_c"`, `"get_d"`, 1)}
	keeps := map[string]func(string) bool{
		"readers": readers,
		"all":     func(string) bool { return true },
		"none":    func(string) bool { return false },
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				scope := []string{"readers", "all", "none"}[(g+i)%3]
				msg := lists[i%2]
				want, err := FilterList([]byte(msg), "tools/list", keeps[scope])
				if err != nil {
					t.Error(err)
					return
				}
				f := cachedFilter(t, c, 1, scope, keeps[scope], nil)
				if got := f.Rewrite([]byte(msg)); !bytes.Equal(got, want) {
					t.Errorf("%s: got %s, want %s", scope, got, want)
				}
				f.Release()
			}
		}()
	}
	wg.Wait()
	// Hits and evictions are asserted by the sequential tests: here, with six
	// (scope, list) pairs in three entries, an unlucky schedule may miss
	// every time.
	if st := c.Stats(); st.Entries > 3 || st.Hits+st.Misses != 1600 {
		t.Errorf("stats = %+v, want at most 3 entries and 1600 lookups", st)
	}
}
