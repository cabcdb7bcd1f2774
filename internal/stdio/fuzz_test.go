package stdio

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// childReading is a child whose stdout is data, read through a buffer of
// bufSize bytes (small sizes exercise lines spanning several fragments).
func childReading(data []byte, maxLine, bufSize int) *child {
	return &child{
		stdout:  bufio.NewReaderSize(bytes.NewReader(data), bufSize),
		maxLine: maxLine,
		log:     slog.New(slog.DiscardHandler),
	}
}

// FuzzStdioFraming: the newline-delimited JSON-RPC reader of a child's
// stdout yields exactly the lines of its input, in order, refuses the first
// line whose message exceeds max_message_bytes, and never yields a longer
// message. Every message the bridge writes to a child is one line (a
// client cannot smuggle a second message into a child's stdin), and it
// reads back as itself.
func FuzzStdioFraming(f *testing.F) {
	msg := `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"}]}}`
	for _, s := range []string{
		msg + "\n",
		msg + "\r\n" + msg,
		"not json\n\n   \n" + msg + "\n",
		`[{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}},` + msg + "]\n",
		`{"jsonrpc":"2.0","id":1,"method":"x","params":{` + "\n" + `}}` + "\n",
		`{"jsonrpc":"2.0","id":"a\u2028b","method":"x","params":{"s":"\u0000\n"}}` + "\n",
		"[]\n[1]\n{}\nnull\n",
		strings.Repeat("x", 300) + "\n" + msg,
		strings.Repeat(" ", 64) + msg + strings.Repeat(" ", 64) + "\n",
		"\xff\xfe" + msg + "\n",
		`{"jsonrpc":"2.0","method":""}` + "\n" + `{"jsonrpc":"2.0","id":1,"method":""}` + "\n",
	} {
		f.Add([]byte(s), uint16(len(msg)), uint8(0))
		f.Add([]byte(s), uint16(len(msg)-1), uint8(3))
		f.Add([]byte(s), uint16(len(msg)+1), uint8(200))
	}
	f.Fuzz(func(t *testing.T, data []byte, maxLine16 uint16, buf8 uint8) {
		maxLine := int(maxLine16)%2048 + 1
		bufSize := 16 + int(buf8) // bufio's minimum is 16

		// Framing against an oracle: split at '\n'.
		c := childReading(data, maxLine, bufSize)
		rest := data
		var lines [][]byte // the lines read, for the message check below
		refused := false
		for len(rest) > 0 && !refused {
			want := rest
			if i := bytes.IndexByte(rest, '\n'); i >= 0 {
				want = rest[:i+1]
			}
			rest = rest[len(want):]
			got, err := c.readLine()
			content := bytes.TrimSuffix(bytes.TrimSuffix(want, []byte("\n")), []byte("\r"))
			if len(content) > maxLine {
				if !errors.Is(err, errLineTooLong) {
					t.Fatalf("line of %d bytes (max %d): got %q, %v", len(content), maxLine, got, err)
				}
				refused = true
				continue
			}
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("readLine = %q, %v; want %q", got, err, want)
			}
			lines = append(lines, got)
		}
		if got, err := c.readLine(); !refused && err != io.EOF {
			t.Fatalf("read %q, %v past the end", got, err)
		}

		// read(): only the JSON-RPC lines, each within the bound.
		c = childReading(data, maxLine, bufSize)
		var want [][]jsonrpc.Message
		for _, l := range lines {
			l = bytes.TrimSpace(l)
			if len(l) == 0 {
				continue
			}
			if msgs, _, err := decodeMessages(l); err == nil {
				want = append(want, msgs)
			}
		}
		for _, w := range want {
			got, err := c.read()
			if err != nil {
				t.Fatalf("read: %v, want %d message(s)", err, len(w))
			}
			if len(got) != len(w) {
				t.Fatalf("read %d messages, want %d", len(got), len(w))
			}
			for i := range got {
				g, _ := jsonrpc.EncodeMessage(got[i])
				e, _ := jsonrpc.EncodeMessage(w[i])
				if !bytes.Equal(g, e) {
					t.Fatalf("read %s, want %s", g, e)
				}
			}
		}
		if got, err := c.read(); err == nil {
			t.Fatalf("read %d extra message(s)", len(got))
		}

		// What the bridge writes is one line per message and reads back as
		// itself (child.write's framing).
		for _, msgs := range want {
			for _, m := range msgs {
				enc, err := jsonrpc.EncodeMessage(m)
				if err != nil {
					continue
				}
				if bytes.ContainsAny(enc, "\r\n") {
					t.Fatalf("encoded message spans lines: %q", enc)
				}
				framed := append(enc, '\n')
				back, err := childReading(framed, len(enc), 16).read()
				if err != nil || len(back) != 1 {
					t.Fatalf("round trip of %s: %v", enc, err)
				}
				if reflect.TypeOf(back[0]) != reflect.TypeOf(m) {
					t.Fatalf("round trip turned %T %s into %T", m, enc, back[0])
				}
				if again, _ := jsonrpc.EncodeMessage(back[0]); !bytes.Equal(again, enc) {
					t.Fatalf("round trip changed %s into %s", enc, again)
				}
				if _, err := childReading(framed, len(enc)-1, 16).read(); !errors.Is(err, errLineTooLong) && len(enc) > 1 {
					t.Fatalf("message of %d bytes read with max %d: %v", len(enc), len(enc)-1, err)
				}
			}
		}
	})
}

// TestReadLineBound: max_message_bytes bounds the message itself, whether
// it ends in "\n", "\r\n" or the end of the stream.
func TestReadLineBound(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"12345\n", true},
		{"12345\r\n", true},
		{"12345", true},
		{"123456\n", false},
		{"123456\r\n", false},
		{"123456", false},
		{"12345\r\r\n", false},
	}
	for _, tc := range tests {
		for _, buf := range []int{16, 4096} {
			got, err := childReading([]byte(tc.in), 5, buf).readLine()
			if ok := err == nil; ok != tc.ok || (ok && string(got) != tc.in) {
				t.Errorf("readLine(%q) with max 5 = %q, %v; want ok=%v", tc.in, got, err, tc.ok)
			}
		}
	}
}

// TestDecodeMessagesNoMethod: a request with an empty method is refused in
// either direction, alone or in a batch; the SDK would re-encode it without
// its method.
func TestDecodeMessagesNoMethod(t *testing.T) {
	for _, in := range []string{
		`{"jsonrpc":"2.0","method":""}`,
		`{"jsonrpc":"2.0","id":1,"method":""}`,
		`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":""}]`,
	} {
		if msgs, _, err := decodeMessages([]byte(in)); err == nil {
			t.Errorf("decodeMessages(%s) = %v, want an error", in, msgs)
		}
	}
	if _, _, err := decodeMessages([]byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`)); err != nil {
		t.Errorf("ping refused: %v", err)
	}
}
