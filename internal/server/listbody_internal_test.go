package server

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"
	"testing/iotest"
)

// TestListBodyReadFrom: a JSON list body is read whole whatever the
// announced length says and however the reads come (one byte at a time,
// data with EOF, a failure midway), into the pooled buffer.
func TestListBodyReadFrom(t *testing.T) {
	body := bytes.Repeat([]byte(`{"name":"tool"},`), 5000) // 80 KB: more than the pooled buffer holds
	broken := errors.New("connection reset")
	for _, tc := range []struct {
		name    string
		src     io.Reader
		n       int64
		want    []byte
		wantErr error
	}{
		{"announced", bytes.NewReader(body), int64(len(body)), body, nil},
		{"unannounced", bytes.NewReader(body), -1, body, nil},
		{"announced too short", bytes.NewReader(body), 10, body, nil},
		{"announced too long", bytes.NewReader(body), int64(len(body)) * 2, body, nil},
		{"one byte per read", iotest.OneByteReader(bytes.NewReader(body[:3000])), -1, body[:3000], nil},
		{"data with EOF", iotest.DataErrReader(bytes.NewReader(body)), -1, body, nil},
		{"empty", bytes.NewReader(nil), 0, []byte{}, nil},
		{"failure midway", io.MultiReader(bytes.NewReader(body[:100]), iotest.ErrReader(broken)), -1, body[:100], broken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var lb listBody
			lb.open(nil)
			err := lb.readFrom(tc.src, tc.n)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if !bytes.Equal(lb.in, tc.want) {
				t.Errorf("read %d bytes, want %d", len(lb.in), len(tc.want))
			}
			lb.buf, lb.in = nil, nil // not Close: no filter to release
		})
	}
}

// spaces is an endless JSON whitespace body.
type spaces struct{}

func (spaces) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

// TestListBodyTooLarge: a JSON list answer over maxListBody is refused
// (502, the request's JSON-RPC error), not parsed, and not read further
// than the bound.
func TestListBodyTooLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 64 MiB")
	}
	lp := newListPath(t)
	x := &exchange{msg: lp.msg}
	src := &countingReader{r: spaces{}}
	resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}}, ContentLength: -1,
		Body: io.NopCloser(src), Request: lp.req}
	if err := lp.g.listFilter(x, lp.p)(resp); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	const refused = `{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"backend list response could not be filtered"}}`
	if resp.StatusCode != http.StatusBadGateway || string(got) != refused || !x.refused {
		t.Errorf("got %d %.200s (refused %v), want 502 %s", resp.StatusCode, got, x.refused, refused)
	}
	if src.n > maxListBody+64<<10 {
		t.Errorf("read %d bytes of the body, want about %d", src.n, maxListBody+1)
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
