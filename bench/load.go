package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// protocolVersion is the MCP revision the load generator asks for.
const protocolVersion = "2025-11-25"

// maxSamplesPerWorker bounds the latency samples a worker keeps (8 bytes
// each); requests past it are still counted.
const maxSamplesPerWorker = 1 << 20

// Scenarios. The plain ones go to the backend endpoint that answers POSTs
// with SSE (the go-sdk's default); the -json ones to the same server
// configured to answer with application/json (StreamableHTTPOptions
// JSONResponse), served at jsonPath by every target.
const (
	scenarioCall     = "tools/call"
	scenarioList     = "tools/list"
	scenarioCallJSON = "tools/call-json"
	scenarioListJSON = "tools/list-json"
)

var allScenarios = []string{scenarioCall, scenarioList, scenarioCallJSON, scenarioListJSON}

// jsonPath is where the JSON-answering backend is served, behind each target.
const jsonPath = "/json/mcp"

// isJSONScenario reports whether sc talks to the JSON-answering backend.
func isJSONScenario(sc string) bool { return strings.HasSuffix(sc, "-json") }

// scenarioURL is the endpoint of a target (whose SSE endpoint is mcpURL,
// ending in /mcp) for scenario sc.
func scenarioURL(mcpURL, sc string) string {
	if isJSONScenario(sc) {
		return strings.TrimSuffix(mcpURL, "/mcp") + jsonPath
	}
	return mcpURL
}

// newClientTransport is the load generator's shared transport: enough idle
// connections per host that no worker ever redials.
func newClientTransport(concurrency int) *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        4 * concurrency,
		MaxIdleConnsPerHost: 2 * concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

// session is one MCP client session spoken with raw HTTP, the way a
// streamable-HTTP client does: POST initialize, POST
// notifications/initialized, then requests carrying Mcp-Session-Id and
// Mcp-Protocol-Version.
type session struct {
	client  *http.Client
	url     string
	token   string
	id      string // Mcp-Session-Id
	proto   string // negotiated protocol version
	nextID  int
	body    []byte
	lineBuf []byte
	scratch bytes.Buffer
}

// rpcResponse is the part of a JSON-RPC response the harness checks.
type rpcResponse struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func openSession(ctx context.Context, client *http.Client, url, token string) (*session, error) {
	s := &session{client: client, url: url, token: token}
	res, err := s.call(ctx, "initialize",
		fmt.Appendf(nil, `{"protocolVersion":%q,"capabilities":{},"clientInfo":{"name":"mcpgate-bench","version":"1"}}`, protocolVersion))
	if err != nil {
		return nil, fmt.Errorf("initialize: %w", err)
	}
	var init struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	if err := json.Unmarshal(res, &init); err != nil || init.ProtocolVersion == "" {
		return nil, fmt.Errorf("initialize: bad result %.200s", res)
	}
	s.proto = init.ProtocolVersion
	if s.id == "" {
		return nil, errors.New("initialize: no Mcp-Session-Id (the benchmark needs a stateful backend)")
	}
	req, err := s.newRequest(ctx, http.MethodPost, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("notifications/initialized: %w", err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return nil, fmt.Errorf("notifications/initialized: HTTP %d, want 202", resp.StatusCode)
	}
	return s, nil
}

func (s *session) newRequest(ctx context.Context, method string, body []byte) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.url, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+s.token)
	if s.id != "" {
		req.Header.Set("Mcp-Session-Id", s.id)
	}
	if s.proto != "" {
		req.Header.Set("Mcp-Protocol-Version", s.proto)
	}
	return req, nil
}

// call sends one JSON-RPC request and returns its result, reading the whole
// response (JSON or an SSE stream) so that the connection is reused.
func (s *session) call(ctx context.Context, method string, params []byte) (json.RawMessage, error) {
	s.nextID++
	id := s.nextID
	s.body = fmt.Appendf(s.body[:0], `{"jsonrpc":"2.0","id":%d,"method":%q,"params":%s}`, id, method, params)
	req, err := s.newRequest(ctx, http.MethodPost, s.body)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if s.id == "" {
		s.id = resp.Header.Get("Mcp-Session-Id")
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	var r *rpcResponse
	ct := resp.Header.Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, "text/event-stream"):
		r, err = s.readSSE(resp.Body, id)
	case strings.HasPrefix(ct, "application/json"):
		r = new(rpcResponse)
		err = json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(r)
	default:
		err = fmt.Errorf("unexpected Content-Type %q", ct)
	}
	// Drain what is left (the SSE stream ends after the response) so the
	// connection goes back to the pool; an answer cut after the response
	// is cut all the same.
	if _, derr := io.Copy(io.Discard, io.LimitReader(resp.Body, 16<<20)); err == nil && derr != nil {
		err = fmt.Errorf("after the response: %w", derr)
	}
	if err != nil {
		return nil, err
	}
	if string(r.ID) != strconv.Itoa(id) {
		return nil, fmt.Errorf("response id %s, want %d", r.ID, id)
	}
	if r.Error != nil {
		return nil, fmt.Errorf("JSON-RPC error %d: %s", r.Error.Code, r.Error.Message)
	}
	return r.Result, nil
}

// readSSE reads events until the response to id; notifications and other
// events before it are skipped.
func (s *session) readSSE(body io.Reader, id int) (*rpcResponse, error) {
	sc := bufio.NewScanner(body)
	if s.lineBuf == nil {
		s.lineBuf = make([]byte, 64<<10)
	}
	sc.Buffer(s.lineBuf, 16<<20)
	s.scratch.Reset()
	want := strconv.Itoa(id)
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0: // end of event
			if s.scratch.Len() == 0 {
				continue
			}
			r := new(rpcResponse)
			if err := json.Unmarshal(s.scratch.Bytes(), r); err != nil {
				return nil, fmt.Errorf("SSE data: %w", err)
			}
			s.scratch.Reset()
			if string(r.ID) == want {
				return r, nil
			}
		case bytes.HasPrefix(line, []byte("data:")):
			if s.scratch.Len() > 0 {
				s.scratch.WriteByte('\n')
			}
			s.scratch.Write(bytes.TrimPrefix(line[len("data:"):], []byte(" ")))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("SSE: %w", err)
	}
	return nil, errors.New("SSE stream ended without the response")
}

// close ends the session (DELETE), as a well-behaved client does.
func (s *session) close(ctx context.Context) {
	req, err := s.newRequest(ctx, http.MethodDelete, nil)
	if err != nil {
		return
	}
	if resp, err := s.client.Do(req); err == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
	}
}

// step performs one scenario request and checks its result; it returns the
// number of tools listed (tools/list) or 0.
func (s *session) step(ctx context.Context, scenario string) (int, error) {
	switch strings.TrimSuffix(scenario, "-json") {
	case scenarioCall:
		text := fmt.Sprintf("hello %d", s.nextID+1)
		res, err := s.call(ctx, "tools/call", fmt.Appendf(nil, `{"name":"echo","arguments":{"text":%q}}`, text))
		if err != nil {
			return 0, err
		}
		var out struct {
			IsError bool `json:"isError"`
			Content []struct {
				Text string `json:"text"`
			} `json:"content"`
		}
		if err := json.Unmarshal(res, &out); err != nil {
			return 0, fmt.Errorf("tools/call result: %w", err)
		}
		if out.IsError || len(out.Content) != 1 || out.Content[0].Text != text {
			return 0, fmt.Errorf("echo returned %.200s", res)
		}
		return 0, nil
	case scenarioList:
		res, err := s.call(ctx, "tools/list", []byte(`{}`))
		if err != nil {
			return 0, err
		}
		var out struct {
			Tools []struct {
				Name string `json:"name"`
			} `json:"tools"`
		}
		if err := json.Unmarshal(res, &out); err != nil {
			return 0, fmt.Errorf("tools/list result: %w", err)
		}
		if len(out.Tools) == 0 {
			return 0, errors.New("tools/list returned no tools")
		}
		return len(out.Tools), nil
	}
	return 0, fmt.Errorf("unknown scenario %q", scenario)
}

// tally is what every load run counts: the proxy modes' loadResult and
// the token modes' tokenResult.
type tally struct {
	Requests int             // completed inside the measurement window
	Errors   int             // failed requests, warm-up included
	FirstErr string          // the first error seen
	Lat      []time.Duration // latencies of Requests (bounded)
}

// add adds o's requests, errors and latencies to t's; t keeps its first
// error.
func (t *tally) add(o *tally) {
	t.Requests += o.Requests
	t.Errors += o.Errors
	if t.FirstErr == "" {
		t.FirstErr = o.FirstErr
	}
	t.Lat = append(t.Lat, o.Lat...)
}

// pct returns the p-quantile (0 < p ≤ 1) of the latencies, once sorted.
func (t *tally) pct(p float64) time.Duration {
	if len(t.Lat) == 0 {
		return 0
	}
	i := int(float64(len(t.Lat))*p+0.999999) - 1
	return t.Lat[max(0, min(i, len(t.Lat)-1))]
}

// loadResult is what one load run measured. Its latencies are sorted.
type loadResult struct {
	tally
	Elapsed time.Duration // measurement window
	Tools   int           // tools in the last tools/list response
	// CPU is the CPU time each process used during the measurement window.
	CPU map[string]time.Duration
}

func (r *loadResult) merge(o *loadResult) {
	r.add(&o.tally)
	r.Elapsed += o.Elapsed
	slices.Sort(r.Lat)
	if o.Tools != 0 {
		r.Tools = o.Tools
	}
	for name, d := range o.CPU {
		if r.CPU == nil {
			r.CPU = map[string]time.Duration{}
		}
		r.CPU[name] += d
	}
}

// cpuPerRequest is a process's CPU time per completed request.
func (r *loadResult) cpuPerRequest(proc string) (time.Duration, bool) {
	d, ok := r.CPU[proc]
	if !ok || r.Requests == 0 {
		return 0, false
	}
	return d / time.Duration(r.Requests), true
}

func (r *loadResult) rps() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

type worker struct {
	sess     *session
	lat      []time.Duration
	requests int
	errors   int
	firstErr error
	tools    int
}

// runLoad opens one session per worker, then runs the closed loop: every
// worker sends its next request as soon as the previous one completed, for
// warmup + duration. Only requests that start and end inside the
// measurement window are counted; errors are counted throughout. onWindow,
// if set, runs while the measurement window is open (resource sampling).
func runLoad(ctx context.Context, client *http.Client, url string, tokens []string, scenario string,
	warmup, duration time.Duration, onWindow func(ctx context.Context)) (*loadResult, error) {
	workers := make([]*worker, len(tokens))
	for i, tok := range tokens {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		s, err := openSession(sctx, client, url, tok)
		cancel()
		if err != nil {
			for _, w := range workers[:i] {
				w.sess.close(ctx)
			}
			return nil, fmt.Errorf("worker %d: %w", i, err)
		}
		workers[i] = &worker{sess: s}
	}
	start := time.Now()
	winStart, winEnd := start.Add(warmup), start.Add(warmup+duration)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(winEnd) {
					return
				}
				rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				tools, err := w.sess.step(rctx, scenario)
				cancel()
				t1 := time.Now()
				if err != nil {
					w.errors++
					if w.firstErr == nil {
						w.firstErr = fmt.Errorf("%w (at %s, request started %s after the warm-up began)",
							err, t1.UTC().Format("15:04:05.000"), t0.Sub(start).Round(time.Millisecond))
					}
					time.Sleep(10 * time.Millisecond) // no error storm
					continue
				}
				if tools != 0 {
					w.tools = tools
				}
				if !t0.Before(winStart) && !t1.After(winEnd) {
					w.requests++
					if len(w.lat) < maxSamplesPerWorker {
						w.lat = append(w.lat, t1.Sub(t0))
					}
				}
			}
		}()
	}
	if onWindow != nil {
		wctx, cancel := context.WithDeadline(ctx, winEnd)
		time.Sleep(time.Until(winStart))
		onWindow(wctx)
		cancel()
	}
	wg.Wait()
	res := &loadResult{Elapsed: duration}
	for _, w := range workers {
		res.Requests += w.requests
		res.Errors += w.errors
		if w.firstErr != nil && res.FirstErr == "" {
			res.FirstErr = w.firstErr.Error()
		}
		res.Lat = append(res.Lat, w.lat...)
		if w.tools != 0 {
			res.Tools = w.tools
		}
		w.sess.close(ctx)
	}
	slices.Sort(res.Lat)
	return res, ctx.Err()
}
