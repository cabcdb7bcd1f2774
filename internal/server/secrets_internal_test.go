//go:build unix

package server

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/proxy"
	"github.com/mcpgate/mcpgate/internal/stdio"
	"github.com/mcpgate/mcpgate/internal/store"
)

// TestCheckSecretFiles: a secret file a stdio run_as user could read stops
// the start; one readable by group or others is warned about.
func TestCheckSecretFiles(t *testing.T) {
	dir := t.TempDir()
	me, mygid := os.Getuid(), os.Getgid()
	file := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return p
	}
	cfgWith := func(key, db string, runAs *stdio.RunAs) *config.Config {
		c := &config.Config{EncryptionKeyFile: key}
		c.Auth.Mode = config.ModeAuthorizationServer
		c.Store = store.Config{Driver: store.DriverSQLite, DSN: db}
		c.Backends = []proxy.BackendConfig{{Name: "s", Stdio: stdio.Config{Command: []string{"srv"}, RunAs: runAs}}}
		return c
	}
	private, groupRead, worldRead := file("key600", 0o600), file("key640", 0o640), file("key604", 0o604)
	db := file("db", 0o600)
	file("db-wal", 0o644) // SQLite's WAL holds recent writes: checked too
	other := &stdio.RunAs{UID: me + 1000, GID: mygid + 1000}
	tests := []struct {
		name      string
		cfg       *config.Config
		wantErr   string
		wantWarns int
	}{
		{"private files", cfgWith(private, filepath.Join(dir, "none.db"), other), "", 0},
		{"missing files are fine (created 0600)", cfgWith("", filepath.Join(dir, "new.db"), nil), "", 0},
		{"world-readable WAL with run_as", cfgWith(private, db, other), "db-wal is readable by the run_as user", 1},
		{"world-readable key with run_as", cfgWith(worldRead, filepath.Join(dir, "none.db"), other), "key604 is readable by the run_as user", 1},
		{"group-readable key, run_as in that group", cfgWith(groupRead, filepath.Join(dir, "none.db"), &stdio.RunAs{UID: me + 1000, GID: mygid}), "key640 is readable", 1},
		{"group-readable key, run_as in another group", cfgWith(groupRead, filepath.Join(dir, "none.db"), other), "", 1},
		{"run_as is the owner", cfgWith(private, filepath.Join(dir, "none.db"), &stdio.RunAs{UID: me, GID: mygid + 1000}), "key600 is readable", 0},
		{"no run_as: warnings only", cfgWith(worldRead, db, nil), "", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			err := checkSecretFiles(tc.cfg, slog.New(slog.NewTextHandler(&logs, nil)))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("err = %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
			if n := strings.Count(logs.String(), "readable by group or others"); n != tc.wantWarns {
				t.Errorf("%d warnings, want %d:\n%s", n, tc.wantWarns, logs.String())
			}
		})
	}
}
