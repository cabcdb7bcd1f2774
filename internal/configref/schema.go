package configref

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// SchemaFile is where the schema is checked in, relative to the repository
// root; examples name it in their yaml-language-server modeline.
const SchemaFile = "docs/mcpgate.schema.json"

// envPattern matches a ${NAME} or ${NAME:-default} reference, which the
// loader substitutes before decoding, so any scalar may be written as one.
const envPattern = `\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}`

// durationPattern is what time.ParseDuration accepts.
const durationPattern = `^[-+]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h))+)$`

// Schema renders the JSON Schema (draft-07, which yaml-language-server
// supports) of the configuration. Every object has additionalProperties:
// false, as the loader refuses unknown keys.
func Schema(n *Node) ([]byte, error) {
	s := schemaOf(n)
	s["$schema"] = "http://json-schema.org/draft-07/schema#"
	s["title"] = "mcpgate configuration"
	s["description"] = "mcpgate.yaml, the configuration of the mcpgate gateway. Generated from the Go types by go generate ./internal/configref; see docs/config-reference.md."
	s["definitions"] = map[string]any{
		"env": map[string]any{
			"type":        "string",
			"pattern":     envPattern,
			"description": "an environment variable reference, ${NAME} or ${NAME:-default}, substituted before decoding",
		},
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

var envRef = map[string]any{"$ref": "#/definitions/env"}

func schemaOf(n *Node) map[string]any {
	var s map[string]any
	switch n.Shape {
	case Object:
		props := map[string]any{}
		for _, c := range n.Fields {
			props[c.Key] = schemaOf(c)
		}
		s = map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	case List:
		s = map[string]any{"type": "array", "items": schemaOf(n.Elem)}
	case Map:
		s = map[string]any{"type": "object", "additionalProperties": schemaOf(n.Elem)}
	case String:
		if len(n.Enum) > 0 {
			s = map[string]any{"anyOf": []any{map[string]any{"enum": n.Enum}, envRef}}
		} else {
			s = map[string]any{"type": "string"}
		}
	case Integer, Number, Boolean:
		s = map[string]any{"anyOf": []any{map[string]any{"type": string(n.Shape)}, envRef}}
	case Duration:
		s = map[string]any{"anyOf": []any{map[string]any{"type": "string", "pattern": durationPattern}, envRef}}
	case DurationZero:
		s = map[string]any{"anyOf": []any{map[string]any{"const": 0}, map[string]any{"type": "string", "pattern": durationPattern}, envRef}}
	case StringOrList:
		s = map[string]any{"anyOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "array", "items": map[string]any{"type": "string"}}}}
	default:
		panic(fmt.Sprintf("configref: no schema for shape %q", n.Shape))
	}
	if d := description(n); d != "" {
		s["description"] = d
	}
	if n.Default != nil {
		s["default"] = n.Default
	}
	return s
}

// description is the text an editor shows for a key: its doc comment, then
// its default and whether it is a secret.
func description(n *Node) string {
	var parts []string
	if n.Doc != "" {
		parts = append(parts, strings.Join(strings.Fields(n.Doc), " "))
	}
	if n.Derived != "" {
		parts = append(parts, "Default: "+strings.ReplaceAll(n.Derived, "`", "")+".")
	}
	if n.Secret {
		parts = append(parts, "Secret: write ${ENV_VAR} rather than the value.")
	}
	return strings.Join(parts, " ")
}
