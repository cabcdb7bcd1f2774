package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/policy"
	"github.com/mcpgate/mcpgate/internal/procsec"
	"github.com/mcpgate/mcpgate/internal/server"
	"github.com/mcpgate/mcpgate/internal/telemetry"
)

// configFlags are the flags shared by commands that load a config.
type configFlags struct {
	path      string
	overrides config.Overrides
	authMode  string
}

func (f *configFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.path, "config", "c", os.Getenv("MCPGATE_CONFIG"), "config file (env MCPGATE_CONFIG)")
	fl.StringVar(&f.overrides.Listen, "listen", "", "listen address (env MCPGATE_LISTEN)")
	fl.StringVar(&f.overrides.PublicURL, "public-url", "", "public base URL (env MCPGATE_PUBLIC_URL)")
	fl.StringVar(&f.authMode, "auth-mode", "", "auth mode: jwt|introspection|trusted_header|authorization_server|none (env MCPGATE_AUTH_MODE)")
	fl.StringVar(&f.overrides.Issuer, "issuer", "", "trusted token issuer (env MCPGATE_ISSUER)")
	fl.StringVar(&f.overrides.Audience, "audience", "", "required token audience, comma-separated (env MCPGATE_AUDIENCE)")
	fl.StringVar(&f.overrides.BackendURL, "backend", "", "backend MCP URL (env MCPGATE_BACKEND_URL)")
}

func (f *configFlags) load() (*config.Config, error) {
	f.overrides.AuthMode = authn.Mode(f.authMode)
	return config.Load(f.path, f.overrides)
}

func newServeCmd() *cobra.Command {
	var f configFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.load()
			if err != nil {
				return err
			}
			ln, err := listen(cfg.Listen, "serve")
			if err != nil {
				return err
			}
			defer ln.Close()
			return serve(cmd.Context(), cfg, ln, f.path, f.load)
		},
	}
	f.register(cmd)
	return cmd
}

func newLogger(cfg *config.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// listen binds addr, and turns the most common failure, a port in use, into
// a message that says what to do; cmd names the command to suggest.
func listen(addr, cmd string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		next := "127.0.0.1:8081"
		if h, p, err := net.SplitHostPort(addr); err == nil {
			if n, err := strconv.Atoi(p); err == nil && n < 65535 {
				next = net.JoinHostPort(h, strconv.Itoa(n+1))
			}
		}
		return nil, fmt.Errorf("cannot listen on %s: the port is already in use (another mcpgate still running?). "+
			"Stop that program, or choose another port: add --listen %s to 'mcpgate %s'", addr, next, cmd)
	}
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}

// Test hooks: policyWatchInterval is how often serve polls the config and
// policy files (zero: policy.WatchInterval); reloaded, if set, learns the
// outcome of each policy reload.
var (
	policyWatchInterval time.Duration
	reloaded            func(error)
)

// serve runs the gateway on ln until SIGTERM/SIGINT. The policy is reloaded, without
// dropping connections, on SIGHUP and when the config or policy files change;
// so are the signing keys (after `mcpgate keys rotate`).
func serve(ctx context.Context, cfg *config.Config, ln net.Listener, cfgPath string, load func() (*config.Config, error)) error {
	log := newLogger(cfg)
	tracing, err := telemetry.Setup(ctx, version, log)
	if err != nil {
		return err
	}
	if tracing != nil {
		// Every line logged with a request's context names its trace.
		log = slog.New(telemetry.LogHandler(log.Handler()))
		telemetry.Install(tracing)
		defer func() {
			// Flush what the batcher holds; the gateway has drained by now.
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := tracing.Shutdown(sctx); err != nil {
				log.Warn("tracing: flush at shutdown failed", "err", err)
			}
		}()
	}
	slog.SetDefault(log)
	for _, w := range cfg.Warnings() {
		log.Warn("configuration: " + w)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer srv.Close()

	reload := func() {
		next, err := load()
		if err == nil {
			err = srv.ReloadPolicy(next.Policy)
		}
		if err != nil {
			log.Error("policy reload failed; keeping the previous policy", "err", err)
		}
		if reloaded != nil {
			reloaded(err)
		}
		if err := srv.ReloadKeys(ctx); err != nil {
			log.Error("signing key reload failed; keeping the loaded keys", "err", err)
		}
	}
	srv.OnPolicyReloadRequest(reload) // `mcpgate policy reload`, from any host sharing the store
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			reload()
		}
	}()
	if cfgPath != "" {
		go policy.Watch(ctx, policyWatchInterval, reload, append([]string{cfgPath}, cfg.Policy.Files()...)...)
	}

	log.Info("mcpgate starting", append([]any{"version", version, "tracing", tracing != nil}, cfg.Summary()...)...)
	logHardening(log)
	if cfg.Auth.Mode == config.ModeNone {
		log.Warn("AUTHENTICATION IS DISABLED (auth.mode: none): every local process can call every permitted tool as the anonymous user")
	}
	if err := srv.Run(ctx, ln); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// logHardening reports whether same-user processes are kept out of the
// gateway's memory and environment (see procsec), read back from the kernel.
func logHardening(log *slog.Logger) {
	dumpable, err := procsec.Dumpable()
	switch {
	case errors.Is(err, procsec.ErrUnsupported):
		log.Info("process hardening: not available on this platform; run stdio servers as another user (run_as)")
	case err != nil || hardenErr != nil || dumpable:
		log.Warn("process hardening is not in effect: same-user processes, stdio servers included, can read the gateway's memory and environment",
			"err", errors.Join(err, hardenErr))
	default:
		log.Info("process hardening: not dumpable (no core dumps; /proc/PID/environ and mem closed to same-user processes)", "dumpable", false)
	}
}
