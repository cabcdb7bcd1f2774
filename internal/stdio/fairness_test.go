package stdio

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// initAs starts a session for user by hand; it returns the session id, or
// "" and the status when refused.
func (e *testEnv) initAs(t *testing.T, user string) (string, int) {
	t.Helper()
	resp := e.do(t, rawReq{method: http.MethodPost, body: initialize, header: map[string]string{UserHeader: user}})
	if resp.StatusCode != http.StatusOK {
		return "", resp.StatusCode
	}
	id := resp.Header.Get(sessionIDHeader)
	readEvents(t, resp.Body)
	if r := e.do(t, rawReq{method: http.MethodPost, session: id, body: initialized, header: map[string]string{UserHeader: user}}); r.StatusCode != http.StatusAccepted {
		t.Fatalf("initialized: status %d", r.StatusCode)
	}
	return id, http.StatusOK
}

// usable reports whether user can still use session id.
func (e *testEnv) usable(t *testing.T, user, id string) bool {
	t.Helper()
	resp := e.do(t, rawReq{method: http.MethodPost, session: id, body: toolsList, header: map[string]string{UserHeader: user}})
	return resp.StatusCode == http.StatusOK && len(readEvents(t, resp.Body)) == 1
}

// A user at max_sessions_per_user who initializes again loses their own
// idlest session, never another user's.
func TestPerUserLimitEvictsOwnIdlestSession(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.MaxSessions, c.MaxSessionsPerUser = 4, 2 })
	bob, _ := e.initAs(t, "bob")
	a1, _ := e.initAs(t, "alice")
	a2, _ := e.initAs(t, "alice")
	if !e.usable(t, "alice", a1) { // a1 is now used more recently than a2
		t.Fatal("a1 unusable")
	}
	a3, st := e.initAs(t, "alice")
	if st != http.StatusOK {
		t.Fatalf("third session of alice: %d, want 200 (evicting her idlest)", st)
	}
	waitFor(t, "eviction", func() bool { return e.b.Sessions() == 3 })
	if e.usable(t, "alice", a2) {
		t.Error("alice's idlest session survived")
	}
	for _, id := range []string{a1, a3} {
		if !e.usable(t, "alice", id) {
			t.Errorf("alice's session %s.. was evicted", id[:6])
		}
	}
	if !e.usable(t, "bob", bob) {
		t.Error("bob's session was evicted for alice")
	}
	if !strings.Contains(e.logs.String(), "more than max_sessions_per_user") {
		t.Error("eviction not logged")
	}
}

// When the backend is full, a newcomer takes a session only from a user
// holding at least two more than they would; an evenly shared backend
// refuses with 503; and nobody is evicted by someone over their share.
func TestFullBackendIsSharedFairly(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.MaxSessions, c.MaxSessionsPerUser = 3, 3 })
	h1, _ := e.initAs(t, "hog")
	h2, _ := e.initAs(t, "hog")
	h3, _ := e.initAs(t, "hog")
	e.usable(t, "hog", h1)
	e.usable(t, "hog", h3) // h2 is the hog's idlest

	// The hog is over its share: its own initialize evicts its own session.
	h4, st := e.initAs(t, "hog")
	if st != http.StatusOK {
		t.Fatalf("hog re-initializing: %d", st)
	}
	waitFor(t, "eviction", func() bool { return e.b.Sessions() == 3 })
	if e.usable(t, "hog", h2) {
		t.Fatal("hog's idlest session survived its own eviction")
	}

	// alice (0 sessions) takes one from the hog (3 ≥ 0+2).
	a1, st := e.initAs(t, "alice")
	if st != http.StatusOK {
		t.Fatalf("alice: %d, want 200", st)
	}
	waitFor(t, "eviction", func() bool { return e.b.Sessions() == 3 })
	alive := 0
	for _, id := range []string{h1, h3, h4} {
		if e.usable(t, "hog", id) {
			alive++
		}
	}
	if alive != 2 {
		t.Fatalf("hog has %d sessions after alice's, want 2", alive)
	}
	// bob (0) takes one from the hog too (2 ≥ 0+2): now 1 each.
	b1, st := e.initAs(t, "bob")
	if st != http.StatusOK {
		t.Fatalf("bob: %d, want 200", st)
	}
	waitFor(t, "eviction", func() bool { return e.b.Sessions() == 3 })
	// Evenly shared: carol gets 503, and alice (1) cannot take another
	// from anyone holding 1.
	if _, st := e.initAs(t, "carol"); st != http.StatusServiceUnavailable {
		t.Errorf("carol on an evenly shared backend: %d, want 503", st)
	}
	if _, st := e.initAs(t, "alice"); st != http.StatusServiceUnavailable {
		t.Errorf("alice's second session on an evenly shared backend: %d, want 503", st)
	}
	if !e.usable(t, "alice", a1) || !e.usable(t, "bob", b1) {
		t.Error("a refused initialize evicted a session")
	}
}

// A session answers only to the user who started it.
func TestSessionBelongsToItsUser(t *testing.T) {
	e := newTestEnv(t, nil)
	id, _ := e.initAs(t, "alice")
	for _, rr := range []rawReq{
		{method: http.MethodPost, body: toolsList},
		{method: http.MethodGet, header: map[string]string{"Accept": "text/event-stream"}},
		{method: http.MethodDelete},
	} {
		rr.session = id
		h := map[string]string{UserHeader: "mallory"}
		for k, v := range rr.header {
			h[k] = v
		}
		rr.header = h
		if resp := e.do(t, rr); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s by another user: %d, want 404", rr.method, resp.StatusCode)
		}
		rr.header[UserHeader] = ""
		if resp := e.do(t, rr); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s without a user: %d, want 404", rr.method, resp.StatusCode)
		}
	}
	if !e.usable(t, "alice", id) {
		t.Error("alice lost her session")
	}
}

// exeForOthers copies the test binary where a user other than root can run
// it (go test builds into a private directory).
func exeForOthers(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "mcpgate-stdio-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // t.TempDir's parent is private
		t.Fatal(err)
	}
	path := filepath.Join(dir, "stdio-test-server")
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// run_as starts the child as that user and group, without root's groups.
func TestRunAs(t *testing.T) {
	if os.Geteuid() != 0 {
		if _, err := New(Config{Command: []string{"true"}, RunAs: &RunAs{UID: 65534, GID: 65534}}, nil); err == nil || !strings.Contains(err.Error(), "requires the gateway to run as root") {
			t.Errorf("run_as without root: %v", err)
		}
		t.Skip("needs root to switch users")
	}
	exe := exeForOthers(t)
	e := newTestEnv(t, func(c *Config) {
		c.Command[0] = exe
		c.RunAs = &RunAs{UID: 65534, GID: 65533}
	})
	cs := e.connect(t, clientOpts{})
	status, err := os.ReadFile("/proc/" + strconv.Itoa(childPID(t, cs)) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Uid:\t65534\t65534\t65534\t65534", "Gid:\t65533\t65533\t65533\t65533", "Groups:\t"} {
		line := want[:strings.IndexByte(want, ':')+1]
		if got := fieldLine(string(status), line); strings.TrimSpace(got) != strings.TrimSpace(want) {
			t.Errorf("child status lacks %q:\n%s", want, status)
		}
	}
}

// fieldLine returns the line of a /proc status file starting with prefix.
func fieldLine(status, prefix string) string {
	for _, l := range strings.Split(status, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}
