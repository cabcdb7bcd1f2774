package mcp

import (
	"io"
	"strings"
	"testing"
)

// The list filtering benchmarks run the filter this package had before the
// one-pass scanner ("before", listref_test.go) next to the current one
// ("after"), and the current one with the cache hit that every caller but
// the first of a role set gets ("cached"), so that one run gives the ratios.

func benchKeep(n string) bool { return strings.HasPrefix(n, "list_") || strings.HasPrefix(n, "get_") }

func BenchmarkFilterList100(b *testing.B) {
	msg := toolList(100)
	for _, bc := range []struct {
		name   string
		filter func([]byte, string, func(string) bool) ([]byte, error)
	}{{"before", refFilterList}, {"after", FilterList}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.filter(msg, "tools/list", benchKeep); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchRewriters return, per request, the rewrite function of a list
// filter as the gateway sets it up, and its release.
func benchRewriters(b *testing.B) map[string]func() (func([]byte) []byte, func()) {
	req, err := Decode([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	if err != nil {
		b.Fatal(err)
	}
	keep := func(_, n string) bool { return benchKeep(n) }
	cache := NewListCache(DefaultListCacheEntries, DefaultListCacheBytes)
	return map[string]func() (func([]byte) []byte, func()){
		"before": func() (func([]byte) []byte, func()) {
			f := &refListFilter{pending: map[string]string{IDKey(req.Calls[0].ID): "tools/list"}, keep: keep}
			return f.Rewrite, func() {}
		},
		"after": func() (func([]byte) []byte, func()) {
			f := NewListFilter(req, keep)
			return f.Rewrite, f.Release
		},
		"cached": func() (func([]byte) []byte, func()) {
			f := NewListFilter(req, keep)
			f.UseCache(cache, 1, "r:role-18")
			return f.Rewrite, f.Release
		},
	}
}

// BenchmarkListFilterRewrite100 is the gateway's path for a JSON tools/list
// answer: a filter for the request, then one Rewrite of the body.
func BenchmarkListFilterRewrite100(b *testing.B) {
	msg := toolList(100)
	rw := benchRewriters(b)
	for _, name := range []string{"before", "after", "cached"} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				rewrite, release := rw[name]()
				if rewrite(msg) == nil {
					b.Fatal("refused")
				}
				release()
			}
		})
	}
}

// BenchmarkSSEFilterListEvent is the gateway's path for an SSE tools/list
// answer: the response event, with an id, run through an SSEFilter.
func BenchmarkSSEFilterListEvent(b *testing.B) {
	stream := append(append([]byte("event: message\nid: 1_0\ndata: "), toolList(100)...), "\n\n"...)
	rw := benchRewriters(b)
	for _, name := range []string{"before", "after", "cached"} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(stream)))
			b.ReportAllocs()
			for b.Loop() {
				rewrite, release := rw[name]()
				f := NewSSEFilter(io.Discard, nil, rewrite)
				if _, err := f.Write(stream); err != nil {
					b.Fatal(err)
				}
				f.Release() // as the gateway does when the response ends
				release()
			}
		})
	}
}
