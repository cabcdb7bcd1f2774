package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
)

// failTime is when a body arriving at bytesPerSec is cut off under l
// (the first byte is due at 1/bytesPerSec), or 0 if it arrives in full.
func failTime(l bodyLimits, size int64, bytesPerSec float64) time.Duration {
	start := time.Unix(0, 0)
	for n := int64(0); n < size; {
		// Bytes arrive in 1 KiB packets (or one at a time, when slower).
		step := min(size-n, max(1, int64(bytesPerSec/1000)))
		arrival := time.Duration(float64(n+step) / bytesPerSec * float64(time.Second))
		if dl := l.deadline(start, n); start.Add(arrival).After(dl) {
			return dl.Sub(start)
		}
		n += step
	}
	return 0
}

// TestDefaultBodyLimits: with the configured defaults, a body trickled at
// 1 byte/s is cut within 20 s (issue: "408 or close within 20 s"), and a
// 4 MiB body (max_body_bytes) on a slow but honest 1 Mbit/s link arrives.
func TestDefaultBodyLimits(t *testing.T) {
	cfg, err := config.Parse([]byte(`
auth: { mode: none }
backends: [ { name: demo, url: "http://127.0.0.1:1/mcp" } ]
audit: { sink: none }
`), func(string) (string, bool) { return "", false }, config.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	l := newBodyLimits(cfg.Security)
	if cfg.Security.ReadHeaderTimeout <= 0 || cfg.Security.ReadHeaderTimeout > 20*time.Second {
		t.Errorf("read_header_timeout default %s: a slow header must be cut within 20 s", cfg.Security.ReadHeaderTimeout)
	}
	cases := []struct {
		name   string
		size   int64
		rate   float64 // bytes/s
		cutMin time.Duration
		cutMax time.Duration // 0: must arrive
	}{
		{"1 byte/s trickle", 1000, 1, time.Second, 20 * time.Second},
		{"10 bytes/s trickle", 100_000, 10, time.Second, 20 * time.Second},
		{"half the minimum rate", 1 << 20, float64(cfg.Security.MinBodyRate) / 2, time.Second, 20 * time.Second},
		{"small body, any speed within the grace", 2000, 500, 0, 0},
		{"4 MiB at 1 Mbit/s", cfg.Security.MaxBodyBytes, 125_000, 0, 0},
		{"1 MiB at 256 kbit/s", 1 << 20, 32_000, 0, 0},
		{"4 MiB at 8 KB/s: above the rate, over read_timeout", cfg.Security.MaxBodyBytes, 8000, cfg.Security.ReadTimeout, cfg.Security.ReadTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := failTime(l, tc.size, tc.rate)
			switch {
			case tc.cutMax == 0 && got != 0:
				t.Errorf("cut after %s, want it to arrive", got)
			case tc.cutMax != 0 && (got == 0 || got < tc.cutMin || got > tc.cutMax):
				t.Errorf("cut after %s, want between %s and %s", got, tc.cutMin, tc.cutMax)
			}
			t.Logf("cut after %s (0: arrived)", got)
		})
	}
}

// TestBodyLimitsDeadline: the deadline moves with the bytes received and
// never passes the total timeout; zero limits mean none.
func TestBodyLimitsDeadline(t *testing.T) {
	start := time.Unix(1000, 0)
	l := bodyLimits{timeout: 10 * time.Second, rate: 100, grace: 2 * time.Second}
	for _, tc := range []struct {
		n    int64
		want time.Duration
	}{{0, 2 * time.Second}, {100, 3 * time.Second}, {500, 7 * time.Second}, {10_000, 10 * time.Second}} {
		if got := l.deadline(start, tc.n).Sub(start); got != tc.want {
			t.Errorf("deadline after %d bytes = %s, want %s", tc.n, got, tc.want)
		}
	}
	if d := (bodyLimits{}).deadline(start, 0); !d.IsZero() {
		t.Errorf("zero limits: deadline %s, want none", d)
	}
	if got := (bodyLimits{timeout: time.Second}).deadline(start, 1<<30).Sub(start); got != time.Second {
		t.Errorf("timeout only: %s", got)
	}
}

// deadlineWriter records the read deadlines set through
// http.ResponseController.
type deadlineWriter struct {
	http.ResponseWriter
	set []time.Time
}

func (w *deadlineWriter) SetReadDeadline(t time.Time) error {
	w.set = append(w.set, t)
	return nil
}

// chunkReader returns its chunks one per Read, then EOF.
type chunkReader struct{ chunks []string }

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks = c.chunks[1:]
	return n, nil
}

// TestRateLimitedBodyDeadlines: a body gets a deadline before its first
// byte, moved forward while bytes arrive, and cleared once it is complete;
// a body whose declared length is in is not given a new deadline first
// (one timer update fewer for a form read in one piece).
func TestRateLimitedBodyDeadlines(t *testing.T) {
	l := bodyLimits{timeout: 10 * time.Second, rate: 100, grace: 2 * time.Second}
	for _, tc := range []struct {
		name   string
		chunks []string
		length int64
		want   []string // "set" (a deadline), "clear"
	}{
		{"one read", []string{"grant_type=x"}, 12, []string{"set", "clear"}},
		{"two reads", []string{"grant_", "type=x"}, 12, []string{"set", "set", "clear"}},
		{"chunked", []string{"grant_", "type=x"}, -1, []string{"set", "set", "set", "clear"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/token", nil)
			r.Body, r.ContentLength = io.NopCloser(&chunkReader{chunks: tc.chunks}), tc.length
			w := &deadlineWriter{ResponseWriter: httptest.NewRecorder()}
			rateLimitedBody(w, r, l)
			b, err := io.ReadAll(r.Body)
			if err != nil || string(b) != strings.Join(tc.chunks, "") {
				t.Fatalf("read %q, %v", b, err)
			}
			var got []string
			for _, d := range w.set {
				if d.IsZero() {
					got = append(got, "clear")
				} else {
					got = append(got, "set")
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("deadlines %v, want %v", got, tc.want)
			}
			if err := r.Body.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
	}
}
