package server_test

import (
	"bufio"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// metricValue reads one unlabelled series from /metrics.
func metricValue(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}

// mutableListBackend answers tools/list with the list *tools holds, as JSON
// or (X-Mode: sse) as an SSE event with an id.
func mutableListBackend(tools *atomic.Pointer[string]) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := `{"jsonrpc":"2.0","id":7,"result":{"tools":[` + *tools.Load() + `]}}`
		if r.Header.Get("X-Mode") == "sse" {
			w.Header().Set("Content-Type", "text/event-stream")
			body = "id: 1_0\nevent: message\ndata: " + body + "\n\n"
		} else {
			w.Header().Set("Content-Type", "application/json")
		}
		w.Write([]byte(body))
	})
}

// TestListCacheSharedByRoles: callers with the same roles share one
// filtered list; a caller with other roles gets his own; a changed backend
// list is filtered anew. For JSON and SSE answers.
func TestListCacheSharedByRoles(t *testing.T) {
	for _, mode := range []string{"json", "sse"} {
		t.Run(mode, func(t *testing.T) {
			var tools atomic.Pointer[string]
			list := `{"name":"list_vms"},{"name":"delete_vm"}`
			tools.Store(&list)
			env := startGatewayTo(t, mutableListBackend(&tools), "metrics: { enabled: true }\n", func(y string) string {
				return strings.Replace(y, "    url: ", "    forward_headers: [X-Mode]\n    url: ", 1)
			})
			base := strings.TrimSuffix(env.url, "/mcp")
			hits := func() float64 { return metricValue(t, base, "mcpgate_list_cache_hits_total") }
			listAs := func(sub string, groups ...string) []string {
				t.Helper()
				tok := env.idp.tokenFor(t, sub, env.url, map[string]any{"groups": groups})
				r := do(t, "POST", env.url, tok, `{"jsonrpc":"2.0","id":7,"method":"tools/list"}`, map[string]string{"X-Mode": mode})
				if r.status != 200 {
					t.Fatalf("%s: %d %s", sub, r.status, r.body)
				}
				if mode == "sse" && !strings.HasPrefix(r.body, "id: 1_0\nevent: message\ndata: ") {
					t.Errorf("SSE framing lost: %q", r.body)
				}
				return names(t, r.body)
			}

			if got := listAs("alice", "mcp-readers"); !slices.Equal(got, []string{"list_vms"}) {
				t.Fatalf("alice: %v", got)
			}
			h0 := hits()
			// bob has the same roles (an unmapped group adds none): a hit.
			if got := listAs("bob", "mcp-readers", "staff"); !slices.Equal(got, []string{"list_vms"}) {
				t.Errorf("bob: %v", got)
			}
			if h := hits(); h != h0+1 {
				t.Errorf("hits %v after bob, want %v", h, h0+1)
			}
			// carol is an admin: her own entry, with the tool readers never see.
			if got := listAs("carol", "mcp-admins"); !slices.Equal(got, []string{"delete_vm", "list_vms"}) {
				t.Errorf("carol: %v", got)
			}
			if h := hits(); h != h0+1 {
				t.Errorf("hits %v after carol, want %v (no hit across roles)", h, h0+1)
			}
			// The backend's list changes: filtered anew, not served stale.
			changed := `{"name":"list_vms"},{"name":"get_host"},{"name":"delete_vm"},{"name":"delete_host"}`
			tools.Store(&changed)
			if got := listAs("bob", "mcp-readers"); !slices.Equal(got, []string{"get_host", "list_vms"}) {
				t.Errorf("bob after the change: %v", got)
			}
			if got := listAs("carol", "mcp-admins"); !slices.Equal(got, []string{"delete_host", "delete_vm", "get_host", "list_vms"}) {
				t.Errorf("carol after the change: %v", got)
			}
			if h := hits(); h != h0+1 {
				t.Errorf("hits %v after the change, want %v", h, h0+1)
			}
			if n := metricValue(t, base, "mcpgate_list_cache_entries"); n != 4 {
				t.Errorf("entries %v, want 4 (two lists for two role sets)", n)
			}
		})
	}
}
