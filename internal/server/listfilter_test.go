package server_test

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/demo"
)

// TestListFiltering: list responses are filtered through the policy whether
// the backend answers with SSE or with JSON, and in a batch.
func TestListFiltering(t *testing.T) {
	for _, tc := range []struct {
		name        string
		json        bool
		contentType string
	}{{"sse", false, "text/event-stream"}, {"json", true, "application/json"}} {
		t.Run(tc.name, func(t *testing.T) {
			env := startGateway(t, "", demo.Options{JSONResponse: tc.json})
			reader := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-readers"}})
			r := do(t, "POST", env.url, reader, initBody, nil)
			hdr := map[string]string{"Mcp-Session-Id": r.header.Get("Mcp-Session-Id"), "Mcp-Protocol-Version": "2025-11-25"}
			do(t, "POST", env.url, reader, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, hdr)

			r = do(t, "POST", env.url, reader, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, hdr)
			if !strings.HasPrefix(r.header.Get("Content-Type"), tc.contentType) {
				t.Fatalf("content type %q, want %s", r.header.Get("Content-Type"), tc.contentType)
			}
			got := names(t, r.body)
			if want := []string{"count", "echo", "get_vm", "list_vms"}; !slices.Equal(got, want) {
				t.Errorf("tools = %v, want %v", got, want)
			}
		})
	}
}

// names extracts tool names from a JSON or SSE tools/list response.
func names(t *testing.T, body string) []string {
	t.Helper()
	payload := body
	if strings.Contains(body, "data:") {
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, "data:") {
				payload = strings.TrimSpace(strings.TrimPrefix(line, "data:"))
			}
		}
	}
	var resp struct {
		Result struct{ Tools []struct{ Name string } }
	}
	if err := json.Unmarshal([]byte(payload), &resp); err != nil {
		t.Fatalf("response %q: %v", body, err)
	}
	var out []string
	for _, tool := range resp.Result.Tools {
		out = append(out, tool.Name)
	}
	slices.Sort(out)
	return out
}

// listBackend answers list requests as the X-Mode request header says:
// correctly but in odd spellings, or in ways that cannot be filtered. Every
// answer names the hidden tool delete_vm.
func listBackend(t *testing.T) http.Handler {
	const list = `{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"list_vms"},{"name":"delete_vm"}]}}`
	gz := func(s string) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(s))
		zw.Close()
		return b.Bytes()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = nil // no sniffing: only what a mode sets
		body := []byte(list)
		status := http.StatusOK
		switch r.Header.Get("X-Mode") {
		case "json-case":
			h.Set("Content-Type", "Application/JSON")
		case "json-charset":
			h.Set("Content-Type", "application/json ; charset=UTF-8")
		case "sse-case", "get-sse":
			h.Set("Content-Type", "Text/Event-Stream")
			// A priming event (empty data, MCP 2025-11-25) comes first.
			body = []byte("id: 4\ndata: \n\nid: 5\nevent: message\ndata: " + list + "\n\n")
		case "none":
		case "text":
			h.Set("Content-Type", "text/plain")
		case "json-seq":
			h.Set("Content-Type", "application/json-seq")
		case "two-types":
			h["Content-Type"] = []string{"application/json", "text/plain"}
		case "gzip-json":
			h.Set("Content-Type", "application/json")
			h.Set("Content-Encoding", "gzip")
			body = gz(list)
		case "gzip-sse":
			h.Set("Content-Type", "text/event-stream")
			h.Set("Content-Encoding", "gzip")
			body = gz("data: " + list + "\n\n")
		case "malformed":
			h.Set("Content-Type", "application/json")
			body = []byte(strings.TrimSuffix(list, "}"))
		case "duplicate-key":
			h.Set("Content-Type", "application/json")
			body = []byte(`{"jsonrpc":"2.0","id":7,"result":{"tools":[]},"result":{"tools":[{"name":"delete_vm"}]}}`)
		case "not-array":
			h.Set("Content-Type", "application/json")
			body = []byte(`{"jsonrpc":"2.0","id":7,"result":{"tools":{"delete_vm":{}}}}`)
		case "sse-broken", "get-broken":
			h.Set("Content-Type", "text/event-stream")
			body = []byte("data: " + strings.TrimSuffix(list, "}") + "\n\n" + "data: " + list + "\n\n")
		case "not-found":
			h.Set("Content-Type", "text/plain")
			status = http.StatusNotFound
		case "cache":
			h.Set("Content-Type", "application/json")
			h.Set("Cache-Control", "public, max-age=600")
			h.Set("ETag", `"v1"`)
			h.Set("Last-Modified", "Mon, 01 Dec 2025 00:00:00 GMT")
			h.Set("Expires", "Mon, 01 Dec 2036 00:00:00 GMT")
		default:
			t.Errorf("backend: unknown mode %q", r.Header.Get("X-Mode"))
		}
		h.Set("Content-Length", strconv.Itoa(len(body))) // as Express sends it, even on SSE
		w.WriteHeader(status)
		w.Write(body)
	})
}

// TestListFilteringFailsClosed: whatever a backend answers to a list request
// (on a POST, on the GET stream or a resumed stream) the client never sees a
// hidden tool. What can be parsed is filtered; what cannot is replaced by a
// JSON-RPC error carrying the request's id.
func TestListFilteringFailsClosed(t *testing.T) {
	env := startGatewayTo(t, listBackend(t), "", func(y string) string {
		return strings.Replace(y, "    url: ", "    forward_headers: [X-Mode]\n    url: ", 1)
	})
	reader := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-readers"}})
	const refused = `{"jsonrpc":"2.0","id":7,"error":{"code":-32603,"message":"backend list response could not be filtered"}}`
	const refusedNull = `{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"backend list response could not be filtered"}}`
	wantResult := map[string]string{} // X-Request-Id → the audit record's result
	for _, tc := range []struct {
		mode, method string
		hdr          map[string]string
		status       int
		want         string // the exact body, or "" for a filtered list
		dropped      bool   // an event was dropped: audited as an error
	}{
		{mode: "json-case", status: 200},
		{mode: "json-charset", status: 200},
		{mode: "sse-case", status: 200},
		{mode: "cache", status: 200},
		{mode: "none", status: 502, want: refused},
		{mode: "text", status: 502, want: refused},
		{mode: "json-seq", status: 502, want: refused},
		{mode: "two-types", status: 502, want: refused},
		{mode: "gzip-json", status: 502, want: refused},
		{mode: "gzip-sse", status: 502, want: refused},
		{mode: "malformed", status: 502, want: refused},
		{mode: "duplicate-key", status: 502, want: refused},
		{mode: "not-array", status: 200, want: refused},
		{mode: "not-found", status: 404, want: refused},
		{mode: "sse-broken", status: 200, want: "data: " + refused + "\n\n"},
		{mode: "get-sse", method: "GET", status: 200},
		{mode: "get-sse", method: "GET", hdr: map[string]string{"Last-Event-ID": "4"}, status: 200},
		// A broken event on the GET stream answers no request: it is dropped
		// and the stream goes on, filtered.
		{mode: "get-broken", method: "GET", hdr: map[string]string{"Last-Event-ID": "4"}, status: 200, dropped: true},
		{mode: "text", method: "GET", status: 502, want: refusedNull},
		{mode: "gzip-sse", method: "GET", status: 502, want: refusedNull},
		{mode: "not-found", method: "GET", status: 404, want: refusedNull},
	} {
		method := cmp.Or(tc.method, "POST")
		t.Run(method+" "+tc.mode+" "+tc.hdr["Last-Event-ID"], func(t *testing.T) {
			hdr := map[string]string{"X-Mode": tc.mode}
			for k, v := range tc.hdr {
				hdr[k] = v
			}
			body := `{"jsonrpc":"2.0","id":7,"method":"tools/list"}`
			if method == "GET" {
				body = ""
			}
			r := do(t, method, env.url, reader, body, hdr)
			wantResult[r.header.Get("X-Request-Id")] = audit.ResultSuccess
			if tc.want != "" || tc.dropped {
				wantResult[r.header.Get("X-Request-Id")] = audit.ResultError
			}
			if strings.Contains(r.body, "delete_vm") || strings.Contains(fmt.Sprint(r.header), "delete_vm") {
				t.Fatalf("hidden tool reached the client: %d %s", r.status, r.body)
			}
			if r.status != tc.status {
				t.Errorf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.want != "" {
				if r.body != tc.want {
					t.Errorf("body %q, want %q", r.body, tc.want)
				}
			} else if got := names(t, r.body); !slices.Equal(got, []string{"list_vms"}) {
				t.Errorf("tools = %v, want [list_vms]", got)
			}
			if cl := r.header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(r.body)) {
				t.Errorf("Content-Length %s for a body of %d bytes", cl, len(r.body))
			}
			if cc := r.header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", cc)
			}
			for _, k := range []string{"Etag", "Last-Modified", "Expires", "Content-Encoding"} {
				if v := r.header.Get(k); v != "" {
					t.Errorf("%s %q reached the client", k, v)
				}
			}
			seen := env.lastHeaders()
			if ae := seen.Get("Accept-Encoding"); ae != "identity" {
				t.Errorf("backend was sent Accept-Encoding %q, want identity", ae)
			}
			if got := seen.Get("Last-Event-ID"); got != tc.hdr["Last-Event-ID"] {
				t.Errorf("backend Last-Event-ID %q, want %q", got, tc.hdr["Last-Event-ID"])
			}
		})
	}
	// Every refusal is audited as an error, including those answered 200.
	var recs []audit.Record
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		recs = readAudit(t, env.auditPath)
		if len(recs) >= len(wantResult) || time.Now().After(deadline) {
			break
		}
	}
	for _, rec := range recs {
		if want, ok := wantResult[rec.RequestID]; ok {
			delete(wantResult, rec.RequestID)
			if rec.Result != want {
				t.Errorf("audit record %s %s status %d: result %q, want %q", rec.Method, rec.Tool, rec.Status, rec.Result, want)
			}
		}
	}
	if len(wantResult) > 0 {
		t.Errorf("%d requests have no audit record", len(wantResult))
	}
}

// readAudit returns the request records of an audit file.
// readAudit returns the outcome records of the log at path: no
// checkpoints, no FORWARD records (see readAuditAll).
func readAudit(t *testing.T, path string) []audit.Record {
	t.Helper()
	var out []audit.Record
	for _, rec := range readAuditAll(t, path) {
		if rec.Event != audit.EventForward {
			out = append(out, rec)
		}
	}
	return out
}

// readAuditAll returns the records of the log at path but checkpoints.
func readAuditAll(t *testing.T, path string) []audit.Record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Record
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var rec audit.Record
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("bad audit line %q: %v", line, err)
		}
		if rec.Event != audit.EventCheckpoint {
			out = append(out, rec)
		}
	}
	return out
}
