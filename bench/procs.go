package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mcpgate/mcpgate/internal/demo"
)

// Child roles: the harness re-executes itself to run the backend and the
// bare proxy as their own processes, so that every target is measured the
// same way (its own RSS, fds and Go scheduler).
const (
	roleEnv     = "MCPGATE_BENCH_ROLE"
	roleArgEnv  = "MCPGATE_BENCH_ARG"
	roleBackend = "backend"
	roleProxy   = "proxy"
)

// backendHandler is the demo MCP server (official Go SDK, stateful
// streamable HTTP) with extra padding tools, served at /mcp.
func backendHandler(tools int) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/mcp", demo.Handler(demo.Options{ExtraTools: tools}))
	return mux
}

// bareProxy is the floor for one proxy hop: httputil.ReverseProxy with a
// keep-alive pool as large as the client concurrency.
func bareProxy(target *url.URL, idle int) http.Handler {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.URL.Path = target.Path
		},
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        2 * idle,
			MaxIdleConnsPerHost: idle,
			IdleConnTimeout:     90 * time.Second,
		},
		FlushInterval: -1, // stream SSE as mcpgate does
	}
}

// serveLoopback serves h on a fresh 127.0.0.1 port and returns its base URL.
func serveLoopback(h http.Handler) (string, *http.Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), srv, nil
}

// runRole runs a child role: it serves, prints its base URL on stdout, and
// exits when its stdin closes (the harness ended, however it ended).
func runRole(role, arg string) error {
	var h http.Handler
	switch role {
	case roleBackend:
		tools, err := strconv.Atoi(arg)
		if err != nil {
			return fmt.Errorf("backend: bad tool count %q", arg)
		}
		h = backendHandler(tools)
	case roleProxy:
		target, idle, ok := strings.Cut(arg, " ")
		u, err := url.Parse(target)
		n, err2 := strconv.Atoi(idle)
		if !ok || err != nil || err2 != nil {
			return fmt.Errorf("proxy: bad argument %q", arg)
		}
		h = bareProxy(u, n)
	default:
		return fmt.Errorf("unknown role %q", role)
	}
	base, srv, err := serveLoopback(h)
	if err != nil {
		return err
	}
	fmt.Println(base)
	io.Copy(io.Discard, os.Stdin)
	return srv.Close()
}

// child is a process the harness started.
type child struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	started time.Time
	done    chan struct{} // closed when the process has exited
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// startChild starts bin with args, its stderr going to logPath. The child
// gets SIGTERM if the harness dies, and an environment without the
// harness's MCPGATE_* variables.
func startChild(bin string, args, env []string, stdout *os.File, logPath string) (*child, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if stdout != nil {
		cmd.Stdout = stdout
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	c := &child{cmd: cmd, done: make(chan struct{})}
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	c.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { cmd.Wait(); close(c.done) }()
	return c, nil
}

// stop asks the child to exit (SIGTERM, and stdin closed) and kills it if it
// has not within 10 s.
func (c *child) stop() {
	if c == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	c.stdin.Close()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k == "PATH" || k == "HOME" || k == "TMPDIR" || k == "GOMAXPROCS" || k == "GOGC" {
			env = append(env, kv)
		}
	}
	return env
}

// startRole re-executes the harness as a child role and waits for its URL.
func startRole(role, arg, logPath string) (*child, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, "", err
	}
	defer pr.Close()
	c, err := startChild(self, nil, []string{roleEnv + "=" + role, roleArgEnv + "=" + arg}, pw, logPath)
	pw.Close()
	if err != nil {
		return nil, "", err
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(pr).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case base := <-line:
		if strings.HasPrefix(base, "http://127.0.0.1:") {
			return c, base, nil
		}
	case <-time.After(15 * time.Second):
	}
	c.stop()
	log, _ := os.ReadFile(logPath)
	return nil, "", fmt.Errorf("%s did not start:\n%s", role, tail(log, 2000))
}

// startMcpgate runs the real binary with a generated config in dir and
// measures the time from process start to /healthz answering 200.
func startMcpgate(bin, dir, issuerURL, backendURL string) (*child, string, time.Duration, error) {
	addr, err := freePort()
	if err != nil {
		return nil, "", 0, err
	}
	cfgPath := filepath.Join(dir, "mcpgate.yaml")
	yaml := gatewayYAML(addr, issuerURL, backendURL, filepath.Join(dir, "audit.log"))
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		return nil, "", 0, err
	}
	logPath := filepath.Join(dir, "mcpgate.log")
	c, err := startChild(bin, []string{"serve", "--config", cfgPath}, nil, nil, logPath)
	if err != nil {
		return nil, "", 0, err
	}
	base := "http://" + addr
	up, err := waitHealthy(base+"/healthz", c.started, c.done)
	if err != nil {
		c.stop()
		log, _ := os.ReadFile(logPath)
		return nil, "", 0, fmt.Errorf("mcpgate: %w\n%s", err, tail(log, 2000))
	}
	return c, base, up, nil
}

// waitHealthy polls url until it answers 200 and returns the time since
// start; it gives up after 15 s or when exited closes.
func waitHealthy(url string, start time.Time, exited <-chan struct{}) (time.Duration, error) {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	for time.Since(start) < 15*time.Second {
		select {
		case <-exited:
			return 0, errors.New("process exited before it was healthy")
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start), nil
			}
		}
		time.Sleep(time.Millisecond)
	}
	return 0, fmt.Errorf("%s not healthy within 15s", url)
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// procStats is a process's resident memory and open file descriptors.
type procStats struct {
	RSS int64 // bytes
	FDs int
}

func readProc(pid int) (procStats, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procStats{}, err
	}
	var st procStats
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				st.RSS = kb << 10
			}
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return procStats{}, err
	}
	st.FDs = len(fds)
	if st.RSS == 0 {
		return st, errors.New("no VmRSS")
	}
	return st, nil
}

// peak samples pids every 100 ms until ctx ends and returns each one's
// highest RSS and fd count.
func peak(ctx context.Context, pids []int) []procStats {
	out := make([]procStats, len(pids))
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		for i, pid := range pids {
			if st, err := readProc(pid); err == nil {
				out[i].RSS = max(out[i].RSS, st.RSS)
				out[i].FDs = max(out[i].FDs, st.FDs)
			}
		}
		select {
		case <-ctx.Done():
			return out
		case <-t.C:
		}
	}
}
