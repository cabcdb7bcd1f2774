package aggregate

import (
	"cmp"
	"sort"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/proxy"
	"github.com/mcpgate/mcpgate/internal/validate"
)

// Config is one aggregated endpoint: several backends behind one path and
// one MCP session.
type Config struct {
	// Path is where the endpoint is served; its canonical resource URI is
	// public_url + path. Same rules as backends[].path.
	Path string `yaml:"path"`
	// Name identifies the endpoint in audit records, metrics and policy
	// requests for methods that name no backend (initialize, tools/list,
	// ping). Defaults to the path without its slashes ("mcp" for /mcp, "/"
	// becomes "root"). Must differ from every backend name.
	Name string `yaml:"name"`
	// Backends are the names of the backends (from backends[]) the endpoint
	// fronts, at most 64. A backend listed here and given no path of its own
	// is served only through the endpoint.
	Backends []string `yaml:"backends"`
	// Separator joins a backend's name and a tool or prompt name: with the
	// default "__", tool get_vm of backend vsphere is listed as
	// vsphere__get_vm. 1 to 8 characters out of letters, digits, '_', '-'
	// and '.' (the characters of an MCP tool name).
	Separator string `yaml:"separator"`
	// Rename gives a tool or prompt an explicit name instead of the
	// prefixed one: "backend/original: exposed", e.g. "vsphere/get_vm:
	// vm". An exposed name must be unique and must not start with a
	// backend's prefix (name + separator); a collision is a start-up error.
	Rename map[string]string `yaml:"rename"`
	// IdleTimeout closes a client session idle that long, and its backend
	// sessions with it (default 1h). Sessions live in the memory of the
	// replica that opened them.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// Unprefixed names one backend of the endpoint whose tools and prompts
	// keep their own names (e.g. to put a single backend behind the
	// endpoint unchanged). One of its names that another backend's prefix
	// or a rename also yields is left out of lists, with a warning, also
	// when a list_changed brings it.
	Unprefixed string `yaml:"unprefixed"`
	// Timeout bounds, per backend, opening its session and answering a
	// list request (default 10s). A backend over it is left out of that
	// answer; the others are listed.
	Timeout time.Duration `yaml:"timeout"`
	// CallTimeout bounds a tools/call, prompts/get or resources/read
	// routed to one backend (default 10m). The caller gets a JSON-RPC
	// error naming the backend.
	CallTimeout time.Duration `yaml:"call_timeout"`
}

// MaxBackends bounds an endpoint's backends (list cursors carry one
// position per backend).
const MaxBackends = 64

// SetDefaults fills in the defaults.
func (c *Config) SetDefaults() {
	if c.Name == "" && c.Path != "" {
		c.Name = strings.ReplaceAll(strings.Trim(c.Path, "/"), "/", "-")
		c.Name = cmp.Or(c.Name, "root")
	}
	c.Separator = cmp.Or(c.Separator, "__")
	c.Timeout = cmp.Or(c.Timeout, 10*time.Second)
	c.CallTimeout = cmp.Or(c.CallTimeout, 10*time.Minute)
	c.IdleTimeout = cmp.Or(c.IdleTimeout, time.Hour)
}

// Validate reports every problem with the endpoint; backends are the names
// of the configured backends.
func (c *Config) Validate(path string, backends map[string]bool, p *validate.Problems) {
	if !proxy.ValidPath(c.Path) {
		p.Add(path+".path", "must start with '/', not end with '/', and not be under /.well-known")
	}
	if strings.ContainsAny(c.Name, "/ :*") {
		p.Add(path+".name", "must not contain '/', ':', '*' or spaces")
	} else if backends[c.Name] {
		p.Add(path+".name", "%q is also a backend name; policy rules and audit records could not tell them apart", c.Name)
	}
	switch {
	case len(c.Backends) == 0:
		p.Add(path+".backends", "at least one backend is required")
	case len(c.Backends) > MaxBackends:
		p.Add(path+".backends", "at most %d backends", MaxBackends)
	}
	seen := map[string]bool{}
	for i, b := range c.Backends {
		switch {
		case !backends[b]:
			p.Add(validate.Index(path+".backends", i), "unknown backend %q", b)
		case seen[b]:
			p.Add(validate.Index(path+".backends", i), "backend %q is listed twice", b)
		}
		seen[b] = true
	}
	if len(c.Separator) > 8 || !isToolName(c.Separator) {
		p.Add(path+".separator", "must be 1 to 8 characters out of A-Z a-z 0-9 _ - . (got %q)", c.Separator)
	}
	// Prefixes must be prefix-free, or a name could belong to two backends.
	for _, a := range c.Backends {
		for _, b := range c.Backends {
			if a != b && strings.HasPrefix(b+c.Separator, a+c.Separator) {
				p.Add(path+".backends", "names %q and %q are ambiguous with separator %q (%q starts with %q)",
					a, b, c.Separator, b+c.Separator, a+c.Separator)
			}
		}
	}
	exposed := map[string]string{}
	for _, k := range sortedKeys(c.Rename) {
		v := c.Rename[k]
		at := path + ".rename." + k
		b, name, ok := strings.Cut(k, "/")
		if !ok || name == "" || !seen[b] {
			p.Add(at, "key must be backend/name with a backend of this endpoint")
		}
		switch {
		case len(v) > 128 || !isToolName(v):
			p.Add(at, "%q is not a tool name (1 to 128 characters out of A-Z a-z 0-9 _ - .)", v)
		case exposed[v] != "":
			p.Add(at, "%q is also the name of %s", v, exposed[v])
		}
		for _, o := range c.Backends {
			if strings.HasPrefix(v, o+c.Separator) {
				p.Add(at, "%q would collide with backend %s's prefixed names", v, o)
			}
		}
		exposed[v] = k
	}
	if c.Unprefixed != "" && !seen[c.Unprefixed] {
		p.Add(path+".unprefixed", "%q is not a backend of this endpoint", c.Unprefixed)
	}
	if c.Timeout < 0 || c.CallTimeout < 0 || c.IdleTimeout < 0 {
		p.Add(path, "timeouts must not be negative")
	}
}

// Resolve maps a tool or prompt name the endpoint exposes (prefixed,
// renamed or unprefixed) to the backend it reaches and its name there, as
// the endpoint routes it; ok is false for a name that reaches nothing. c
// must have its defaults set. For `mcpgate policy explain`; the endpoint
// itself resolves with the names it built once.
func (c *Config) Resolve(exposed string) (backend, name string, ok bool) {
	t, ok := newNames(c).resolve(exposed)
	if !ok {
		return "", "", false
	}
	return c.Backends[t.backend], t.name, true
}

// ResourceBackend is the backend a resource URI goes to before any list
// has named it: the only backend, or the unprefixed one; ok is false when
// the endpoint routes URIs only by what its backends listed.
func (c *Config) ResourceBackend() (string, bool) {
	switch {
	case len(c.Backends) == 1:
		return c.Backends[0], true
	case c.Unprefixed != "":
		return c.Unprefixed, true
	}
	return "", false
}

func isToolName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' {
			continue
		}
		return false
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// names maps exposed tool and prompt names to backends and back.
type names struct {
	sep        string
	unprefixed int // the backend whose names are kept, or -1
	backends   []string
	renamed    map[string]target // exposed → original
	rename     map[string]string // "backend/original" → exposed
}

type target struct {
	backend int
	name    string
}

func newNames(c *Config) *names {
	n := &names{sep: c.Separator, backends: c.Backends, renamed: map[string]target{}, rename: c.Rename, unprefixed: -1}
	idx := map[string]int{}
	for i, b := range c.Backends {
		idx[b] = i
		if b == c.Unprefixed {
			n.unprefixed = i
		}
	}
	for k, v := range c.Rename {
		b, name, _ := strings.Cut(k, "/")
		n.renamed[v] = target{idx[b], name}
	}
	return n
}

// resolve maps an exposed name to its backend and original name.
func (n *names) resolve(exposed string) (target, bool) {
	if t, ok := n.renamed[exposed]; ok {
		return t, true
	}
	for i, b := range n.backends {
		if len(exposed) > len(b)+len(n.sep) && strings.HasPrefix(exposed, b) && strings.HasPrefix(exposed[len(b):], n.sep) {
			name := exposed[len(b)+len(n.sep):]
			if _, renamed := n.rename[b+"/"+name]; renamed {
				return target{}, false // only its new name reaches it
			}
			return target{i, name}, true
		}
	}
	if u := n.unprefixed; u >= 0 {
		if _, renamed := n.rename[n.backends[u]+"/"+exposed]; !renamed {
			return target{u, exposed}, true
		}
	}
	return target{}, false
}

// exposeChecked is expose for a listed item: false when the exposed name
// would reach something else (an unprefixed name that another backend's
// prefix or a rename also yields), which is then left out.
func (n *names) exposeChecked(backend int, name string) (string, bool) {
	e := n.expose(backend, name)
	if n.unprefixed != backend {
		return e, true
	}
	t, ok := n.resolve(e)
	return e, ok && t.backend == backend && t.name == name
}

// expose is the name a backend's tool or prompt is listed under.
func (n *names) expose(backend int, name string) string {
	b := n.backends[backend]
	if len(n.rename) > 0 {
		if v, ok := n.rename[b+"/"+name]; ok {
			return v
		}
	}
	if backend == n.unprefixed {
		return name
	}
	return b + n.sep + name
}
