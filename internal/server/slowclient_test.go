package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/server/servertest"
)

// auditRecords reads the request records of an audit file.
func auditRecords(t *testing.T, path string) []audit.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []audit.Record
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec audit.Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("bad audit line %q: %v", sc.Text(), err)
		}
		if rec.Event != audit.EventCheckpoint {
			out = append(out, rec)
		}
	}
	return out
}

// hasRecord reports whether a record with status and reason is in the log.
func hasRecord(t *testing.T, path string, status int, reason string) bool {
	t.Helper()
	for _, r := range auditRecords(t, path) {
		if r.Status == status && strings.Contains(r.Reason, reason) {
			return true
		}
	}
	return false
}

// slowPost opens a raw connection and sends the headers of a POST with a
// Content-Length of length; the caller writes the body (or not).
func slowPost(t *testing.T, mcpURL, token string, length int) net.Conn {
	t.Helper()
	c, err := dialPost(mcpURL, token, length)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialPost is slowPost for goroutines other than the test's.
func dialPost(mcpURL, token string, length int) (net.Conn, error) {
	u, _ := url.Parse(mcpURL)
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		return nil, err
	}
	_, err = fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"+
		"Accept: application/json, text/event-stream\r\nContent-Length: %d\r\n\r\n", u.Path, u.Host, token, length)
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// readStatus reads a response status from c; 0 means the connection was
// closed (or timed out) without one.
func readStatus(c net.Conn, timeout time.Duration) int {
	c.SetReadDeadline(time.Now().Add(timeout))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

const slowYAML = `
security:
  read_timeout: 2s
  min_body_rate: 1000
  min_body_rate_grace: 300ms
`

// TestSlowBodyTrickle: a body trickled far below min_body_rate gets 408 soon
// after the grace period, is audited, and never reaches the backend.
func TestSlowBodyTrickle(t *testing.T) {
	env := startGateway(t, slowYAML, demo.Options{})
	tok := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-readers"}})
	c := slowPost(t, env.url, tok, len(initBody))
	start := time.Now()
	stop := make(chan struct{})
	defer close(stop)
	go func() { // 20 bytes/s
		for i := 0; i < len(initBody); i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := c.Write([]byte{initBody[i]}); err != nil {
				return
			}
		}
	}()
	status := readStatus(c, 5*time.Second)
	elapsed := time.Since(start)
	if status != http.StatusRequestTimeout && status != 0 {
		t.Fatalf("status = %d, want 408 or a closed connection", status)
	}
	// grace 300ms + 20 bytes at 1000 B/s: cut after about 0.32 s.
	if elapsed > 1500*time.Millisecond {
		t.Errorf("trickle held the request for %s", elapsed)
	}
	if env.seenCount.Load() != 0 {
		t.Error("a trickled request reached the backend")
	}
	if !hasRecord(t, env.auditPath, http.StatusRequestTimeout, "body too slow") {
		t.Errorf("no 408 audit record: %+v", auditRecords(t, env.auditPath))
	}
}

// TestSlowBodyTotalTimeout: a body that keeps above the minimum rate but
// takes longer than read_timeout in all is cut at read_timeout.
func TestSlowBodyTotalTimeout(t *testing.T) {
	env := startGateway(t, slowYAML, demo.Options{})
	tok := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-readers"}})
	const size = 200_000 // at 40 KB/s: 5 s, over read_timeout (2 s)
	c := slowPost(t, env.url, tok, size)
	start := time.Now()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		chunk := []byte(strings.Repeat(" ", 2000))
		for sent := 0; sent < size; sent += len(chunk) {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	status := readStatus(c, 6*time.Second)
	elapsed := time.Since(start)
	if status != http.StatusRequestTimeout && status != 0 {
		t.Fatalf("status = %d, want 408 or a closed connection", status)
	}
	if elapsed < 1900*time.Millisecond || elapsed > 3500*time.Millisecond {
		t.Errorf("cut after %s, want about read_timeout (2s)", elapsed)
	}
	if env.seenCount.Load() != 0 {
		t.Error("the request reached the backend")
	}
}

// TestSlowHonestBodyPasses: a large body on a slow link that keeps above
// min_body_rate arrives, even though it takes far longer than the grace.
func TestSlowHonestBodyPasses(t *testing.T) {
	env := startGateway(t, slowYAML, demo.Options{})
	tok := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-readers"}})
	body := strings.Replace(initBody, `"name":"x"`, `"name":"`+strings.Repeat("x", 30_000)+`"`, 1)
	c := slowPost(t, env.url, tok, len(body))
	start := time.Now()
	go func() { // 20 KB/s: 1.5 s for the body, five times the grace, 20 times the minimum rate
		// Paced by the clock, not by counting sleeps: on a loaded machine
		// (-race, shared CI) sleeps overrun and a sleep-counted body would
		// outlast read_timeout (2 s); this one catches up instead.
		const rate = 20_000
		for sent := 0; sent < len(body); time.Sleep(50 * time.Millisecond) {
			due := min(len(body), 1000+int(time.Since(start).Seconds()*rate))
			if _, err := io.WriteString(c, body[sent:due]); err != nil {
				return
			}
			sent = due
		}
	}()
	if status := readStatus(c, 5*time.Second); status != http.StatusOK {
		t.Fatalf("status = %d, want 200", status)
	}
	if elapsed := time.Since(start); elapsed < time.Second {
		t.Fatalf("the body was not slow (%s): the test proves nothing", elapsed)
	}
	if env.seenCount.Load() != 1 {
		t.Errorf("backend saw %d requests, want 1", env.seenCount.Load())
	}
}

// TestStreamsOutliveReadTimeout: the read and write deadlines are per
// request, so an SSE response (POST) and the GET stream last longer than
// read_header_timeout + read_timeout (the server's whole-request backstop)
// and write_timeout (the server's whole-response backstop elsewhere).
func TestStreamsOutliveReadTimeout(t *testing.T) {
	env := startGateway(t, "security: { read_header_timeout: 500ms, read_timeout: 500ms, min_body_rate_grace: 200ms, write_timeout: 500ms }\n", demo.Options{})
	tok := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-admins"}})

	// GET stream, opened by hand so its end is observable.
	r := do(t, "POST", env.url, tok, initBody, nil)
	if r.status != 200 {
		t.Fatalf("initialize: %d %s", r.status, r.body)
	}
	sid := r.header.Get("Mcp-Session-Id")
	hdr := map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-11-25"}
	if r := do(t, "POST", env.url, tok, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, hdr); r.status != 202 {
		t.Fatalf("initialized: %d", r.status)
	}
	req, _ := http.NewRequest("GET", env.url, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET stream: %d", resp.StatusCode)
	}
	ended := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, resp.Body); ended <- err }()

	// A tool call whose SSE response takes 2.5 s, five times the backstop.
	var progress atomic.Int64
	cs, err := servertest.TryConnect(env.url, tok, &mcp.ClientOptions{
		ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) { progress.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	params := &mcp.CallToolParams{Name: "count", Arguments: map[string]any{"to": 250}}
	params.SetProgressToken("p")
	res, err := cs.CallTool(context.Background(), params)
	if err != nil || res.IsError {
		t.Fatalf("count: %v %v", res, err)
	}
	if n := progress.Load(); n != 250 {
		t.Errorf("progress notifications = %d, want 250", n)
	}
	select {
	case err := <-ended:
		t.Fatalf("GET stream ended after the read timeout: %v", err)
	default:
	}
}

// TestInFlightBoundUnderSlowConnections: 200 slow connections under one valid
// token hold at most max_in_flight_per_user requests; the rest get 429 with
// Retry-After at once, and other users are served meanwhile. When the slow
// bodies time out, the user is served again.
func TestInFlightBoundUnderSlowConnections(t *testing.T) {
	const bound, clients = 16, 200
	env := startGateway(t, fmt.Sprintf(`
security:
  max_in_flight_per_user: %d
  max_in_flight_per_ip: 1000
  read_timeout: 4s
  min_body_rate_grace: 3s
rate_limit:
  per_ip: { rps: 100000, burst: 100000 }
`, bound), demo.Options{})
	tok := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-readers"}})
	other := env.idp.tokenFor(t, "bob", env.url, map[string]any{"groups": []string{"mcp-readers"}})

	var wg sync.WaitGroup
	var refused, held atomic.Int64
	flooded := make(chan struct{}) // closed at the last expected refusal
	var mu sync.Mutex
	var bad []string
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialPost(env.url, tok, len(initBody)) // headers only: the body never comes
			if err != nil {
				mu.Lock()
				bad = append(bad, err.Error())
				mu.Unlock()
				return
			}
			mu.Lock()
			conns = append(conns, c) // kept open: closed when the test ends
			mu.Unlock()
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				held.Add(1) // no answer within 2 s: holding a slot, reading its body
				return
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") != "" {
				if refused.Add(1) == clients-bound {
					close(flooded)
				}
				return
			}
			mu.Lock()
			bad = append(bad, resp.Status)
			mu.Unlock()
		}()
	}
	// Once every connection over the bound has been refused, the bound is
	// held; meanwhile another user is served. That it was served while the
	// flood held its slots (not after they timed out) is shown by the
	// flooding user's next request still getting 429, not by a latency
	// figure that a loaded machine (-race) can exceed.
	select {
	case <-flooded:
	case <-time.After(10 * time.Second):
		t.Fatalf("only %d of %d connections over the bound refused", refused.Load(), clients-bound)
	}
	if r := do(t, "POST", env.url, other, initBody, nil); r.status != 200 {
		t.Errorf("another user during the flood: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", env.url, tok, initBody, nil); r.status != http.StatusTooManyRequests {
		t.Errorf("the flooding user's next request: %d, want 429 (the other user was served only after the flood ended?)", r.status)
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Errorf("unexpected answers: %v", bad)
	}
	if held.Load() != bound || refused.Load() != clients-bound {
		t.Errorf("held %d, refused %d; want %d held (the bound) and %d refused", held.Load(), refused.Load(), bound, clients-bound)
	}
	if !hasRecord(t, env.auditPath, http.StatusTooManyRequests, "too many requests in flight") {
		t.Error("no audit record of the in-flight refusal")
	}
	// The held requests end (408 after the grace); the user is served again.
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := do(t, "POST", env.url, tok, initBody, nil)
		if r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("user still refused after the slow bodies timed out: %d", r.status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestInFlightBoundPerIP: one address holding requests under many users'
// tokens is bounded too.
func TestInFlightBoundPerIP(t *testing.T) {
	env := startGateway(t, `
security:
  max_in_flight_per_ip: 4
  read_timeout: 3s
  min_body_rate_grace: 2s
`, demo.Options{})
	var held []net.Conn
	for i := range 4 {
		tok := env.idp.tokenFor(t, fmt.Sprintf("user%d", i), env.url, map[string]any{"groups": []string{"mcp-readers"}})
		held = append(held, slowPost(t, env.url, tok, len(initBody)))
	}
	time.Sleep(300 * time.Millisecond) // let them reach the body read
	tok := env.idp.tokenFor(t, "user9", env.url, map[string]any{"groups": []string{"mcp-readers"}})
	r := do(t, "POST", env.url, tok, initBody, nil)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || !strings.Contains(r.body, `"jsonrpc":"2.0"`) {
		t.Errorf("fifth request from the address: %d (Retry-After %q) %s, want 429", r.status, r.header.Get("Retry-After"), r.body)
	}
	for _, c := range held {
		c.Close()
	}
}

// sseBackend is a backend whose every POST answers with an SSE stream that
// write produces; ended is signalled when the handler returns.
func sseBackend(t *testing.T, write func(w http.ResponseWriter, r *http.Request)) (url string, ended chan struct{}) {
	ended = make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { ended <- struct{}{} }()
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		http.NewResponseController(w).Flush()
		write(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/mcp", ended
}

// withBackend points the generated configuration's backend at url.
func withBackend(url string) func(string) string {
	return func(y string) string {
		i := strings.Index(y, "    url: ")
		j := strings.Index(y[i:], "\n")
		return y[:i] + "    url: " + url + y[i+j:]
	}
}

// TestWriteTimeout: a client that stops reading a response is cut off after
// security.write_timeout (so it cannot hold a stream, and the backend's, for
// ever), while a stream whose client reads survives gaps between events far
// longer than write_timeout.
func TestWriteTimeout(t *testing.T) {
	const yaml = "security: { write_timeout: 500ms }\n"
	t.Run("client stops reading", func(t *testing.T) {
		event := []byte("event: message\ndata: " + strings.Repeat("x", 64<<10) + "\n\n")
		url, ended := sseBackend(t, func(w http.ResponseWriter, r *http.Request) {
			for r.Context().Err() == nil {
				if _, err := w.Write(event); err != nil {
					return
				}
				http.NewResponseController(w).Flush()
			}
		})
		env := startGateway(t, yaml, demo.Options{}, withBackend(url))
		tok := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-readers"}})
		c := slowPost(t, env.url, tok, len(initBody))
		io.WriteString(c, initBody) // and never read the answer
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
			t.Fatal("the stream to a client that stopped reading was not cut")
		}
	})
	t.Run("reading client, long gaps", func(t *testing.T) {
		url, _ := sseBackend(t, func(w http.ResponseWriter, r *http.Request) {
			for i := range 3 {
				if i > 0 {
					time.Sleep(1200 * time.Millisecond) // over twice write_timeout
				}
				fmt.Fprintf(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":%d}}\n\n", i)
				http.NewResponseController(w).Flush()
			}
		})
		env := startGateway(t, yaml, demo.Options{}, withBackend(url))
		tok := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-readers"}})
		r := do(t, "POST", env.url, tok, initBody, nil)
		if r.status != 200 || strings.Count(r.body, "notifications/message") != 3 {
			t.Errorf("stream: %d %q, want all 3 events", r.status, r.body)
		}
	})
}
