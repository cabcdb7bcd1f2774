package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestBackendSwitchingProtocolsIs502: even for a request that asked for an
// upgrade (the gateway refuses those before the proxy; this is the second
// wall), a backend's 101 is answered with 502 and the client's connection is
// never turned into a tunnel to the backend.
func TestBackendSwitchingProtocolsIs502(t *testing.T) {
	tunnelled := make(chan string, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		b, _ := io.ReadAll(buf)
		tunnelled <- string(b)
	}))
	defer backend.Close()
	cfg := BackendConfig{Name: "b", URL: backend.URL + "/mcp"}
	cfg.SetDefaults(0)
	b, err := NewBackend(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(b)
	defer front.Close()

	c, err := net.Dial("tcp", strings.TrimPrefix(front.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /mcp HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status = %d, want 502", resp.StatusCode)
	}
	io.WriteString(c, "tunnelled bytes")
	select {
	case got := <-tunnelled:
		if got != "" {
			t.Errorf("bytes tunnelled to the backend: %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("backend handler did not finish")
	}
}
