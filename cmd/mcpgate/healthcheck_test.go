package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestHealthcheck: exit 0 only on 200; every failure says what went wrong.
func TestHealthcheck(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/down", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusServiceUnavailable) })
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/healthz", http.StatusFound) })
	release := make(chan struct{})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer close(release)
	closed := httptest.NewServer(mux)
	closed.Close()

	for _, tc := range []struct {
		name, url, wantErr string
	}{
		{"200", srv.URL + "/healthz", ""},
		{"503", srv.URL + "/down", "answered 503 Service Unavailable, want 200 OK"},
		{"404", srv.URL + "/nothing", "answered 404"},
		{"redirect not followed", srv.URL + "/moved", "answered 302"},
		{"timeout", srv.URL + "/slow", "did not answer within 200ms"},
		{"refused", closed.URL + "/healthz", "connection refused"},
		{"not a URL", "127.0.0.1:8080/healthz", "not an http(s) URL"},
		{"other scheme", "file:///etc/passwd", "not an http(s) URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := newRootCmd()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetArgs([]string{"healthcheck", "--timeout", "200ms", tc.url})
			start := time.Now()
			err := root.Execute()
			if tc.wantErr == "" {
				if err != nil || out.String() != "ok\n" {
					t.Errorf("err %v out %q", err, out.String())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
			if time.Since(start) > 2*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
		})
	}
}
