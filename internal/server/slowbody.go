package server

import (
	"errors"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
)

// bodyLimits bound how a request body may arrive: a total time once the
// headers are in, and after a grace period a minimum average rate (as
// Kestrel's MinRequestBodyDataRate). The rate catches a trickle early; the
// total time alone would have to choose between cutting honest slow links
// and holding trickles for long.
type bodyLimits struct {
	timeout time.Duration // whole body
	rate    int64         // bytes/s after grace
	grace   time.Duration
}

func newBodyLimits(s config.SecurityConfig) bodyLimits {
	return bodyLimits{timeout: s.ReadTimeout, rate: s.MinBodyRate, grace: s.MinBodyRateGrace}
}

// deadline is when the body started at start must have more than n bytes:
// the rate allows grace + n/rate, and never beyond the total timeout. A zero
// limit is no limit (the configuration always sets both).
func (l bodyLimits) deadline(start time.Time, n int64) time.Time {
	var d time.Time
	if l.rate > 0 {
		d = start.Add(l.grace + time.Duration(float64(n)/float64(l.rate)*float64(time.Second)))
	}
	if end := start.Add(l.timeout); l.timeout > 0 && (d.IsZero() || d.After(end)) {
		d = end
	}
	return d
}

var errBodyTooLarge = errors.New("request body too large")

// bodyReader reads a request body under bodyLimits, moving the
// connection's read deadline forward as bytes arrive
// (http.ResponseController, so the deadline is this request's and not the
// server's: SSE responses that follow are never cut). With max > 0 it also
// refuses more than max bytes. It is a value inside the exchange, so reading
// a body costs no allocation of its own.
type bodyReader struct {
	src    io.Reader
	rc     http.ResponseController
	limits bodyLimits
	start  time.Time
	n      int64
	max    int64 // 0: no size limit here (the handler has its own)
	length int64 // Content-Length, or -1
	set    bool  // a deadline is set and must be cleared at the end
	eof    bool  // the whole body was read
}

func (b *bodyReader) reset(w http.ResponseWriter, r *http.Request, limits bodyLimits, max int64) {
	*b = bodyReader{src: r.Body, rc: *http.NewResponseController(w), limits: limits, start: time.Now(), max: max, length: r.ContentLength}
	b.setDeadline(b.limits.deadline(b.start, 0))
}

func (b *bodyReader) setDeadline(t time.Time) {
	// ErrNotSupported (a writer without deadlines, e.g. in unit tests)
	// leaves the server's ReadTimeout as the only bound.
	b.set = b.rc.SetReadDeadline(t) == nil || b.set
}

// done clears the deadline: once the body is in, the request may run (and
// stream) as long as it needs.
func (b *bodyReader) done() {
	if b.set {
		b.rc.SetReadDeadline(time.Time{})
		b.set = false
	}
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.max > 0 && int64(len(p)) > b.max-b.n+1 {
		p = p[:b.max-b.n+1] // one byte past max tells "too large" from "exactly max"
	}
	if b.length >= 0 && b.n == b.length {
		// The next read only sees EOF, and with it the server starts its
		// background read: clear the deadline first so that read never
		// times out under a streaming response.
		b.done()
	}
	n, err := b.src.Read(p)
	b.n += int64(n)
	if b.max > 0 && b.n > b.max {
		return n, errBodyTooLarge
	}
	switch {
	case err == io.EOF:
		b.eof = true
		b.done()
	case err != nil:
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = errBodyTooSlow
		}
	case b.length >= 0 && b.n >= b.length:
		// The whole declared body is in (a small form usually comes in
		// one read): no deadline to move forward, only one to clear, as
		// the next read would (each change of a deadline costs a timer
		// update in the runtime).
		b.done()
	case n > 0:
		b.setDeadline(b.limits.deadline(b.start, b.n))
	}
	return n, err
}

// errBodyTooSlow: the body did not arrive within read_timeout or at
// min_body_rate.
var errBodyTooSlow = errors.New("request body too slow")

// rateLimitedBody applies bodyLimits to a handler's own body reads (the
// authorization server's forms and JSON). It allocates, so the MCP
// endpoint's hot path uses the bodyReader in its exchange instead.
func rateLimitedBody(w http.ResponseWriter, r *http.Request, limits bodyLimits) {
	b := &limitedBody{Closer: r.Body}
	b.reset(w, r, limits, 0)
	r.Body = b
}

// limitedBody is the body rateLimitedBody installs: the reader and the
// original body's Close, in one allocation.
type limitedBody struct {
	bodyReader
	io.Closer
}

// clearReadDeadline lifts the server's whole-request read deadline
// (ReadTimeout) from a request without a body: the stream it opens may last
// for hours, and when the deadline passed, the server's background read
// would cancel the request.
func clearReadDeadline(w http.ResponseWriter) {
	http.NewResponseController(w).SetReadDeadline(time.Time{})
}

// closeIfBodyUnread makes the server close the connection after an answer
// given before the request body was read. Otherwise it would first read
// and discard the rest of the body, which a slow client sends as slowly as
// it likes, holding the connection after the handler (and its in-flight
// slot) is gone.
func closeIfBodyUnread(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength != 0 {
		w.Header().Set("Connection", "close")
	}
}
