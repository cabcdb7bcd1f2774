package stdio

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestMain doubles as the stdio MCP server the tests run as a child: the
// test binary re-executes itself with GO_WANT_STDIO_SERVER=1.
func TestMain(m *testing.M) {
	if os.Getenv("GO_WANT_STDIO_SERVER") == "1" {
		runTestServer()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type textArgs struct {
	Text string `json:"text"`
}
type nArgs struct {
	N     int `json:"n"`
	Delay int `json:"delay,omitempty"` // milliseconds between progress notifications
}
type pidOut struct {
	PID int `json:"pid"`
}
type envOut struct {
	Env []string `json:"env"`
}
type metaOut struct {
	Meta map[string]any `json:"meta"`
}
type rootsOut struct {
	URIs []string `json:"uris"`
}

func runTestServer() {
	stubborn := os.Getenv("STDIO_IGNORE_TERM") == "1"
	if stubborn {
		signal.Ignore(syscall.SIGTERM)
	}
	fmt.Fprintln(os.Stderr, "test server starting")
	if os.Getenv("STDIO_LONG_STDERR") == "1" {
		fmt.Fprintln(os.Stderr, strings.Repeat("x", 10000))
		fmt.Fprintln(os.Stderr, "after long line")
	}
	if os.Getenv("STDIO_JUNK_STDOUT") == "1" {
		fmt.Println("this is not JSON-RPC")
	}

	var opts mcp.ServerOptions
	if os.Getenv("STDIO_ROOTS_ON_INIT") == "1" {
		// A server request outside any client request.
		opts.InitializedHandler = func(_ context.Context, req *mcp.InitializedRequest) {
			go func() {
				_, err := req.Session.ListRoots(context.Background(), nil)
				fmt.Fprintln(os.Stderr, "roots on init:", err)
			}()
		}
	}
	s := mcp.NewServer(&mcp.Implementation{Name: "stdio-test", Version: "1"}, &opts)
	mcp.AddTool(s, &mcp.Tool{Name: "echo"}, func(_ context.Context, _ *mcp.CallToolRequest, in textArgs) (*mcp.CallToolResult, textArgs, error) {
		return nil, in, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "pid"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, pidOut, error) {
		return nil, pidOut{os.Getpid()}, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "progress"}, func(ctx context.Context, req *mcp.CallToolRequest, in nArgs) (*mcp.CallToolResult, nArgs, error) {
		for i := range in.N {
			time.Sleep(time.Duration(in.Delay) * time.Millisecond)
			err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
				ProgressToken: req.Params.GetProgressToken(), Progress: float64(i + 1), Total: float64(in.N),
			})
			if err != nil {
				return nil, nArgs{}, err
			}
		}
		return nil, in, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "sleep"}, func(ctx context.Context, _ *mcp.CallToolRequest, in nArgs) (*mcp.CallToolResult, nArgs, error) {
		select {
		case <-time.After(time.Duration(in.N) * time.Millisecond):
		case <-ctx.Done():
			return nil, nArgs{}, ctx.Err()
		}
		return nil, in, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "big"}, func(_ context.Context, _ *mcp.CallToolRequest, in nArgs) (*mcp.CallToolResult, textArgs, error) {
		return nil, textArgs{strings.Repeat("b", in.N)}, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "crash"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, struct{}, error) {
		os.Exit(3)
		return nil, struct{}{}, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "meta"}, func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, metaOut, error) {
		m := req.Params.GetMeta()
		if m == nil {
			m = map[string]any{}
		}
		return nil, metaOut{m}, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "env"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, envOut, error) {
		e := os.Environ()
		sort.Strings(e)
		return nil, envOut{e}, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "roots"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, rootsOut, error) {
		res, err := req.Session.ListRoots(ctx, nil)
		if err != nil {
			return nil, rootsOut{}, err
		}
		var out rootsOut
		for _, r := range res.Roots {
			out.URIs = append(out.URIs, r.URI)
		}
		return nil, out, nil
	})
	_ = s.Run(context.Background(), &mcp.StdioTransport{})
	if stubborn {
		select {} // ignore stdin EOF too: only SIGKILL ends this one
	}
}
