package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/config"
)

// TestListCachePolicyReload: a reload that changes what a role grants, the
// caller's roles staying the same, is seen at the next list: results
// filtered under the old policy are not served.
func TestListCachePolicyReload(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"list_vms"},{"name":"delete_vm"}]}}`)
	}))
	defer backend.Close()
	const policyYAML = `{ roles: { ops: { tools: %s } }, users: { "sub:anonymous": [ops] } }`
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
auth: { mode: none }
policy: `+policyYAML+`
backends: [ { name: demo, url: %s/mcp } ]
audit: { sink: none }
rate_limit: { enabled: false }
`, `["list_*"]`, backend.URL)), func(string) (string, bool) { return "", false }, config.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := newServer(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	front := httptest.NewServer(s.Handler())
	defer front.Close()
	list := func() string {
		t.Helper()
		req, _ := http.NewRequest("POST", front.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		req.Host = "127.0.0.1:8080" // the default public URL's
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	hits := func() float64 {
		mfs, err := s.registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "mcpgate_list_cache_hits_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		t.Fatal("no mcpgate_list_cache_hits_total")
		return 0
	}

	for i := range 2 {
		if got := list(); strings.Contains(got, "delete_vm") || !strings.Contains(got, "list_vms") {
			t.Fatalf("list %d before the reload: %s", i, got)
		}
	}
	if h := hits(); h != 1 {
		t.Fatalf("hits = %v, want 1 (the second list)", h)
	}
	reloaded, err := config.Parse([]byte(fmt.Sprintf(`
auth: { mode: none }
policy: `+policyYAML+`
backends: [ { name: demo, url: %s/mcp } ]
`, `["list_*", "delete_*"]`, backend.URL)), func(string) (string, bool) { return "", false }, config.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ReloadPolicy(reloaded.Policy); err != nil {
		t.Fatal(err)
	}
	if got := list(); !strings.Contains(got, "delete_vm") {
		t.Errorf("after the reload: %s, want delete_vm listed", got)
	}
	if h := hits(); h != 1 {
		t.Errorf("hits = %v after the reload, want still 1", h)
	}
}
