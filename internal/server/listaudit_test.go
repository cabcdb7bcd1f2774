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
	sent, served atomic.Int64 // requests posted, and those whose handler returned (its records written)
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
	h := s.Handler()
	env.gw = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer env.served.Add(1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(env.gw.Close)
	return env
}

// post sends one JSON-RPC request to path and returns the status and the
// answer's X-Request-Id once the gateway has written the request's records
// (a JSON answer reaches the client before that).
func (env *listAuditEnv) post(t *testing.T, path, body string) (int, string) {
	t.Helper()
	sent := env.sent.Add(1)
	defer func() {
		for deadline := time.Now().Add(5 * time.Second); env.served.Load() < sent; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the gateway did not finish the request")
			}
		}
	}()
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
			var recs []audit.Record
			for _, rec := range env.records(t) {
				if rec.RequestID == id {
					recs = append(recs, rec)
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

// TestAuditDownSharedByPaths: with on_error: fail, one audit mechanism
// (audit.Logger.Down) serves every path: a write that failed for a
// tools/call refuses the next tools/list on another backend's path, and one
// that failed for a list (after its answer) refuses the next tools/call
// there, at the edge (before the body is read, so the record names no
// method) and without reaching the backend, even though the log writes
// again. That refusal's record probes the log, and the request after it
// passes.
func TestAuditDownSharedByPaths(t *testing.T) {
	for _, tc := range []struct {
		name               string
		failPath, failBody string
		failCode           int // a list is answered; its records are lost after the answer
		thenPath, thenBody string
		thenOnA            bool
	}{
		{"call then list", "/b/mcp", callReq, http.StatusServiceUnavailable, "/mcp", listReq, true},
		{"list then call", "/mcp", listReq, http.StatusOK, "/b/mcp", callReq, false},
		{"call then call", "/mcp", callReq, http.StatusServiceUnavailable, "/b/mcp", callReq, false},
		{"list then list", "/b/mcp", listReq, http.StatusOK, "/mcp", listReq, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newListAuditEnv(t, audit.OnErrorFail)
			hits := &env.hitsB
			if tc.thenOnA {
				hits = &env.hitsA
			}
			env.fault.Fail(true)
			if code, _ := env.post(t, tc.failPath, tc.failBody); code != tc.failCode {
				t.Fatalf("request while the audit log fails: %d, want %d", code, tc.failCode)
			}
			env.fault.Fail(false)
			before := hits.Load()
			code, id := env.post(t, tc.thenPath, tc.thenBody)
			if code != http.StatusServiceUnavailable {
				t.Errorf("next request on %s: %d, want 503", tc.thenPath, code)
			}
			if hits.Load() != before {
				t.Error("the refused request reached its backend")
			}
			var refusal []string
			for _, rec := range env.records(t) {
				if rec.RequestID == id {
					refusal = append(refusal, fmt.Sprintf("%s %d %s", rec.Event, rec.Status, rec.Method))
				}
			}
			if want := "AUDIT_UNAVAILABLE 503 POST"; len(refusal) != 1 || refusal[0] != want {
				t.Errorf("records of the refused request (event status method): %q, want [%q] (refused at the edge)", refusal, want)
			}
			if code, _ := env.post(t, tc.thenPath, tc.thenBody); code != http.StatusOK {
				t.Errorf("after the refusal's record was written: %d, want 200", code)
			}
			if hits.Load() == before {
				t.Error("the request after recovery did not reach its backend")
			}
		})
	}
}

// TestAuditRecoveryOnAnyPath: the log recovers for every path at once. After
// a failure on a's path, the first request on b's path is refused (503) and
// its record, written, clears the failure; the next request on a's path
// then passes at once (no refusal of its own), and the chain verifies with
// the gap marked.
func TestAuditRecoveryOnAnyPath(t *testing.T) {
	env := newListAuditEnv(t, audit.OnErrorFail)
	env.fault.Fail(true)
	if code, _ := env.post(t, "/mcp", callReq); code != http.StatusServiceUnavailable {
		t.Fatalf("tools/call while the audit log fails: %d, want 503", code)
	}
	env.fault.Fail(false)
	if code, _ := env.post(t, "/b/mcp", listReq); code != http.StatusServiceUnavailable {
		t.Fatalf("first request after the failure, on b: %d, want 503", code)
	}
	hits := env.hitsA.Load()
	for _, body := range []string{callReq, listReq} {
		if code, _ := env.post(t, "/mcp", body); code != http.StatusOK {
			t.Errorf("on a after the log recovered through b: %d, want 200", code)
		}
	}
	if env.hitsA.Load() != hits+2 {
		t.Errorf("backend a received %d requests after recovery, want 2", env.hitsA.Load()-hits)
	}
	rep, err := audit.VerifyFiles([]string{env.auditPath}, audit.VerifyOptions{})
	if err != nil {
		t.Fatalf("the log does not verify: %v", err)
	}
	if rep.RecordsLost == 0 || rep.GapCount != 1 {
		t.Errorf("report %+v: want one RECORDS_LOST gap", rep)
	}
}
