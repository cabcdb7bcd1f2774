package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/http/pprof"
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
// same way (its own RSS, fds and Go scheduler). The gateway role runs
// internal/server like cmd/mcpgate does; it is used instead of the real
// binary only when profiling, for its pprof endpoint.
const (
	roleEnv     = "MCPGATE_BENCH_ROLE"
	roleArgEnv  = "MCPGATE_BENCH_ARG"
	rolePprof   = "MCPGATE_BENCH_PPROF"
	roleBackend = "backend"
	roleProxy   = "proxy"
	roleGateway = "gateway"
)

// backendHandler is the demo MCP server (official Go SDK, stateful
// streamable HTTP) with extra padding tools, served at /mcp answering POSTs
// with SSE, and at jsonPath answering them with application/json.
func backendHandler(tools int) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/mcp", demo.Handler(demo.Options{ExtraTools: tools}))
	mux.Handle(jsonPath, demo.Handler(demo.Options{ExtraTools: tools, JSONResponse: true}))
	return mux
}

// bareProxy is the floor for one proxy hop: httputil.ReverseProxy with a
// keep-alive pool as large as the client concurrency.
func bareProxy(target *url.URL, idle int) http.Handler {
	return bareProxyVia(target, bareTransport(idle))
}

// bareTransport is the bare proxy's transport to the backend.
func bareTransport(idle int) *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        2 * idle,
		MaxIdleConnsPerHost: idle,
		IdleConnTimeout:     90 * time.Second,
	}
}

// bareProxyVia is bareProxy over tr.
//
// The request body is streamed to the backend, and the transport reads it
// once more after its last byte, to check that it ended, possibly after the
// backend has begun to answer. By default the HTTP/1 server drains and
// closes the request body when the answer's headers are written, which made
// that read fail and the transport close the backend connection mid-answer
// (golang/go#40747). Full duplex leaves the body to the transport; the hop
// costs the same.
func bareProxyVia(target *url.URL, tr http.RoundTripper) http.Handler {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// The request's own path: /mcp or jsonPath, as the backend serves them.
			pr.Out.URL.Path, pr.Out.URL.RawPath = pr.In.URL.Path, pr.In.URL.RawPath
		},
		Transport:     tr,
		FlushInterval: -1, // stream SSE as mcpgate does
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).EnableFullDuplex()
		rp.ServeHTTP(w, r)
	})
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

// runRole runs a child role: it serves, prints "<base URL> <pprof URL or
// ->" on stdout, and exits when its stdin closes (the harness ended, however
// it ended).
func runRole(role, arg string) error {
	var h http.Handler
	var base string
	closeRole := func() error { return nil }
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
	case roleFloor:
		fh, closeFloor, err := runFloorRole(arg)
		if err != nil {
			return err
		}
		b, srv, err := serveLoopback(fh)
		if err != nil {
			return err
		}
		base, closeRole = b, func() error { srv.Close(); return closeFloor() }
	case roleGateway:
		yaml, err := os.ReadFile(arg)
		if err != nil {
			return err
		}
		g, err := startGateway(yaml, slog.New(slog.NewTextHandler(os.Stderr, nil)))
		if err != nil {
			return err
		}
		base, closeRole = g.base, func() error { g.stop(); return nil }
	default:
		return fmt.Errorf("unknown role %q", role)
	}
	if h != nil {
		b, srv, err := serveLoopback(h)
		if err != nil {
			return err
		}
		base, closeRole = b, srv.Close
	}
	pprofURL := "-"
	if os.Getenv(rolePprof) != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index) // serves allocs, heap, …
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		b, srv, err := serveLoopback(mux)
		if err != nil {
			return err
		}
		defer srv.Close()
		pprofURL = b + "/debug/pprof"
	}
	fmt.Println(base, pprofURL)
	io.Copy(io.Discard, os.Stdin)
	return closeRole()
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

// startRole re-executes the harness as a child role and waits for its
// URLs; pprofURL is "" unless withPprof.
func startRole(role, arg, logPath string, withPprof bool) (c *child, base, pprofURL string, err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", "", err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, "", "", err
	}
	defer pr.Close()
	env := []string{roleEnv + "=" + role, roleArgEnv + "=" + arg}
	if withPprof {
		env = append(env, rolePprof+"=1")
	}
	c, err = startChild(self, nil, env, pw, logPath)
	pw.Close()
	if err != nil {
		return nil, "", "", err
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(pr).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case l := <-line:
		base, pprofURL, _ = strings.Cut(l, " ")
		if pprofURL == "-" {
			pprofURL = ""
		}
		if strings.HasPrefix(base, "http://127.0.0.1:") && (pprofURL != "") == withPprof {
			return c, base, pprofURL, nil
		}
	case <-time.After(15 * time.Second):
	}
	c.stop()
	log, _ := os.ReadFile(logPath)
	return nil, "", "", fmt.Errorf("%s did not start:\n%s", role, tail(log, 2000))
}

// startMcpgate runs the real binary with a generated config in dir and
// measures the time from process start to /healthz answering 200. With bin
// "" it runs the harness's gateway role instead, which serves pprof.
func startMcpgate(bin, dir, issuerURL, backendURL string) (c *child, base, pprofURL string, up time.Duration, err error) {
	addr, err := freePort()
	if err != nil {
		return nil, "", "", 0, err
	}
	cfgPath := filepath.Join(dir, "mcpgate.yaml")
	yaml := gatewayYAML(addr, issuerURL, backendURL, filepath.Join(dir, "audit.log"))
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		return nil, "", "", 0, err
	}
	logPath := filepath.Join(dir, "mcpgate.log")
	if bin == "" {
		c, _, pprofURL, err = startRole(roleGateway, cfgPath, logPath, true)
	} else {
		c, err = startChild(bin, []string{"serve", "--config", cfgPath}, nil, nil, logPath)
	}
	if err != nil {
		return nil, "", "", 0, err
	}
	base = "http://" + addr
	up, err = waitHealthy(base+"/healthz", c.started, c.done)
	if err != nil {
		c.stop()
		log, _ := os.ReadFile(logPath)
		return nil, "", "", 0, fmt.Errorf("mcpgate: %w\n%s", err, tail(log, 2000))
	}
	return c, base, pprofURL, up, nil
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

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat
// (100 on every Linux architecture Go supports).
const clockTicks = 100

// cpuTime returns the user+system CPU time pid has used.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may
	// contain spaces: state is field 3, utime 14, stime 15.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("malformed stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed stat")
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}
