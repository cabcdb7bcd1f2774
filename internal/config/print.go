package config

import (
	"bytes"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Redacted is the value that replaces a secret in Print's output.
const Redacted = "REDACTED"

// secretKeys are the keys whose values are secrets wherever they appear
// (encryption key, client secrets, registration token, password hashes,
// see also dsn in redact).
var secretKeys = map[string]bool{
	"encryption_key": true, "encryption_key_previous": true, "client_secret": true, "client_secret_hash": true,
	"password_hash": true, "token": true,
}

// Print renders the effective configuration (after ${ENV}, MCPGATE_*
// overrides, flags and defaults) as YAML, with every secret replaced by
// REDACTED: encryption_key, client secrets, tokens, password hashes, the
// store DSN, static backend credentials and stdio environment values. An
// empty secret stays empty, so an unset one shows as unset.
func (c *Config) Print() ([]byte, error) {
	var n yaml.Node
	if err := n.Encode(c); err != nil {
		return nil, err
	}
	redact(&n, "")
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, err
	}
	return b.Bytes(), enc.Close()
}

// redact blanks the secrets under n, whose key in its parent mapping is key.
func redact(n *yaml.Node, key string) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i].Value, n.Content[i+1]
			switch {
			case v.Kind == yaml.ScalarNode && k == "dsn":
				// A PostgreSQL DSN may hold a password; a SQLite path does not.
				if strings.Contains(v.Value, "@") || strings.Contains(strings.ToLower(v.Value), "password") {
					hide(v)
				}
			case v.Kind == yaml.ScalarNode && (secretKeys[k] || (key == "credential" && k == "value")):
				hide(v)
			case v.Kind == yaml.SequenceNode && secretKeys[k]: // encryption_key_previous
				for _, c := range v.Content {
					hide(c)
				}
			case key == "env" && v.Kind == yaml.ScalarNode: // stdio backends' environment
				hide(v)
			default:
				redact(v, k)
			}
		}
	case yaml.SequenceNode, yaml.DocumentNode:
		for _, c := range n.Content {
			redact(c, key)
		}
	}
}

func hide(v *yaml.Node) {
	if v.Value != "" && v.Tag != "!!null" {
		v.Value, v.Tag, v.Style = Redacted, "!!str", 0
	}
}
