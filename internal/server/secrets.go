package server

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/stdio"
	"github.com/mcpgate/mcpgate/internal/store"
)

// secretFiles lists the files holding the gateway's secrets: the encryption
// key, the TLS keys (public and internal listener), and the SQLite store with its WAL and shared-memory
// files (which hold recent writes).
func secretFiles(cfg *config.Config) []string {
	var out []string
	for _, f := range []string{cfg.EncryptionKeyFile, cfg.TLS.KeyFile, cfg.InternalEndpoint.TLS.KeyFile} {
		if f != "" {
			out = append(out, f)
		}
	}
	if cfg.Auth.Mode == config.ModeAuthorizationServer && cfg.Store.Driver == store.DriverSQLite {
		out = append(out, cfg.Store.DSN, cfg.Store.DSN+"-wal", cfg.Store.DSN+"-shm")
	}
	return out
}

// checkSecretFiles refuses to start when a stdio backend's run_as user could
// read one of the secret files, which run_as exists to prevent, and warns
// about secret files readable by group or others otherwise. Files that do
// not exist yet are created private (0600) by the gateway.
func checkSecretFiles(cfg *config.Config, log *slog.Logger) error {
	var runAs []*stdio.RunAs
	for _, b := range cfg.Backends {
		if b.IsStdio() && b.Stdio.RunAs != nil {
			runAs = append(runAs, b.Stdio.RunAs)
		}
	}
	var errs []error
	for _, path := range secretFiles(cfg) {
		fi, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, u := range runAs {
			if readableBy(fi, u.UID, u.GID) {
				errs = append(errs, fmt.Errorf("%s is readable by the run_as user %d (group %d) of a stdio backend: chmod 600 it, owned by the gateway's user", path, u.UID, u.GID))
			}
		}
		if fi.Mode().Perm()&0o077 != 0 {
			log.Warn("a secret file is readable by group or others; chmod 600 it", "path", path, "mode", fi.Mode().Perm().String())
		}
	}
	return errors.Join(errs...)
}
