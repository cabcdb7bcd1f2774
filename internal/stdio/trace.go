package stdio

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/mcpgate/mcpgate/internal/telemetry"
)

// withTraceMeta passes the gateway's trace context, which reaches the
// bridge as the W3C traceparent (and tracestate) header of the backend
// span, to the child in each request's params._meta, the metadata object
// MCP reserves on every request (the key convention of the MCP SDKs that
// propagate trace context). Only with tracing on: the header is then the
// gateway's own, never the client's. The method, name and arguments the
// policy decided on are unchanged; params that are not an object (or a
// _meta that is not one) are left alone.
func withTraceMeta(r *http.Request, msgs []jsonrpc.Message) {
	tp := r.Header.Get("Traceparent")
	if tp == "" || !telemetry.On() || !validTraceHeader(tp, 55) {
		return
	}
	ts := r.Header.Get("Tracestate")
	if !validTraceHeader(ts, 512) {
		ts = ""
	}
	for _, m := range msgs {
		if req, ok := m.(*jsonrpc.Request); ok {
			if p, ok := addTraceMeta(req.Params, tp, ts); ok {
				req.Params = p
			}
		}
	}
}

// validTraceHeader bounds a trace header value and keeps it to printable
// ASCII (W3C Trace Context §3.2, §3.3).
func validTraceHeader(v string, max int) bool {
	if len(v) > max {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

// addTraceMeta returns params with _meta.traceparent (and tracestate) set.
func addTraceMeta(params json.RawMessage, tp, ts string) (json.RawMessage, bool) {
	obj := map[string]json.RawMessage{}
	if t := bytes.TrimSpace(params); len(t) > 0 && !bytes.Equal(t, []byte("null")) {
		if t[0] != '{' || json.Unmarshal(t, &obj) != nil {
			return nil, false
		}
	}
	meta := map[string]json.RawMessage{}
	if raw, ok := obj["_meta"]; ok {
		if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' || json.Unmarshal(t, &meta) != nil {
			return nil, false
		}
	}
	meta["traceparent"], _ = json.Marshal(tp)
	delete(meta, "tracestate") // the client's, if any, belongs to its own parent
	if ts != "" {
		meta["tracestate"], _ = json.Marshal(ts)
	}
	var err error
	if obj["_meta"], err = json.Marshal(meta); err != nil {
		return nil, false
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return nil, false
	}
	return out, true
}
