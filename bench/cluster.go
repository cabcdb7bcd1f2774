package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"
)

// A cluster is what issue 14 deploys: several `mcpgate serve` processes on
// one PostgreSQL schema, behind a round-robin proxy without stickiness
// (its URL is every replica's public_url), with the demo MCP backend.
type cluster struct {
	base     string // the proxy: the public URL
	proxy    *rrProxy
	replicas []*child
	addrs    []string
	dsn      string // the schema's DSN
	password string // every built-in user's
	users    []string
	closers  []func()
}

// clusterOptions shapes the replicas' configuration.
type clusterOptions struct {
	Bin      string // mcpgate binary
	Dir      string // config files and logs
	BaseDSN  string // PostgreSQL database the cluster gets a fresh schema in
	Replicas int
	Users    int // built-in users user000…
}

// startCluster creates a schema, starts the backend and the proxy in this
// process, then the replicas one after the other (the first one creates the
// tables).
func startCluster(ctx context.Context, o clusterOptions) (_ *cluster, err error) {
	c := &cluster{password: "bench-password"}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	b := make([]byte, 6)
	rand.Read(b)
	schema := "mcpgate_bench_" + hex.EncodeToString(b)
	admin, err := pgx.Connect(ctx, o.BaseDSN)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	_, err = admin.Exec(ctx, "CREATE SCHEMA "+schema)
	admin.Close(ctx)
	if err != nil {
		return nil, fmt.Errorf("create schema: %w", err)
	}
	c.closers = append(c.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if a, err := pgx.Connect(ctx, o.BaseDSN); err == nil {
			a.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
			a.Close(ctx)
		}
	})
	sep := "?"
	if strings.Contains(o.BaseDSN, "?") {
		sep = "&"
	}
	c.dsn = o.BaseDSN + sep + "search_path=" + schema

	backendURL, backend, err := serveLoopback(backendHandler(0))
	if err != nil {
		return nil, err
	}
	c.closers = append(c.closers, func() { backend.Close() })

	for range o.Replicas {
		addr, err := freePort()
		if err != nil {
			return nil, err
		}
		c.addrs = append(c.addrs, addr)
	}
	c.proxy = newRRProxy(c.addrs)
	base, proxySrv, err := serveLoopback(c.proxy)
	if err != nil {
		return nil, err
	}
	c.base = base
	c.closers = append(c.closers, func() { proxySrv.Close() })

	// bcrypt's minimum cost: the load measures the store, not the hash.
	hash, err := bcrypt.GenerateFromPassword([]byte(c.password), bcrypt.MinCost)
	if err != nil {
		return nil, err
	}
	var users strings.Builder
	for i := range max(o.Users, 1) {
		u := fmt.Sprintf("user%03d", i)
		c.users = append(c.users, u)
		fmt.Fprintf(&users, "        - { username: %s, email: %s@example.test, groups: [admins], password_hash: %q }\n", u, u, hash)
	}
	key := make([]byte, 32)
	rand.Read(key)
	for i, addr := range c.addrs {
		dir := filepath.Join(o.Dir, fmt.Sprintf("replica%d", i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		cfg := filepath.Join(dir, "mcpgate.yaml")
		yaml := clusterYAML(addr, base, base64.StdEncoding.EncodeToString(key), users.String(), backendURL+"/mcp", c.dsn)
		if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
			return nil, err
		}
		logPath := filepath.Join(dir, "mcpgate.log")
		ch, err := startChild(o.Bin, []string{"serve", "--config", cfg}, nil, nil, logPath)
		if err != nil {
			return nil, err
		}
		c.replicas = append(c.replicas, ch)
		if _, err := waitHealthy("http://"+addr+"/healthz", ch.started, ch.done); err != nil {
			log, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("replica %d: %w\n%s", i, err, tail(log, 2000))
		}
	}
	return c, nil
}

// clusterYAML is one replica's configuration: authorization server with
// built-in users, everything shared in PostgreSQL (rate limits included),
// and every per-address limit out of the way, since all load comes from
// the proxy's address.
func clusterYAML(listen, public, key, users, backendURL, dsn string) string {
	return fmt.Sprintf(`listen: %s
public_url: %s
encryption_key: %s
shutdown_timeout: 2s
log: { level: warn }
auth:
  mode: authorization_server
  authorization_server:
    scopes: [mcp]
    rate_limit: { enabled: false, max_pending_per_ip: 1000000 }
    registration: { max_clients_per_ip: -1 }
    upstream:
      type: static
      users:
%spolicy:
  roles: { admin: { tools: ["*"] } }
  groups: { admins: [admin] }
backends:
  - { name: demo, url: %s, max_sessions: 4096 }
security: { max_in_flight_per_ip: 100000 }
rate_limit:
  per_ip: { rps: 1000000, burst: 1000000 }
  per_user: { rps: 1000000, burst: 1000000 }
  shared: { store: postgres }
store: { driver: postgres, dsn: %q }
audit: { sink: none }
`, listen, public, key, users, backendURL, dsn)
}

func (c *cluster) pids() []int {
	var out []int
	for _, r := range c.replicas {
		out = append(out, r.pid())
	}
	return out
}

// close stops the replicas and removes the schema.
func (c *cluster) close() {
	for _, r := range c.replicas {
		r.stop()
	}
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
}

// proxyHeader marks the proxy's own 502: no replica answered, so the
// request's outcome is unknown to the client.
const proxyHeader = "X-Bench-Proxy"

// rrProxy sends each request to the next replica in turn, with no
// stickiness. Like a load balancer's passive health check, a replica that
// refuses the connection is skipped for that request (nothing was sent, so
// the request is safe to send elsewhere); any other failure is the
// client's 502.
type rrProxy struct {
	targets   []string
	next      atomic.Uint64
	served    []atomic.Int64
	transport *http.Transport
}

func newRRProxy(targets []string) *rrProxy {
	return &rrProxy{
		targets: targets,
		served:  make([]atomic.Int64, len(targets)),
		transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConns:        4096,
			MaxIdleConnsPerHost: 2048,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
	}
}

func (p *rrProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		http.Error(w, "proxy: "+err.Error(), http.StatusBadRequest)
		return
	}
	first := p.next.Add(1)
	for i := range uint64(len(p.targets)) {
		t := (first + i) % uint64(len(p.targets))
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.URL.Scheme, out.URL.Host = "http", p.targets[t]
		out.Host = r.Host // the public URL's host, which the replicas check
		out.Body, out.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		out.Header.Del("Connection")
		resp, err := p.transport.RoundTrip(out)
		if err != nil {
			if op := (*net.OpError)(nil); errors.As(err, &op) && op.Op == "dial" {
				continue
			}
			w.Header().Set(proxyHeader, "1")
			http.Error(w, "proxy: "+err.Error(), http.StatusBadGateway)
			return
		}
		p.served[t].Add(1)
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		rc := http.NewResponseController(w)
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				w.Write(buf[:n])
				rc.Flush()
			}
			if err != nil {
				break
			}
		}
		resp.Body.Close()
		return
	}
	w.Header().Set(proxyHeader, "1")
	http.Error(w, "proxy: no replica", http.StatusBadGateway)
}
