package stdio

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

const (
	initialize  = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
	initialized = `{"jsonrpc":"2.0","method":"notifications/initialized"}`
	toolsList   = `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
)

type rawReq struct {
	method, session, body string
	header                map[string]string // overrides; "" deletes
}

// do sends a request with the defaults a well-behaved proxied client has.
func (e *testEnv) do(t *testing.T, rr rawReq) *http.Response {
	t.Helper()
	req, err := http.NewRequest(rr.method, e.srv.URL, strings.NewReader(rr.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.b.Token())
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if rr.session != "" {
		req.Header.Set(sessionIDHeader, rr.session)
	}
	for k, v := range rr.header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func (e *testEnv) raw(t *testing.T, method, session, body string) *http.Response {
	t.Helper()
	return e.do(t, rawReq{method: method, session: session, body: body})
}

// rawSession initializes a session by hand and returns its id.
func (e *testEnv) rawSession(t *testing.T) string {
	t.Helper()
	resp := e.raw(t, http.MethodPost, "", initialize)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("initialize: status %d", resp.StatusCode)
	}
	id := resp.Header.Get(sessionIDHeader)
	if len(id) < 20 {
		t.Fatalf("session id %q", id)
	}
	if got := readEvents(t, resp.Body); len(got) != 1 || !strings.Contains(got[0], `"protocolVersion":"2025-06-18"`) {
		t.Fatalf("initialize events = %q", got)
	}
	if r := e.raw(t, http.MethodPost, id, initialized); r.StatusCode != http.StatusAccepted {
		t.Fatalf("initialized: status %d", r.StatusCode)
	}
	return id
}

// readEvents returns the data of every SSE event in body.
func readEvents(t *testing.T, body io.Reader) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			out = append(out, d)
		}
	}
	return out
}

func TestRejectedRequests(t *testing.T) {
	tests := []struct {
		name   string
		req    rawReq
		status int
	}{
		{"no token", rawReq{method: "POST", body: initialize, header: map[string]string{"Authorization": ""}}, 401},
		{"wrong token", rawReq{method: "POST", body: initialize, header: map[string]string{"Authorization": "Bearer nope"}}, 401},
		{"token without scheme", rawReq{method: "POST", body: initialize, header: map[string]string{"Authorization": "x"}}, 401},
		{"PUT", rawReq{method: "PUT", body: initialize}, 405},
		{"wrong content type", rawReq{method: "POST", body: initialize, header: map[string]string{"Content-Type": "text/plain"}}, 415},
		{"accepts only JSON", rawReq{method: "POST", body: initialize, header: map[string]string{"Accept": "application/json"}}, 406},
		{"malformed JSON", rawReq{method: "POST", body: `{"jsonrpc":`}, 400},
		{"not JSON-RPC", rawReq{method: "POST", body: `{"hello":1}`}, 400},
		{"empty batch", rawReq{method: "POST", body: `[]`}, 400},
		{"empty body", rawReq{method: "POST", body: ``}, 400},
		{"non-initialize without session", rawReq{method: "POST", body: toolsList}, 400},
		{"initialize notification", rawReq{method: "POST", body: `{"jsonrpc":"2.0","method":"initialize","params":{}}`}, 400},
		{"batched initialize", rawReq{method: "POST", body: "[" + initialize + "]"}, 400},
		{"unknown session POST", rawReq{method: "POST", session: "no-such-session", body: toolsList}, 404},
		{"unknown session GET", rawReq{method: "GET", session: "no-such-session"}, 404},
		{"unknown session DELETE", rawReq{method: "DELETE", session: "no-such-session"}, 404},
		{"GET without session", rawReq{method: "GET"}, 400},
		{"GET not accepting SSE", rawReq{method: "GET", session: "x", header: map[string]string{"Accept": "application/json"}}, 406},
		{"DELETE without session", rawReq{method: "DELETE"}, 400},
		{"body too large", rawReq{method: "POST", body: `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"x":"` + strings.Repeat("a", 2000) + `"}}`}, 413},
	}
	e := newTestEnv(t, func(c *Config) { c.MaxMessageBytes = 1024 })
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.do(t, tc.req)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			var body struct {
				JSONRPC string `json:"jsonrpc"`
				Error   struct {
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.JSONRPC != "2.0" || body.Error.Message == "" {
				t.Errorf("body is not a JSON-RPC error (%v): %+v", err, body)
			}
		})
	}
	if n := e.b.Sessions(); n != 0 || strings.Contains(e.logs.String(), "session started") {
		t.Errorf("a rejected request started a session (%d live)", n)
	}
	if got := e.do(t, rawReq{method: "PUT"}).Header.Get("Allow"); got != "GET, POST, DELETE" {
		t.Errorf("Allow = %q", got)
	}
}

func TestProtocolVersionHeader(t *testing.T) {
	e := newTestEnv(t, nil)
	id := e.rawSession(t)
	tests := []struct {
		name, version, body string
		status              int
	}{
		{"negotiated version", "2025-06-18", toolsList, 200},
		{"no header", "", toolsList, 200},
		{"other version", "2025-03-26", toolsList, 400},
		{"unknown version", "1999-01-01", toolsList, 400},
		{"batch after 2025-06-18", "2025-06-18", "[" + toolsList + "]", 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.do(t, rawReq{method: "POST", session: id, body: tc.body, header: map[string]string{protocolVersionHeader: tc.version}})
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status == 200 {
				if ev := readEvents(t, resp.Body); len(ev) != 1 || !strings.Contains(ev[0], `"tools"`) {
					t.Errorf("events = %q", ev)
				}
			}
		})
	}
}

// A 2025-03-26 session may batch; each call is answered on the stream.
func TestBatchOn20250326(t *testing.T) {
	e := newTestEnv(t, nil)
	resp := e.raw(t, "POST", "", strings.Replace(initialize, "2025-06-18", "2025-03-26", 1))
	id := resp.Header.Get(sessionIDHeader)
	readEvents(t, resp.Body)
	batch := `[` + initialized + `,{"jsonrpc":"2.0","id":7,"method":"tools/list"},{"jsonrpc":"2.0","id":8,"method":"ping"}]`
	resp = e.raw(t, "POST", id, batch)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	ev := readEvents(t, resp.Body)
	if len(ev) != 2 || !strings.Contains(strings.Join(ev, ""), `"id":7`) || !strings.Contains(strings.Join(ev, ""), `"id":8`) {
		t.Errorf("events = %q", ev)
	}
}

func TestDuplicateInFlightID(t *testing.T) {
	e := newTestEnv(t, nil)
	id := e.rawSession(t)
	call := `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"sleep","arguments":{"n":1500}}}`
	first := e.raw(t, "POST", id, call) // returns once headers are out: id 5 is in flight
	if first.StatusCode != 200 {
		t.Fatalf("first: status %d", first.StatusCode)
	}
	if dup := e.raw(t, "POST", id, call); dup.StatusCode != http.StatusBadRequest {
		t.Errorf("duplicate: status %d, want 400", dup.StatusCode)
	}
	if ev := readEvents(t, first.Body); len(ev) != 1 || !strings.Contains(ev[0], `"id":5`) {
		t.Errorf("first call's events = %q", ev)
	}
	// Once answered, the id may be used again.
	if again := e.raw(t, "POST", id, strings.Replace(call, "1500", "1", 1)); again.StatusCode != 200 {
		t.Errorf("reuse after answer: status %d", again.StatusCode)
	}
}

func TestInitializeErrorEndsSession(t *testing.T) {
	e := newTestEnv(t, nil)
	resp := e.raw(t, "POST", "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":"bogus"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	id := resp.Header.Get(sessionIDHeader)
	if ev := readEvents(t, resp.Body); len(ev) != 1 || !strings.Contains(ev[0], `"error"`) {
		t.Fatalf("events = %q", ev)
	}
	waitFor(t, "session to end", func() bool { return e.b.Sessions() == 0 })
	if r := e.raw(t, "POST", id, toolsList); r.StatusCode != http.StatusNotFound {
		t.Errorf("status %d, want 404", r.StatusCode)
	}
}

// A new GET stream replaces the old one (which ends), and receives the
// server's messages.
func TestNewGETStreamReplacesOld(t *testing.T) {
	e := newTestEnv(t, nil)
	id := e.rawSession(t)
	get := func() *http.Response {
		return e.do(t, rawReq{method: "GET", session: id, header: map[string]string{"Accept": "text/event-stream", "Content-Type": ""}})
	}
	first := get()
	if first.StatusCode != 200 || first.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET: %d %q", first.StatusCode, first.Header.Get("Content-Type"))
	}
	second := get()
	ended := make(chan struct{})
	go func() { io.Copy(io.Discard, first.Body); close(ended) }()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("old GET stream not ended")
	}
	// The roots/list request of the "roots" tool goes to the GET stream.
	call := `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"roots","arguments":{}}}`
	post := e.raw(t, "POST", id, call)
	if post.StatusCode != 200 {
		t.Fatalf("POST: %d", post.StatusCode)
	}
	sc := bufio.NewScanner(second.Body)
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"method":"roots/list"`) {
			return
		}
	}
	t.Fatal("roots/list did not arrive on the new GET stream")
}

// A server request nobody can receive (no GET stream, no open POST) is
// answered with an error, so the child does not wait forever.
func TestUndeliverableServerRequestIsAnswered(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.Env["STDIO_ROOTS_ON_INIT"] = "1" })
	e.rawSession(t)
	waitFor(t, "the child's roots/list to fail", func() bool {
		return strings.Contains(e.logs.String(), "roots on init: ") && strings.Contains(e.logs.String(), "no open stream")
	})
}

// Progress follows its token (a string or a number) to the stream of the
// request that carried it, even when a newer POST stream is open.
func TestProgressFollowsToken(t *testing.T) {
	for _, token := range []string{`"pa"`, `42`} {
		t.Run(token, func(t *testing.T) {
			e := newTestEnv(t, nil)
			id := e.rawSession(t)
			a := e.raw(t, "POST", id, `{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"_meta":{"progressToken":`+token+`},"name":"progress","arguments":{"n":3,"delay":200}}}`)
			b := e.raw(t, "POST", id, `{"jsonrpc":"2.0","id":"b","method":"tools/call","params":{"name":"sleep","arguments":{"n":1000}}}`)
			if a.StatusCode != 200 || b.StatusCode != 200 {
				t.Fatalf("status %d, %d", a.StatusCode, b.StatusCode)
			}
			evA, evB := readEvents(t, a.Body), readEvents(t, b.Body)
			var progress int
			for _, ev := range evA {
				if strings.Contains(ev, `"method":"notifications/progress"`) && strings.Contains(ev, `"progressToken":`+token) {
					progress++
				}
			}
			if progress != 3 || len(evA) != 4 || !strings.Contains(evA[3], `"id":"a"`) {
				t.Errorf("stream a = %q, want 3 progress notifications, then the response", evA)
			}
			if len(evB) != 1 || !strings.Contains(evB[0], `"id":"b"`) {
				t.Errorf("stream b = %q, want only its response", evB)
			}
		})
	}
}
