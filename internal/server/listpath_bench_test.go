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

// BenchmarkListResponse is the list-specific work of one tools/list
// answer in the gateway, on a list cache hit (every caller but the first
// of a role set): the filter set up for the request, the backend's body
// read, filtered and served, for a JSON and an SSE answer. "passthrough"
// is the reference: the same body copied as the proxy copies an answer it
// does not filter.
func BenchmarkListResponse(b *testing.B) {
	cfg, err := config.Parse([]byte(`
auth: { mode: none }
policy: { roles: { all: { tools: ["tool_*"] } }, users: { "sub:anonymous": [all] } }
backends: [ { name: demo, url: "http://127.0.0.1:1/mcp" } ]
audit: { sink: none }
`), func(string) (string, bool) { return "", false }, config.Overrides{})
	if err != nil {
		b.Fatal(err)
	}
	s, err := newServer(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	g := &gateway{name: "demo", policy: s.policy, lists: mcp.NewListCache(mcp.DefaultListCacheEntries, mcp.DefaultListCacheBytes),
		log: slog.New(slog.DiscardHandler)}
	msg, err := mcp.Decode([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	if err != nil {
		b.Fatal(err)
	}
	p := &identity.Principal{Subject: "anonymous"}
	list := benchList()
	event := append(append([]byte("event: message\nid: 1_0\ndata: "), list...), "\n\n"...)
	req := httptest.NewRequest("POST", "/mcp", nil)
	buf := make([]byte, 32<<10)
	for _, bc := range []struct {
		name, ct string
		body     []byte
		filter   bool
	}{
		{"passthrough", "application/json", list, false},
		{"json", "application/json", list, true},
		{"sse", "text/event-stream", event, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.body)))
			var out bytes.Buffer
			for b.Loop() {
				x := &exchange{msg: msg}
				resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {bc.ct}}, ContentLength: -1,
					Body: io.NopCloser(bytes.NewReader(bc.body)), Request: req}
				if bc.filter {
					if err := g.listFilter(x, p)(resp); err != nil {
						b.Fatal(err)
					}
				}
				out.Reset()
				if _, err := io.CopyBuffer(&out, resp.Body, buf); err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
				if x.refused {
					b.Fatal("refused")
				}
			}
			if bytes.Contains(out.Bytes(), []byte("delete_")) != !bc.filter {
				b.Fatalf("not filtered as expected: %.200s", out.Bytes())
			}
		})
	}
}
