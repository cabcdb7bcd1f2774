package server

import (
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
