package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/keys"
	"github.com/mcpgate/mcpgate/internal/store/backends"
)

func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Manage the authorization server's signing keys"}
	var path string
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Activate the pre-published next signing key and publish a new next key",
		Long: `Rotates the access-token signing keys in the configured store.

The "next" key, already published in the JWKS, starts signing; the previous
active key is retired but stays published for a day so the tokens it signed
keep verifying; a new "next" key is generated. Running gateways sharing the
store pick the change up within a minute, or at once on SIGHUP, and record it
in their audit log (AS_SIGNING_KEY_ROTATED). This command does not write to the
audit log itself: a second writer would fork the hash chain the gateway keeps.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path, config.Overrides{})
			if err != nil {
				return err
			}
			if cfg.Auth.Mode != config.ModeAuthorizationServer {
				return fmt.Errorf("auth.mode is %q: signing keys exist only with mode authorization_server", cfg.Auth.Mode)
			}
			raw, err := keys.ParseKey(cfg.EncryptionKey)
			if err != nil {
				return fmt.Errorf("encryption_key: %w", err)
			}
			sealer, err := keys.NewSealer(raw)
			if err != nil {
				return fmt.Errorf("encryption_key: %w", err)
			}
			ctx := cmd.Context()
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			st, err := backends.Open(ctx, cfg.Store, log)
			if err != nil {
				return fmt.Errorf("store: %w", err)
			}
			defer st.Close()
			m, err := keys.NewManager(ctx, st, sealer, keys.Options{Algorithm: cfg.Auth.AuthorizationServer.SigningAlg, Logger: log})
			if err != nil {
				return err
			}
			before := m.ActiveKeyID()
			if err := m.Rotate(ctx); err != nil {
				return fmt.Errorf("rotate: %w", err)
			}
			return printRotation(cmd.OutOrStdout(), before, m.ActiveKeyID())
		},
	}
	rotate.Flags().StringVarP(&path, "config", "c", os.Getenv("MCPGATE_CONFIG"), "config file (env MCPGATE_CONFIG)")
	cmd.AddCommand(rotate)
	return cmd
}

func printRotation(w io.Writer, before, after string) error {
	_, err := fmt.Fprintf(w, "signing key rotated: active %s (was %s, now retired)\n", after, before)
	return err
}
