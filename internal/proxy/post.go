package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/stdio"
)

// post forwards a POST whose body the caller has read (hop.Body) without
// httputil.ReverseProxy, which per request clones every client header only
// for rewrite to drop most of them, wraps the body so that the transport
// writes headers and body in two writes, and arms a timer whose goroutine
// flushes the response headers in a write of their own. The rules are
// rewrite's and ReverseProxy's: the header allow-list, hop-by-hop headers
// (and those the Connection header names) dropped both ways, the gateway's
// X-Forwarded-*, no Go User-Agent, a 101 answered with 502, trailers passed
// on, a flush per write, and a failed copy aborting the client's response.
// Unlike ReverseProxy it does not pass on 1xx interim responses (MCP servers
// send none; the transport skips them). GET streams and DELETE keep going
// through ReverseProxy.
func (b *Backend) post(w http.ResponseWriter, r *http.Request, st *hopState) {
	out := (&http.Request{
		Method:        http.MethodPost,
		URL:           b.postURL(r.URL.RawQuery),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        b.postHeader(r),
		ContentLength: int64(len(st.hop.Body)),
		Host:          b.target.Host,
	}).WithContext(r.Context())
	if len(st.hop.Body) > 0 {
		// A *bytes.Reader behind io.NopCloser is one the transport knows to
		// be in memory: it writes headers and body in one write.
		out.Body = io.NopCloser(bytes.NewReader(st.hop.Body))
	}
	b.present(out.Header, st.hop.Principal, st.cred)
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = emptyUserAgent
	}

	resp, err := b.rt.RoundTrip(out)
	if err != nil {
		b.answerError(w, r, st, err)
		return
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		removeHopByHop(resp.Header, resp.Header["Connection"])
	}
	if err := b.modifyResponse(resp, st); err != nil {
		resp.Body.Close()
		b.answerError(w, r, st, err)
		return
	}
	dst := w.Header()
	for k, vv := range resp.Header {
		if have := dst[k]; len(have) > 0 {
			dst[k] = append(have[:len(have):len(have)], vv...)
		} else {
			dst[k] = vv // the response's own slice: nothing writes into it
		}
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		dst.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	if st.hop.Filter == nil && resp.ContentLength < 0 {
		// A stream (a tool call's SSE answer) may be long in coming: the
		// client learns at once that it is open, as through ReverseProxy. A
		// list answer's headers go with its (one) event.
		rc.Flush()
	}
	if err := copyFlushing(w, rc, resp.Body); err != nil {
		resp.Body.Close()
		if !errors.Is(err, context.Canceled) {
			b.log.WarnContext(r.Context(), "backend response cut short", "backend", b.Name, "err", err)
		}
		if r.Context().Value(http.ServerContextKey) != nil {
			// The client got part of an answer: abort its connection so that
			// it cannot take the part for the whole (as ReverseProxy does).
			panic(http.ErrAbortHandler)
		}
		return
	}
	resp.Body.Close() // now, so that resp.Trailer is filled
	if len(resp.Trailer) == 0 {
		return
	}
	rc.Flush() // trailers need a chunked answer, even a short one
	if len(resp.Trailer) == announced {
		for k, vv := range resp.Trailer {
			dst[k] = append(dst[k], vv...)
		}
		return
	}
	for k, vv := range resp.Trailer {
		for _, v := range vv {
			dst.Add(http.TrailerPrefix+k, v)
		}
	}
}

// copyFlushing copies body to w, flushing after every write so that each
// SSE event reaches the client as it arrives.
func copyFlushing(w io.Writer, rc *http.ResponseController, body io.Reader) error {
	buf := copyBuffers.Get()
	defer copyBuffers.Put(buf)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			rc.Flush()
		}
		switch {
		case rerr == io.EOF:
			return nil
		case rerr != nil:
			return rerr
		}
	}
}

// postURL is the backend's endpoint with the client's query appended, as
// ReverseProxy's Rewrite and SetURL make it.
func (b *Backend) postURL(rawQuery string) *url.URL {
	u := *b.target
	if rawQuery = cleanQuery(rawQuery); rawQuery != "" {
		if u.RawQuery != "" {
			u.RawQuery += "&" + rawQuery
		} else {
			u.RawQuery = rawQuery
		}
	}
	return &u
}

// cleanQuery is ReverseProxy's: a query with a ';' or a bad escape is
// re-encoded from the parameters that parse.
func cleanQuery(s string) string {
	for i := 0; i < len(s); {
		switch s[i] {
		case ';':
			v, _ := url.ParseQuery(s)
			return v.Encode()
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				v, _ := url.ParseQuery(s)
				return v.Encode()
			}
			i += 3
		default:
			i++
		}
	}
	return s
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// emptyUserAgent keeps the transport from sending Go's User-Agent when the
// client sent none; shared, as header values are only read once set.
var emptyUserAgent = []string{""}

// postHeader is the header of the request to the backend: the client's
// allowed headers (sharing their values, which nothing writes into) without
// hop-by-hop ones, the gateway's X-Forwarded-*, and identity encoding.
// present adds the identity headers and the credential.
func (b *Backend) postHeader(r *http.Request) http.Header {
	h := make(http.Header, len(r.Header)+4)
	for k, vv := range r.Header {
		if b.forward[k] || strings.HasPrefix(k, paramHeaderPrefix) {
			h[k] = vv
		}
	}
	removeHopByHop(h, r.Header["Connection"])
	if b.stdio {
		delete(h, stdio.UserHeader) // only the gateway names the user
	}
	h["Accept-Encoding"] = identityEncoding
	xf := make([]string, 2) // one allocation for both values
	xf[0] = r.Host
	h["X-Forwarded-Host"] = xf[0:1:1]
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		xf[1] = ip
		h["X-Forwarded-For"] = xf[1:2:2]
	}
	if r.TLS == nil {
		h["X-Forwarded-Proto"] = protoHTTP
	} else {
		h["X-Forwarded-Proto"] = protoHTTPS
	}
	return h
}

var (
	protoHTTP  = []string{"http"}
	protoHTTPS = []string{"https"}
)

// hopByHop are the hop-by-hop headers of RFC 9110 §7.6.1 and their
// predecessors that ReverseProxy removes, canonical.
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// removeHopByHop deletes from h the hop-by-hop headers and those that
// connection (the Connection field's values) names (RFC 9110 §7.6.1).
func removeHopByHop(h http.Header, connection []string) {
	for _, f := range connection {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				delete(h, textproto.CanonicalMIMEHeaderKey(sf))
			}
		}
	}
	for _, k := range hopByHop {
		delete(h, k)
	}
}

// modifyResponse is what the proxy does to every answer before its headers
// go out (both paths): a 101 is refused, backend cookies are dropped, the
// latency is taken, and the hop's filter runs.
func (b *Backend) modifyResponse(resp *http.Response, st *hopState) error {
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return errSwitchingProtocols
	}
	resp.Header.Del("Set-Cookie") // backend cookies would be scoped to the gateway's origin
	if st == nil {
		return nil
	}
	st.out.Latency = time.Since(st.start)
	if f := st.hop.Filter; f != nil {
		return f(resp)
	}
	return nil
}
