package netguard

import (
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHostList(t *testing.T) {
	l, err := ParseHostList([]string{"Docs.Example.Internal.", "*.corp.internal", "10.0.0.5", "[fd00::1]"})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{
		"docs.example.internal":    true,
		"DOCS.example.internal.":   true,
		"x.docs.example.internal":  false, // exact names do not cover subdomains
		"example.internal":         false,
		"a.corp.internal":          true,
		"a.b.corp.internal":        true,  // one or more labels
		"corp.internal":            false, // not the zone itself
		"evilcorp.internal":        false,
		"a.corp.internal.evil.com": false,
		"10.0.0.5":                 true,
		"::ffff:10.0.0.5":          true,
		"10.0.0.6":                 false,
		"fd00::1":                  true,
		"[fd00::1]":                true,
		"fd00::2":                  false,
		"":                         false,
	} {
		if got := l.Contains(host); got != want {
			t.Errorf("Contains(%q) = %v, want %v", host, got, want)
		}
	}
	var empty *HostList
	if empty.Contains("a") || !empty.Empty() {
		t.Error("nil list matches")
	}
	for _, bad := range []string{"*", "*.", "**.x", "a..b", "-a.b", "a-.b", "a b", "a/b", "x.*.y", "bücher.de", "a:80", strings.Repeat("a", 64) + ".b"} {
		if _, err := ParseHostList([]string{bad}); err == nil {
			t.Errorf("ParseHostList accepted %q", bad)
		}
	}
}

// TestGuardedClientExcept: only listed hosts reach a private address; the
// choice follows the URL's host, so an unlisted name or address of the same
// server is still refused at dial time.
func TestGuardedClientExcept(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the unknown-CA handshake below fails on purpose
	srv.StartTLS()
	defer srv.Close()
	port := srv.Listener.Addr().String()[strings.LastIndexByte(srv.Listener.Addr().String(), ':'):]
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	get := func(c *http.Client, u string) error {
		resp, err := c.Get(u)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}

	listed, _ := ParseHostList([]string{"127.0.0.1"})
	c := GuardedClientExcept(nil, 5*time.Second, listed, roots)
	if err := get(c, "https://127.0.0.1"+port); err != nil {
		t.Errorf("listed host: %v", err)
	}
	if err := get(c, "https://[::1]"+port); !errors.Is(err, ErrPrivateAddress) {
		t.Errorf("unlisted loopback address: %v, want ErrPrivateAddress", err)
	}
	if err := get(c, "https://localhost"+port); !errors.Is(err, ErrPrivateAddress) {
		t.Errorf("unlisted name resolving to loopback: %v, want ErrPrivateAddress", err)
	}

	// The private roots apply to listed hosts only: without them the test
	// CA is unknown.
	c = GuardedClientExcept(nil, 5*time.Second, listed, nil)
	var unknownCA x509.UnknownAuthorityError
	if err := get(c, "https://127.0.0.1"+port); !errors.As(err, &unknownCA) {
		t.Errorf("listed host without its CA: %v, want an unknown-authority error", err)
	}

	// An empty list is the plain guarded client.
	c = GuardedClientExcept(nil, 5*time.Second, nil, roots)
	if err := get(c, "https://127.0.0.1"+port); !errors.Is(err, ErrPrivateAddress) {
		t.Errorf("empty list: %v, want ErrPrivateAddress", err)
	}
}
