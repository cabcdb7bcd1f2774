package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/store"
)

// newPolicyReloadCmd is `mcpgate policy reload`: every gateway sharing the
// configured store re-reads its own policy files, as on SIGHUP.
func newPolicyReloadCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "reload --config FILE",
		Short: "Ask every replica sharing the store to reload its policy now",
		Long: `Sends a policy reload request through the store (PostgreSQL LISTEN/NOTIFY):
every running gateway that shares it re-reads its own config and policy files,
as on SIGHUP, within about a second. The policy is not in the store: each replica
reads the files it was started with, so update them everywhere first (a
Kubernetes ConfigMap reaches the pods within the kubelet's sync period; the
gateways also watch the files and reload by themselves within 2 s of a change).
With SQLite or the memory store the request reaches no other process: send
SIGHUP instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(configPath, config.Overrides{})
			if err != nil {
				return err
			}
			if cfg.Store.Driver != store.DriverPostgres {
				return fmt.Errorf("store.driver is %q: a reload request reaches other processes only through PostgreSQL; send SIGHUP to the gateway", cfg.Store.Driver)
			}
			return withGrantStore(cmd, configPath, "", "", func(ctx context.Context, st store.Store, _ store.GrantFilter) error {
				if err := st.Notify(ctx, store.Change{Kind: store.ChangePolicy}); err != nil {
					return err
				}
				_, err := fmt.Fprintln(cmd.OutOrStdout(), "policy reload requested from every gateway sharing the store")
				return err
			})
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "config file naming the store (required)")
	cmd.MarkFlagRequired("config")
	return cmd
}
