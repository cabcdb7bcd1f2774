// Package stdio serves a stdio MCP server (a child process speaking
// newline-delimited JSON-RPC on stdin/stdout) as a streamable-HTTP MCP
// endpoint (MCP spec 2025-03-26 through 2025-11-25, basic/transports), so the
// gateway can put it behind its ordinary HTTP proxy path.
//
// A stdio server serves exactly one client, so every MCP session gets its own
// child: an initialize POST without Mcp-Session-Id starts one, the session id
// addresses it afterwards, DELETE, an idle timeout or Close stop it, and when
// the child exits its session ends (later requests get 404, so the client
// initializes again). There is no per-call timeout.
//
// Messages are relayed, not interpreted, so any method, including ones this
// package has never heard of, passes through. Responses go to the POST that
// carried their request; progress notifications follow their progress token
// to that POST too; other server messages go to the standalone GET stream, or
// the newest open POST stream when there is none.
//
// Out of scope: stateless clients (protocol 2026-07-28 without sessions; a
// POST other than initialize without a session id gets 400) and stream
// resumption (no event ids are sent, so clients never ask for a replay).
//
// Sessions are counted per user, named by the UserHeader the gateway sets
// (requests without it count as one anonymous user): see
// Config.MaxSessionsPerUser for the limits and who is evicted.
//
// The endpoint starts processes on request, so it requires the bearer token
// returned by Token on every request, even on a loopback listener: any local
// process, or a web page through DNS rebinding, could otherwise reach it.
package stdio

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/validate"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

const (
	sessionIDHeader       = "Mcp-Session-Id"
	protocolVersionHeader = "Mcp-Protocol-Version"
	// defaultKillDelay is how long a child may take to exit after SIGTERM.
	defaultKillDelay = 5 * time.Second
	// codeServerError is the JSON-RPC implementation-defined server error.
	codeServerError = -32000
)

// UserHeader carries an opaque key of the user a request is made for. The
// gateway's proxy sets it (and drops any client copy); the bridge counts
// sessions per user with it and serves a session only to its user. Only a
// holder of the bridge's token can set it.
const UserHeader = "Mcpgate-Stdio-User"

var errSessionGone = errors.New("session not found")

// Bridge is an http.Handler serving one stdio MCP server command.
type Bridge struct {
	cfg       Config
	path      string   // resolved program
	env       []string // the child's whole environment
	auth      []byte   // expected Authorization header value
	token     string
	log       *slog.Logger
	killDelay time.Duration

	mu       sync.Mutex
	sessions map[string]*session
	starting int            // sessions whose child is being started
	perUser  map[string]int // sessions and starting sessions per user
	closed   bool
	wg       sync.WaitGroup // one per started child, done once it is reaped
}

// New checks cfg (after applying defaults) and that its command can be found;
// children start only when clients initialize.
func New(cfg Config, log *slog.Logger) (*Bridge, error) {
	cfg.SetDefaults()
	var p validate.Problems
	cfg.Validate("", &p)
	if err := p.Err(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	if err := checkRunAs(cfg.RunAs); err != nil {
		return nil, err
	}
	path, err := resolveCommand(cfg.Command[0], cfg.Dir)
	if err != nil {
		return nil, err
	}
	if cfg.Dir != "" {
		if fi, err := os.Stat(cfg.Dir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("stdio: dir %q is not a directory", cfg.Dir)
		}
	}
	token := rand.Text()
	return &Bridge{
		cfg:       cfg,
		path:      path,
		env:       childEnv(cfg.Env),
		auth:      []byte("Bearer " + token),
		token:     token,
		log:       log,
		killDelay: defaultKillDelay,
		sessions:  make(map[string]*session),
		perUser:   make(map[string]int),
	}, nil
}

// resolveCommand finds a bare program name in PATH now, so that a typo fails
// at startup rather than at the first client; a path is checked to exist
// (relative to dir, as exec does).
func resolveCommand(name, dir string) (string, error) {
	if !strings.ContainsRune(name, filepath.Separator) && !strings.ContainsRune(name, '/') {
		path, err := exec.LookPath(name)
		if err != nil {
			return "", fmt.Errorf("stdio: command %q: %w", name, err)
		}
		return path, nil
	}
	check := name
	if !filepath.IsAbs(name) && dir != "" {
		check = filepath.Join(dir, name)
	}
	if _, err := os.Stat(check); err != nil {
		return "", fmt.Errorf("stdio: command %q: %w", name, err)
	}
	return name, nil
}

// childEnv is PATH and HOME from the gateway plus the configured variables;
// nothing else of the gateway's environment (its secrets) is passed on.
func childEnv(extra map[string]string) []string {
	env := map[string]string{}
	for _, k := range []string{"PATH", "HOME"} {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	maps.Copy(env, extra)
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

// Token is the bearer token every request must carry
// ("Authorization: Bearer <token>"); it is random per Bridge.
func (b *Bridge) Token() string { return b.token }

// Sessions is the number of live sessions (running children).
func (b *Bridge) Sessions() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sessions)
}

// Close ends every session and returns once every child has been reaped
// (SIGTERM, then SIGKILL after 5 s). Requests after Close get 503.
func (b *Bridge) Close() error {
	b.mu.Lock()
	b.closed = true
	all := slices.Collect(maps.Values(b.sessions))
	b.mu.Unlock()
	for _, s := range all {
		s.close("bridge closed")
	}
	b.wg.Wait()
	return nil
}

func (b *Bridge) forget(s *session) {
	b.mu.Lock()
	if b.sessions[s.id] == s {
		b.remove(s)
	}
	b.mu.Unlock()
}

// remove drops s from the books; b.mu is held.
func (b *Bridge) remove(s *session) {
	delete(b.sessions, s.id)
	b.release(s.user)
}

// release gives back one of user's slots; b.mu is held.
func (b *Bridge) release(user string) {
	if b.perUser[user]--; b.perUser[user] <= 0 {
		delete(b.perUser, user)
	}
}

// lookup returns the session id names if it belongs to the request's user;
// another user's session is reported as unknown.
func (b *Bridge) lookup(id string, r *http.Request) *session {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s := b.sessions[id]; s != nil && s.user == r.Header.Get(UserHeader) {
		return s
	}
	return nil
}

// ServeHTTP implements the streamable HTTP transport (MCP spec,
// basic/transports) for the configured stdio server.
func (b *Bridge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), b.auth) != 1 {
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeError(w, http.StatusUnauthorized, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, "unauthorized")
		return
	}
	switch r.Method {
	case http.MethodPost:
		b.servePOST(w, r)
	case http.MethodGet:
		b.serveGET(w, r)
	case http.MethodDelete:
		b.serveDELETE(w, r)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE") // RFC 9110 §15.5.6
		writeError(w, http.StatusMethodNotAllowed, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, "method not allowed")
	}
}

func (b *Bridge) servePOST(w http.ResponseWriter, r *http.Request) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, "Content-Type must be application/json")
		return
	}
	// MCP spec, transports: the client MUST accept both.
	if jsonOK, sseOK := accepts(r); !jsonOK || !sseOK {
		writeError(w, http.StatusNotAcceptable, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, "Accept must include application/json and text/event-stream")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(b.cfg.MaxMessageBytes)))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, "request body too large")
			return
		}
		writeError(w, http.StatusBadRequest, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, "cannot read request body")
		return
	}
	msgs, batch, err := decodeMessages(bytes.TrimSpace(body))
	if err != nil {
		writeError(w, http.StatusBadRequest, jsonrpc.ID{}, jsonrpc.CodeParseError, "malformed JSON-RPC message")
		return
	}
	withTraceMeta(r, msgs)
	if id := r.Header.Get(sessionIDHeader); id != "" {
		s := b.lookup(id, r)
		if s == nil {
			writeError(w, http.StatusNotFound, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, "session not found")
			return
		}
		s.servePOST(w, r, msgs, batch, false)
		return
	}
	req, ok := msgs[0].(*jsonrpc.Request)
	if batch || !ok || req.Method != "initialize" || !req.IsCall() {
		// MCP spec, transports: requests other than initialize need the session id.
		writeError(w, http.StatusBadRequest, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, "missing Mcp-Session-Id (only a single initialize request may start a session)")
		return
	}
	s, status, msg := b.startSession(req.ID, r.Header.Get(UserHeader))
	if s == nil {
		writeError(w, status, req.ID, codeServerError, msg)
		return
	}
	s.servePOST(w, r, msgs, false, true)
	if _, ok := s.negotiated(); !ok {
		s.close("initialize failed") // the client cannot use this session
	}
}

// startSession starts a child for a new session of user, or returns the
// HTTP status and message to fail with. A session may have to give way
// first (see admit).
func (b *Bridge) startSession(initID jsonrpc.ID, user string) (*session, int, string) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, http.StatusServiceUnavailable, "shutting down"
	}
	victim, ok := b.admit(user)
	if !ok {
		mine := b.perUser[user]
		b.mu.Unlock()
		b.log.Warn("stdio: session limit reached", "max_sessions", b.cfg.MaxSessions,
			"max_sessions_per_user", b.cfg.MaxSessionsPerUser, "user_sessions", mine)
		return nil, http.StatusServiceUnavailable, "too many sessions"
	}
	if victim != nil {
		b.remove(victim)
	}
	b.starting++
	b.perUser[user]++
	b.wg.Add(1) // under mu while not closed, so never concurrent with Close's Wait
	b.mu.Unlock()
	if victim != nil {
		reason := "evicted: the backend is full and another user needs a session"
		if victim.user == user {
			reason = "evicted: the user opened more than max_sessions_per_user sessions"
		}
		victim.close(reason)
	}

	id := rand.Text()
	c, err := startChild(b.path, b.cfg.Command[1:], b.env, b.cfg.Dir, b.cfg.RunAs, b.cfg.MaxMessageBytes, b.log.With("session", id[:8]))
	b.mu.Lock()
	b.starting--
	if err != nil {
		b.release(user)
		b.mu.Unlock()
		b.wg.Done()
		b.log.Error("stdio: cannot start server", "command", b.cfg.Command[0], "error", err)
		return nil, http.StatusBadGateway, "backend failed to start"
	}
	s := newSession(b, id, user, c, initID)
	closed := b.closed
	if closed {
		b.release(user)
	} else {
		b.sessions[id] = s
	}
	b.mu.Unlock()
	s.start()
	if closed {
		s.close("bridge closed")
		return nil, http.StatusServiceUnavailable, "shutting down"
	}
	s.log.Info("stdio: session started")
	return s, 0, ""
}

// admit decides whether user may start a session, and which session must
// end first to make room (nil: none). b.mu is held.
//
//   - A user at max_sessions_per_user gives up their own idlest session.
//   - When the backend is full, the user holding the most sessions gives up
//     their idlest session without a call in flight, but only if they hold
//     at least two more than user: nobody loses a session to someone who
//     would then hold more than they do, so a full backend shared evenly
//     stays as it is (503), and no user can evict another by exceeding
//     their share.
func (b *Bridge) admit(user string) (victim *session, ok bool) {
	mine := b.perUser[user]
	if mine >= b.cfg.MaxSessionsPerUser {
		victim = b.idlest(func(s *session) bool { return s.user == user }, true)
		return victim, victim != nil
	}
	if len(b.sessions)+b.starting < b.cfg.MaxSessions {
		return nil, true
	}
	richest, most := "", 0
	for u, n := range b.perUser {
		if u != user && (n > most || n == most && u < richest) {
			richest, most = u, n
		}
	}
	if most < mine+2 {
		return nil, false
	}
	victim = b.idlest(func(s *session) bool { return s.user == richest }, false)
	return victim, victim != nil
}

// idlest returns the session among those matching that was used least
// recently, preferring sessions without a call in flight; busy ones only if
// takeBusy. b.mu is held.
func (b *Bridge) idlest(match func(*session) bool, takeBusy bool) *session {
	var best *session
	var bestBusy bool
	var bestUsed int64
	for _, s := range b.sessions {
		if !match(s) {
			continue
		}
		busy, used := s.usage()
		if busy && !takeBusy {
			continue
		}
		if best == nil || !busy && bestBusy || busy == bestBusy && used < bestUsed {
			best, bestBusy, bestUsed = s, busy, used
		}
	}
	return best
}

func (s *session) servePOST(w http.ResponseWriter, r *http.Request, msgs []jsonrpc.Message, batch, initialize bool) {
	if !s.acquire() {
		writeError(w, http.StatusNotFound, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, "session not found")
		return
	}
	defer s.release()
	if version, ok := s.negotiated(); ok {
		// MCP spec 2025-06-18, transports: an unsupported version header is a 400.
		if v := r.Header.Get(protocolVersionHeader); v != "" && version != "" && v != version {
			writeError(w, http.StatusBadRequest, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, "Mcp-Protocol-Version does not match the negotiated version")
			return
		}
		if batch && version >= "2025-06-18" {
			writeError(w, http.StatusBadRequest, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, "JSON-RPC batches are not supported from protocol 2025-06-18 on")
			return
		}
	}
	hasCall := slices.ContainsFunc(msgs, func(m jsonrpc.Message) bool {
		r, ok := m.(*jsonrpc.Request)
		return ok && r.IsCall()
	})
	if !hasCall {
		// Notifications and responses only: 202 with no body.
		if err := s.c.write(msgs...); err != nil {
			s.close("writing to child failed")
			writeError(w, http.StatusNotFound, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, "session not found")
			return
		}
		w.WriteHeader(http.StatusAccepted)
		return
	}
	st, err := s.openPOST(msgs)
	if err != nil {
		if errors.Is(err, errDuplicateID) {
			writeError(w, http.StatusBadRequest, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, err.Error())
		} else {
			writeError(w, http.StatusNotFound, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, "session not found")
		}
		return
	}
	if err := s.c.write(msgs...); err != nil {
		s.unregister(st)
		s.close("writing to child failed")
		writeError(w, http.StatusNotFound, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, "session not found")
		return
	}
	// Headers go out at once, so a proxy waiting for them is not cut by its
	// response-header timeout while a slow tool runs.
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-transform")
	if initialize {
		h.Set(sessionIDHeader, s.id)
	}
	w.WriteHeader(http.StatusOK)
	_ = http.NewResponseController(w).Flush()
	s.pump(w, r, st)
}

func (b *Bridge) serveGET(w http.ResponseWriter, r *http.Request) {
	if _, sseOK := accepts(r); !sseOK {
		writeError(w, http.StatusNotAcceptable, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, "Accept must include text/event-stream")
		return
	}
	id := r.Header.Get(sessionIDHeader)
	if id == "" {
		writeError(w, http.StatusBadRequest, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, "missing Mcp-Session-Id")
		return
	}
	s := b.lookup(id, r)
	if s == nil || !s.acquire() {
		writeError(w, http.StatusNotFound, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, "session not found")
		return
	}
	defer s.release()
	st := s.openGET()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-transform")
	w.WriteHeader(http.StatusOK)
	_ = http.NewResponseController(w).Flush()
	s.pump(w, r, st)
}

func (b *Bridge) serveDELETE(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get(sessionIDHeader)
	if id == "" {
		writeError(w, http.StatusBadRequest, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, "missing Mcp-Session-Id")
		return
	}
	s := b.lookup(id, r)
	if s == nil {
		writeError(w, http.StatusNotFound, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, "session not found")
		return
	}
	s.close("deleted by client")
	w.WriteHeader(http.StatusNoContent)
}

// accepts reports whether the Accept header admits JSON and SSE responses.
func accepts(r *http.Request) (jsonOK, sseOK bool) {
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			switch strings.ToLower(strings.TrimSpace(mt)) {
			case "application/json", "application/*":
				jsonOK = true
			case "text/event-stream", "text/*":
				sseOK = true
			case "*/*":
				jsonOK, sseOK = true, true
			}
		}
	}
	return jsonOK, sseOK
}

// writeError answers with a JSON-RPC error body (mcp.WriteError); id is null
// when the request's id is unknown (JSON-RPC 2.0 §5).
func writeError(w http.ResponseWriter, status int, id jsonrpc.ID, code int64, msg string) {
	var raw json.RawMessage
	if id.IsValid() {
		raw, _ = json.Marshal(id.Raw())
	}
	mcp.WriteError(w, status, raw, int(code), msg)
}
