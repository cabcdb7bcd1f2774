// Package servertest runs a real mcpgate server on a loopback listener for
// integration and end-to-end tests, and connects official Go SDK clients.
package servertest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/server"
)

// MinimalAuthServer is the config (without audit) of a gateway in
// authorization_server mode with one built-in user, alice, whose password
// no test knows, an in-memory store and a backend that does not answer:
// for tests of the authorization server's endpoints, not of sign-in.
const MinimalAuthServer = `
encryption_key: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
auth:
  mode: authorization_server
  authorization_server:
    upstream:
      type: static
      users:
        - { username: alice, password_hash: "$2a$04$abcdefghijklmnopqrstuuIVLpvCqTgNq4ne3s9zYOhh1d1GuGyUy" }
policy: { roles: { all: { tools: ["*"] } }, groups: { g: [all] } }
backends: [ { name: demo, url: "http://127.0.0.1:1/mcp" } ]
store: { driver: memory }
`

// Start runs mcpgate with the config that makeYAML returns for the base URL
// it will listen on (http://127.0.0.1:PORT), and stops it when t ends.
func Start(t testing.TB, makeYAML func(base string) string) (base string) {
	t.Helper()
	base, _ = StartControlled(t, makeYAML)
	return base
}

// StartControlled is Start that also returns stop, which begins a graceful
// shutdown (like SIGTERM) and waits until the server has finished.
func StartControlled(t testing.TB, makeYAML func(base string) string) (base string, stop func()) {
	t.Helper()
	g := StartServer(t, makeYAML, nil)
	return g.Base, g.Stop
}

// Gateway is a server started by StartServer.
type Gateway struct {
	Base   string // http://127.0.0.1:PORT
	Server *server.Server
	// Stop begins a graceful shutdown (like SIGTERM) and waits until the
	// server has finished; it runs when the test ends, and only once.
	Stop func()
}

// StartServer is StartControlled that serves the internal token endpoint
// on internalLn (nil: on its configured address, if any) and returns the
// server too.
func StartServer(t testing.TB, makeYAML func(base string) string, internalLn net.Listener) *Gateway {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	yaml := makeYAML(base)
	switch addr := listenAddr(yaml); addr {
	case "":
		yaml = "listen: " + ln.Addr().String() + "\npublic_url: " + base + "\n" + yaml
	case ln.Addr().String(): // the config names ours
	default:
		// The config picks its own address (e.g. TLS tests): free ours.
		ln.Close()
		if ln, err = net.Listen("tcp", addr); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Parse([]byte(yaml), func(string) (string, bool) { return "", false }, config.Overrides{})
	if err != nil {
		ln.Close()
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		cancel()
		ln.Close()
		t.Fatalf("server: %v", err)
	}
	done := make(chan struct{})
	go func() {
		if internalLn != nil {
			srv.RunWith(ctx, ln, internalLn)
		} else {
			srv.Run(ctx, ln)
		}
		close(done)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			srv.Close()
		})
	}
	t.Cleanup(stop)
	return &Gateway{Base: base, Server: srv, Stop: stop}
}

func listenAddr(yaml string) string {
	for _, line := range strings.Split(yaml, "\n") {
		if v, ok := strings.CutPrefix(line, "listen:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Bearer adds a bearer token (and a cookie the backend must never see) to
// every request.
type Bearer struct {
	Token string
	Base  http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (b Bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.Token)
	r.Header.Set("Cookie", "session=should-not-reach-backend")
	base := b.Base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(r)
}

// Connect opens an MCP session with the official Go SDK client.
func Connect(t testing.TB, url, token string, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	cs, err := TryConnect(url, token, opts)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// TryConnect is Connect returning the error.
func TryConnect(url, token string, opts *mcp.ClientOptions) (*mcp.ClientSession, error) {
	return TryConnectWith(url, token, opts, nil)
}

// TryConnectWith is TryConnect sending through base (nil: the default
// transport), e.g. to record what the client sends.
func TryConnectWith(url, token string, opts *mcp.ClientOptions, base http.RoundTripper) (*mcp.ClientSession, error) {
	client := mcp.NewClient(&mcp.Implementation{Name: "mcpgate-test", Version: "1"}, opts)
	tr := &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: &http.Client{Transport: Bearer{Token: token, Base: base}}, MaxRetries: -1}
	return client.Connect(context.Background(), tr, nil)
}

// ToolNames lists the session's tools.
func ToolNames(t testing.TB, cs *mcp.ClientSession) []string {
	t.Helper()
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	return names
}

// CallText calls a tool and joins its text content.
func CallText(cs *mcp.ClientSession, name string, args map[string]any) (string, error) {
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String(), nil
}
