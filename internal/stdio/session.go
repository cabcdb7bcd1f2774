package stdio

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// exitGrace is how long, after the child exits, its remaining stdout (e.g. a
// last response) may still be relayed before the session ends.
const exitGrace = time.Second

// session is one MCP session: one client, one child process.
type session struct {
	id         string
	user       string // the UserHeader of the request that started it
	b          *Bridge
	c          *child
	log        *slog.Logger
	idle       *time.Timer
	routerDone chan struct{}
	done       chan struct{} // closed when the session ends

	mu          sync.Mutex
	closed      bool
	active      int                    // open HTTP requests; the idle timer runs at 0
	lastUsed    time.Time              // when a request last began or ended
	calls       map[jsonrpc.ID]*stream // in-flight client requests → their POST stream
	tokens      map[jsonrpc.ID]any     // in-flight client request → its progress token
	progress    map[any]*stream        // progress token → POST stream
	posts       []*stream              // open POST streams, oldest first
	get         *stream                // the standalone GET stream, if open
	initID      jsonrpc.ID
	initialized bool
	version     string // negotiated protocol version
}

// stream is the queue of messages for one open SSE response (a POST awaiting
// responses, or the standalone GET stream). The router only appends, so a
// slow client never stalls the child.
type stream struct {
	pending int // unanswered calls; a POST stream ends when it reaches 0
	queue   [][]byte
	bytes   int
	final   bool // send what is queued, then end the response
	wake    chan struct{}
}

func newStream() *stream { return &stream{wake: make(chan struct{}, 1)} }

func (st *stream) push(data []byte) {
	st.queue = append(st.queue, data)
	st.bytes += len(data)
	st.signal()
}

func (st *stream) signal() {
	select {
	case st.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

func newSession(b *Bridge, id, user string, c *child, initID jsonrpc.ID) *session {
	s := &session{
		id:         id,
		user:       user,
		lastUsed:   time.Now(),
		b:          b,
		c:          c,
		log:        c.log,
		routerDone: make(chan struct{}),
		done:       make(chan struct{}),
		calls:      make(map[jsonrpc.ID]*stream),
		tokens:     make(map[jsonrpc.ID]any),
		progress:   make(map[any]*stream),
		initID:     initID,
	}
	s.idle = time.AfterFunc(b.cfg.IdleTimeout, s.idleTimeout)
	return s
}

// start runs the session's relay; called once it is registered, so that
// its ending always finds it to forget.
func (s *session) start() {
	go s.route()
	go s.watchExit()
}

// acquire marks an HTTP request of the session as open; false if the session
// has ended.
func (s *session) acquire() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.active++
	s.lastUsed = time.Now()
	if s.active == 1 {
		s.idle.Stop()
	}
	return true
}

func (s *session) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active--
	s.lastUsed = time.Now()
	if s.active == 0 && !s.closed {
		s.idle.Reset(s.b.cfg.IdleTimeout)
	}
}

// usage reports whether a client call is in flight (initialize included)
// and when the session was last used, in Unix nanoseconds, for eviction.
func (s *session) usage() (busy bool, lastUsed int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls) > 0, s.lastUsed.UnixNano()
}

func (s *session) idleTimeout() {
	s.mu.Lock()
	idle := s.active == 0
	s.mu.Unlock()
	if idle {
		s.close("idle timeout")
	}
}

// close ends the session and stops its child in the background; the Bridge
// waits for that on Close.
func (s *session) close(reason string) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	// Calls still in flight get an error response rather than a stream that
	// just ends.
	for id, st := range s.calls {
		data, err := jsonrpc.EncodeMessage(&jsonrpc.Response{ID: id, Error: &jsonrpc.Error{
			Code: jsonrpc.CodeInternalError, Message: "the MCP server session ended",
		}})
		if err == nil {
			st.pending--
			st.final = st.pending == 0
			st.push(data)
		}
		delete(s.calls, id)
	}
	close(s.done)
	s.idle.Stop()
	s.mu.Unlock()
	s.log.Info("stdio: session closed", "reason", reason)
	s.b.forget(s)
	go func() {
		defer s.b.wg.Done()
		s.c.stop(s.b.killDelay)
		<-s.routerDone
	}()
}

func (s *session) watchExit() {
	<-s.c.exited
	s.log.Info("stdio: child exited", "status", s.c.exitStatus())
	select {
	case <-s.routerDone:
	case <-time.After(exitGrace):
	}
	s.close("child exited")
}

// route relays the child's messages to the client's streams.
func (s *session) route() {
	defer close(s.routerDone)
	for {
		msgs, err := s.c.read()
		if err != nil {
			reason := "child closed stdout"
			if errors.Is(err, errLineTooLong) {
				reason = "child wrote a message larger than max_message_bytes"
			} else if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				reason = "reading child stdout: " + err.Error()
			}
			s.close(reason)
			return
		}
		for _, m := range msgs {
			if s.deliver(m) {
				continue
			}
			if req, ok := m.(*jsonrpc.Request); ok && req.IsCall() {
				// Nobody can answer: tell the child instead of letting it wait forever.
				_ = s.c.write(&jsonrpc.Response{ID: req.ID, Error: &jsonrpc.Error{
					Code:    jsonrpc.CodeInternalError,
					Message: "the client has no open stream to receive server requests",
				}})
			}
		}
	}
}

// deliver queues a message from the child on the stream it belongs to:
//   - a response on the stream of its request;
//   - a progress notification on the stream of the request that carried its
//     token (MCP spec, basic/utilities/progress), so that clients without a
//     standalone GET stream receive it;
//   - anything else (server requests, other notifications) on the standalone
//     GET stream, or, lacking one, on the newest open POST stream (MCP spec,
//     transports: the server MAY send requests and notifications before the
//     response on a POST's SSE stream).
//
// It reports whether the message was queued.
func (s *session) deliver(m jsonrpc.Message) bool {
	data, err := jsonrpc.EncodeMessage(m)
	if err != nil {
		s.log.Warn("stdio: cannot encode child message", "error", err)
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var st *stream
	switch m := m.(type) {
	case *jsonrpc.Response:
		if m.ID == s.initID && !s.initialized && m.Error == nil {
			s.initialized = true
			var res struct {
				ProtocolVersion string `json:"protocolVersion"`
			}
			if json.Unmarshal(m.Result, &res) == nil {
				s.version = res.ProtocolVersion
			}
		}
		st = s.calls[m.ID]
		delete(s.calls, m.ID)
		if tok, ok := s.tokens[m.ID]; ok {
			delete(s.progress, tok)
			delete(s.tokens, m.ID)
		}
		if st == nil {
			s.log.Debug("stdio: dropping response to an unknown or abandoned request")
			return false
		}
		st.pending--
		st.final = st.pending == 0
		st.push(data)
		return true
	case *jsonrpc.Request:
		if m.Method == "notifications/progress" {
			var p struct {
				Token any `json:"progressToken"`
			}
			if json.Unmarshal(m.Params, &p) == nil {
				if tok := tokenKey(p.Token); tok != nil {
					st = s.progress[tok]
				}
			}
		}
	}
	if st == nil {
		st = s.get
	}
	for i := len(s.posts) - 1; st == nil && i >= 0; i-- {
		if !s.posts[i].final {
			st = s.posts[i]
		}
	}
	if st == nil {
		s.log.Debug("stdio: no open client stream for a server message")
		return false
	}
	if st.bytes > s.b.cfg.MaxMessageBytes {
		s.log.Warn("stdio: client is not reading its stream; dropping a server message")
		return false
	}
	st.push(data)
	return true
}

// progressToken returns a request's params._meta.progressToken, or nil.
func progressToken(params json.RawMessage) any {
	if len(params) == 0 {
		return nil
	}
	var p struct {
		Meta struct {
			Token any `json:"progressToken"`
		} `json:"_meta"`
	}
	if json.Unmarshal(params, &p) != nil {
		return nil
	}
	return tokenKey(p.Meta.Token)
}

// tokenKey returns a decoded progress token (a string or a number) as a map
// key, or nil if it is neither.
func tokenKey(v any) any {
	switch v.(type) {
	case string, float64:
		return v
	}
	return nil
}

// errDuplicateID reports a request id already in flight on the session.
var errDuplicateID = errors.New("duplicate in-flight request id")

// openPOST registers a POST stream for the calls among msgs.
func (s *session) openPOST(msgs []jsonrpc.Message) (*stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errSessionGone
	}
	st := newStream()
	seen := make(map[jsonrpc.ID]bool)
	for _, m := range msgs {
		if r, ok := m.(*jsonrpc.Request); ok && r.IsCall() {
			if _, dup := s.calls[r.ID]; dup || seen[r.ID] {
				return nil, errDuplicateID
			}
			seen[r.ID] = true
		}
	}
	for _, m := range msgs {
		r, ok := m.(*jsonrpc.Request)
		if !ok || !r.IsCall() {
			continue
		}
		s.calls[r.ID] = st
		st.pending++
		if tok := progressToken(r.Params); tok != nil {
			if _, taken := s.progress[tok]; !taken {
				s.progress[tok] = st
				s.tokens[r.ID] = tok
			}
		}
	}
	s.posts = append(s.posts, st)
	return st, nil
}

// openGET registers the standalone stream; a newer GET replaces an older one
// (e.g. after a reconnect the server has not noticed yet) and takes over its
// undelivered messages.
func (s *session) openGET() *stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := newStream()
	if old := s.get; old != nil {
		st.queue, st.bytes = old.queue, old.bytes
		old.queue, old.bytes = nil, 0
		old.final = true
		old.signal()
	}
	s.get = st
	return st
}

// unregister forgets st; responses that arrive for its calls later are
// dropped (the client has gone, or they were delivered).
func (s *session) unregister(st *stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.get == st {
		s.get = nil
		return
	}
	for i, p := range s.posts {
		if p == st {
			s.posts = append(s.posts[:i], s.posts[i+1:]...)
			break
		}
	}
	for id, p := range s.calls {
		if p == st {
			delete(s.calls, id)
			if tok, ok := s.tokens[id]; ok {
				delete(s.progress, tok)
				delete(s.tokens, id)
			}
		}
	}
}

// pump writes st's messages to w as server-sent events until st is final,
// the client goes away, or the session ends.
func (s *session) pump(w http.ResponseWriter, r *http.Request, st *stream) {
	defer s.unregister(st)
	rc := http.NewResponseController(w)
	ending := false
	for {
		s.mu.Lock()
		q, final := st.queue, st.final
		st.queue, st.bytes = nil, 0
		s.mu.Unlock()
		for _, data := range q {
			if err := writeEvent(w, data); err != nil {
				return
			}
		}
		if len(q) > 0 {
			if err := rc.Flush(); err != nil {
				return
			}
		}
		if final || ending {
			return
		}
		select {
		case <-st.wake:
		case <-r.Context().Done():
			return
		case <-s.done:
			ending = true // deliver what is already queued, then end
		}
	}
}

// writeEvent writes one SSE event (WHATWG HTML, server-sent events). data is
// compact JSON, so it holds no line breaks.
func writeEvent(w io.Writer, data []byte) error {
	buf := make([]byte, 0, len(data)+24)
	buf = append(buf, "event: message\ndata: "...)
	buf = append(buf, data...)
	buf = append(buf, "\n\n"...)
	_, err := w.Write(buf)
	return err
}

// negotiated returns the protocol version agreed at initialize ("" before).
func (s *session) negotiated() (version string, initialized bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version, s.initialized
}
