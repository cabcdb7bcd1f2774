package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/server/servertest"
)

// TestMediaTypes: a POST whose Content-Type is not application/json gets
// 415 with a JSON-RPC error, is audited and never reaches the backend; the
// type is compared case-insensitively and parameters are allowed.
func TestMediaTypes(t *testing.T) {
	env := startGateway(t, "", demo.Options{})
	tok := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-readers"}})
	cases := []struct {
		name   string
		ct     []string // nil: no Content-Type header
		status int
	}{
		{"exact", []string{"application/json"}, 200},
		{"case variant", []string{"Application/JSON"}, 200},
		{"charset utf-8", []string{"application/json; charset=utf-8"}, 200},
		{"charset UTF-8 without space", []string{"application/json;charset=UTF-8"}, 200},
		{"other parameter", []string{"application/json; profile=x"}, 200},
		{"text/plain", []string{"text/plain"}, 415},
		{"form", []string{"application/x-www-form-urlencoded"}, 415},
		{"multipart", []string{"multipart/form-data; boundary=x"}, 415},
		{"missing", nil, 415},
		{"empty", []string{""}, 415},
		{"json suffix type", []string{"application/json-seq"}, 415},
		{"json structured syntax", []string{"application/vnd.api+json"}, 415},
		{"prefix only", []string{"application/jsonx"}, 415},
		{"other charset", []string{"application/json; charset=iso-8859-1"}, 415},
		{"malformed parameters", []string{"application/json; charset"}, 415},
		{"two headers", []string{"application/json", "text/plain"}, 415},
		{"two types in one header", []string{"application/json, text/plain"}, 415},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", env.url, strings.NewReader(initBody))
			req.Header["Content-Type"] = tc.ct
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("Authorization", "Bearer "+tok)
			before := env.seenCount.Load()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			reached := env.seenCount.Load() != before
			if tc.status == 415 {
				if reached {
					t.Error("request reached the backend")
				}
				if !strings.Contains(string(b), `"jsonrpc":"2.0"`) || !strings.Contains(string(b), "application/json") {
					t.Errorf("body is not a JSON-RPC error naming the type: %s", b)
				}
				rid := resp.Header.Get("X-Request-Id")
				found := false
				for _, r := range auditRecords(t, env.auditPath) {
					found = found || (r.RequestID == rid && r.Status == 415 && r.Reason == "unsupported content type" && r.Subject == "alice")
				}
				if !found {
					t.Errorf("no audit record for request %s", rid)
				}
			} else if !reached {
				t.Error("accepted request did not reach the backend")
			}
		})
	}
}

// TestOfficialClientsMediaTypes: the Go SDK client's requests (initialize,
// notifications, tools/list, tools/call, GET stream, DELETE) all pass the
// gateway's media-type and request-shape checks: the rules are no stricter
// than what the official clients send. (The TS SDK and Inspector are
// covered in the e2e suite.)
func TestOfficialClientsMediaTypes(t *testing.T) {
	env := startGateway(t, "", demo.Options{})
	tok := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-admins"}})
	rec := &headerRecorder{}
	cs, err := servertest.TryConnectWith(env.url, tok, nil, rec)
	if err != nil {
		t.Fatal(err)
	}
	if names := toolNames(t, cs); len(names) == 0 {
		t.Fatal("no tools")
	}
	if got, err := callText(t, cs, "echo", map[string]any{"text": "hi"}); err != nil || got != "hi" {
		t.Fatalf("echo = %q, %v", got, err)
	}
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	methods := map[string]bool{}
	for _, e := range rec.seen {
		methods[e.method] = true
		if e.status == 415 || e.status == 400 {
			t.Errorf("%s with Content-Type %q, Accept %q got %d", e.method, e.contentType, e.accept, e.status)
		}
	}
	if !methods["POST"] || !methods["DELETE"] {
		t.Errorf("the client's requests were not all seen: %v", methods)
	}
	t.Logf("Go SDK requests: %+v", rec.seen)
}

type seenRequest struct {
	method, contentType, accept string
	status                      int
}

// headerRecorder records what a client sends and the gateway's answer.
type headerRecorder struct {
	mu   sync.Mutex
	seen []seenRequest
}

func (h *headerRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	e := seenRequest{method: r.Method, contentType: r.Header.Get("Content-Type"), accept: r.Header.Get("Accept")}
	if resp != nil {
		e.status = resp.StatusCode
	}
	h.mu.Lock()
	h.seen = append(h.seen, e)
	h.mu.Unlock()
	return resp, err
}

// TestRefusedRequestShapes: protocol upgrades, method overrides and bodies
// on GET and DELETE get 400 before anything reaches the backend, and are
// audited.
func TestRefusedRequestShapes(t *testing.T) {
	env := startGateway(t, "", demo.Options{})
	tok := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-readers"}})
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_vm","arguments":{"vm_name":"web-1"}}}`
	cases := []struct {
		name, method, body string
		hdr                map[string]string
		chunked            bool
	}{
		{"websocket upgrade on GET", "GET", "", map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}, false},
		{"upgrade on POST", "POST", call, map[string]string{"Connection": "Upgrade", "Upgrade": "websocket"}, false},
		{"h2c upgrade", "POST", call, map[string]string{"Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c", "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA"}, false},
		{"upgrade without Connection", "POST", call, map[string]string{"Upgrade": "websocket"}, false},
		{"X-HTTP-Method-Override", "POST", call, map[string]string{"X-HTTP-Method-Override": "DELETE"}, false},
		{"X-HTTP-Method", "POST", call, map[string]string{"X-HTTP-Method": "DELETE"}, false},
		{"X-Method-Override", "POST", call, map[string]string{"X-Method-Override": "PUT"}, false},
		{"override on GET", "GET", "", map[string]string{"X-HTTP-Method-Override": "POST"}, false},
		{"GET with a body", "GET", call, nil, false},
		{"DELETE with a body", "DELETE", call, nil, false},
		{"GET with a chunked body", "GET", call, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u, _ := url.Parse(env.url)
			c, err := net.Dial("tcp", u.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var b strings.Builder
			fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n", tc.method, u.Path, u.Host, tok)
			for k, v := range tc.hdr {
				fmt.Fprintf(&b, "%s: %s\r\n", k, v)
			}
			switch {
			case tc.chunked:
				fmt.Fprintf(&b, "Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(tc.body), tc.body)
			case tc.body != "":
				fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(tc.body), tc.body)
			default:
				b.WriteString("\r\n")
			}
			before := env.seenCount.Load()
			io.WriteString(c, b.String())
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 400 || !strings.Contains(string(body), `"jsonrpc":"2.0"`) {
				t.Errorf("status = %d, want 400 with a JSON-RPC error: %s", resp.StatusCode, body)
			}
			if env.seenCount.Load() != before {
				t.Error("request reached the backend")
			}
			rid := resp.Header.Get("X-Request-Id")
			found := false
			for _, r := range auditRecords(t, env.auditPath) {
				found = found || (r.RequestID == rid && r.Status == 400)
			}
			if !found {
				t.Errorf("no audit record for request %s", rid)
			}
		})
	}
	// Other routes refuse upgrades too.
	base := strings.TrimSuffix(env.url, "/mcp")
	req, _ := http.NewRequest("GET", base+"/.well-known/oauth-protected-resource", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("upgrade on the metadata route: %d, want 400", resp.StatusCode)
	}
	// A GET and DELETE without a body still work (no false positives).
	if r := do(t, "GET", env.url, tok, "", map[string]string{"Mcp-Session-Id": "unknown"}); r.status == 400 {
		t.Errorf("GET without a body refused: %s", r.body)
	}
}

// TestHopHeadersNotForwarded: Connection and the headers it names never
// reach the backend.
func TestHopHeadersNotForwarded(t *testing.T) {
	env := startGateway(t, "", demo.Options{})
	tok := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-readers"}})
	if r := do(t, "POST", env.url, tok, initBody, map[string]string{"Connection": "X-Hop-Secret", "X-Hop-Secret": "1"}); r.status != 200 {
		t.Fatalf("initialize: %d %s", r.status, r.body)
	}
	h := env.lastHeaders()
	for _, k := range []string{"Connection", "Upgrade", "X-Hop-Secret"} {
		if v := h.Values(k); len(v) > 0 {
			t.Errorf("backend received %s: %q", k, v)
		}
	}
}

// TestBackendSwitchingProtocols: a backend answering 101 gets the client a
// 502, and nothing the client sends afterwards is tunnelled to it.
func TestBackendSwitchingProtocols(t *testing.T) {
	for _, tc := range []struct{ name, head string }{
		{"websocket", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"},
		{"no upgrade header", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n"},
		{"empty upgrade header", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade:\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tunnelled := make(chan string, 1)
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				c, buf, err := http.NewResponseController(w).Hijack()
				if err != nil {
					return
				}
				defer c.Close()
				io.WriteString(c, tc.head)
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				b, _ := io.ReadAll(buf) // ends when the gateway drops the connection, or at the deadline
				tunnelled <- string(b)
			}))
			defer backend.Close()
			env := startGateway(t, "", demo.Options{}, func(y string) string {
				i := strings.Index(y, "    url: ")
				j := strings.Index(y[i:], "\n")
				return y[:i] + "    url: " + backend.URL + "/mcp" + y[i+j:]
			})
			tok := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-readers"}})

			u, _ := url.Parse(env.url)
			c, err := net.Dial("tcp", u.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"+
				"Accept: application/json, text/event-stream\r\nContent-Length: %d\r\n\r\n%s", u.Path, u.Host, tok, len(initBody), initBody)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), `"jsonrpc":"2.0"`) {
				t.Fatalf("status = %d, want 502 with a JSON-RPC error: %s", resp.StatusCode, body)
			}
			// What a tunnel would carry: a call the reader may not make.
			io.WriteString(c, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_vm","arguments":{"vm_name":"web-1"}}}`)
			select {
			case got := <-tunnelled:
				if got != "" {
					t.Errorf("bytes tunnelled to the backend: %q", got)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("backend handler did not finish")
			}
		})
	}
}
