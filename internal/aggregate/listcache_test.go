package aggregate

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/policy"
)

// TestListKeptUntilChanged: a backend's list is asked for once per backend
// session, and again only after that backend's tools/list_changed (the
// other backend's stays kept); the list after the change has the new tool.
func TestListKeptUntilChanged(t *testing.T) {
	f := newFixture(t, Config{})
	changed := make(chan struct{}, 4)
	cs := f.connect(t, &sdk.ClientOptions{
		ToolListChangedHandler: func(context.Context, *sdk.ToolListChangedRequest) { changed <- struct{}{} },
	})
	want := []string{"k8s__delete_pod", "k8s__get_nodes", "k8s__get_pods", "vsphere__get_vm", "vsphere__power_off"}
	if got := toolNames(t, cs); !slices.Equal(got, want) {
		t.Fatalf("tools %v, want %v", got, want)
	}
	v, k := f.vsphere.listed.Load(), f.k8s.listed.Load()
	if v != 1 || k != 3 { // k8s pages one tool at a time
		t.Fatalf("backend lists: vsphere %d, k8s %d; want 1 and 3", v, k)
	}
	for range 3 {
		if got := toolNames(t, cs); !slices.Equal(got, want) {
			t.Fatalf("kept tools %v, want %v", got, want)
		}
	}
	if v2, k2 := f.vsphere.listed.Load(), f.k8s.listed.Load(); v2 != v || k2 != k {
		t.Errorf("lists asked again without a change: vsphere %d, k8s %d", v2, k2)
	}

	sdk.AddTool(f.k8s.last.Load(), &sdk.Tool{Name: "get_new"}, func(context.Context, *sdk.CallToolRequest, echoIn) (*sdk.CallToolResult, any, error) {
		return &sdk.CallToolResult{}, nil, nil
	})
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("no tools/list_changed")
	}
	got := toolNames(t, cs)
	if !slices.Contains(got, "k8s__get_new") || len(got) != 6 {
		t.Errorf("tools after list_changed: %v", got)
	}
	if f.k8s.listed.Load() == k {
		t.Error("k8s's list was not asked for again after its list_changed")
	}
	if f.vsphere.listed.Load() != v {
		t.Error("vsphere's list was asked for again after k8s's list_changed")
	}
}

// TestListNotKeptWithoutListChanged: a backend that does not declare
// listChanged would not say that its list changed, so its list is asked
// for on every client list (and the other backend's is still kept).
func TestListNotKeptWithoutListChanged(t *testing.T) {
	f := newFixture(t, Config{})
	f.vsphere.static = true
	f.vsphere.up()
	cs := f.connect(t, nil)
	for range 3 {
		if got := toolNames(t, cs); len(got) != 5 {
			t.Fatalf("tools %v", got)
		}
	}
	if n := f.vsphere.listed.Load(); n != 3 {
		t.Errorf("vsphere (no listChanged) listed %d times, want 3", n)
	}
	if n := f.k8s.listed.Load(); n != 3 {
		t.Errorf("k8s (listChanged) listed %d times, want 3 (its 3 pages, once)", n)
	}
}

// TestKeptListFollowsRoles: on one client session, a kept list is filtered
// again for the caller's current roles and the current policy: a caller
// whose roles shrink, or a policy reload that takes a grant away, never
// gets the merged page made for more, though the backends are not asked
// again.
func TestKeptListFollowsRoles(t *testing.T) {
	f := newFixture(t, Config{})
	cs := f.connect(t, nil)
	all := []string{"k8s__delete_pod", "k8s__get_nodes", "k8s__get_pods", "vsphere__get_vm", "vsphere__power_off"}
	if got := toolNames(t, cs); !slices.Equal(got, all) {
		t.Fatalf("alice (ops): %v", got)
	}
	lists := f.vsphere.listed.Load() + f.k8s.listed.Load()

	// The same user (same session) with the dev role only.
	dev := *alice
	dev.Groups = []string{"dev"}
	f.identity.Store(&dev)
	if got, want := toolNames(t, cs), []string{"k8s__get_nodes", "k8s__get_pods"}; !slices.Equal(got, want) {
		t.Errorf("alice as dev: %v, want %v", got, want)
	}
	f.identity.Store(alice)
	if got := toolNames(t, cs); !slices.Equal(got, all) {
		t.Errorf("alice as ops again: %v", got)
	}

	// Views that differ in nothing but the policy's generation (the same
	// roles, backends and backend pages), then in nothing but the caller's
	// roles.
	reload := func(roles map[string]policy.Role) {
		t.Helper()
		cfg := policy.Config{Roles: roles, Groups: map[string][]string{"ops": {"ops"}, "narrow": {"narrow"}}}
		cfg.SetDefaults()
		e, err := policy.Compile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		f.e.policy.Store(e)
	}
	grants := func(vsphere, k8s string) policy.Role {
		return policy.Role{Backends: map[string]policy.Grants{"vsphere": {Tools: []string{vsphere}}, "k8s": {Tools: []string{k8s}}}}
	}
	reload(map[string]policy.Role{"ops": grants("*", "*"), "narrow": grants("get_vm", "get_pods")})
	if got := toolNames(t, cs); !slices.Equal(got, all) {
		t.Errorf("alice (ops) after a reload: %v", got)
	}
	reload(map[string]policy.Role{"ops": grants("get_vm", "get_nodes"), "narrow": grants("get_vm", "get_pods")})
	if got, want := toolNames(t, cs), []string{"k8s__get_nodes", "vsphere__get_vm"}; !slices.Equal(got, want) {
		t.Errorf("alice (ops) after a reload that narrows ops: %v, want %v", got, want)
	}
	narrow := *alice
	narrow.Groups = []string{"narrow"}
	f.identity.Store(&narrow)
	if got, want := toolNames(t, cs), []string{"k8s__get_pods", "vsphere__get_vm"}; !slices.Equal(got, want) {
		t.Errorf("alice as narrow: %v, want %v", got, want)
	}
	if n := f.vsphere.listed.Load() + f.k8s.listed.Load(); n != lists {
		t.Errorf("backends asked %d more times; their lists did not change", n-lists)
	}
}

// TestPageCacheBounds: a backend session keeps at most maxCachedPages
// pages and maxCachedItems items of one list; a page fetched before a
// list_changed is not kept; the pages of an earlier backend session are
// not served for a new one.
func TestPageCacheBounds(t *testing.T) {
	c := pageCache{budget: new(atomic.Int64)}
	cs := new(sdk.ClientSession)
	gen := c.begin(kindTools)
	for i := range maxCachedPages {
		if c.store(cs, kindTools, gen, strings.Repeat("c", i), nil, 1, "") == 0 {
			t.Fatalf("page %d not kept", i)
		}
	}
	if c.store(cs, kindTools, gen, "one-more", nil, 1, "") != 0 {
		t.Error("a page over maxCachedPages was kept")
	}
	if _, ok := c.get(cs, kindTools, "one-more"); ok {
		t.Error("a page over maxCachedPages is served")
	}
	if c.store(cs, kindPrompts, gen, "", nil, maxCachedItems+1, "") != 0 {
		t.Error("a page over maxCachedItems was kept")
	}
	if c.store(cs, kindPrompts, gen, "", nil, maxCachedItems, "") == 0 {
		t.Error("a page of maxCachedItems was not kept")
	}

	// A fetch that began before a list_changed is not kept.
	gen = c.begin(kindResources)
	c.invalidate(kindResources, kindTemplates)
	if c.store(cs, kindResources, gen, "", nil, 1, "") != 0 {
		t.Error("a page fetched before list_changed was kept")
	}
	if _, ok := c.get(cs, kindTools, ""); !ok {
		t.Error("resources' list_changed dropped the tools")
	}
	c.invalidate(kindTools)
	if _, ok := c.get(cs, kindTools, ""); ok {
		t.Error("tools kept after tools' list_changed")
	}

	// Another backend session: nothing of the earlier one.
	c.store(cs, kindTools, c.begin(kindTools), "", nil, 1, "")
	other := new(sdk.ClientSession)
	if _, ok := c.get(other, kindTools, ""); ok {
		t.Error("a page of another backend session is served")
	}
	c.store(other, kindPrompts, c.begin(kindPrompts), "x", nil, 1, "")
	if _, ok := c.get(cs, kindTools, ""); ok {
		t.Error("a page of the old backend session is served after the new one stored")
	}
	if _, ok := c.get(nil, kindPrompts, "x"); ok {
		t.Error("a page is served without a backend session")
	}
}

// TestMergedCacheBounds: a session keeps at most maxMerged merged pages per
// list kind, the oldest going first, and an entry is found only by all of
// its inputs.
func TestMergedCacheBounds(t *testing.T) {
	m := mergedCache{budget: new(atomic.Int64)}
	keys, st := []string{"a", "b"}, []uint64{1, 2}
	for i := range maxMerged + 1 {
		m.put(kindTools, &mergedEntry{gen: uint64(i), keys: keys, stamps: st})
	}
	if n := len(m.entries[kindTools]); n != maxMerged {
		t.Errorf("%d entries, want %d", n, maxMerged)
	}
	if _, ok := m.get(kindTools, 0, "", 0, keys, st); ok {
		t.Error("the oldest entry was not evicted")
	}
	if _, ok := m.get(kindTools, maxMerged, "", 0, keys, st); !ok {
		t.Error("the newest entry is missing")
	}
	for name, miss := range map[string]func() bool{
		"kind":    func() bool { _, ok := m.get(kindPrompts, maxMerged, "", 0, keys, st); return ok },
		"cursor":  func() bool { _, ok := m.get(kindTools, maxMerged, "c", 0, keys, st); return ok },
		"allowed": func() bool { _, ok := m.get(kindTools, maxMerged, "", 1, keys, st); return ok },
		"keys":    func() bool { _, ok := m.get(kindTools, maxMerged, "", 0, []string{"a", "c"}, st); return ok },
		"stamps":  func() bool { _, ok := m.get(kindTools, maxMerged, "", 0, keys, []uint64{1, 3}); return ok },
	} {
		if miss() {
			t.Errorf("an entry found with another %s", name)
		}
	}
}

// TestKeptItemsBudget: the items kept by all the sessions of an endpoint
// are bounded (maxKeptItems): a page or merged page over the budget is not
// kept; list_changed, a new backend session and the session's end give
// their items back, and nothing is kept after the end.
func TestKeptItemsBudget(t *testing.T) {
	var budget atomic.Int64
	c := pageCache{budget: &budget}
	m := mergedCache{budget: &budget}
	cs := new(sdk.ClientSession)
	if c.store(cs, kindTools, c.begin(kindTools), "", nil, 100, "") == 0 {
		t.Fatal("page not kept")
	}
	budget.Add(maxKeptItems - 150) // the endpoint's other sessions
	if c.store(cs, kindPrompts, c.begin(kindPrompts), "", nil, 51, "") != 0 {
		t.Error("a page over the endpoint's budget was kept")
	}
	m.put(kindTools, &mergedEntry{n: 51})
	if len(m.entries[kindTools]) != 0 {
		t.Error("a merged page over the endpoint's budget was kept")
	}
	m.put(kindTools, &mergedEntry{n: 50})
	if len(m.entries[kindTools]) != 1 || budget.Load() != maxKeptItems {
		t.Errorf("merged page within the budget: %d entries, budget %d", len(m.entries[kindTools]), budget.Load())
	}
	c.invalidate(kindTools)
	if got := budget.Load(); got != maxKeptItems-100 {
		t.Errorf("budget %d after list_changed, want %d", got, maxKeptItems-100)
	}
	c.store(cs, kindTools, c.begin(kindTools), "", nil, 10, "")
	c.store(new(sdk.ClientSession), kindPrompts, c.begin(kindPrompts), "", nil, 20, "")
	if got := budget.Load(); got != maxKeptItems-80 {
		t.Errorf("budget %d after a new backend session, want %d", got, maxKeptItems-80)
	}
	c.clear()
	m.clear()
	if got := budget.Load(); got != maxKeptItems-150 {
		t.Errorf("budget %d after the session ended, want %d", got, maxKeptItems-150)
	}
	if c.store(cs, kindTools, c.begin(kindTools), "", nil, 1, "") != 0 {
		t.Error("a page kept after the session ended")
	}
	if m.put(kindTools, &mergedEntry{n: 1}); len(m.entries[kindTools]) != 0 {
		t.Error("a merged page kept after the session ended")
	}
}

// TestSessionEndReleasesKept: the items a client session keeps go back to
// the endpoint's budget when it ends.
func TestSessionEndReleasesKept(t *testing.T) {
	f := newFixture(t, Config{})
	cs := f.connect(t, nil)
	toolNames(t, cs)
	if f.e.kept.Load() == 0 {
		t.Fatal("nothing kept")
	}
	cs.Close()
	waitFor(t, "kept items released", func() bool { return f.e.kept.Load() == 0 })
}

// TestListAskedAgainWithNewToken: a backend may list by the credential
// the caller's token gives it, so a client whose token changed (same
// session) gets lists asked for again, not the ones fetched with the old
// token.
func TestListAskedAgainWithNewToken(t *testing.T) {
	f := newFixture(t, Config{})
	tok := &atomic.Value{}
	tok.Store("token-1")
	c := sdk.NewClient(&sdk.Implementation{Name: "test"}, nil)
	cs, err := c.Connect(context.Background(), &sdk.StreamableClientTransport{Endpoint: f.url, MaxRetries: -1,
		HTTPClient: &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return bearer{tok.Load().(string)}.RoundTrip(r)
		})}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	toolNames(t, cs)
	toolNames(t, cs)
	n := f.vsphere.listed.Load()
	if n != 1 {
		t.Fatalf("vsphere listed %d times with one token, want 1", n)
	}
	tok.Store("token-2")
	toolNames(t, cs)
	if got := f.vsphere.listed.Load(); got != n+1 {
		t.Errorf("vsphere listed %d times after a new token, want %d", got, n+1)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestConcurrentKeptLists: lists answered at once from the same kept and
// merged pages (run with -race: nothing shared is written).
func TestConcurrentKeptLists(t *testing.T) {
	f := newFixture(t, Config{})
	cs := f.connect(t, nil)
	toolNames(t, cs)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 5 {
				r, err := cs.ListTools(context.Background(), nil)
				if err != nil {
					t.Error(err)
					return
				}
				if len(r.Tools) != 3 { // vsphere's 2, k8s's first page of 1
					t.Errorf("%d tools, want 3", len(r.Tools))
					return
				}
			}
		})
	}
	wg.Wait()
}
