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
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/demo"
)

// demoBackendURL is where `mcpgate demo-backend` listens by default. The
// generated config names it so that `mcpgate serve --config` works with a
// separately started demo backend; quickstart overrides it with its own
// in-process one.
const demoBackendURL = "http://127.0.0.1:9000/mcp"

// quickstartConfig is the embedded default deployment: the built-in
// authorization server with static users, SQLite, a demo backend and a demo
// policy. %[1]s listen, %[2]s data dir, %[3]s backend URL, %[4]s alice's and
// %[5]s bob's password hash.
const quickstartConfig = `# Written by 'mcpgate quickstart'. Edit freely; delete this directory to start over.
# 'mcpgate quickstart' runs its own demo MCP server in place of backends[0].url and
# takes --listen and --public-url over the values here. To run this file without it:
#   mcpgate demo-backend &   # listens on the url below
#   mcpgate serve --config <this file>
listen: %[1]s
# Seals stored secrets (signing keys, upstream tokens); the file is private (0600).
encryption_key_file: %[2]s/encryption.key
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

// quickstartOptions are quickstart's flags. An empty Listen or PublicURL
// keeps the config file's value (or the default on the first run).
type quickstartOptions struct {
	DataDir, Listen, PublicURL string
}

const defaultQuickstartListen = "127.0.0.1:8080"

func newQuickstartCmd() *cobra.Command {
	var o quickstartOptions
	cmd := &cobra.Command{
		Use:   "quickstart",
		Short: "Run mcpgate on embedded defaults: built-in OAuth server, built-in users, SQLite, a demo MCP server",
		Long: `quickstart starts, on 127.0.0.1, the gateway with its own OAuth 2.1 authorization server,
two built-in users (passwords generated and printed once), a SQLite store and an audit log in the data
directory, and a demo MCP server with read and write tools behind it. Add the printed URL to an MCP client.

The first run writes <data-dir>/mcpgate.yaml; later runs read it. --listen and --public-url
(and MCPGATE_LISTEN, MCPGATE_PUBLIC_URL) override the file on every run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return quickstart(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	cmd.Flags().StringVar(&o.DataDir, "data-dir", ".mcpgate", "where the config, database and audit log live")
	cmd.Flags().StringVar(&o.Listen, "listen", "", "listen address, loopback only (default: the config's, first run "+defaultQuickstartListen+")")
	cmd.Flags().StringVar(&o.PublicURL, "public-url", "", "public base URL, e.g. of a tunnel (default: http://<listen>)")
	return cmd
}

func quickstart(ctx context.Context, out io.Writer, o quickstartOptions) error {
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return err
	}
	abs, err := filepath.Abs(o.DataDir)
	if err != nil {
		return err
	}
	keyPath := filepath.Join(abs, "encryption.key")
	if err := createKeyIfMissing(keyPath); err != nil {
		return err
	}
	cfgPath := filepath.Join(abs, "mcpgate.yaml")
	if err := migrateQuickstartConfig(out, cfgPath, keyPath); err != nil {
		return err
	}

	// The demo backend runs in this process on a free loopback port.
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer bln.Close()
	overrides := config.Overrides{Listen: o.Listen, PublicURL: o.PublicURL, BackendURL: "http://" + bln.Addr().String() + "/mcp"}
	load := func() (*config.Config, error) { return config.Load(cfgPath, overrides) }

	// Everything that can fail (the config, the port) is checked before the
	// config is written or a password printed: a first run that stops on a
	// busy port must not have used up the only printing of the passwords.
	_, statErr := os.Stat(cfgPath)
	var cfg *config.Config
	var passwords map[string]string
	var text string
	if errors.Is(statErr, os.ErrNotExist) {
		listen := o.Listen
		if listen == "" {
			listen = defaultQuickstartListen
		}
		passwords = map[string]string{"alice": randomPassword(), "bob": randomPassword()}
		if text, err = newQuickstartConfig(listen, abs, passwords); err != nil {
			return err
		}
		cfg, err = config.Parse([]byte(text), os.LookupEnv, overrides)
	} else {
		cfg, err = load()
	}
	if err != nil {
		return err
	}
	if host, _, err := net.SplitHostPort(cfg.Listen); err != nil || !net.ParseIP(host).IsLoopback() {
		return fmt.Errorf("quickstart listens on loopback only (got %q); use 'mcpgate serve --config %s' for anything else", cfg.Listen, cfgPath)
	}
	ln, err := listen(cfg.Listen, "quickstart")
	if err != nil {
		return err
	}
	defer ln.Close()
	if text != "" {
		if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
			return err
		}
	}

	backend := &http.Server{Handler: demo.Handler(demo.Options{}), ReadHeaderTimeout: 10 * time.Second}
	go backend.Serve(bln)
	defer backend.Close()

	fmt.Fprintf(out, "\nmcpgate quickstart\n  MCP URL:   %s/mcp   (add this to your MCP client)\n  config:    %s\n", cfg.PublicURL, cfgPath)
	if passwords != nil {
		fmt.Fprintf(out, "  users (passwords shown once):\n    alice / %s   (group mcp-admins: every tool)\n    bob   / %s   (group mcp-readers: read tools)\n", passwords["alice"], passwords["bob"])
	} else {
		fmt.Fprintf(out, "  users: alice (every tool), bob (read tools); passwords were printed at first start (delete %s to reset)\n", abs)
	}
	fmt.Fprintf(out, "  audit:     %s   (verify: mcpgate audit verify %s)\n\n", cfg.Audit.Path, cfg.Audit.Path)
	return serve(ctx, cfg, ln, cfgPath, load)
}

// newQuickstartConfig is the text of a first run's config, with fresh
// password hashes.
func newQuickstartConfig(listen, dataDir string, passwords map[string]string) (string, error) {
	hashes := map[string]string{}
	for u, p := range passwords {
		h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.DefaultCost)
		if err != nil {
			return "", err
		}
		hashes[u] = string(h)
	}
	return fmt.Sprintf(quickstartConfig, listen, dataDir, demoBackendURL, hashes["alice"], hashes["bob"]), nil
}

// migrateQuickstartConfig rewrites a config written by an earlier quickstart,
// which took the encryption key file and the backend URL from the
// environment, so that `mcpgate serve --config` and `mcpgate keys rotate`
// read it as it is.
func migrateQuickstartConfig(out io.Writer, cfgPath, keyPath string) error {
	b, err := os.ReadFile(cfgPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	text := string(b)
	const legacy = "url: ${MCPGATE_BACKEND_URL}\n"
	if !strings.HasPrefix(text, "# Written by 'mcpgate quickstart'") || !strings.Contains(text, legacy) {
		return nil
	}
	text = strings.Replace(text, legacy, "url: "+demoBackendURL+"\n", 1)
	if !strings.Contains(text, "\nencryption_key") {
		text += "encryption_key_file: " + keyPath + "\n"
	}
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(out, "updated %s: it names the encryption key file and the demo backend URL itself now\n", cfgPath)
	return nil
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
