package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpgate/mcpgate/internal/demo"
)

func newDemoBackendCmd() *cobra.Command {
	var listen string
	var stdio bool
	var opts demo.Options
	cmd := &cobra.Command{
		Use:   "demo-backend",
		Short: "Run a small demo MCP server (vSphere-style read and write tools) to put behind the gateway",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if stdio {
				return demo.RunStdio(ctx, opts)
			}
			srv := &http.Server{Addr: listen, Handler: demo.Handler(opts), ReadHeaderTimeout: 10 * time.Second}
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				srv.Shutdown(sctx)
			}()
			fmt.Fprintf(cmd.OutOrStdout(), "demo MCP server on http://%s/mcp\n", listen)
			mux := http.NewServeMux()
			mux.Handle("/mcp", srv.Handler)
			srv.Handler = mux
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:9000", "listen address")
	cmd.Flags().BoolVar(&opts.Stateless, "stateless", false, "serve without MCP sessions")
	cmd.Flags().BoolVar(&stdio, "stdio", false, "serve over stdin/stdout instead (a stdio MCP server)")
	cmd.Flags().IntVar(&opts.ExtraTools, "extra-tools", 0, "add N padding tools (tool_000…)")
	return cmd
}
