package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// The token scenarios run end to end: floor-normal and mcpgate answer every
// exchange and refresh, and the report has a ratio for each mcpgate line.
// Nothing about timing is asserted.
func TestTokenScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	for _, o := range []tokenOptions{
		{Scenario: scenarioToken, Conc: []int{2}},
		{Scenario: scenarioScale, Conc: []int{2}, Grants: []int{4, 40}},
	} {
		t.Run(o.Scenario, func(t *testing.T) {
			o.Duration, o.Warmup, o.Rounds, o.Store = 500*time.Millisecond, 100*time.Millisecond, 1, store.DriverSQLite
			if o.Scenario == scenarioScale {
				o.Duration, o.Rounds = 300*time.Millisecond, 2
			}
			rep, err := runToken(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			want := 4
			if o.Scenario == scenarioScale {
				want = 2
			}
			if len(rep.Keys) != want {
				t.Fatalf("results %v, want %d lines", rep.Keys, want)
			}
			for _, k := range rep.Keys {
				if r := rep.Results[k]; r.Requests == 0 || r.Errors != 0 || r.Ran {
					t.Errorf("%s: %d requests, %d errors (%s), ran out: %v", k, r.Requests, r.Errors, r.FirstErr, r.Ran)
				}
			}
			// Every instance refreshed each of its grants once before the rounds.
			if instances := max(1, len(o.Grants)); len(rep.FirstPass) != instances {
				t.Errorf("first passes %v, want one per mcpgate instance (%d)", rep.FirstPass, instances)
			}
			for k, r := range rep.FirstPass {
				if r <= 0 {
					t.Errorf("first pass of %s: %.0f/s", k, r)
				}
			}
			md := rep.markdown("go run ./bench -scenarios " + o.Scenario)
			if n := strings.Count(md, "**"); n != 2*(want/2) {
				t.Errorf("%d ratios in the report, want %d:\n%s", n/2, want/2, md)
			}
			if o.Scenario == scenarioScale {
				// Two rounds, the second in reverse order, and their median.
				if !strings.Contains(md, "| 1 | ascending |") || !strings.Contains(md, "| 2 | descending |") ||
					!strings.Contains(md, "Median of 2 rounds, 40 grants ÷ 4 grants") {
					t.Errorf("no per-round table or median:\n%s", md)
				}
			}
		})
	}
}

// With -profile, both servers of the token scenario are profiled: CPU,
// allocations and an execution trace, per grant type, each a real file.
func TestTokenScenarioProfiles(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	dir := t.TempDir()
	o := tokenOptions{Scenario: scenarioToken, Conc: []int{2}, Duration: 500 * time.Millisecond, Warmup: 100 * time.Millisecond,
		Rounds: 1, Store: store.DriverSQLite, ProfileDir: dir}
	if _, err := runToken(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	for _, grant := range []string{"exchange", "refresh"} {
		for _, server := range []string{serverFloor, serverMcpgate} {
			for _, kind := range []string{"cpu.prof", "allocs0.prof", "allocs1.prof", "trace"} {
				name := fmt.Sprintf("token-%s-c2-r1-%s.%s", grant, server, kind)
				if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() == 0 {
					t.Errorf("%s: %v (empty: %v)", name, err, err == nil)
				}
			}
		}
	}
}

func TestTokenOptionsCheck(t *testing.T) {
	ok := tokenOptions{Scenario: scenarioToken, Conc: []int{8, 32}, Duration: time.Second, Rounds: 1, Store: store.DriverSQLite}
	if err := ok.check(); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	for name, mod := range map[string]func(*tokenOptions){
		"no concurrency": func(o *tokenOptions) { o.Conc = nil },
		"zero clients":   func(o *tokenOptions) { o.Conc = []int{0} },
		"long duration":  func(o *tokenOptions) { o.Duration = time.Hour },
		"zero duration":  func(o *tokenOptions) { o.Duration = 0 },
		"long warmup":    func(o *tokenOptions) { o.Warmup = maxWarmup + time.Second },
		"zero rounds":    func(o *tokenOptions) { o.Rounds = 0 },
		"postgres without dsn": func(o *tokenOptions) {
			o.Store = store.DriverPostgres
			o.Scenario = scenarioScale
			o.Grants = []int{1, 2}
		},
		"postgres for floor":  func(o *tokenOptions) { o.Store = store.DriverPostgres; o.PostgresDSN = "postgres://x" },
		"scale with one size": func(o *tokenOptions) { o.Scenario = scenarioScale; o.Grants = []int{1000} },
		"too many grants":     func(o *tokenOptions) { o.Scenario = scenarioScale; o.Grants = []int{1, 2_000_000} },
		"unknown store":       func(o *tokenOptions) { o.Store = "mysql" },
	} {
		o := ok
		mod(&o)
		if err := o.check(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A server whose first answers are slow (a cold start longer than the
// warm-up and the window together) is still measured: the window opens once
// every client has had an answer. Before, the window saw none of them.
func TestTokenLoadWaitsForFirstAnswers(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			time.Sleep(400 * time.Millisecond) // longer than warm-up + window
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"at","refresh_token":"rt"}`)
	}))
	defer srv.Close()
	res := tokenLoad(context.Background(), srv.URL, 2, 50*time.Millisecond, 200*time.Millisecond, os.Getpid(),
		func(int) url.Values { return url.Values{"grant_type": {"refresh_token"}} }, func(int, string) {})
	if res.Requests == 0 || res.Errors != 0 {
		t.Fatalf("%d requests, %d errors (%s): the window missed the warm server", res.Requests, res.Errors, res.FirstErr)
	}
}

// TestTokenLoadKeepsRotatedTokens: a measurement's end lets the refreshes in
// flight be answered, so the pool holds every grant's current token and the
// next measurement (the next -token-c) replays none. The fake server rotates
// a grant's token, then takes a while to answer, as a commit followed by the
// response does; a replayed token is refused, as mcpgate's reuse detection
// refuses it.
func TestTokenLoadKeepsRotatedTokens(t *testing.T) {
	const grants, c = 16, 4
	var mu sync.Mutex
	current := map[string]string{} // token -> grant
	tokens := make([]string, grants)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("g%d-0", i)
		current[tokens[i]] = fmt.Sprint(i)
	}
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		g, ok := current[r.FormValue("refresh_token")]
		next := fmt.Sprintf("g%s-%d", g, n.Add(1))
		if ok {
			delete(current, r.FormValue("refresh_token"))
			current[next] = g
		}
		mu.Unlock()
		if !ok {
			http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
			return
		}
		time.Sleep(5 * time.Millisecond) // committed; the answer is on its way
		fmt.Fprintf(w, `{"access_token":"at","refresh_token":%q}`, next)
	}))
	defer srv.Close()
	pool := newRefreshPool(tokens, c)
	for run := range 3 {
		p := newRefreshPool(pool.tokens, c)
		res := tokenLoad(context.Background(), srv.URL, c, 20*time.Millisecond, 100*time.Millisecond, os.Getpid(), p.form("client"), p.done)
		if res.Errors != 0 || res.Requests == 0 {
			t.Fatalf("run %d: %d answered, %d errors, first: %s", run, res.Requests, res.Errors, res.FirstErr)
		}
	}
}
