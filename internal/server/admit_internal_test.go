package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/ratelimit"
)

type takerFunc func() (bool, time.Duration)

func (f takerFunc) Take(context.Context, string) (bool, time.Duration) { return f() }

// TestAdmit: the edge's per-IP and per-user admission takes a rate-limit
// token (unless there is no limiter, as for a user's POST before decoding)
// and then an in-flight slot; either refusal is a 429 with Retry-After and
// takes no slot.
func TestAdmit(t *testing.T) {
	allow := takerFunc(func() (bool, time.Duration) { return true, 0 })
	refuse := takerFunc(func() (bool, time.Duration) { return false, 2500 * time.Millisecond })
	for _, tc := range []struct {
		name       string
		limiter    ratelimit.Taker
		held       int // slots of the key already held (bound: 1)
		ok         bool
		retryAfter string
		reason     string
	}{
		{name: "admitted", limiter: allow, ok: true},
		{name: "no limiter", limiter: nil, ok: true},
		{name: "no limiter, in flight full", limiter: nil, held: 1, retryAfter: "1", reason: "too many requests in flight"},
		{name: "rate limited", limiter: refuse, retryAfter: "3", reason: "rate limit exceeded"},
		{name: "in flight full", limiter: allow, held: 1, retryAfter: "1", reason: "too many requests in flight"},
		{name: "rate limited before in flight", limiter: refuse, held: 1, retryAfter: "3", reason: "rate limit exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &gateway{}
			inFlight := ratelimit.NewInFlight(1, 16)
			for range tc.held {
				if _, ok := inFlight.Acquire("k"); !ok {
					t.Fatal("setup: no slot")
				}
			}
			w, x := httptest.NewRecorder(), &exchange{}
			slot, ok := g.admit(w, httptest.NewRequest("GET", "/mcp", nil), x, tc.limiter, inFlight, "k")
			if ok != tc.ok {
				t.Fatalf("admitted = %v, want %v", ok, tc.ok)
			}
			if ok {
				if _, again := inFlight.Acquire("k"); again {
					t.Error("admitted without taking the key's slot")
				}
				slot.Release()
				if w.Code != http.StatusOK || x.event != "" {
					t.Errorf("admitted but answered %d (event %q)", w.Code, x.event)
				}
				return
			}
			if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != tc.retryAfter || x.reason != tc.reason {
				t.Errorf("got %d Retry-After %q reason %q, want 429 %q %q", w.Code, w.Header().Get("Retry-After"), x.reason, tc.retryAfter, tc.reason)
			}
			if tc.held == 0 {
				if _, free := inFlight.Acquire("k"); !free {
					t.Error("a refused request holds a slot")
				}
			}
		})
	}
}
