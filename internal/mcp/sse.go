package mcp

import (
	"bytes"
	"errors"
	"io"
	"sync"
)

// DefaultMaxEventSize bounds one SSE event held by an SSEFilter.
const DefaultMaxEventSize = 16 << 20

// ErrEventTooLarge is returned by SSEFilter.Write when one event exceeds the
// size limit. The stream must be aborted: the event cannot be filtered.
var ErrEventTooLarge = errors.New("SSE event exceeds the size limit")

var bom = []byte("\xef\xbb\xbf")

// SSEFilter parses a text/event-stream incrementally, as the WHATWG HTML
// "server-sent events" parser does (lines end in CRLF, LF or CR; a blank line
// ends an event; "data:" lines are joined with LF; lines starting with ':'
// are comments; a leading UTF-8 BOM is ignored), and lets a rewrite function
// replace the data of each event. Each event is written to dst, and flush is
// called, as soon as its terminating blank line has been read: the stream is
// never buffered beyond one event.
//
// Events whose data the rewrite function leaves unchanged are forwarded byte
// for byte. Changed events are re-serialized with LF line endings, their
// other fields (id, event, retry, comments) kept in order. A nil result from
// rewrite drops the event. Comment lines that arrive between events are
// forwarded at once, so keep-alives are not delayed. An incomplete event at
// the end of the stream is discarded, as a client would discard it.
type SSEFilter struct {
	dst     io.Writer
	flush   func()
	rewrite func(data []byte) []byte
	// MaxEventSize bounds the bytes of one event (default DefaultMaxEventSize).
	MaxEventSize int

	raw       []byte // bytes of the current event as received
	lineAt    int    // where the current line starts in raw: lines are spans of raw, not copies
	fields    []span // non-data lines of the current event, in order, as spans of raw
	dataAt    int    // index in fields where data lines go; -1: no data yet
	data      []byte // data lines joined by LF
	out       []byte // a rewritten event, reused across events
	skipLF    bool   // previous byte was CR: a following LF belongs to it
	firstLine bool   // the current line is the first of the stream (BOM check)
	err       error
	bufs      *eventBuffers // where Release returns the buffers
}

// eventBuffers are an SSEFilter's growable buffers, recycled by Release: a
// filter per response would otherwise grow them from zero for every list.
type eventBuffers struct {
	raw, data, out []byte
	fields         []span
}

var eventBufferPool = sync.Pool{New: func() any { return new(eventBuffers) }}

// maxPooledBuffer keeps an occasional huge event from pinning its memory.
const maxPooledBuffer = 1 << 20

// NewSSEFilter returns a filter writing to dst. flush may be nil. Call
// Release when done with it.
func NewSSEFilter(dst io.Writer, flush func(), rewrite func(data []byte) []byte) *SSEFilter {
	if flush == nil {
		flush = func() {}
	}
	b := eventBufferPool.Get().(*eventBuffers)
	return &SSEFilter{dst: dst, flush: flush, rewrite: rewrite, MaxEventSize: DefaultMaxEventSize, dataAt: -1, firstLine: true,
		raw: b.raw[:0], data: b.data[:0], out: b.out[:0], fields: b.fields[:0], bufs: b}
}

// Release returns the filter's buffers for reuse; the filter must not be
// used afterwards.
func (f *SSEFilter) Release() {
	if f.err == errReleased {
		return
	}
	keep := func(b []byte) []byte {
		if cap(b) > maxPooledBuffer {
			return nil
		}
		return b[:0]
	}
	b := f.bufs
	b.raw, b.data, b.out, b.fields = keep(f.raw), keep(f.data), keep(f.out), f.fields[:0]
	if cap(b.fields) > maxPooledBuffer/16 {
		b.fields = nil
	}
	eventBufferPool.Put(b)
	f.raw, f.data, f.out, f.fields, f.bufs = nil, nil, nil, nil, nil
	f.err = errReleased
}

var errReleased = errors.New("SSE filter released")

// Write consumes the next chunk of the stream.
func (f *SSEFilter) Write(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	n := len(p)
	for len(p) > 0 {
		if f.skipLF {
			f.skipLF = false
			if p[0] == '\n' {
				f.raw = append(f.raw, '\n')
				f.lineAt = len(f.raw)
				p = p[1:]
				continue
			}
		}
		j := lineEnd(p)
		if j < 0 {
			f.raw = append(f.raw, p...)
			break
		}
		f.raw = append(f.raw, p[:j+1]...)
		f.skipLF = p[j] == '\r'
		p = p[j+1:]
		err := f.endLine()
		f.lineAt = len(f.raw) // 0 after an event ended
		if err != nil {
			f.err = err
			return n - len(p), err
		}
	}
	if max := f.maxSize(); len(f.raw) > max {
		f.err = ErrEventTooLarge
		return n, f.err
	}
	return n, nil
}

func (f *SSEFilter) maxSize() int {
	if f.MaxEventSize > 0 {
		return f.MaxEventSize
	}
	return DefaultMaxEventSize
}

// Close discards an incomplete trailing event. It does not close dst.
func (f *SSEFilter) Close() error {
	f.reset()
	return f.err
}

func (f *SSEFilter) endLine() error {
	line := f.raw[f.lineAt : len(f.raw)-1]
	if f.firstLine {
		f.firstLine = false
		line = bytes.TrimPrefix(line, bom)
	}
	// Where line is in raw, which ends with its one-byte terminator (the
	// LF of a CRLF comes later): non-data lines are kept as spans of raw,
	// not copied.
	at := span{len(f.raw) - 1 - len(line), len(f.raw) - 1}
	if len(f.raw) > f.maxSize() {
		return ErrEventTooLarge
	}
	switch {
	case len(line) == 0:
		return f.dispatch()
	case line[0] == ':':
		if f.dataAt < 0 && len(f.fields) == 0 {
			// A comment between events (keep-alive): forward it now.
			return f.emit(f.raw)
		}
		f.fields = append(f.fields, at)
	default:
		name, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			name, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		if string(name) == "data" {
			if f.dataAt < 0 {
				f.dataAt = len(f.fields)
			} else {
				f.data = append(f.data, '\n')
			}
			f.data = append(f.data, value...)
			return nil
		}
		f.fields = append(f.fields, at)
	}
	return nil
}

func (f *SSEFilter) dispatch() error {
	if f.dataAt < 0 {
		return f.emit(f.raw)
	}
	if f.data == nil {
		f.data = []byte{} // an empty data field is still an event; nil means "drop"
	}
	out := f.rewrite(f.data)
	switch {
	case out == nil:
		f.reset()
		return nil
	case bytes.Equal(out, f.data):
		return f.emit(f.raw)
	}
	b := bytes.NewBuffer(f.out[:0])
	b.Grow(len(out) + len(f.raw))
	for i := 0; i <= len(f.fields); i++ {
		if i == f.dataAt {
			writeDataLines(b, out)
		}
		if i < len(f.fields) {
			b.Write(f.fields[i].of(f.raw))
			b.WriteByte('\n')
		}
	}
	b.WriteByte('\n')
	f.out = b.Bytes()
	return f.emit(f.out)
}

// writeDataLines writes data as "data:" lines; any CR, LF or CRLF in data
// starts a new line (in JSON these can only be whitespace).
func writeDataLines(b *bytes.Buffer, data []byte) {
	for {
		j := lineEnd(data)
		b.WriteString("data: ")
		if j < 0 {
			b.Write(data)
			b.WriteByte('\n')
			return
		}
		b.Write(data[:j])
		b.WriteByte('\n')
		if data[j] == '\r' && j+1 < len(data) && data[j+1] == '\n' {
			j++
		}
		data = data[j+1:]
	}
}

// lineEnd returns the index of the first CR or LF in p, or -1. Two
// IndexByte calls instead of IndexAny, which tests byte by byte: an event
// holding a 100-tool list is one long line.
func lineEnd(p []byte) int {
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		return bytes.IndexByte(p, '\r')
	}
	if j := bytes.IndexByte(p[:i], '\r'); j >= 0 {
		return j
	}
	return i
}

func (f *SSEFilter) emit(b []byte) error {
	_, err := f.dst.Write(b)
	f.reset()
	if err != nil {
		return err
	}
	f.flush()
	return nil
}

func (f *SSEFilter) reset() {
	f.raw = f.raw[:0]
	f.lineAt = 0
	f.fields = f.fields[:0]
	f.data = f.data[:0]
	f.dataAt = -1
}
