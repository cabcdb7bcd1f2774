package policy

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/mcpgate/mcpgate/internal/validate"
)

// Modes.
const (
	ModeEnforce = "enforce"
	ModeShadow  = "shadow"
)

// DefaultAllowedMethods are the protocol methods allowed when methods.allow
// is not set. They name no tool, prompt or resource by themselves;
// completion/complete and subscriptions/listen additionally require the
// prompt or resources they reference to be visible.
var DefaultAllowedMethods = []string{
	"initialize",
	"ping",
	"notifications/*",
	"logging/setLevel",
	"completion/complete",
	"server/discover",      // MCP 2026-07-28
	"subscriptions/listen", // MCP 2026-07-28
}

// Config is the authorization policy, the `policy:` section of the gateway
// configuration. How the parts combine: examples/policies/README.md.
type Config struct {
	// File loads the policy from a separate YAML file instead: either a file
	// whose top level is this structure or a full mcpgate config with a
	// `policy:` key. A relative path is relative to the directory of the
	// file that names it. When set, no other key may be set here.
	File string `yaml:"file"`
	// Mode is enforce (default) | shadow: in shadow mode denials are
	// reported (Effect "would_deny") but not enforced.
	Mode string `yaml:"mode"`
	// Default is the decision when nothing grants access: deny (the only
	// value; everything not granted is denied).
	Default string `yaml:"default"`
	// Roles are named sets of grants, keyed by role name.
	Roles map[string]Role `yaml:"roles"`
	// Groups maps a group (from the token's groups claim, matched exactly)
	// to the roles it confers. Unknown groups confer nothing.
	Groups map[string][]string `yaml:"groups"`
	// Users grants roles to individual principals, in addition to their
	// groups' roles. Keys: "<issuer>#<subject>" (preferred), "sub:<subject>"
	// or a bare subject (any issuer), or "email:<address>" (matched
	// case-insensitively, only when the token says email_verified).
	Users map[string][]string `yaml:"users"`
	// ToolScopes maps a tool-name pattern to OAuth scopes that a call of a
	// matching tool needs in addition to a role (all of them; scopes of
	// every matching pattern add up). Scopes never grant anything. A
	// pattern "<backend>/<glob>" applies on that backend only.
	ToolScopes map[string][]string `yaml:"tool_scopes"`
	// FallbackScopes are the scopes assumed for a token without a scope
	// claim. Default: none, so scope-gated tools are denied (fail closed).
	FallbackScopes []string `yaml:"fallback_scopes"`
	// Methods allows or denies protocol methods.
	Methods Methods `yaml:"methods"`
	// Rules are Cedar policy texts: forbid rules deny calls (also ones that
	// roles allow), permit rules allow calls (also ones no role allows),
	// typically on conditions over the call's arguments.
	Rules []string `yaml:"rules"`
	// CedarFile is a file of Cedar policies, added to Rules.
	CedarFile string `yaml:"cedar_file"`

	// dir is the directory relative paths are resolved against.
	dir string
}

// Role is a named set of grants. Patterns are globs: `*` matches any run of
// characters (also `/`), `?` one character, `\` escapes the next character;
// matching is case-sensitive. A tool or prompt pattern written
// "<backend>/<glob>" (e.g. "vsphere/*", "k8s/get_pods") grants on that
// backend only: the part before the first unescaped `/` is a backend (or
// aggregated endpoint) name, never a glob; `\/` is a literal slash.
type Role struct {
	// Inherits lists roles whose grants this role includes.
	Inherits []string `yaml:"inherits"`
	// Tools are patterns of tool names granted on every backend, or, as
	// "<backend>/<glob>", on one backend ("vsphere/*").
	Tools []string `yaml:"tools"`
	// Prompts are patterns of prompt names granted on every backend, or,
	// as "<backend>/<glob>", on one backend.
	Prompts []string `yaml:"prompts"`
	// Resources are patterns of resource URIs (or resource template URIs)
	// granted on every backend.
	Resources []string `yaml:"resources"`
	// Backends holds grants that apply on one backend only, keyed by
	// backend (or aggregated endpoint) name; the same as "<backend>/"
	// patterns, and the only form for resources.
	Backends map[string]Grants `yaml:"backends"`
}

// Grants are the patterns a role grants on one backend.
type Grants struct {
	// Tools are patterns of tool names.
	Tools []string `yaml:"tools"`
	// Prompts are patterns of prompt names.
	Prompts []string `yaml:"prompts"`
	// Resources are patterns of resource URIs or resource template URIs.
	Resources []string `yaml:"resources"`
}

// Methods allow or deny JSON-RPC methods by glob. Deny wins. Allow, when
// set, replaces DefaultAllowedMethods. Neither can allow tools/call,
// prompts/get, resources/read, resources/subscribe or resources/unsubscribe:
// those are decided by roles, rules and scopes; deny can still block them.
type Methods struct {
	// Allow lists the methods allowed (globs); set, it replaces the default
	// list of protocol methods.
	Allow []string `yaml:"allow"`
	// Deny lists methods refused (globs); it wins over Allow.
	Deny []string `yaml:"deny"`
}

// SetDefaults fills in defaults. It leaves a config that names a File alone:
// the file's content gets its defaults when it is loaded.
func (c *Config) SetDefaults() {
	if c.File != "" {
		return
	}
	c.Mode = cmp.Or(c.Mode, ModeEnforce)
	c.Default = cmp.Or(c.Default, "deny")
	if c.Methods.Allow == nil {
		c.Methods.Allow = slices.Clone(DefaultAllowedMethods)
	}
}

// SetBaseDir sets the directory against which relative File and CedarFile
// paths are resolved (the directory of the config file). Without it they are
// relative to the working directory.
func (c *Config) SetBaseDir(dir string) { c.dir = dir }

func (c *Config) path(p string) string {
	if p == "" || filepath.IsAbs(p) || c.dir == "" {
		return p
	}
	return filepath.Join(c.dir, p)
}

// isInlineEmpty reports whether nothing but File (and defaults) is set.
func (c *Config) isInlineEmpty() bool {
	return (c.Mode == "" || c.Mode == ModeEnforce) && (c.Default == "" || c.Default == "deny") &&
		len(c.Roles) == 0 && len(c.Groups) == 0 && len(c.Users) == 0 && len(c.ToolScopes) == 0 &&
		c.FallbackScopes == nil && c.Methods.Allow == nil && c.Methods.Deny == nil && len(c.Rules) == 0 && c.CedarFile == ""
}

// Validate reports every problem in the policy, each under its key path
// (path is the policy's own key, usually "policy"). With File set it loads
// and validates that file.
func (c *Config) Validate(path string, p *validate.Problems) {
	if c.File != "" {
		if !c.isInlineEmpty() {
			p.Add(validate.Join(path, "file"), "cannot be combined with an inline policy")
			return
		}
		inner, err := LoadFile(c.path(c.File))
		if err != nil {
			p.Add(validate.Join(path, "file"), "%v", err)
			return
		}
		inner.Validate(validate.Join(path, "file"), p)
		return
	}
	c2 := *c
	c2.SetDefaults()
	compileConfig(&c2, path, p)
}

// CheckBackends reports, under path, every backend name the policy uses
// that known does not hold: a roles.<r>.backends key, and the backend of a
// `<backend>/<name>` pattern in roles.<r>.tools, roles.<r>.prompts and the
// tool_scopes keys. Such a name would silently grant (or require) nothing.
// The policy alone cannot know the gateway's backends, so configuration
// validation calls it with the names of the backends and aggregated
// endpoints. Malformed patterns are Validate's to report; a File that
// cannot be read too.
func (c *Config) CheckBackends(path string, known map[string]bool, p *validate.Problems) {
	if c.File != "" {
		inner, err := LoadFile(c.path(c.File))
		if err == nil {
			inner.CheckBackends(validate.Join(path, "file"), known, p)
		}
		return
	}
	unknown := func(at, b string) {
		p.Add(at, "names no backend or aggregated endpoint %q (known: %s)", b, strings.Join(sortedKeys(known), ", "))
	}
	for _, r := range sortedKeys(c.Roles) {
		role := c.Roles[r]
		at := validate.Join(path, "roles", r)
		for _, b := range sortedKeys(role.Backends) {
			if !known[b] {
				unknown(validate.Join(at, "backends", b), b)
			}
		}
		for _, l := range []struct {
			key  string
			pats []string
		}{{"tools", role.Tools}, {"prompts", role.Prompts}} {
			for i, s := range l.pats {
				if b, _, err := splitBackend(s); err == nil && b != "" && !known[b] {
					unknown(validate.Index(validate.Join(at, l.key), i), b)
				}
			}
		}
	}
	for _, pat := range sortedKeys(c.ToolScopes) {
		if b, _, err := splitBackend(pat); err == nil && b != "" && !known[b] {
			unknown(validate.Join(path, "tool_scopes", pat), b)
		}
	}
}

// LoadFile reads a policy from a YAML file: a file whose top level is the
// policy, or a full mcpgate config whose `policy:` key holds it (any other
// top-level keys are then ignored). Unknown keys inside the policy are
// errors. A `file:` indirection inside it is followed (once). Relative paths
// in it are resolved against the file's directory. Defaults are applied.
func LoadFile(path string) (*Config, error) {
	return loadFile(path, 0)
}

func loadFile(path string, depth int) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", path, validate.YAMLError(err))
	}
	node := &root
	if len(root.Content) == 1 && root.Content[0].Kind == yaml.MappingNode {
		m := root.Content[0]
		node = m
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == "policy" {
				node = m.Content[i+1]
			}
		}
	}
	cfg := &Config{}
	if err := decodeStrict(node, cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg.SetBaseDir(filepath.Dir(path))
	if cfg.File != "" {
		if depth > 0 {
			return nil, fmt.Errorf("%s: file: a policy file cannot name another policy file", path)
		}
		if !cfg.isInlineEmpty() {
			return nil, fmt.Errorf("%s: file: cannot be combined with an inline policy", path)
		}
		return loadFile(cfg.path(cfg.File), depth+1)
	}
	cfg.SetDefaults()
	return cfg, nil
}

// decodeStrict decodes a YAML node into v, reporting unknown keys and
// values of the wrong kind by key path (validate.CheckYAML).
func decodeStrict(node *yaml.Node, v any) error {
	if node.Kind == 0 {
		return nil // empty document
	}
	if node.Kind == yaml.DocumentNode && len(node.Content) == 1 {
		node = node.Content[0]
	}
	var p validate.Problems
	validate.CheckYAML(node, reflect.TypeOf(v), "", &p)
	if err := p.Err(); err != nil {
		return err
	}
	return validate.YAMLError(node.Decode(v))
}

// Files lists the files this policy is read from, for watching them for
// changes: File and CedarFile, and the CedarFile named inside File.
func (c *Config) Files() []string {
	var out []string
	if c.File != "" {
		f := c.path(c.File)
		out = append(out, f)
		if inner, err := LoadFile(f); err == nil {
			out = append(out, inner.Files()...)
		}
	}
	if c.CedarFile != "" {
		out = append(out, c.path(c.CedarFile))
	}
	return out
}

// userKey is a parsed key of Config.Users.
type userKey struct {
	issuer, subject, email string
	anyIssuer              bool
}

func parseUserKey(k string) (userKey, error) {
	switch {
	case strings.HasPrefix(k, "email:"):
		e := strings.TrimPrefix(k, "email:")
		if !strings.Contains(e, "@") {
			return userKey{}, fmt.Errorf("%q is not an email address", e)
		}
		return userKey{email: strings.ToLower(e)}, nil
	case strings.HasPrefix(k, "sub:"):
		s := strings.TrimPrefix(k, "sub:")
		if s == "" {
			return userKey{}, fmt.Errorf("empty subject")
		}
		return userKey{subject: s, anyIssuer: true}, nil
	case strings.Contains(k, "#"):
		i := strings.Index(k, "#") // an issuer URL has no fragment (RFC 8414 §2)
		if i == 0 || i == len(k)-1 {
			return userKey{}, fmt.Errorf("%q: want <issuer>#<subject>", k)
		}
		return userKey{issuer: k[:i], subject: k[i+1:]}, nil
	case k == "":
		return userKey{}, fmt.Errorf("empty key")
	}
	return userKey{subject: k, anyIssuer: true}, nil
}
