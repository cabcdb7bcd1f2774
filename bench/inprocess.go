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

// inProcessGateway runs mcpgate inside the harness (server.New + Run), the
// way cmd/mcpgate serve does, with its log in dir/mcpgate.log.
type inProcessGateway struct {
	srv    *server.Server
	cancel context.CancelFunc
	done   chan struct{}
	logf   *os.File
}

func startInProcessGateway(dir, issuerURL, backendURL string) (*inProcessGateway, string, time.Duration, error) {
	start := time.Now()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", 0, err
	}
	yaml := gatewayYAML(ln.Addr().String(), issuerURL, backendURL, filepath.Join(dir, "audit.log"))
	cfg, err := config.Parse([]byte(yaml), func(string) (string, bool) { return "", false }, config.Overrides{})
	if err != nil {
		ln.Close()
		return nil, "", 0, fmt.Errorf("mcpgate config: %w", err)
	}
	logf, err := os.Create(filepath.Join(dir, "mcpgate.log"))
	if err != nil {
		ln.Close()
		return nil, "", 0, err
	}
	log := slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		cancel()
		ln.Close()
		logf.Close()
		return nil, "", 0, fmt.Errorf("mcpgate: %w", err)
	}
	g := &inProcessGateway{srv: srv, cancel: cancel, done: make(chan struct{}), logf: logf}
	go func() { srv.Run(ctx, ln); close(g.done) }()
	base := "http://" + ln.Addr().String()
	up, err := waitHealthy(base+"/healthz", start, g.done)
	if err != nil {
		g.stop()
		return nil, "", 0, err
	}
	return g, base, up, nil
}

func (g *inProcessGateway) stop() {
	g.cancel()
	<-g.done
	g.srv.Close()
	g.logf.Close()
}
