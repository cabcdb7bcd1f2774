package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"
)

// newHealthcheckCmd is `mcpgate healthcheck URL`: a probe for container
// health checks, since the distroless image has no curl or wget.
func newHealthcheckCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "healthcheck URL",
		Short: "Exit 0 if URL (e.g. http://127.0.0.1:8080/healthz) answers 200, else 1 (for container health checks)",
		Example: `  mcpgate healthcheck http://127.0.0.1:8080/healthz
  # compose: healthcheck: { test: ["CMD", "/usr/local/bin/mcpgate", "healthcheck", "http://127.0.0.1:8080/healthz"] }`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := healthcheck(cmd.Context(), args[0], timeout); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "ok")
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "give up after this long")
	return cmd
}

// healthcheck GETs rawURL once and succeeds only on 200. Redirects are not
// followed: a probe that lands elsewhere is not healthy.
func healthcheck(ctx context.Context, rawURL string, timeout time.Duration) error {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("healthcheck: %q is not an http(s) URL (e.g. http://127.0.0.1:8080/healthz)", rawURL)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("healthcheck: %s did not answer within %s", u.Redacted(), timeout)
	}
	if err != nil {
		return fmt.Errorf("healthcheck: %s: %w", u.Redacted(), errors.Unwrap(err))
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s, want 200 OK", u.Redacted(), resp.Status)
	}
	return nil
}
