package server_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/mcpgate/mcpgate/internal/demo"
)

// backendRequest is what a backend saw of one request.
type backendRequest struct {
	method, remote string
	body           []byte
	contentLength  int64
	chunked        bool
}

// TestListHopCostsTheBackendWhatTheClientsDo: the backend's cost per
// filtered SSE list through the gateway is that of the client's own
// request (issue 15). Concurrent sessions listing tools cost the backend
// one POST per list, with the client's body byte for byte (not re-encoded)
// and a Content-Length, over kept-alive connections (no more than the
// clients use), and no request of the gateway's own (no extra session,
// stream or DELETE).
func TestListHopCostsTheBackendWhatTheClientsDo(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []backendRequest
	)
	backend := demo.Handler(demo.Options{})
	env := startGatewayTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, backendRequest{method: r.Method, remote: r.RemoteAddr, body: body,
			contentLength: r.ContentLength, chunked: len(r.TransferEncoding) > 0})
		mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		backend.ServeHTTP(w, r)
	}), "")
	const clients, lists = 4, 10
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, DisableCompression: true}}
	defer client.CloseIdleConnections()
	post := func(tok, session, body string) (*http.Response, error) {
		req, _ := http.NewRequest("POST", env.url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+tok)
		if session != "" {
			req.Header.Set("Mcp-Session-Id", session)
			req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
		}
		return client.Do(req)
	}
	listBody := func(id int) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/list","params":{ }}`, id)
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		tok := env.idp.tokenFor(t, fmt.Sprintf("user-%d", c), env.url, map[string]any{"groups": []string{"mcp-readers"}})
		wg.Go(func() {
			resp, err := post(tok, "", initBody)
			if err != nil {
				errs <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			session := resp.Header.Get("Mcp-Session-Id")
			if resp, err = post(tok, session, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); err != nil {
				errs <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			for i := range lists {
				resp, err := post(tok, session, listBody(100+i))
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") ||
					!strings.Contains(string(b), `"name":"list_vms"`) || strings.Contains(string(b), `"name":"delete_vm"`) {
					errs <- fmt.Errorf("list %d: HTTP %d %s: %.300s", i, resp.StatusCode, resp.Header.Get("Content-Type"), b)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	conns := map[string]bool{}
	methods := map[string]int{}
	listed := 0
	for _, r := range seen {
		conns[r.remote] = true
		methods[r.method]++
		if r.chunked || r.contentLength != int64(len(r.body)) {
			t.Errorf("backend %s: Content-Length %d for %d bytes, chunked %v", r.method, r.contentLength, len(r.body), r.chunked)
		}
		if bytes.Contains(r.body, []byte("tools/list")) {
			listed++
			var id int
			if _, err := fmt.Sscanf(string(r.body), `{"jsonrpc":"2.0","id":%d`, &id); err != nil || string(r.body) != listBody(id) {
				t.Errorf("backend got list body %q, not the client's bytes", r.body)
			}
		}
	}
	if want := clients * (2 + lists); methods["POST"] != want || len(methods) != 1 || listed != clients*lists {
		t.Errorf("backend requests %v (%d lists), want %d POSTs (%d lists) and nothing else", methods, listed, want, clients*lists)
	}
	// A connection goes back to the pool just after its answer was read, so
	// a client's next request may race it and dial one more: allow twice the
	// clients; without keep-alive it is one per request (48 here).
	if len(conns) > 2*clients {
		t.Errorf("backend saw %d connections for %d concurrent clients: connections are not reused", len(conns), clients)
	}
}
