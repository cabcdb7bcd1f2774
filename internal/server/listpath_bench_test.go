package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/mcp"
)

// benchList is a 106-tool tools/list answer shaped like the demo backend's
// (bench/), of which the policy below hides two.
func benchList() []byte {
	var b strings.Builder
	b.WriteString(`{"jsonrpc":"2.0","id":1,"result":{"tools":[`)
	for i := range 106 {
		if i > 0 {
			b.WriteByte(',')
		}
		name := fmt.Sprintf("tool_%03d", i)
		if i%53 == 0 {
			name = fmt.Sprintf("delete_%03d", i)
		}
		fmt.Fprintf(&b, `{"name":%q,"description":"Padding tool %d: does nothing, for list sizes.","inputSchema":{"type":"object","properties":{"n":{"type":"integer"}}},"annotations":{"readOnlyHint":true}}`, name, i)
	}
	b.WriteString(`]}}`)
	return []byte(b.String())
}

// listPath runs the list-specific work of one tools/list answer in the
// gateway, as the proxy does it: the filter set up for the request, then
// the backend's body (JSON or SSE) read, filtered and copied out. With
// filter false the body is only copied, as the proxy copies an answer it
// does not filter: the reference.
type listPath struct {
	g    *gateway
	msg  *mcp.Message
	p    *identity.Principal
	req  *http.Request
	buf  []byte
	out  bytes.Buffer
	list []byte
}

func newListPath(tb testing.TB) *listPath {
	cfg, err := config.Parse([]byte(`
auth: { mode: none }
policy: { roles: { all: { tools: ["tool_*"] } }, users: { "sub:anonymous": [all] } }
backends: [ { name: demo, url: "http://127.0.0.1:1/mcp" } ]
audit: { sink: none }
`), func(string) (string, bool) { return "", false }, config.Overrides{})
	if err != nil {
		tb.Fatal(err)
	}
	s, err := newServer(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	msg, err := mcp.Decode([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	if err != nil {
		tb.Fatal(err)
	}
	return &listPath{
		g: &gateway{name: "demo", policy: s.policy, lists: mcp.NewListCache(mcp.DefaultListCacheEntries, mcp.DefaultListCacheBytes),
			log: slog.New(slog.DiscardHandler)},
		msg: msg, p: &identity.Principal{Subject: "anonymous"}, req: httptest.NewRequest("POST", "/mcp", nil),
		buf: make([]byte, 32<<10), list: benchList(),
	}
}

// body is the backend's answer in mode "json" or "sse" (an event with an id).
func (lp *listPath) body(mode string) (contentType string, body []byte) {
	if mode == "sse" {
		return "text/event-stream", append(append([]byte("event: message\nid: 1_0\ndata: "), lp.list...), "\n\n"...)
	}
	return "application/json", lp.list
}

func (lp *listPath) run(tb testing.TB, ct string, body []byte, filter bool) {
	x := &exchange{msg: lp.msg}
	resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {ct}}, ContentLength: -1,
		Body: io.NopCloser(bytes.NewReader(body)), Request: lp.req}
	if filter {
		if err := lp.g.listFilter(x, lp.p)(resp); err != nil {
			tb.Fatal(err)
		}
	}
	lp.out.Reset()
	if _, err := io.CopyBuffer(&lp.out, resp.Body, lp.buf); err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	if x.refused {
		tb.Fatal("refused")
	}
}

// BenchmarkListResponse is the list-specific work of one tools/list
// answer in the gateway, on a list cache hit (every caller but the first
// of a role set), for a JSON and an SSE answer; "passthrough" is the same
// JSON body copied unfiltered.
func BenchmarkListResponse(b *testing.B) {
	lp := newListPath(b)
	for _, bc := range []struct {
		name, mode string
		filter     bool
	}{{"passthrough", "json", false}, {"json", "json", true}, {"sse", "sse", true}} {
		b.Run(bc.name, func(b *testing.B) {
			ct, body := lp.body(bc.mode)
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				lp.run(b, ct, body, bc.filter)
			}
			if bytes.Contains(lp.out.Bytes(), []byte("delete_")) != !bc.filter {
				b.Fatalf("not filtered as expected: %.200s", lp.out.Bytes())
			}
		})
	}
}

// TestListResponseAllocs bounds the allocations a cached list answer costs
// beyond copying it: the filter and its state, the caller's view and the
// body come from one allocation each or from pools, not from per-request
// maps, readers and copies (before: 11 for JSON, 15 for SSE).
func TestListResponseAllocs(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation counts (not under -race, whose pools drop buffers)")
	}
	lp := newListPath(t)
	ct, list := lp.body("json")
	base := testing.AllocsPerRun(200, func() { lp.run(t, ct, list, false) })
	for mode, max := range map[string]float64{"json": 7, "sse": 8} {
		ct, body := lp.body(mode)
		lp.run(t, ct, body, true) // the first caller fills the list cache
		got := testing.AllocsPerRun(200, func() { lp.run(t, ct, body, true) }) - base
		if got > max {
			t.Errorf("%s: %.0f allocations per cached list answer, want at most %.0f", mode, got, max)
		}
		if bytes.Contains(lp.out.Bytes(), []byte("delete_")) {
			t.Errorf("%s: not filtered: %.200s", mode, lp.out.Bytes())
		}
	}
}
