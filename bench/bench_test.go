package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the harness's child roles, as the
// harness binary does.
func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		if err := runRole(role, os.Getenv(roleArgEnv)); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// checkRun asserts that every target served every scenario without errors;
// it asserts nothing about timing.
func checkRun(t *testing.T, rep *report, scenarios []string) {
	t.Helper()
	for _, sc := range scenarios {
		for _, tg := range targets {
			res := rep.Results[sc][tg]
			if res == nil {
				t.Fatalf("%s %s: no result", tg, sc)
			}
			if res.Requests == 0 || len(res.Lat) != res.Requests {
				t.Errorf("%s %s: %d requests, %d samples", tg, sc, res.Requests, len(res.Lat))
			}
			if res.Errors != 0 {
				t.Errorf("%s %s: %d errors, first: %s", tg, sc, res.Errors, res.FirstErr)
			}
		}
	}
	for _, p := range rep.Processes {
		if p.Idle.RSS == 0 || p.Idle.FDs == 0 {
			t.Errorf("%s: idle stats %+v", p.Name, p.Idle)
		}
	}
	if len(rep.Startup) == 0 || rep.Startup[0] <= 0 {
		t.Errorf("start-up times %v", rep.Startup)
	}
}

func TestHarnessInProcess(t *testing.T) {
	// A second of load, as TestHarnessExternal: under -race on a busy
	// 2-core machine no request finished within 400 ms.
	o := options{Concurrency: 2, Duration: time.Second, Warmup: 100 * time.Millisecond, Rounds: 1,
		Scenarios: []string{scenarioCall, scenarioList, scenarioListJSON}, Tools: 100, InProcess: true, Settle: 50 * time.Millisecond}
	rep, err := run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	checkRun(t, rep, o.Scenarios)
	// The policy hides the two write tools (delete_vm, power_on_vm) of 106:
	// the gateway filtered the list, the proxy did not.
	for _, sc := range []string{scenarioList, scenarioListJSON} {
		list := rep.Results[sc]
		if d, b, m := list[targetDirect].Tools, list[targetProxy].Tools, list[targetMcpgate].Tools; d != 106 || b != d || m != 104 {
			t.Errorf("%s: tools listed: direct %d, bare-proxy %d, mcpgate %d; want 106, 106, 104", sc, d, b, m)
		}
	}
	md := rep.markdown("go run ./bench")
	for _, want := range []string{"### tools/call", "### tools/list (106 tools on the backend; 104 after", "; SSE answers)",
		"### tools/list-json (106 tools on the backend; 104 after mcpgate's policy filter; JSON answers)", "| mcpgate |", "### Start-up", "throughput ratio"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	// The commit measured, as git names it (or says why it cannot).
	if !regexp.MustCompile("(?m)^Commit: ([0-9a-f]{7}( with uncommitted changes)?|unknown \\(not a git checkout\\))  $").MatchString(md) {
		t.Errorf("report names no commit:\n%s", md)
	}
}

// TestHarnessExternal runs the real binary and the child roles, as the
// default mode does.
func TestHarnessExternal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/mcpgate")
	}
	// A second of load: on a busy 2-core machine a shorter window can end
	// before the first request of a freshly started process completes.
	o := options{Concurrency: 2, Duration: time.Second, Warmup: 100 * time.Millisecond, Rounds: 1,
		Scenarios: []string{scenarioCall}, Tools: 10, Startups: 1, Settle: 50 * time.Millisecond}
	rep, err := run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	checkRun(t, rep, o.Scenarios)
	if len(rep.Processes) != 4 || len(rep.Startup) != 2 {
		t.Errorf("processes %d, start-ups %d; want 4 and 2", len(rep.Processes), len(rep.Startup))
	}
	for _, p := range rep.Processes {
		if p.PID == os.Getpid() && p.Name != procHarness || p.Peak[scenarioCall].RSS == 0 {
			t.Errorf("%s: pid %d, peak %+v", p.Name, p.PID, p.Peak)
		}
	}
	m := rep.Results[scenarioCall][targetMcpgate]
	if d, ok := m.cpuPerRequest(procMcpgate); !ok || d <= 0 {
		t.Errorf("mcpgate CPU per request = %v, %v", d, ok)
	}
}

func TestOptionsCheck(t *testing.T) {
	ok := options{Concurrency: 32, Duration: 10 * time.Second, Warmup: 2 * time.Second, Rounds: 1, Scenarios: []string{scenarioCall}, Tools: 100}
	if err := ok.check(); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	for name, edit := range map[string]func(*options){
		"duration over the cap":  func(o *options) { o.Duration = 61 * time.Second },
		"zero duration":          func(o *options) { o.Duration = 0 },
		"zero concurrency":       func(o *options) { o.Concurrency = 0 },
		"huge concurrency":       func(o *options) { o.Concurrency = 5000 },
		"negative warmup":        func(o *options) { o.Warmup = -time.Second },
		"too many rounds":        func(o *options) { o.Rounds = maxRounds + 1 },
		"unknown scenario":       func(o *options) { o.Scenarios = []string{"ping"} },
		"profile a given binary": func(o *options) { o.ProfileDir, o.Binary = t.TempDir(), "/bin/true" },
	} {
		o := ok
		edit(&o)
		if err := o.check(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestWriteDocKeepsAnalysis(t *testing.T) {
	path := filepath.Join(t.TempDir(), "benchmarks.md")
	if err := writeDoc(path, "first run\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	doc := string(b) + "\n## Findings\n\nhand-written analysis\n"
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeDoc(path, "second run\n"); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	got := string(b)
	if strings.Contains(got, "first run") || !strings.Contains(got, "second run") || !strings.Contains(got, "hand-written analysis") {
		t.Errorf("after re-run:\n%s", got)
	}
	if strings.Count(got, beginMarker) != 1 || strings.Count(got, endMarker) != 1 {
		t.Errorf("markers duplicated:\n%s", got)
	}
}

func TestPercentiles(t *testing.T) {
	r := &loadResult{}
	for i := 1; i <= 100; i++ {
		r.Lat = append(r.Lat, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.9: 90 * time.Millisecond, 0.99: 99 * time.Millisecond, 1: 100 * time.Millisecond} {
		if got := r.pct(p); got != want {
			t.Errorf("p%v = %v, want %v", p*100, got, want)
		}
	}
	if got := (&loadResult{}).pct(0.5); got != 0 {
		t.Errorf("empty p50 = %v", got)
	}
}

func TestReadSSE(t *testing.T) {
	for _, tc := range []struct {
		name, stream string
		wantResult   string
		wantErr      bool
	}{
		{"response only", "event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"ok\":true}}\n\n", `{"ok":true}`, false},
		{"notification first", "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n", `{}`, false},
		{"data split over lines", "data: {\"jsonrpc\":\"2.0\",\ndata: \"id\":7,\"result\":[1]}\n\n", `[1]`, false},
		{"CRLF", "data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":2}\r\n\r\n", `2`, false},
		{"other id only", "data: {\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{}}\n\n", "", true},
		{"no blank line before EOF", "data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n", "", true},
		{"bad JSON", "data: {nope\n\n", "", true},
		{"empty", "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &session{}
			r, err := s.readSSE(strings.NewReader(tc.stream), 7)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && string(r.Result) != tc.wantResult {
				t.Errorf("result = %s, want %s", r.Result, tc.wantResult)
			}
		})
	}
}

// TestMergeRounds: rounds merge into one result: counts add up, the first
// error stays, latencies are pooled (sorted for the proxy modes), and each
// mode's own fields merge as before.
func TestMergeRounds(t *testing.T) {
	ms := func(d ...int) []time.Duration {
		var out []time.Duration
		for _, v := range d {
			out = append(out, time.Duration(v)*time.Millisecond)
		}
		return out
	}
	l := &loadResult{tally: tally{Requests: 2, Errors: 1, FirstErr: "first", Lat: ms(3, 5)}, Elapsed: time.Second, CPU: map[string]time.Duration{"mcpgate": time.Second}}
	l.merge(&loadResult{tally: tally{Requests: 3, Errors: 2, FirstErr: "second", Lat: ms(1, 4, 9)}, Elapsed: time.Second, Tools: 96,
		CPU: map[string]time.Duration{"mcpgate": time.Second, "bare": time.Second}})
	if l.Requests != 5 || l.Errors != 3 || l.FirstErr != "first" || !slices.Equal(l.Lat, ms(1, 3, 4, 5, 9)) ||
		l.Elapsed != 2*time.Second || l.Tools != 96 || l.CPU["mcpgate"] != 2*time.Second || l.CPU["bare"] != time.Second {
		t.Errorf("merged load result: %+v", l)
	}
	if l.pct(0.5) != 4*time.Millisecond {
		t.Errorf("merged p50 = %v", l.pct(0.5))
	}
	tr := &tokenResult{Window: time.Second, CPU: time.Second}
	tr.merge(&tokenResult{tally: tally{Requests: 4, Errors: 1, FirstErr: "e", Lat: ms(2, 1)}, Window: time.Second, CPU: time.Second, Ran: true})
	if tr.Requests != 4 || tr.Errors != 1 || tr.FirstErr != "e" || !slices.Equal(tr.Lat, ms(2, 1)) || tr.Window != 2*time.Second ||
		tr.CPU != 2*time.Second || !tr.Ran {
		t.Errorf("merged token result: %+v", tr)
	}
}

// TestSplitScenarios: the default -scenarios runs every proxy scenario and
// then the token endpoint against floor-normal, in one run (issue 15's
// acceptance); token goes with proxy scenarios, scale only on its own.
func TestSplitScenarios(t *testing.T) {
	for _, tc := range []struct {
		list, token string
		proxy       []string
		err         bool
	}{
		{defaultScenarios, scenarioToken, allScenarios, false},
		{"tools/list,tools/list-json", "", []string{scenarioList, scenarioListJSON}, false},
		{"token", scenarioToken, nil, false},
		{"scale", scenarioScale, nil, false},
		{"tools/call,scale", "", nil, true},
		{"token,scale", "", nil, true},
		{"token,token", "", nil, true},
	} {
		proxy, token, err := splitScenarios(tc.list)
		if (err != nil) != tc.err || token != tc.token || !slices.Equal(proxy, tc.proxy) {
			t.Errorf("splitScenarios(%q) = %q, %q, %v; want %q, %q, error %v", tc.list, proxy, token, err, tc.proxy, tc.token, tc.err)
		}
	}
}
