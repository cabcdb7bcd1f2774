// Package server assembles mcpgate: it builds every component from the
// configuration (provision), and serves the MCP endpoints, the protected
// resource metadata, the optional authorization server, and health and
// metrics endpoints (run), shutting down gracefully.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/policy"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/tokenendpoint"
)

// Server is a provisioned gateway, ready to run.
type Server struct {
	cfg      *config.Config
	log      *slog.Logger
	handler  http.Handler
	readies  []func(context.Context) error
	closers  []func() error
	registry *prometheus.Registry
	policy   *policy.Holder
	// reloadKeys re-reads the signing keys (authorization_server mode only).
	reloadKeys func(context.Context) error
	// policyReload runs a reload requested through the store (as.go).
	policyReload atomic.Pointer[func()]
	// inFlightIP is shared by every route: a client address has one bound.
	inFlightIP *ratelimit.InFlight
	bodyLimits bodyLimits
	// internal is the internal token endpoint (nil: not configured). Run
	// serves it on its own listener.
	internal *tokenendpoint.Endpoint
}

// Handler is the gateway's root handler (for tests that bring a listener).
func (s *Server) Handler() http.Handler { return s.handler }

// Close releases what provisioning opened (audit files, stores).
func (s *Server) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	return errors.Join(errs...)
}

// Ready reports whether every dependency has been reached at least once.
func (s *Server) Ready(ctx context.Context) error {
	for _, f := range s.readies {
		if err := f(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain")
		if err := s.Ready(ctx); err != nil {
			s.log.Warn("not ready", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("not ready\n"))
			return
		}
		w.Write([]byte("ready\n"))
	})
	if s.cfg.Metrics.Enabled {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	}
}

// Run serves until ctx is cancelled, then drains in-flight requests and
// streams for up to the configured shutdown timeout. With an internal
// endpoint configured, it also listens on internal_endpoint.listen.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	var iln net.Listener
	if s.internal != nil {
		var err error
		if iln, err = net.Listen("tcp", s.internal.Addr()); err != nil {
			return fmt.Errorf("internal_endpoint: %w", err)
		}
	}
	return s.RunWith(ctx, ln, iln)
}

// RunWith is Run on a given internal listener (tests; nil when the
// internal endpoint is not configured).
func (s *Server) RunWith(ctx context.Context, ln, internalLn net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.cfg.Security.ReadHeaderTimeout,
		// Backstops for every route. The MCP endpoint narrows the read
		// deadline while reading a body (min_body_rate), lifts it once the
		// body is in, and renews the write deadline before every write, all
		// through http.ResponseController: no SSE stream is cut by them.
		ReadTimeout:    s.cfg.Security.ReadHeaderTimeout + s.cfg.Security.ReadTimeout,
		WriteTimeout:   s.cfg.Security.WriteTimeout,
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	// Streams must survive shutdown's start: cancel their context only when
	// the drain deadline passes.
	srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	if s.cfg.TLS.Enabled() {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLS.CertFile, s.cfg.TLS.KeyFile)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("mcpgate listening", "addr", ln.Addr().String())
	if s.internal != nil {
		if internalLn == nil {
			srv.Close()
			return errors.New("internal_endpoint: no listener")
		}
		go func() {
			if err := s.internal.Serve(internalLn); err != nil {
				errc <- fmt.Errorf("internal_endpoint: %w", err)
			}
		}()
	} else if internalLn != nil {
		internalLn.Close()
	}
	var runErr error
	select {
	case runErr = <-errc:
	case <-ctx.Done():
	}
	s.log.Info("shutting down: draining requests and streams", "timeout", s.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if s.internal != nil {
		defer s.internal.Shutdown(sctx)
	}
	if runErr != nil {
		srv.Close()
		return runErr
	}
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("drain deadline passed; closing remaining connections")
		err = srv.Close()
	}
	return err
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
