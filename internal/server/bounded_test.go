package server_test

import (
	"bufio"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/demo"
)

// metricSeries returns the series (name and labels, without values) that
// /metrics exposes, skipping the process and runtime collectors whose label
// sets are fixed but whose presence may vary.
func metricSeries(t *testing.T, base string) map[string]bool {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	out := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "mcpgate_") {
			continue
		}
		out[line[:strings.LastIndexByte(line, ' ')]] = true
	}
	return out
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestUniqueMethodsDoNotGrowState is the acceptance test of issue 11.3:
// after 10,000 requests with unique method names the heap is within 10 MB of
// where it began and /metrics has no new series (60 such requests used to
// grow the gateway from 26 MB to 502 MB).
func TestUniqueMethodsDoNotGrowState(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	env := startGateway(t, "metrics: { enabled: true }\nrate_limit: { enabled: false }\n", demo.Options{})
	base := strings.TrimSuffix(env.url, "/mcp")
	token := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-readers"}})
	client := &http.Client{}
	send := func(method string) int {
		req, _ := http.NewRequest("POST", env.url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"`+method+`"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Warm up: connections, pools, caches and the "other" series exist.
	for i := range 200 {
		send(fmt.Sprintf("warmup/%d", i))
	}
	series := metricSeries(t, base)
	before := heapAlloc()
	long := strings.Repeat("x", 100)
	for i := range 10_000 {
		if code := send(fmt.Sprintf("unique/%d/%s", i, long)); code != http.StatusForbidden {
			t.Fatalf("request %d: %d, want 403 (method not allowed)", i, code)
		}
	}
	after := heapAlloc()
	t.Logf("heap: %.1f MB before, %.1f MB after 10,000 unique methods", float64(before)/1e6, float64(after)/1e6)
	if after > before+10<<20 {
		t.Errorf("heap grew by %.1f MB, more than 10 MB", float64(after-before)/1e6)
	}
	for s := range metricSeries(t, base) {
		if !series[s] {
			t.Errorf("new series: %s", s)
		}
	}
}

// A 2 MB method name gets 400 and leaves an audit log that verifies; huge
// header values and arguments are truncated in the record (issue 11.3).
func TestHugeInputKeepsTheAuditLogVerifiable(t *testing.T) {
	env := startGateway(t, "rate_limit: { enabled: false }\n", demo.Options{Stateless: true})
	token := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-readers"}})
	huge := strings.Repeat("m", 2<<20)
	r := do(t, "POST", env.url, token, `{"jsonrpc":"2.0","id":1,"method":"`+huge+`"}`, nil)
	if r.status != 400 || !strings.Contains(r.body, "longer than 128 bytes") {
		t.Fatalf("2 MB method: %d %.200s", r.status, r.body)
	}
	r = do(t, "POST", env.url, token, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"`+huge+`"}}`, nil)
	if r.status != 400 {
		t.Fatalf("2 MB tool name: %d %.200s", r.status, r.body)
	}
	// An allowed call with a huge argument and a huge User-Agent is
	// forwarded; its record truncates only what is too large.
	ua := strings.Repeat("u", 60<<10)
	r = do(t, "POST", env.url, token, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"`+strings.Repeat("a", 2<<20)+`"}}}`,
		map[string]string{"User-Agent": ua})
	if r.status != 200 {
		t.Fatalf("huge argument: %d %.200s", r.status, r.body)
	}

	files, err := audit.Files(env.auditPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.VerifyFiles(files, audit.VerifyOptions{}); err != nil {
		t.Fatalf("audit verify: %v", err)
	}
	recs := readAuditAll(t, env.auditPath)
	var sawMethod, sawArgs bool
	for _, rec := range recs {
		if rec.Status == 400 && strings.Contains(rec.Reason, "method is longer than 128 bytes") {
			sawMethod = true // recorded, without the method
		}
		if len(rec.Method) > 128 || len(rec.Tool) > 256 {
			t.Errorf("record holds a %d-byte method, %d-byte tool", len(rec.Method), len(rec.Tool))
		}
		if rec.Tool == "echo" && rec.Event == audit.EventForward { // the outcome record does not repeat the arguments
			sawArgs = string(rec.Args) == `{"text":{"_truncated":true,"_size":2097154}}` &&
				strings.HasSuffix(rec.UserAgent, "…[truncated 61440 bytes]")
		}
	}
	if !sawMethod || !sawArgs {
		t.Errorf("records: refused method %v, truncated argument and user agent %v", sawMethod, sawArgs)
	}
}

// Resource URIs that leave a granted prefix through dot segments, encoded
// or not, are refused before the backend (issue 11.8).
func TestResourceTraversalIsDenied(t *testing.T) {
	env := startGateway(t, "", demo.Options{}, func(y string) string {
		return strings.Replace(y, `prompts: ["*"], resources: ["*"] }`+"\n    admin", `prompts: ["*"], resources: ["demo://public/*"] }`+"\n    admin", 1)
	})
	reader := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-readers"}})
	read := func(uri string) rawResp {
		return do(t, "POST", env.url, reader, `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"`+uri+`"}}`, nil)
	}
	tests := []struct {
		uri    string
		status int
	}{
		{"demo://inventory", 403}, // not granted: the policy works
		{"demo://public/../inventory", 400},
		{"demo://public/%2e%2e/inventory", 400},
		{"demo://public/%2E%2E/inventory", 400},
		{"demo://public/.%2e/inventory", 400},
		{"demo://public/./../inventory", 400},
	}
	for _, tt := range tests {
		t.Run(tt.uri, func(t *testing.T) {
			before := env.seenCount.Load()
			r := read(tt.uri)
			if r.status != tt.status {
				t.Errorf("status = %d, want %d: %s", r.status, tt.status, r.body)
			}
			if env.seenCount.Load() != before {
				t.Error("the request reached the backend")
			}
		})
	}
	// A subscription list cannot smuggle one either (MCP 2026-07-28).
	r := do(t, "POST", env.url, reader, `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":["demo://public/%2e%2e/inventory"]}}}`, nil)
	if r.status != 400 {
		t.Errorf("subscriptions/listen: %d %s", r.status, r.body)
	}
}
