package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/mcpgate/mcpgate/internal/authserver"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/keys"
	"github.com/mcpgate/mcpgate/internal/store"
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
			m, closeStore, err := openKeyManager(cmd, path)
			if err != nil {
				return err
			}
			defer closeStore()
			before := m.ActiveKeyID()
			if err := m.Rotate(cmd.Context()); err != nil {
				return fmt.Errorf("rotate: %w", err)
			}
			return printRotation(cmd.OutOrStdout(), before, m.ActiveKeyID())
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke KID",
		Short: "Remove a compromised signing key at once",
		Long: `Deletes the signing key KID from the configured store, for a key that may be
compromised. It leaves the JWKS at once, and tokens it signed stop verifying:
at once in a gateway that is sent SIGHUP, and within a minute (the key reload
interval) in every other gateway sharing the store, which records it in its
audit log (AS_SIGNING_KEY_REVOKED). Tokens held by clients signed with the key
are refused (401) and the clients refresh; refresh tokens are not affected.

The store always keeps an active and a next key: revoking the active key first
makes the pre-published next key active (revoke that one too if the whole store
may be compromised), and revoking the next key generates a new one. Gateways
may sign with a revoked active key until they reload: send SIGHUP.
List the key IDs with the JWKS (GET <public_url>/jwks).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, closeStore, err := openKeyManager(cmd, path)
			if err != nil {
				return err
			}
			defer closeStore()
			active, err := m.Revoke(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("revoke: %w", err)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "signing key %s revoked (removed from the store and the JWKS); active key %s\nsend SIGHUP to running gateways to stop honouring it at once\n", args[0], active)
			return err
		},
	}
	reseal := &cobra.Command{
		Use:   "reseal",
		Short: "Seal every stored secret again under the current encryption key",
		Long: `After changing the encryption key, with the old one listed in
MCPGATE_ENCRYPTION_KEY_PREVIOUS (or encryption_key_previous), this seals the
signing keys and the upstream tokens of every unexpired grant again under the
current key. Gateways also do it on use (signing keys when they load them;
grants whenever a refresh rewrites them). When it reports nothing left under a
previous key, drop the previous key. Authorization requests in flight (10
minutes at most) are not resealed: keep the previous key that long after
switching.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kt, closeStore, err := openKeyManager(cmd, path)
			if err != nil {
				return err
			}
			defer closeStore()
			// Loading the manager resealed the signing keys.
			rep, err := authserver.ResealGrants(cmd.Context(), kt.store, kt.sealer)
			fmt.Fprintf(cmd.OutOrStdout(), "signing keys: sealed under the current key\ngrants: %d with upstream tokens, %d resealed, %d rewritten meanwhile by a refresh\n",
				rep.Grants, rep.Resealed, rep.Changed)
			if err != nil {
				return fmt.Errorf("reseal: %w (keep the previous key until this succeeds)", err)
			}
			return nil
		},
	}
	for _, c := range []*cobra.Command{rotate, revoke, reseal} {
		c.Flags().StringVarP(&path, "config", "c", os.Getenv("MCPGATE_CONFIG"), "config file (env MCPGATE_CONFIG)")
		cmd.AddCommand(c)
	}
	return cmd
}

// keyTools is a key manager with the store and sealer it was opened on.
type keyTools struct {
	*keys.Manager
	store  store.Store
	sealer *keys.Sealer
}

// openKeyManager opens the store of the config at path and its key
// manager; the caller closes the store.
func openKeyManager(cmd *cobra.Command, path string) (*keyTools, func(), error) {
	cfg, err := config.Load(path, config.Overrides{})
	if err != nil {
		return nil, nil, err
	}
	if cfg.Auth.Mode != config.ModeAuthorizationServer {
		return nil, nil, fmt.Errorf("auth.mode is %q: signing keys exist only with mode authorization_server", cfg.Auth.Mode)
	}
	sealer, err := keys.NewSealerFromBase64(cfg.EncryptionKey, cfg.EncryptionKeyPrevious)
	if err != nil {
		return nil, nil, fmt.Errorf("encryption_key: %w", err)
	}
	ctx := cmd.Context()
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := backends.Open(ctx, cfg.Store, log)
	if err != nil {
		return nil, nil, fmt.Errorf("store: %w", err)
	}
	// No RotateEvery: a command does only what it is asked.
	m, err := keys.NewManager(ctx, st, sealer, keys.Options{Algorithm: cfg.Auth.AuthorizationServer.SigningAlg, Overlap: cfg.Keys.RetiredKeyOverlap, Logger: log})
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return &keyTools{Manager: m, store: st, sealer: sealer}, func() { st.Close() }, nil
}

func printRotation(w io.Writer, before, after string) error {
	_, err := fmt.Fprintf(w, "signing key rotated: active %s (was %s, now retired)\n", after, before)
	return err
}
