package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/demo"
)

// quickstartConfig is the embedded default deployment: the built-in
// authorization server with static users, SQLite, a demo backend and a demo
// policy. %[1]s listen, %[2]s data dir, %[3]s backend URL, %[4]s alice's and
// %[5]s bob's password hash.
const quickstartConfig = `# Written by 'mcpgate quickstart'. Edit freely; delete this directory to start over.
listen: %[1]s
auth:
  mode: authorization_server
  authorization_server:
    scopes: [mcp]
    upstream:
      type: static
      users:
        - { username: alice, email: alice@example.test, groups: [mcp-admins], password_hash: "%[4]s" }
        - { username: bob,   email: bob@example.test,   groups: [mcp-readers], password_hash: "%[5]s" }
policy:
  default: deny
  roles:
    reader:   { tools: ["list_*", "get_*", "echo", "count"], prompts: ["*"], resources: ["*"] }
    operator: { inherits: [reader], tools: ["power_*"] }
    admin:    { tools: ["*"], prompts: ["*"], resources: ["*"] }
  groups:
    mcp-readers:   [reader]
    mcp-operators: [operator]
    mcp-admins:    [admin]
backends:
  - name: demo
    url: %[3]s
store:
  driver: sqlite
  dsn: %[2]s/mcpgate.db
audit:
  sink: file
  path: %[2]s/audit.log
`

func newQuickstartCmd() *cobra.Command {
	var dataDir, listen string
	cmd := &cobra.Command{
		Use:   "quickstart",
		Short: "Run mcpgate on embedded defaults: built-in OAuth server, built-in users, SQLite, a demo MCP server",
		Long: `quickstart starts, on 127.0.0.1, the gateway with its own OAuth 2.1 authorization server,
two built-in users (passwords generated and printed once), a SQLite store and an audit log in the data
directory, and a demo MCP server with read and write tools behind it. Add the printed URL to an MCP client.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return quickstart(cmd.Context(), cmd.OutOrStdout(), dataDir, listen)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", ".mcpgate", "where the config, keys, database and audit log live")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8080", "listen address (loopback)")
	return cmd
}

func quickstart(ctx context.Context, out io.Writer, dataDir, listen string) error {
	if host, _, err := net.SplitHostPort(listen); err != nil || !net.ParseIP(host).IsLoopback() {
		return fmt.Errorf("quickstart listens on loopback only (got %q); use 'serve' with a config for anything else", listen)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	keyPath := filepath.Join(abs, "encryption.key")
	if err := createKeyIfMissing(keyPath); err != nil {
		return err
	}
	// The key reaches the config as a file path, never as an environment value.
	os.Setenv("MCPGATE_ENCRYPTION_KEY_FILE", keyPath)

	// The demo backend runs in this process on a free loopback port.
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	backend := &http.Server{Handler: demo.Handler(demo.Options{}), ReadHeaderTimeout: 10 * time.Second}
	go backend.Serve(bln)
	defer backend.Close()

	cfgPath := filepath.Join(abs, "mcpgate.yaml")
	var passwords map[string]string
	if _, err := os.Stat(cfgPath); errors.Is(err, os.ErrNotExist) {
		passwords = map[string]string{"alice": randomPassword(), "bob": randomPassword()}
		hashes := map[string]string{}
		for u, p := range passwords {
			h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.DefaultCost)
			if err != nil {
				return err
			}
			hashes[u] = string(h)
		}
		text := fmt.Sprintf(quickstartConfig, listen, abs, "${MCPGATE_BACKEND_URL}", hashes["alice"], hashes["bob"])
		if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
			return err
		}
	}
	// The backend's port changes on every run, so it comes from the environment.
	os.Setenv("MCPGATE_BACKEND_URL", "http://"+bln.Addr().String()+"/mcp")
	cfg, err := config.Load(cfgPath, config.Overrides{})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nmcpgate quickstart\n  MCP URL:   %s/mcp   (add this to your MCP client)\n  data dir:  %s\n", cfg.PublicURL, abs)
	if passwords != nil {
		fmt.Fprintf(out, "  users (passwords shown once):\n    alice / %s   (group mcp-admins: every tool)\n    bob   / %s   (group mcp-readers: read tools)\n", passwords["alice"], passwords["bob"])
	} else {
		fmt.Fprintf(out, "  users: alice (admin), bob (reader); passwords were printed at first start (delete %s to reset)\n", abs)
	}
	fmt.Fprintf(out, "  audit:     %s/audit.log   (verify: mcpgate audit verify %s/audit.log)\n\n", abs, abs)
	return serve(ctx, cfg, cfgPath, func() (*config.Config, error) { return config.Load(cfgPath, config.Overrides{}) })
}

func createKeyIfMissing(path string) error {
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(k[:])), 0o600)
}

func randomPassword() string {
	var b [12]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
