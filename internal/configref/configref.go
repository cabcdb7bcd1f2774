// Package configref describes mcpgate's configuration from its Go types, so
// that the key-by-key reference (docs/config-reference.md) and the JSON
// Schema (docs/mcpgate.schema.json) cannot drift from the code:
//
//   - keys, types and nesting come from reflection over config.Config and the
//     yaml struct tags (the same walk the strict decoder does);
//   - descriptions are the fields' Go doc comments (or trailing line
//     comments), read with go/parser by the generator and kept in
//     docs_gen.go so the binary can print them too;
//   - defaults are what SetDefaults puts into an empty configuration, read
//     back by reflection;
//   - allowed values follow a doc-comment convention: the first run of words
//     joined by " | " in a field's comment ("json | text (default text)") is
//     its enum;
//   - secrets carry the struct tag secret:"true".
//
// Run `go generate ./internal/configref` after changing a config type; a test
// fails while the checked-in files are stale.
package configref

//go:generate go run ./gen -root ../..

import (
	"encoding"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/validate"
)

// Shape is how a value is written in YAML.
type Shape string

// Shapes.
const (
	Object       Shape = "object"
	List         Shape = "list"
	Map          Shape = "map"
	String       Shape = "string"
	Integer      Shape = "integer"
	Number       Shape = "number"
	Boolean      Shape = "boolean"
	Duration     Shape = "duration"       // a Go duration string: 30s, 1h30m
	DurationZero Shape = "duration or 0"  // also a bare 0
	StringOrList Shape = "string or list" // a single string or a list of strings
)

// Node is one key of the configuration, or the element of a list or map.
type Node struct {
	Key    string // YAML key; "" for the root and for list/map elements
	Path   string // e.g. auth.jwt.issuers[].leeway, policy.roles.<name>.tools
	Doc    string // doc comment, Go field names replaced by YAML keys
	Shape  Shape
	Type   reflect.Type
	Fields []*Node // Object: its keys, in declaration order
	Elem   *Node   // List, Map: the element
	// Default is the value SetDefaults gives the key, rendered as YAML
	// would write it; "" when the key has none. Derived tells in words a
	// default computed from other keys.
	Default any
	Derived string
	Enum    []string // allowed values (doc-comment convention)
	Secret  bool     // secret:"true": keep it out of the file, use ${ENV}
}

// root is the type the reference describes.
var root = reflect.TypeFor[config.Config]()

// derived are defaults computed from other keys, which SetDefaults on an
// empty config would show one arbitrary outcome of; "" marks keys the
// default variants below set themselves, which have no default.
var derived = map[string]string{
	"auth.mode": "",
	"auth.authorization_server.upstream.type":   "",
	"backends[].command":                        "",
	"public_url":                                "`http(s)://<listen>` (`localhost` for a wildcard listen address)",
	"auth.scopes_supported":                     "`auth.authorization_server.scopes` in authorization_server mode, else none",
	"auth.authorization_server.resources":       "`public_url` + each backend's `path`",
	"auth.authorization_server.default_scopes":  "all of `scopes`",
	"auth.authorization_server.upstream.scopes": "the preset's; without one, `openid profile email` for type oidc, plus `groups` when `groups_claim` is `groups`",
	"backends[].path":                           "`/mcp` for the first backend, `/<name>/mcp` for the others",
	"store.dsn":                                 "`./mcpgate.db` for driver sqlite",
	"audit.sink":                                "`stdout`, or `file` when only `path` is set",
}

// customTypes are types with their own YAML decoding, by full name. A type
// that decodes itself and is missing here stops generation: its schema
// must be written down, not guessed.
var customTypes = map[string]Shape{
	"github.com/mcpgate/mcpgate/internal/authn.StringList":    StringOrList,
	"github.com/mcpgate/mcpgate/internal/authserver.Duration": DurationZero,
	"time.Duration": Duration,
}

var (
	unmarshalerType     = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// Build walks the configuration types. docs maps "pkgpath.Type.Field" and
// "pkgpath.Type" to doc comments (see ParseDocs); nil uses the generated
// docs_gen.go.
func Build(docs map[string]string) (*Node, error) {
	if docs == nil {
		docs = generatedDocs
	}
	b := &builder{docs: docs, defaults: defaultValues()}
	n := &Node{Path: "", Shape: Object, Type: root, Doc: docs[typeName(root)]}
	if err := b.object(n, root); err != nil {
		return nil, err
	}
	return n, nil
}

type builder struct {
	docs     map[string]string
	defaults map[string]reflect.Value
}

func typeName(t reflect.Type) string { return t.PkgPath() + "." + t.Name() }

// object fills n.Fields from struct type t, following inline fields.
func (b *builder) object(n *Node, t reflect.Type) error {
	for f := range validate.YAMLFields(t) {
		c := &Node{Key: f.Key, Path: join(n.Path, f.Key), Type: f.Field.Type}
		doc := b.docs[typeName(f.Owner)+"."+f.Field.Name]
		c.Secret = f.Field.Tag.Get("secret") == "true"
		if err := b.value(c, f.Field.Type); err != nil {
			return err
		}
		c.Enum = enumOf(doc)
		c.Doc = yamlNames(doc, f.Field.Name, f.Key, f.Owner)
		if doc == "" {
			// A section without its own comment: its type's.
			e := c
			for e.Shape == List || e.Shape == Map {
				e = e.Elem
			}
			if e.Shape == Object {
				t := deref(e.Type)
				c.Doc = yamlNames(b.docs[typeName(t)], t.Name(), f.Key, t)
			}
		}
		n.Fields = append(n.Fields, c)
	}
	return nil
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// value sets the shape of n from type t, recursing into objects, lists and
// maps, and records the default.
func (b *builder) value(n *Node, t reflect.Type) error {
	t = deref(t)
	if s, ok := customTypes[typeName(t)]; ok {
		n.Shape = s
	} else if reflect.PointerTo(t).Implements(unmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return fmt.Errorf("configref: %s (%s) decodes itself from YAML: add it to customTypes with its shape", n.Path, typeName(t))
	} else {
		switch t.Kind() {
		case reflect.Struct:
			n.Shape = Object
			if n.Doc == "" {
				n.Doc = b.docs[typeName(t)]
			}
			return b.object(n, t)
		case reflect.Slice:
			n.Shape = List
			n.Elem = &Node{Path: n.Path + "[]", Type: t.Elem()}
			if err := b.value(n.Elem, t.Elem()); err != nil {
				return err
			}
		case reflect.Map:
			if t.Key().Kind() != reflect.String {
				return fmt.Errorf("configref: %s: map keys must be strings", n.Path)
			}
			n.Shape = Map
			n.Elem = &Node{Path: n.Path + ".<name>", Type: t.Elem()}
			if err := b.value(n.Elem, t.Elem()); err != nil {
				return err
			}
		case reflect.String:
			n.Shape = String
		case reflect.Bool:
			n.Shape = Boolean
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			n.Shape = Integer
		case reflect.Float32, reflect.Float64:
			n.Shape = Number
		default:
			return fmt.Errorf("configref: %s: unsupported type %s", n.Path, t)
		}
	}
	if d, ok := derived[n.Path]; ok { // "": no default
		n.Derived = d
	} else if v, ok := b.defaults[n.Path]; ok {
		n.Default = render(v, n.Shape)
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// enumRun is the doc-comment convention for allowed values: words joined by
// " | ", each optionally marked "(default)".
var enumRun = regexp.MustCompile(`[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*(?: \(default\))?(?: \| [A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*(?: \(default\))?)+`)

// enumOf returns the allowed values named in doc, or nil.
func enumOf(doc string) []string {
	run := enumRun.FindString(strings.Join(strings.Fields(doc), " "))
	if run == "" {
		return nil
	}
	var out []string
	for v := range strings.SplitSeq(run, " | ") {
		out = append(out, strings.TrimSuffix(v, " (default)"))
	}
	return out
}

// yamlNames rewrites Go field names in a doc comment into YAML keys: the
// leading name of the field itself, and CamelCase names of its siblings.
func yamlNames(doc, goName, key string, owner reflect.Type) string {
	doc = strings.TrimSpace(doc)
	if rest, ok := strings.CutPrefix(doc, goName); ok && (rest == "" || !isLetter(rest[0])) {
		doc = "`" + key + "`" + rest
	}
	for f := range validate.YAMLFields(owner) {
		n := f.Field.Name
		if !camel.MatchString(n) {
			continue
		}
		doc = regexp.MustCompile(`\b`+n+`\b`).ReplaceAllString(doc, "`"+f.Key+"`")
	}
	return doc
}

var camel = regexp.MustCompile(`^[A-Z][a-z0-9]+[A-Z]`)

// defaultValues applies SetDefaults to empty configurations, one per auth
// mode and backend kind, with one element in every list of objects, and
// collects every non-zero leaf by key path (the first variant that sets a
// key wins). Numbers and booleans are collected even when zero: after
// SetDefaults, zero is their effective default.
func defaultValues() map[string]reflect.Value {
	variants := []func(*config.Config){
		func(c *config.Config) {
			c.Auth.Mode = config.ModeAuthorizationServer
			c.Auth.AuthorizationServer.Upstream.Type = "oidc"
		},
		func(c *config.Config) {
			c.Auth.Mode = authn.ModeJWT
			c.Backends[0].Credential.Type = "token_exchange"
		},
		func(c *config.Config) { c.Auth.Mode = authn.ModeIntrospection },
		func(c *config.Config) { c.Auth.Mode = authn.ModeTrustedHeader },
		func(c *config.Config) {
			c.Auth.Mode = config.ModeAuthorizationServer
			c.Auth.AuthorizationServer.Upstream.Type = "static"
			c.Backends[0].Stdio.Command = []string{"true"}
			c.Backends[0].Credential.Type = "static"
		},
	}
	out := map[string]reflect.Value{}
	for _, v := range variants {
		c := &config.Config{}
		fill(reflect.ValueOf(c).Elem())
		v(c)
		c.SetDefaults()
		collect(reflect.ValueOf(c).Elem(), "", out)
	}
	return out
}

// fill gives every list of objects one element and every pointer to an
// object a value, so that their defaults are applied too.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		if _, ok := customTypes[typeName(v.Type())]; ok {
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i))
			}
		}
	case reflect.Slice:
		if deref(v.Type().Elem()).Kind() == reflect.Struct && v.Len() == 0 {
			v.Set(reflect.MakeSlice(v.Type(), 1, 1))
			fill(v.Index(0))
		}
	case reflect.Pointer:
		if v.Type().Elem().Kind() == reflect.Struct && v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
			fill(v.Elem())
		}
	}
}

func collect(v reflect.Value, path string, out map[string]reflect.Value) {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	t := v.Type()
	if _, custom := customTypes[typeName(t)]; !custom {
		switch v.Kind() {
		case reflect.Struct:
			for f := range validate.YAMLFields(t) {
				fv := v.FieldByIndex(fieldIndex(t, f))
				collect(fv, join(path, f.Key), out)
			}
			return
		case reflect.Slice:
			if deref(t.Elem()).Kind() == reflect.Struct {
				if v.Len() > 0 {
					collect(v.Index(0), path+"[]", out)
				}
				return
			}
		case reflect.Map:
			return
		}
	}
	if prev, ok := out[path]; ok && !prev.IsZero() {
		return
	}
	switch v.Kind() {
	case reflect.String, reflect.Slice:
		if v.Len() == 0 {
			return
		}
	}
	out[path] = v
}

// fieldIndex finds f (possibly inside inline structs) in t.
func fieldIndex(t reflect.Type, f validate.YAMLField) []int {
	var idx []int
	var find func(t reflect.Type, prefix []int) bool
	find = func(t reflect.Type, prefix []int) bool {
		for i := range t.NumField() {
			sf := t.Field(i)
			here := append(slices.Clone(prefix), i)
			if sf.Name == f.Field.Name && t == f.Owner {
				idx = here
				return true
			}
			if _, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ","); strings.Contains(opts, "inline") && find(sf.Type, here) {
				return true
			}
		}
		return false
	}
	find(t, nil)
	return idx
}

// render converts a default into the JSON value the schema shows.
func render(v reflect.Value, s Shape) any {
	switch s {
	case Duration, DurationZero:
		return FormatDuration(time.Duration(v.Int()))
	case Integer:
		if v.CanInt() {
			return v.Int()
		}
		return v.Uint()
	case Number:
		return v.Float()
	case Boolean:
		return v.Bool()
	case String:
		return v.String()
	case List, StringOrList:
		out := []any{}
		for i := range v.Len() {
			out = append(out, render(v.Index(i), String))
		}
		return out
	case Object:
		// A struct default (e.g. a rate limit) is shown through its keys.
		return nil
	}
	return nil
}

// FormatDuration writes d as a Go duration without zero units: 720h, 1m, 90s.
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Walk calls fn for n and every node below it, depth first.
func (n *Node) Walk(fn func(*Node)) {
	fn(n)
	for _, c := range n.Fields {
		c.Walk(fn)
	}
	if n.Elem != nil {
		n.Elem.Walk(fn)
	}
}

// Lookup returns the node at path (as in Node.Path), or nil.
func (n *Node) Lookup(path string) *Node {
	var out *Node
	n.Walk(func(c *Node) {
		if c.Path == path && out == nil {
			out = c
		}
	})
	return out
}

func isLetter(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
