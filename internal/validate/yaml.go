package validate

import (
	"errors"
	"fmt"
	"iter"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Expecter is implemented by config types that decode themselves: it says,
// for error messages, what a value must look like ("a duration such as 30s").
type Expecter interface {
	ExpectedYAML() string
}

var (
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	expecterType    = reflect.TypeFor[Expecter]()
	durationType    = reflect.TypeFor[time.Duration]()
)

// CheckYAML walks the YAML node n beside the Go type t and reports, under
// key path, every unknown key and every value of the wrong kind as the key
// path, what was expected and what was found, with the line. yaml's own
// errors name Go types ("cannot unmarshal !!int into ratelimit.Limit")
// and only a line; a person needs the key and the expected shape.
func CheckYAML(n *yaml.Node, t reflect.Type, path string, p *Problems) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value leaves the default
	}
	at := func() string {
		if path == "" {
			return "(top level)"
		}
		return path
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || t == durationType {
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			p.Add(at(), "expected %s, found %s (line %d)", expected(t), Describe(n), n.Line)
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			p.Add(at(), "expected %s, found %s (line %d)", expected(t), Describe(n), n.Line)
			return
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := Join(path, k.Value)
			ft, ok := fields[k.Value]
			if !ok {
				p.Add(key, "unknown key (line %d)%s", k.Line, suggest(k.Value, fields))
				continue
			}
			CheckYAML(v, ft, key, p)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			p.Add(at(), "expected a mapping, found %s (line %d)", Describe(n), n.Line)
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			CheckYAML(n.Content[i+1], t.Elem(), Join(path, n.Content[i].Value), p)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			p.Add(at(), "expected a list, found %s (line %d)", Describe(n), n.Line)
			return
		}
		for i, c := range n.Content {
			CheckYAML(c, t.Elem(), Index(path, i), p)
		}
	case reflect.Interface:
	default:
		if n.Kind != yaml.ScalarNode || n.Decode(reflect.New(t).Interface()) != nil {
			p.Add(at(), "expected %s, found %s (line %d)", expected(t), Describe(n), n.Line)
		}
	}
}

// expected describes, for a person, the values of type t.
func expected(t reflect.Type) string {
	if t.Implements(expecterType) {
		return reflect.Zero(t).Interface().(Expecter).ExpectedYAML()
	}
	if reflect.PointerTo(t).Implements(expecterType) {
		return reflect.New(t).Interface().(Expecter).ExpectedYAML()
	}
	if t == durationType {
		return "a duration such as 30s, 5m or 1h"
	}
	switch t.Kind() {
	case reflect.String:
		return "text"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number, 0 or more"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Struct:
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range yamlFields(t) {
				if !yield(k) {
					return
				}
			}
		})
		if len(keys) > 8 {
			keys = append(keys[:8], "...")
		}
		return "a mapping (keys " + strings.Join(keys, ", ") + ")"
	}
	return "a value of another kind"
}

// Describe says what a YAML node holds, briefly, for error messages. Text is
// cut short: a misplaced value may be a secret.
func Describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.Tag {
	case "!!int", "!!float":
		return "the number " + n.Value
	case "!!bool":
		return n.Value
	case "!!null":
		return "nothing"
	}
	v := n.Value
	if len(v) > 24 {
		v = v[:20] + "..."
	}
	return fmt.Sprintf("the text %q", v)
}

// suggest names a known key that differs from key only in case, dashes or
// underscores ("did you mean max_body_bytes?").
func suggest(key string, fields map[string]reflect.Type) string {
	norm := func(s string) string { return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(s)) }
	for k := range fields {
		if norm(k) == norm(key) {
			return "; did you mean " + k + "?"
		}
	}
	return ""
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for f := range YAMLFields(t) {
		out[f.Key] = f.Field.Type
	}
	return out
}

// YAMLField is one YAML key of a struct, with the struct that declares it
// (for inline fields, the inlined struct).
type YAMLField struct {
	Key   string
	Field reflect.StructField
	Owner reflect.Type
}

// YAMLFields yields the keys of struct t as go.yaml.in/yaml/v3 decodes them:
// exported fields, by yaml tag or lower-cased name, "-" skipped, inline
// structs flattened. The strict checks here and the generated reference
// (configref) walk the config with it.
func YAMLFields(t reflect.Type) iter.Seq[YAMLField] {
	return func(yield func(YAMLField) bool) {
		var walk func(t reflect.Type) bool
		walk = func(t reflect.Type) bool {
			for i := range t.NumField() {
				f := t.Field(i)
				if !f.IsExported() {
					continue
				}
				name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if name == "-" {
					continue
				}
				if strings.Contains(opts, "inline") {
					ft := f.Type
					for ft.Kind() == reflect.Pointer {
						ft = ft.Elem()
					}
					if !walk(ft) {
						return false
					}
					continue
				}
				if name == "" {
					name = strings.ToLower(f.Name)
				}
				if !yield(YAMLField{name, f, t}) {
					return false
				}
			}
			return true
		}
		walk(t)
	}
}

var (
	yamlUnmarshal = regexp.MustCompile("cannot unmarshal !!(\\w+) `([^`]*)` into \\S+")
	yamlUnknown   = regexp.MustCompile(`field (\S+) not found in type \S+`)
)

// YAMLError rewrites an error of the yaml decoder that CheckYAML did not
// foresee into words without Go type names or parser internals.
func YAMLError(err error) error {
	if err == nil {
		return nil
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		out := make([]string, len(te.Errors))
		for i, e := range te.Errors {
			e = yamlUnmarshal.ReplaceAllString(e, "found the $1 value `$2`, which is not valid here")
			out[i] = yamlUnknown.ReplaceAllString(e, "unknown key $1")
		}
		return &Error{Problems: out}
	}
	return errors.New(strings.Replace(err.Error(), "yaml: ", "not valid YAML: ", 1))
}
