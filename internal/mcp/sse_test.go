package mcp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// sseEvent is a dispatched event as a client sees it.
type sseEvent struct {
	Type, Data, ID string
}

// parseSSE is a straightforward, non-incremental reference parser following
// the WHATWG event-stream interpretation rules, used as the oracle.
func parseSSE(stream []byte) []sseEvent {
	s := string(bytes.TrimPrefix(stream, bom))
	var lines []string
	for len(s) > 0 {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			break // an unterminated last line is never processed
		}
		lines = append(lines, s[:i])
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			i++
		}
		s = s[i+1:]
	}
	var out []sseEvent
	var data, typ, lastID string
	hasData := false
	for _, l := range lines {
		if l == "" {
			if hasData {
				out = append(out, sseEvent{Type: typ, Data: data, ID: lastID})
			}
			data, typ, hasData = "", "", false
			continue
		}
		if l[0] == ':' {
			continue
		}
		name, value := l, ""
		if i := strings.IndexByte(l, ':'); i >= 0 {
			name, value = l[:i], strings.TrimPrefix(l[i+1:], " ")
		}
		switch name {
		case "data":
			if hasData {
				data += "\n"
			}
			data += value
			hasData = true
		case "event":
			typ = value
		case "id":
			if !strings.Contains(value, "\x00") {
				lastID = value
			}
		}
	}
	return out
}

// chunkWriter records each Write and each flush.
type chunkWriter struct {
	buf     bytes.Buffer
	writes  int
	flushes int
}

func (w *chunkWriter) Write(p []byte) (int, error) { w.writes++; return w.buf.Write(p) }

func runFilter(t testing.TB, stream []byte, chunk int, rewrite func([]byte) []byte) (*chunkWriter, error) {
	w := &chunkWriter{}
	f := NewSSEFilter(w, func() { w.flushes++ }, rewrite)
	for len(stream) > 0 {
		n := min(chunk, len(stream))
		if _, err := f.Write(stream[:n]); err != nil {
			return w, err
		}
		stream = stream[n:]
	}
	return w, f.Close()
}

func identity(b []byte) []byte { return b }

func TestSSEFilterIdentity(t *testing.T) {
	streams := []string{
		"data: {\"a\":1}\n\n",
		"event: message\nid: 7\ndata: {\"a\":1}\n\n",
		"data: line1\ndata: line2\n\n",
		"data: a\r\n\r\ndata: b\r\rdata: c\n\n",
		": keepalive\n\ndata: x\n\n:\n\n",
		"\xef\xbb\xbfdata: with bom\n\n",
		"data\n\n",
		"data:no-space\n\n",
		"id: 1\n\n",
		"retry: 1000\ndata: x\n\n",
		"data: x\n\ndata: incomplete",
	}
	for _, s := range streams {
		for _, chunk := range []int{1, 2, 3, 7, 1 << 20} {
			w, err := runFilter(t, []byte(s), chunk, identity)
			if err != nil {
				t.Fatalf("%q chunk %d: %v", s, chunk, err)
			}
			if diff := cmp.Diff(parseSSE([]byte(s)), parseSSE(w.buf.Bytes())); diff != "" {
				t.Errorf("%q chunk %d: events differ (-in +out):\n%s", s, chunk, diff)
			}
		}
	}
}

func TestSSEFilterRewrite(t *testing.T) {
	upper := func(b []byte) []byte {
		if bytes.Contains(b, []byte("drop")) {
			return nil
		}
		return bytes.ToUpper(b)
	}
	tests := []struct {
		name, in, want string
	}{
		{"fields kept in order", "event: message\nid: 4\ndata: abc\n\n", "event: message\nid: 4\ndata: ABC\n\n"},
		{"multi-line data", "data: ab\ndata: cd\n\n", "data: AB\ndata: CD\n\n"},
		{"data before id", "data: ab\nid: 9\n\n", "data: AB\nid: 9\n\n"},
		{"CRLF input becomes LF", "data: ab\r\n\r\n", "data: AB\n\n"},
		{"comment inside event kept", "data: ab\n: note\n\n", "data: AB\n: note\n\n"},
		{"dropped event", "id: 1\ndata: drop me\n\ndata: ok\n\n", "data: OK\n\n"},
		{"keep-alive comment between events", ": ping\n\ndata: x\n\n", ": ping\n\ndata: X\n\n"},
		{"event without data untouched", "id: 3\n\n", "id: 3\n\n"},
		// Fields are kept as spans of the received bytes: whatever the line
		// ends, a BOM, or the event before.
		{"CRLF fields", "id: 4\r\nevent: message\r\ndata: ab\r\n\r\n", "id: 4\nevent: message\ndata: AB\n\n"},
		{"CR fields", "id: 4\revent: message\rdata: ab\r\r", "id: 4\nevent: message\ndata: AB\n\n"},
		{"BOM before a field", "\xef\xbb\xbfid: 1\ndata: ab\n\n", "id: 1\ndata: AB\n\n"},
		{"fields of consecutive events", "id: 1\nevent: a\ndata: x\n\n: ping\n\nid: 22\ndata: y\n: z\n\n", "id: 1\nevent: a\ndata: X\n\n: ping\n\nid: 22\ndata: Y\n: z\n\n"},
	}
	for _, tt := range tests {
		for _, chunk := range []int{1, 2, 3, 7, 1 << 20} {
			t.Run(fmt.Sprintf("%s/%d", tt.name, chunk), func(t *testing.T) {
				w, err := runFilter(t, []byte(tt.in), chunk, upper)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tt.want, w.buf.String()); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			})
		}
	}
}

// A rewrite that produces data with line breaks (pretty-printed JSON) must
// become several data lines, never a raw CR or LF inside one line.
func TestSSEFilterRewriteMultiline(t *testing.T) {
	rw := func([]byte) []byte { return []byte("{\r\n \"a\": 1,\r \"b\": 2\n}") }
	w, err := runFilter(t, []byte("data: {}\n\n"), 1<<20, rw)
	if err != nil {
		t.Fatal(err)
	}
	got := parseSSE(w.buf.Bytes())
	want := []sseEvent{{Data: "{\n \"a\": 1,\n \"b\": 2\n}"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// Events are written and flushed as soon as they are complete, not at the
// end of the stream.
func TestSSEFilterStreamsEachEvent(t *testing.T) {
	w := &chunkWriter{}
	f := NewSSEFilter(w, func() { w.flushes++ }, identity)
	mustWrite := func(s string) {
		t.Helper()
		if _, err := f.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite("data: one\n")
	if w.buf.Len() != 0 {
		t.Fatalf("wrote %q before the event was complete", w.buf.String())
	}
	mustWrite("\n")
	if w.buf.String() != "data: one\n\n" || w.flushes != 1 {
		t.Fatalf("after first event: %q, %d flushes", w.buf.String(), w.flushes)
	}
	mustWrite(": keepalive\n")
	if !strings.HasSuffix(w.buf.String(), ": keepalive\n") || w.flushes != 2 {
		t.Fatalf("keep-alive comment not forwarded at once: %q, %d flushes", w.buf.String(), w.flushes)
	}
	mustWrite("data: two\n\n")
	if w.flushes != 3 {
		t.Fatalf("flushes = %d, want 3", w.flushes)
	}
}

// A CR at the end of one chunk and the LF at the start of the next are one
// line break, not two (which would end the event early).
func TestSSEFilterSplitCRLF(t *testing.T) {
	var seen []string
	rw := func(b []byte) []byte { seen = append(seen, string(b)); return b }
	w := &chunkWriter{}
	f := NewSSEFilter(w, nil, rw)
	for _, c := range []string{"data: a\r", "\ndata: b\r", "\n\r", "\n"} {
		if _, err := f.Write([]byte(c)); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff([]string{"a\nb"}, seen); diff != "" {
		t.Errorf("rewrite saw (-want +got):\n%s", diff)
	}
}

// A BOM-prefixed first line is a data line for clients; the filter must see
// it too, or a list response would pass unfiltered.
func TestSSEFilterSeesDataAfterBOM(t *testing.T) {
	called := false
	_, err := runFilter(t, []byte("\xef\xbb\xbfdata: {}\n\n"), 2, func(b []byte) []byte { called = true; return b })
	if err != nil {
		t.Fatal(err)
	}
	if !called {
		t.Fatal("rewrite was not called for the first event after a BOM")
	}
}

func TestSSEFilterEventTooLarge(t *testing.T) {
	w := &chunkWriter{}
	f := NewSSEFilter(w, nil, identity)
	f.MaxEventSize = 64
	_, err := f.Write([]byte("data: " + strings.Repeat("x", 100)))
	if !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("err = %v, want ErrEventTooLarge", err)
	}
	if _, err := f.Write([]byte("\n\n")); !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("write after failure: %v", err)
	}
	if w.buf.Len() != 0 {
		t.Fatalf("wrote %q", w.buf.String())
	}
	// Many small lines also count.
	f = NewSSEFilter(w, nil, identity)
	f.MaxEventSize = 64
	_, err = f.Write([]byte(strings.Repeat("data: x\n", 20)))
	if !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("err = %v, want ErrEventTooLarge", err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestSSEFilterWriteError(t *testing.T) {
	f := NewSSEFilter(failWriter{}, nil, identity)
	if _, err := f.Write([]byte("data: x\n\n")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("err = %v, want the destination's error", err)
	}
}

// End to end: a tools/list response inside an SSE stream is filtered by id.
func TestSSEWithListFilter(t *testing.T) {
	req, err := Decode([]byte(`{"jsonrpc":"2.0","id":5,"method":"tools/list"}`))
	if err != nil {
		t.Fatal(err)
	}
	lf := NewListFilter(req, func(_, name string) bool { return name != "delete_vm" })
	stream := "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n" +
		"event: message\nid: e2\ndata: {\"jsonrpc\":\"2.0\",\"id\":5,\n" +
		"data: \"result\":{\"tools\":[{\"name\":\"list_vms\"},{\"name\":\"delete_vm\"}]}}\n\n"
	w, err := runFilter(t, []byte(stream), 5, lf.Rewrite)
	if err != nil {
		t.Fatal(err)
	}
	got := parseSSE(w.buf.Bytes())
	want := []sseEvent{
		{Type: "message", Data: `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}`},
		{Type: "message", ID: "e2", Data: "{\"jsonrpc\":\"2.0\",\"id\":5,\n\"result\":{\"tools\":[{\"name\":\"list_vms\"}]}}"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestReleasedFilterRefusesWrites: a released filter's buffers may be in
// another filter's hands; it must fail rather than touch them.
func TestReleasedFilterRefusesWrites(t *testing.T) {
	var out strings.Builder
	f := NewSSEFilter(&out, nil, func(d []byte) []byte { return d })
	if _, err := f.Write([]byte("data: 1\n\n")); err != nil {
		t.Fatal(err)
	}
	f.Release()
	f.Release() // idempotent
	if _, err := f.Write([]byte("data: 2\n\n")); err == nil {
		t.Error("write after Release succeeded")
	}
	if out.String() != "data: 1\n\n" {
		t.Errorf("output = %q", out.String())
	}
}
