package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpgate/mcpgate/internal/authserver"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/backends"
)

func newGrantsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "grants",
		Short: "List or revoke the authorization server's sessions (grants)",
		Long: `A grant is one user's session with one client: its refresh tokens and access
tokens hang off it. --user takes the user's subject: a built-in user's
username, or the IdP's subject (the SUB column of "grants list").`,
	}
	var path, user, client string
	var asJSON bool
	flags := func(c *cobra.Command) {
		c.Flags().StringVarP(&path, "config", "c", os.Getenv("MCPGATE_CONFIG"), "config file (env MCPGATE_CONFIG)")
		c.Flags().StringVar(&user, "user", "", "only this user's grants (subject; a built-in user's username)")
		c.Flags().StringVar(&client, "client", "", "only this client's grants (client_id)")
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the unexpired grants, revoked ones marked",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withGrantStore(cmd, path, user, client, func(ctx context.Context, st store.Store, f store.GrantFilter) error {
				gs, err := authserver.ListGrants(ctx, st, f)
				if err != nil {
					return err
				}
				if asJSON {
					return printGrantsJSON(cmd.OutOrStdout(), gs)
				}
				return printGrants(cmd.OutOrStdout(), gs)
			})
		},
	}
	flags(list)
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON (one array)")
	revoke := &cobra.Command{
		Use:   "revoke (--user U | --client C)",
		Short: "End every active grant of a user, of a client, or of both together",
		Long: `Revokes the selected grants in the configured store: their refresh tokens are
deleted at once, and gateways sharing the store refuse their access tokens
within revocation_cache_ttl (default 5s). The user signs in again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if user == "" && client == "" {
				return errors.New("grants revoke needs --user or --client")
			}
			return withGrantStore(cmd, path, user, client, func(ctx context.Context, st store.Store, f store.GrantFilter) error {
				ids, err := authserver.RevokeGrants(ctx, st, f)
				for _, id := range ids {
					fmt.Fprintln(cmd.OutOrStdout(), "revoked", id)
				}
				if err != nil {
					return fmt.Errorf("revoke (after %d): %w", len(ids), err)
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "%d grants revoked\n", len(ids))
				return err
			})
		},
	}
	flags(revoke)
	cmd.AddCommand(list, revoke)
	return cmd
}

// withGrantStore opens the store the config at path names. Nothing is
// unsealed: grants are listed and revoked without the encryption key's use.
func withGrantStore(cmd *cobra.Command, path, user, client string, fn func(context.Context, store.Store, store.GrantFilter) error) error {
	cfg, err := config.Load(path, config.Overrides{})
	if err != nil {
		return err
	}
	if cfg.Auth.Mode != config.ModeAuthorizationServer {
		return fmt.Errorf("auth.mode is %q: grants exist only with mode authorization_server", cfg.Auth.Mode)
	}
	ctx := cmd.Context()
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := backends.Open(ctx, cfg.Store, log)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer st.Close()
	return fn(ctx, st, authserver.GrantSelector(&cfg.Auth.AuthorizationServer, user, client))
}

func printGrants(w io.Writer, gs []authserver.GrantInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TSID\tSUB\tUSERNAME\tGROUPS\tCLIENT\tSCOPES\tCREATED\tEXPIRES\tSTATUS")
	for _, g := range gs {
		status := "active"
		if g.Revoked {
			status = "revoked"
		}
		expires := "never"
		if !g.ExpiresAt.IsZero() {
			expires = g.ExpiresAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.ID, printable(g.Subject), printable(g.Username),
			printable(strings.Join(g.Groups, ",")), printable(g.ClientID), strings.Join(g.Scopes, " "),
			g.CreatedAt.UTC().Format(time.RFC3339), expires, status)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d grants\n", len(gs))
	return err
}

func printGrantsJSON(w io.Writer, gs []authserver.GrantInfo) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(gs)
}

// printable keeps IdP- and client-supplied text from moving the terminal
// (control characters) or the columns (tabs, newlines).
func printable(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}
