package server

import (
	"bufio"
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
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/demo"
)

// TestAuditDiskFullUnderLoad: the audit disk fills (writes fail with
// ENOSPC, half-written) while concurrent tools/call requests run through the
// real gateway. With on_error: fail every call the backend received has a
// FORWARD record in the log; with continue, RECORDS_LOST counts at least the
// calls without one. Either way the chain verifies and reports the gap.
func TestAuditDiskFullUnderLoad(t *testing.T) {
	for _, mode := range []string{audit.OnErrorFail, audit.OnErrorContinue} {
		t.Run(mode, func(t *testing.T) { testAuditDiskFull(t, mode) })
	}
}

func testAuditDiskFull(t *testing.T, onError string) {
	var mu sync.Mutex
	received := map[string]bool{} // echo texts of the tools/call requests the backend received
	backend := httptest.NewServer(demo.Handler(demo.Options{Stateless: true, JSONResponse: true, OnRequest: func(r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var m struct {
			Method string `json:"method"`
			Params struct {
				Arguments struct {
					Text string `json:"text"`
				} `json:"arguments"`
			} `json:"params"`
		}
		if json.Unmarshal(body, &m) == nil && m.Method == "tools/call" {
			mu.Lock()
			received[m.Params.Arguments.Text] = true
			mu.Unlock()
		}
	}}))
	defer backend.Close()

	auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
auth: { mode: none }
policy: { roles: { all: { tools: ["*"] } }, users: { "sub:anonymous": [all] } }
backends: [ { name: demo, url: %s/mcp } ]
rate_limit: { per_ip: { rps: 1000000, burst: 1000000 }, per_user: { rps: 1000000, burst: 1000000 } }
audit: { sink: file, path: %s, on_error: %s }
`, backend.URL, auditPath, onError)), func(string) (string, bool) { return "", false }, config.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	fault := &audit.Fault{}
	fault.Partial(true)
	s, err := newServer(context.Background(), cfg, slog.New(slog.DiscardHandler), audit.WithFault(fault))
	if err != nil {
		t.Fatal(err)
	}
	gw := httptest.NewServer(s.Handler())
	defer gw.Close()

	var n, ok, refused, other atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n.Add(1)
				body := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"w%d-%d"}}}`, w, i)
				req, _ := http.NewRequest("POST", gw.URL+"/mcp", strings.NewReader(body))
				req.Host = "127.0.0.1:8080" // the default public_url's
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json, text/event-stream")
				req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
				resp, err := gw.Client().Do(req)
				if err != nil {
					other.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusServiceUnavailable:
					refused.Add(1)
				default:
					if other.Add(1) == 1 {
						t.Logf("first unexpected answer: %d %s", resp.StatusCode, resp.Header)
					}
				}
			}
		}()
	}
	// Phases by progress, not time: the machine may be slow.
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("healthy traffic", func() bool { return ok.Load() >= 50 })
	fault.Fail(true)
	at := n.Load()
	waitFor("requests during the fault", func() bool { return n.Load() >= at+100 })
	fault.Fail(false)
	at = ok.Load()
	waitFor("recovery", func() bool { return ok.Load() >= at+50 })
	close(stop)
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d requests: %d ok, %d refused (503), %d other; backend received %d tools/call", n.Load(), ok.Load(), refused.Load(), other.Load(), len(received))
	if other.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("unexpected answers: %d ok, %d other", ok.Load(), other.Load())
	}
	if onError == audit.OnErrorFail && refused.Load() == 0 {
		t.Errorf("on_error: fail refused nothing while the disk was full")
	}

	rep, err := audit.VerifyFiles([]string{auditPath}, audit.VerifyOptions{})
	if err != nil {
		t.Fatalf("the log does not verify: %v", err)
	}
	if rep.RecordsLost == 0 || rep.GapCount == 0 || !rep.CleanShutdown {
		t.Fatalf("the fault left no RECORDS_LOST gap: %+v", rep)
	}
	forwarded := map[string]bool{}
	f, err := os.Open(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec audit.Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Event == audit.EventForward && rec.Method == "tools/call" {
			var a struct{ Text string }
			json.Unmarshal(rec.Args, &a)
			forwarded[a.Text] = true
		}
	}
	var missing []string
	for text := range received {
		if !forwarded[text] {
			missing = append(missing, text)
		}
	}
	switch {
	case onError == audit.OnErrorFail && len(missing) > 0:
		t.Errorf("%d of %d calls the backend received have no FORWARD record: %v", len(missing), len(received), missing[:min(10, len(missing))])
	case uint64(len(missing)) > rep.RecordsLost:
		// on_error: continue forwards what it cannot record; the gap must
		// account for every such call.
		t.Errorf("%d calls without a FORWARD record, but RECORDS_LOST counts %d", len(missing), rep.RecordsLost)
	}
	if onError == audit.OnErrorFail && len(forwarded) != len(received) {
		// A FORWARD record without a backend call is a call refused after its
		// own record was written; with one call per request there is none.
		t.Errorf("%d FORWARD records, %d calls received", len(forwarded), len(received))
	}
}
