package server_test

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/server/servertest"
)

// TestAuthorizationServerRoutesBounded: the authorization server's routes
// that read bodies get the same body read limits and per-IP in-flight bound
// as the MCP endpoint, and refuse protocol upgrades.
func TestAuthorizationServerRoutesBounded(t *testing.T) {
	base := servertest.Start(t, func(base string) string {
		return servertest.MinimalAuthServer + `
audit: { sink: none }
security:
  read_timeout: 3s
  min_body_rate: 1000
  min_body_rate_grace: 1s
  max_in_flight_per_ip: 2
`
	})

	// A token request whose body never comes is cut after the grace.
	c := slowPost(t, base+"/token", "x", 100)
	start := time.Now()
	if status := readStatus(c, 5*time.Second); status == http.StatusOK {
		t.Fatalf("slow token request answered 200")
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Errorf("slow token request held for %s", d)
	}
	c.Close()

	// Two held requests fill this address's bound (for the 1 s grace): the
	// third gets 429.
	var held []net.Conn
	for range 2 {
		held = append(held, slowPost(t, base+"/register", "x", 100))
	}
	time.Sleep(100 * time.Millisecond)
	resp, err := http.Post(base+"/token", "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("third request in flight: %d (Retry-After %q), want 429", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	// Upgrades are refused here too, once the held requests have ended: the
	// server closes each connection (after its 408) only when its handler,
	// and so its in-flight slot, is done.
	for _, c := range held {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("held request did not end: %v", err)
		}
	}
	req, _ := http.NewRequest("GET", base+"/.well-known/oauth-authorization-server", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("upgrade on the AS metadata: %d, want 400", resp.StatusCode)
	}
	resp, err = http.Get(base + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("AS metadata: %d", resp.StatusCode)
	}
}
