package server

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/demo"
)

// flakyAuditor fails while broken is set, as audit.Logger with
// on_error: fail.
type flakyAuditor struct {
	broken  atomic.Bool
	down    atomic.Bool
	written atomic.Int64
}

func (a *flakyAuditor) LogBatch(_ context.Context, recs []*audit.Record) error {
	if a.broken.Load() {
		a.down.Store(true)
		return errors.New("disk full")
	}
	a.down.Store(false)
	a.written.Add(int64(len(recs)))
	return nil
}

func (a *flakyAuditor) Down() bool { return a.down.Load() }

// TestAuditFailureRefusesRequests: with the audit log failing, the gateway
// refuses new requests with 503 (no un-audited action) and recovers by itself
// once a write succeeds again.
func TestAuditFailureRefusesRequests(t *testing.T) {
	var backendHits atomic.Int64
	backend := httptest.NewServer(demo.Handler(demo.Options{OnRequest: func(*http.Request) { backendHits.Add(1) }}))
	defer backend.Close()
	aud := &flakyAuditor{}
	g := testGateway(t, backend.URL+"/mcp", `{ roles: { all: { tools: ["*"] } }, users: { "sub:anonymous": [all] } }`, anonymous{}, aud)
	post := func() int {
		req := httptest.NewRequest("POST", "http://127.0.0.1:8080/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		return rec.Code
	}
	if c := post(); c != 200 {
		t.Fatalf("healthy: %d", c)
	}
	aud.broken.Store(true)
	post() // this request's record is the one that fails
	hits := backendHits.Load()
	if c := post(); c != http.StatusServiceUnavailable {
		t.Errorf("while audit fails: %d, want 503", c)
	}
	if backendHits.Load() != hits {
		t.Error("a request reached the backend while the audit log was failing")
	}
	aud.broken.Store(false)
	post() // refused, but its record is written: the log works again
	if c := post(); c != 200 {
		t.Errorf("after recovery: %d, want 200", c)
	}
}

type noLimit struct{}

func (noLimit) Take(context.Context, string) (bool, time.Duration) { return true, 0 }
