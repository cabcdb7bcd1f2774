package proxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/testutil"
)

// hopPath is one of the two ways a request reaches a backend: a POST whose
// body the gateway has read (Hop.Body: Backend.post), or ReverseProxy (GET,
// DELETE, and callers that did not read the body).
type hopPath struct {
	name string
	body bool
}

var hopPaths = []hopPath{{"post", true}, {"reverseproxy", false}}

// hop is h as this path's caller sets it (the body of the test requests is
// "{}").
func (p hopPath) hop(h Hop) Hop {
	if p.body {
		h.Body = []byte("{}")
	}
	return h
}

// handler serves b the way the gateway does on this path: the body read
// first for post.
func (p hopPath) handler(b *Backend) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var h Hop
		if p.body {
			h.Body, _ = io.ReadAll(r.Body)
		}
		b.Forward(w, r, h)
	})
}

// TestPostIsOneWrite: a POST's headers and body reach the backend in one
// write (ReverseProxy wraps the body in a reader the transport cannot tell
// is in memory, and writes the headers first, which costs the backend a
// second read and wake-up).
func TestPostIsOneWrite(t *testing.T) {
	rc := &recorder{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	for _, tc := range []struct {
		path   hopPath
		writes int64
	}{{hopPaths[0], 1}, {hopPaths[1], 2}} {
		t.Run(tc.path.name, func(t *testing.T) {
			b := newTestBackend(t, BackendConfig{URL: srv.URL + "/mcp"}, Options{})
			var writes atomic.Int64
			dial := b.transport.DialContext
			b.transport.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := dial(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return &countingConn{Conn: c, writes: &writes}, nil
			}
			body := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
			for i := range 3 {
				before := writes.Load()
				rec := httptest.NewRecorder()
				req := httptest.NewRequest("POST", "http://gw.example/mcp", strings.NewReader(body))
				h := Hop{}
				if tc.path.body {
					h.Body = []byte(body)
				}
				b.Forward(rec, req, h)
				if rec.Code != 200 {
					t.Fatalf("status %d", rec.Code)
				}
				if n := writes.Load() - before; n != tc.writes {
					t.Errorf("request %d: %d writes to the backend, want %d", i, n, tc.writes)
				}
			}
		})
	}
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestPostResponseHeaders: on the post path the backend's hop-by-hop
// headers and those its Connection header names stay with the hop, its
// trailers reach the client, a 101 is a 502 that tunnels nothing, and a
// body cut short aborts the client's answer instead of ending it cleanly.
func TestPostResponseHeaders(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("case") {
		case "hop":
			w.Header().Set("Connection", "X-Hop")
			w.Header().Set("X-Hop", "secret")
			w.Header().Set("Keep-Alive", "timeout=5")
			w.Header().Set("X-Kept", "yes")
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "body")
			w.Header().Set("X-Sum", "42")
		case "101":
			c, buf, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(time.Second))
			io.ReadAll(buf)
		case "cut":
			c, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 1000\r\n\r\nevent: message\n")
			c.Close()
		}
	}))
	defer backend.Close()
	logs := &testutil.SyncBuffer{}
	b := newTestBackend(t, BackendConfig{URL: backend.URL + "/mcp"}, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	front := httptest.NewServer(hopPaths[0].handler(b))
	defer front.Close()
	post := func(query string) (*http.Response, []byte, error) {
		resp, err := http.Post(front.URL+"/mcp?"+query, "application/json", strings.NewReader("{}"))
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp, body, err
	}

	resp, body, err := post("case=hop")
	if err != nil {
		t.Fatal(err)
	}
	if string(body) != "body" || resp.Header.Get("X-Kept") != "yes" || resp.Trailer.Get("X-Sum") != "42" {
		t.Errorf("body %q, X-Kept %q, trailer %v", body, resp.Header.Get("X-Kept"), resp.Trailer)
	}
	for _, h := range []string{"X-Hop", "Keep-Alive"} {
		if v := resp.Header.Get(h); v != "" {
			t.Errorf("hop-by-hop %s = %q reached the client", h, v)
		}
	}

	if resp, _, err = post("case=101"); err != nil || resp.StatusCode != http.StatusBadGateway {
		t.Errorf("101: %v, %v; want 502", resp, err)
	}

	if _, body, err = post("case=cut"); err == nil {
		t.Errorf("a backend body cut short ended cleanly for the client: %q", body)
	}
	if !strings.Contains(logs.String(), "backend response cut short") {
		t.Errorf("cut not logged:\n%s", logs)
	}
}

// TestPostQuery: the client's query is appended to the backend URL's, and
// one that does not parse is re-encoded, as ReverseProxy does.
func TestPostQuery(t *testing.T) {
	queries := make(chan string, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries <- r.URL.RawQuery
	}))
	defer backend.Close()
	for _, tc := range []struct{ target, client, want string }{
		{"/mcp", "", ""},
		{"/mcp?k=1", "", "k=1"},
		{"/mcp", "a=1", "a=1"},
		{"/mcp?k=1", "a=1", "k=1&a=1"},
		{"/mcp", "a=1;b=2", ""}, // a ';' is no separator: nothing parses
		{"/mcp", "a=%zz&b=2", "b=2"},
	} {
		b := newTestBackend(t, BackendConfig{URL: backend.URL + tc.target}, Options{})
		req := httptest.NewRequest("POST", "http://gw.example/mcp?"+tc.client, strings.NewReader("{}"))
		b.Forward(httptest.NewRecorder(), req, Hop{Body: []byte("{}")})
		if got := <-queries; got != tc.want {
			t.Errorf("backend %s, client %q: backend got %q, want %q", tc.target, tc.client, got, tc.want)
		}
	}
}

// TestPostFlushesHeadersOfAStream: a stream's headers reach the client
// before its first event (a long tool call), as through ReverseProxy; a
// list answer's go with its event.
func TestPostFlushesHeadersOfAStream(t *testing.T) {
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
		io.WriteString(w, "event: message\ndata: {}\n\n")
	}))
	defer backend.Close()
	defer close(release)
	b := newTestBackend(t, BackendConfig{URL: backend.URL + "/mcp"}, Options{})
	front := httptest.NewServer(hopPaths[0].handler(b))
	defer front.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", front.URL+"/mcp", strings.NewReader("{}"))
	resp, err := http.DefaultClient.Do(req) // returns with the headers
	if err != nil {
		t.Fatalf("headers of a stream held back: %v", err)
	}
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
}
