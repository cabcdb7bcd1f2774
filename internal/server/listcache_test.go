package server_test

import (
	"bufio"
	"encoding/json"
	"io"
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

// everyListBackend answers each list method with one item the readers of
// TestEveryListMethod may see and one they may not, as JSON or (X-Mode:
// sse) as an SSE event; X-Mode: broken answers JSON that does not parse.
func everyListBackend(t *testing.T) http.Handler {
	results := map[string]string{
		"tools/list":               `{"tools":[{"name":"list_vms"},{"name":"delete_vm"}]}`,
		"prompts/list":             `{"prompts":[{"name":"public_greeting"},{"name":"secret_prompt"}],"nextCursor":"p2"}`,
		"resources/list":           `{"resources":[{"uri":"file:///public/readme","name":"readme"},{"uri":"file:///secret/keys","name":"keys"}]}`,
		"resources/templates/list": `{"resourceTemplates":[{"uriTemplate":"file:///public/{name}","name":"pub"},{"uriTemplate":"file:///secret/{name}","name":"sec"}]}`,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID     json.RawMessage
			Method string
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || results[req.Method] == "" {
			t.Errorf("backend: unexpected request %s (%v)", req.Method, err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		body := `{"jsonrpc":"2.0","id":` + string(req.ID) + `,"result":` + results[req.Method] + `}`
		switch r.Header.Get("X-Mode") {
		case "sse":
			w.Header().Set("Content-Type", "text/event-stream")
			body = "id: 1_0\nevent: message\ndata: " + body + "\n\n"
		case "broken":
			w.Header().Set("Content-Type", "application/json")
			body = strings.TrimSuffix(body, "}")
		default:
			w.Header().Set("Content-Type", "application/json")
		}
		io.WriteString(w, body)
	})
}

// TestEveryListMethod: prompts/list, resources/list and
// resources/templates/list take the path tools/list takes, for JSON and
// SSE answers: filtered by the policy (prompts by name, resources by URI,
// templates by URI template), everything else kept, the filtered result
// shared through the list cache by callers with the same roles, and an
// answer that does not parse refused, never forwarded.
func TestEveryListMethod(t *testing.T) {
	env := startGatewayTo(t, everyListBackend(t), "metrics: { enabled: true }\n", func(y string) string {
		y = strings.Replace(y, `prompts: ["*"], resources: ["*"] }`, `prompts: ["public_*"], resources: ["file:///public/*"] }`, 1)
		return strings.Replace(y, "    url: ", "    forward_headers: [X-Mode]\n    url: ", 1)
	})
	base := strings.TrimSuffix(env.url, "/mcp")
	hits := func() float64 { return metricValue(t, base, "mcpgate_list_cache_hits_total") }
	alice := env.idp.tokenFor(t, "alice", env.url, map[string]any{"groups": []string{"mcp-readers"}})
	bob := env.idp.tokenFor(t, "bob", env.url, map[string]any{"groups": []string{"mcp-readers"}})
	for _, tc := range []struct {
		method, member, key, kept, hidden, extra string
	}{
		{"tools/list", "tools", "name", "list_vms", "delete_vm", ""},
		{"prompts/list", "prompts", "name", "public_greeting", "secret_prompt", `"nextCursor":"p2"`},
		{"resources/list", "resources", "uri", "file:///public/readme", "file:///secret/keys", `"name":"readme"`},
		{"resources/templates/list", "resourceTemplates", "uriTemplate", "file:///public/{name}", "file:///secret/{name}", `"name":"pub"`},
	} {
		for _, mode := range []string{"json", "sse"} {
			t.Run(tc.method+"/"+mode, func(t *testing.T) {
				body := `{"jsonrpc":"2.0","id":5,"method":"` + tc.method + `"}`
				h0 := hits()
				for i, tok := range []string{alice, bob} {
					r := do(t, "POST", env.url, tok, body, map[string]string{"X-Mode": mode})
					if r.status != 200 {
						t.Fatalf("status %d: %s", r.status, r.body)
					}
					payload := r.body
					if mode == "sse" {
						var ok bool
						if payload, ok = strings.CutPrefix(r.body, "id: 1_0\nevent: message\ndata: "); !ok {
							t.Fatalf("SSE framing lost: %q", r.body)
						}
					}
					var resp struct {
						ID     int
						Result map[string]json.RawMessage
					}
					if err := json.Unmarshal([]byte(strings.TrimSpace(payload)), &resp); err != nil {
						t.Fatalf("answer %q: %v", r.body, err)
					}
					var items []map[string]any
					if err := json.Unmarshal(resp.Result[tc.member], &items); err != nil {
						t.Fatalf("%s in %s: %v", tc.member, r.body, err)
					}
					if resp.ID != 5 || len(items) != 1 || items[0][tc.key] != tc.kept {
						t.Errorf("caller %d: id %d, %s %v; want id 5 and only %s", i, resp.ID, tc.member, items, tc.kept)
					}
					if strings.Contains(r.body, tc.hidden) || !strings.Contains(r.body, tc.extra) {
						t.Errorf("caller %d: %s (want %s hidden, %s kept)", i, r.body, tc.hidden, tc.extra)
					}
				}
				// bob has alice's roles: her filtered result served him. On
				// SSE, the result filtered for the JSON answer (the same
				// bytes, list and roles) served both: one cache for both.
				want := h0 + 1
				if mode == "sse" {
					want = h0 + 2
				}
				if h := hits(); h != want {
					t.Errorf("list cache hits %v, want %v", h, want)
				}
			})
		}
		t.Run(tc.method+"/unparseable", func(t *testing.T) {
			r := do(t, "POST", env.url, alice, `{"jsonrpc":"2.0","id":5,"method":"`+tc.method+`"}`, map[string]string{"X-Mode": "broken"})
			const refused = `{"jsonrpc":"2.0","id":5,"error":{"code":-32603,"message":"backend list response could not be filtered"}}`
			if r.status != http.StatusBadGateway || r.body != refused {
				t.Errorf("got %d %s, want 502 %s", r.status, r.body, refused)
			}
		})
	}
}
