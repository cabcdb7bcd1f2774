package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBareProxyCompleteAnswers: the baseline must not cut answers. A
// bounded loop of tools/list requests (SSE and JSON answers) goes through
// the bare proxy from 8 concurrent sessions, as the harness's c=8 run does,
// and every answer must be complete: the response read, every tool in it,
// and the stream ended cleanly.
//
// The proxy's transport sends a request's headers, then streams its body
// from the client's connection, and reads that body once more after the last
// byte to check it ended. The backend may answer in between; writing the
// answer's headers to the client made the HTTP/1 server drain and close the
// client's request body (it is half-duplex by default), so the extra read
// failed and the transport closed the backend connection under the answer:
// "use of closed network connection" in the proxy, "unexpected EOF" at the
// client (golang/go#40747). On loopback that window is microseconds wide and
// was hit a few times per 10 s run. "descheduled writer" makes it wide: the
// proxy pauses after each write to the backend (as a writer goroutine
// preempted there would), and the backend ends each answer a while after
// sending it, so the backend connection is still being read when the extra
// read comes.
func TestBareProxyCompleteAnswers(t *testing.T) {
	const clients, tools = 8, 100
	for _, tc := range []struct {
		name        string
		perClient   int
		pause, tail time.Duration // after each write to the backend; before the backend ends an answer
	}{
		{"as run", 25, 0, 0},
		{"descheduled writer", 10, 10 * time.Millisecond, 40 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := backendHandler(tools)
			backend, srv, err := serveLoopback(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h.ServeHTTP(w, r)
				time.Sleep(tc.tail) // what the handler wrote is sent; the end of the answer waits
			}))
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			target, _ := url.Parse(backend)
			tr := bareTransport(clients)
			var dials atomic.Int64
			dial := tr.DialContext
			tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				dials.Add(1)
				c, err := dial(ctx, network, addr)
				if err != nil || tc.pause == 0 {
					return c, err
				}
				return pausingConn{c, tc.pause}, nil
			}
			defer tr.CloseIdleConnections()
			base, psrv, err := serveLoopback(bareProxyVia(target, tr))
			if err != nil {
				t.Fatal(err)
			}
			defer psrv.Close()
			for _, sc := range []string{scenarioList, scenarioListJSON} {
				if err := listLoop(scenarioURL(base+"/mcp", sc), sc, clients, tc.perClient, tools+6); err != nil {
					t.Errorf("%s: %v", sc, err)
				}
			}
			// Kept-alive connections, pooled: the fix must not make the
			// baseline redial.
			if n := dials.Load(); n > 2*clients {
				t.Errorf("the proxy dialled the backend %d times for %d concurrent sessions", n, clients)
			}
		})
	}
}

// pausingConn pauses after every write, as a descheduled writer would.
type pausingConn struct {
	net.Conn
	pause time.Duration
}

func (c pausingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	time.Sleep(c.pause)
	return n, err
}

// listLoop runs perClient lists of scenario sc from each of clients
// sessions at url and reports how many answers were incomplete, with the
// first errors.
func listLoop(url, sc string, clients, perClient, want int) error {
	tr := newClientTransport(clients)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	ctx := context.Background()
	var (
		mu    sync.Mutex
		first []error
		bad   int
		wg    sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if bad++; len(first) < 3 {
			first = append(first, err)
		}
	}
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := openSession(ctx, client, url, "")
			if err != nil {
				fail(err)
				return
			}
			defer s.close(ctx)
			for i := range perClient {
				n, err := s.step(ctx, sc)
				if err == nil && n != want {
					err = fmt.Errorf("%d tools listed, want %d", n, want)
				}
				if err != nil {
					fail(fmt.Errorf("list %d: %w", i, err))
				}
			}
		}()
	}
	wg.Wait()
	if bad > 0 {
		return fmt.Errorf("%d failures in %d sessions of %d lists, first: %v", bad, clients, perClient, first)
	}
	return nil
}
