package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/server"
)

// gateway is mcpgate run from its packages (server.New + Run), the way
// cmd/mcpgate serve runs it: inside the harness (-inprocess) or in the
// gateway child role (profiling).
type gateway struct {
	base   string
	srv    *server.Server
	cancel context.CancelFunc
	done   chan struct{}
	closer func() error
}

// startGateway starts mcpgate with the config yaml.
func startGateway(yaml []byte, log *slog.Logger) (*gateway, error) {
	cfg, err := config.Parse(yaml, func(string) (string, bool) { return "", false }, config.Overrides{})
	if err != nil {
		return nil, fmt.Errorf("mcpgate config: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		cancel()
		ln.Close()
		return nil, fmt.Errorf("mcpgate: %w", err)
	}
	g := &gateway{base: "http://" + ln.Addr().String(), srv: srv, cancel: cancel, done: make(chan struct{})}
	go func() { srv.Run(ctx, ln); close(g.done) }()
	return g, nil
}

func (g *gateway) stop() {
	g.cancel()
	<-g.done
	g.srv.Close()
	if g.closer != nil {
		g.closer()
	}
}

// startInProcessGateway runs mcpgate inside the harness with its log in
// dir/mcpgate.log, and measures config parse → /healthz 200.
func startInProcessGateway(dir, issuerURL, backendURL string) (*gateway, time.Duration, error) {
	start := time.Now()
	addr, err := freePort()
	if err != nil {
		return nil, 0, err
	}
	yaml := gatewayYAML(addr, issuerURL, backendURL, filepath.Join(dir, "audit.log"))
	logf, err := os.Create(filepath.Join(dir, "mcpgate.log"))
	if err != nil {
		return nil, 0, err
	}
	g, err := startGateway([]byte(yaml), slog.New(slog.NewTextHandler(logf, nil)))
	if err != nil {
		logf.Close()
		return nil, 0, err
	}
	g.closer = logf.Close
	up, err := waitHealthy(g.base+"/healthz", start, g.done)
	if err != nil {
		g.stop()
		return nil, 0, err
	}
	return g, up, nil
}
