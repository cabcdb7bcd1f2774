// Package demo is a small MCP server (built with the official Go SDK) with a
// few read and write tools in the style of a vSphere server. It backs the
// quick start, the integration tests and the benchmark harness.
package demo

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Options configure the demo server; the zero value is a stateful server with
// the standard tools.
type Options struct {
	// Stateless serves without Mcp-Session-Id (each request stands alone).
	Stateless bool
	// JSONResponse answers POSTs with application/json instead of SSE.
	JSONResponse bool
	// ExtraTools adds tool_000 … tool_NNN (for list-filtering benchmarks).
	ExtraTools int
	// OnRequest, if set, sees every HTTP request the server receives (tests
	// use it to assert that no client credential reaches the backend).
	OnRequest func(*http.Request)
}

type vmArgs struct {
	VMName string `json:"vm_name" jsonschema:"the virtual machine's name"`
}

type countArgs struct {
	To int `json:"to" jsonschema:"count from 1 to this number, sending a progress notification per step"`
}

type echoArgs struct {
	Text string `json:"text"`
}

// NewServer builds the MCP server.
func NewServer(opts Options) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "mcpgate-demo", Version: "1.0.0"}, nil)
	var mu sync.Mutex
	vms := map[string]string{"web-1": "poweredOn", "dev-db": "poweredOff", "prod-db": "poweredOn"}
	text := func(format string, args ...any) *mcp.CallToolResult {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf(format, args...)}}}
	}
	mcp.AddTool(s, &mcp.Tool{Name: "list_vms", Description: "List virtual machines"},
		func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			mu.Lock()
			defer mu.Unlock()
			names := make([]string, 0, len(vms))
			for n := range vms {
				names = append(names, n)
			}
			slices.Sort(names)
			return text("%v", names), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "get_vm", Description: "Show a virtual machine's power state"},
		func(ctx context.Context, _ *mcp.CallToolRequest, a vmArgs) (*mcp.CallToolResult, any, error) {
			mu.Lock()
			defer mu.Unlock()
			st, ok := vms[a.VMName]
			if !ok {
				return nil, nil, fmt.Errorf("no VM named %q", a.VMName)
			}
			return text("%s: %s", a.VMName, st), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "power_on_vm", Description: "Power on a virtual machine"},
		func(ctx context.Context, _ *mcp.CallToolRequest, a vmArgs) (*mcp.CallToolResult, any, error) {
			mu.Lock()
			defer mu.Unlock()
			if _, ok := vms[a.VMName]; !ok {
				return nil, nil, fmt.Errorf("no VM named %q", a.VMName)
			}
			vms[a.VMName] = "poweredOn"
			return text("VM '%s' is powering on", a.VMName), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "delete_vm", Description: "Delete a virtual machine"},
		func(ctx context.Context, _ *mcp.CallToolRequest, a vmArgs) (*mcp.CallToolResult, any, error) {
			mu.Lock()
			defer mu.Unlock()
			delete(vms, a.VMName)
			return text("VM '%s' deleted", a.VMName), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "Echo the text back"},
		func(ctx context.Context, _ *mcp.CallToolRequest, a echoArgs) (*mcp.CallToolResult, any, error) {
			return text("%s", a.Text), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "count", Description: "Count slowly, reporting progress"},
		func(ctx context.Context, req *mcp.CallToolRequest, a countArgs) (*mcp.CallToolResult, any, error) {
			token := req.Params.GetProgressToken()
			for i := 1; i <= a.To; i++ {
				if token != nil {
					req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
						ProgressToken: token, Progress: float64(i), Total: float64(a.To), Message: fmt.Sprintf("step %d", i),
					})
				}
				select {
				case <-ctx.Done():
					return nil, nil, ctx.Err()
				case <-time.After(10 * time.Millisecond):
				}
			}
			return text("counted to %d", a.To), nil, nil
		})
	for i := 0; i < opts.ExtraTools; i++ {
		name := fmt.Sprintf("tool_%03d", i)
		mcp.AddTool(s, &mcp.Tool{Name: name, Description: "Padding tool " + name},
			func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
				return text("%s ok", name), nil, nil
			})
	}
	s.AddPrompt(&mcp.Prompt{Name: "vm_report", Description: "Summarize the VM inventory"},
		func(ctx context.Context, _ *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: "Summarize the VMs."}}}}, nil
		})
	s.AddResource(&mcp.Resource{URI: "demo://inventory", Name: "inventory", MIMEType: "text/plain"},
		func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: "web-1, dev-db, prod-db"}}}, nil
		})
	return s
}

// RunStdio serves the demo server over stdin/stdout until ctx ends or stdin
// closes (a stdio MCP server, for stdio backends).
func RunStdio(ctx context.Context, opts Options) error {
	return NewServer(opts).Run(ctx, &mcp.StdioTransport{})
}

// Handler serves the demo server over streamable HTTP.
func Handler(opts Options) http.Handler {
	s := NewServer(opts)
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: opts.Stateless, JSONResponse: opts.JSONResponse})
	if opts.OnRequest == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		opts.OnRequest(r)
		h.ServeHTTP(w, r)
	})
}
