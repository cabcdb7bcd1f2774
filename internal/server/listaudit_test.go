package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/demo"
)

// listAuditEnv is a gateway in front of two demo backends (a at /mcp,
// answering with SSE; b at /b/mcp, answering with JSON), auditing to a file
// whose writes fault counts and can make fail.
type listAuditEnv struct {
	gw           *httptest.Server
	fault        *audit.Fault
	auditPath    string
	hitsA, hitsB atomic.Int64
}

func newListAuditEnv(t *testing.T, onError string) *listAuditEnv {
	env := &listAuditEnv{fault: &audit.Fault{}, auditPath: filepath.Join(t.TempDir(), "audit.jsonl")}
	a := httptest.NewServer(demo.Handler(demo.Options{Stateless: true, OnRequest: func(*http.Request) { env.hitsA.Add(1) }}))
	t.Cleanup(a.Close)
	b := httptest.NewServer(demo.Handler(demo.Options{Stateless: true, JSONResponse: true, OnRequest: func(*http.Request) { env.hitsB.Add(1) }}))
	t.Cleanup(b.Close)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
auth: { mode: none }
policy: { roles: { all: { tools: ["*"] } }, users: { "sub:anonymous": [all] } }
backends: [ { name: a, url: %s/mcp }, { name: b, url: %s/mcp, path: /b/mcp } ]
audit: { sink: file, path: %s, on_error: %s }
`, a.URL, b.URL, env.auditPath, onError)), func(string) (string, bool) { return "", false }, config.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := newServer(context.Background(), cfg, slog.New(slog.DiscardHandler), audit.WithFault(env.fault))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	env.gw = httptest.NewServer(s.Handler())
	t.Cleanup(env.gw.Close)
	return env
}

// post sends one JSON-RPC request to path and returns the status and the
// answer's X-Request-Id.
func (env *listAuditEnv) post(t *testing.T, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", env.gw.URL+path, strings.NewReader(body))
	req.Host = "127.0.0.1:8080"
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	resp, err := env.gw.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Request-Id")
}

// records returns the records of the audit log, checkpoints included.
func (env *listAuditEnv) records(t *testing.T) []audit.Record {
	t.Helper()
	b, err := os.ReadFile(env.auditPath)
	if err != nil {
		t.Fatal(err)
	}
	b = b[:bytes.LastIndexByte(b, '\n')+1] // complete lines only: the log may be mid-write
	var out []audit.Record
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var rec audit.Record
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("bad audit line %q: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}

const (
	listReq = `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	callReq = `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`
)

// TestListAuditOneAppend: a single list request's FORWARD record is written
// with its outcome record in one append after the answer, SSE and JSON
// alike: the same two records as before (FORWARD first, with the decision
// and the time it was forwarded; then the outcome), in one write(2). A
// tools/call still writes its FORWARD record before forwarding: two writes.
func TestListAuditOneAppend(t *testing.T) {
	env := newListAuditEnv(t, audit.OnErrorFail)
	for _, tc := range []struct {
		name, path, body string
		writes           int64
	}{
		{"tools/list SSE", "/mcp", listReq, 1},
		{"tools/list JSON", "/b/mcp", listReq, 1},
		{"prompts/list", "/mcp", `{"jsonrpc":"2.0","id":1,"method":"prompts/list"}`, 1},
		{"tools/call", "/mcp", callReq, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := env.fault.Writes()
			code, id := env.post(t, tc.path, tc.body)
			if code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			// A JSON answer reaches the client before the handler writes
			// the records: wait for them before counting writes.
			var recs []audit.Record
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				recs = recs[:0]
				for _, rec := range env.records(t) {
					if rec.RequestID == id {
						recs = append(recs, rec)
					}
				}
				if len(recs) >= 2 || time.Now().After(deadline) {
					break
				}
			}
			if n := env.fault.Writes() - before; n != tc.writes {
				t.Errorf("%d audit writes, want %d", n, tc.writes)
			}
			if len(recs) != 2 {
				t.Fatalf("%d records for the request, want FORWARD and outcome: %+v", len(recs), recs)
			}
			fwd, out := recs[0], recs[1]
			if fwd.Event != audit.EventForward || fwd.Status != 0 || fwd.Result != "" || fwd.Decision != audit.DecisionAllow || fwd.Method != out.Method {
				t.Errorf("FORWARD record = %+v", fwd)
			}
			if out.Event != "" || out.Status != 200 || out.Result != audit.ResultSuccess || out.Seq != fwd.Seq+1 {
				t.Errorf("outcome record = %+v (FORWARD seq %d)", out, fwd.Seq)
			}
			if fwd.Time.IsZero() || fwd.Time.After(out.Time) {
				t.Errorf("FORWARD time %v, outcome time %v: the FORWARD record keeps the time it was forwarded", fwd.Time, out.Time)
			}
		})
	}
}

// TestListRefusedWhileAuditDown: with on_error: fail, once an audit write
// has failed a list is refused with 503 before it reaches its backend,
// also on another backend's path than the request whose record failed (the
// logger's state, not the path's), and lists pass again after a write
// succeeds. With on_error: continue lists go on.
func TestListRefusedWhileAuditDown(t *testing.T) {
	for _, tc := range []struct {
		onError string
		want    int
	}{
		{audit.OnErrorFail, http.StatusServiceUnavailable},
		{audit.OnErrorContinue, http.StatusOK},
	} {
		t.Run(tc.onError, func(t *testing.T) {
			env := newListAuditEnv(t, tc.onError)
			env.fault.Fail(true)
			if code, _ := env.post(t, "/mcp", callReq); code != tc.want {
				t.Fatalf("tools/call while the audit log fails: %d, want %d", code, tc.want)
			}
			hits := env.hitsB.Load()
			if code, _ := env.post(t, "/b/mcp", listReq); code != tc.want {
				t.Errorf("tools/list on b while the audit log fails: %d, want %d", code, tc.want)
			}
			if reached := env.hitsB.Load() != hits; reached != (tc.want == http.StatusOK) {
				t.Errorf("list reached backend b: %v", reached)
			}
			env.fault.Fail(false)
			env.post(t, "/b/mcp", listReq) // refused or not, its record is written: the log works again
			if code, _ := env.post(t, "/b/mcp", listReq); code != http.StatusOK {
				t.Errorf("after recovery: %d", code)
			}
		})
	}
}
