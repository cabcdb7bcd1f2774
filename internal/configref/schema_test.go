package configref

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/mcpgate/mcpgate/internal/config"
)

// compile loads the checked-in schema with a real JSON Schema validator;
// pointer selects a subschema ("" for the whole configuration).
func compile(t *testing.T, pointer string) *jsonschema.Schema {
	t.Helper()
	raw, err := os.ReadFile("../../" + SchemaFile)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("mcpgate.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("mcpgate.schema.json" + pointer)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// instance converts a YAML document into the JSON value the validator
// checks, as yaml-language-server does.
func instance(t *testing.T, y []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(y, &v); err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// shippedConfigs returns every gateway config in examples/ and deploy/,
// including those embedded in Kubernetes ConfigMaps, and every policy file
// in examples/policies (validated against the policy section), by name.
func shippedConfigs(t *testing.T) (configs, policies map[string][]byte) {
	t.Helper()
	configs, policies = map[string][]byte{}, map[string][]byte{}
	for _, dir := range []string{"../../examples", "../../deploy"} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "templates" || d.Name() == "testdata") {
				return filepath.SkipDir // Helm templates are not YAML; testdata holds Helm overrides
			}
			if d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
				return nil
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			name := strings.TrimPrefix(path, "../../")
			dec := yaml.NewDecoder(bytes.NewReader(raw))
			for i := 0; ; i++ {
				var doc map[string]any
				if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
					break
				} else if err != nil {
					return err
				}
				switch {
				case doc["kind"] == "ConfigMap":
					data, _ := doc["data"].(map[string]any)
					for k, v := range data {
						text, _ := v.(string)
						var inner map[string]any
						if yaml.Unmarshal([]byte(text), &inner) == nil && isGatewayConfig(inner) {
							configs[name+" ConfigMap "+k] = []byte(text)
						}
					}
				case filepath.Base(name) == "values.yaml":
					// Helm values: config is the gateway config the chart renders
					// (adding listen, metrics, the key and store paths), policy the
					// policy file beside it.
					if c, ok := doc["config"].(map[string]any); ok && isGatewayConfig(c) {
						b, err := yaml.Marshal(c)
						if err != nil {
							return err
						}
						configs[name+" values.config"] = b
					}
					if p, ok := doc["policy"].(string); ok && p != "" {
						policies[name+" values.policy"] = []byte(p)
					}
				case doc["apiVersion"] != nil || doc["services"] != nil:
					// other Kubernetes objects, the chart, the compose file
				case isGatewayConfig(doc) && i == 0:
					configs[name] = raw
				case strings.Contains(name, "policies/") && doc["cases"] == nil && doc["tests"] == nil:
					policies[name] = raw
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return configs, policies
}

// isGatewayConfig tells a gateway config from the other YAML files: it has
// backends or an auth section.
func isGatewayConfig(doc map[string]any) bool {
	return doc["backends"] != nil || doc["auth"] != nil
}

// TestShippedConfigsValidateAgainstSchema: every key of every example and
// deploy config is known to the schema (additionalProperties: false
// everywhere, so an unknown key fails), and every value has the right type.
func TestShippedConfigsValidateAgainstSchema(t *testing.T) {
	configs, policies := shippedConfigs(t)
	if len(configs) < 6 || len(policies) < 2 {
		t.Fatalf("found %d configs and %d policy files; the walk is broken", len(configs), len(policies))
	}
	for _, set := range []struct {
		files   map[string][]byte
		pointer string
	}{{configs, ""}, {policies, "#/properties/policy"}} {
		s := compile(t, set.pointer)
		for name, raw := range set.files {
			t.Run(name, func(t *testing.T) {
				if err := s.Validate(instance(t, raw)); err != nil {
					t.Errorf("%s does not validate against %s%s:\n%v", name, SchemaFile, set.pointer, err)
				}
			})
		}
	}
}

// TestExamplesNameSchema: every example config's first line points
// yaml-language-server at the schema, by a path that exists.
func TestExamplesNameSchema(t *testing.T) {
	configs, _ := shippedConfigs(t)
	for name, raw := range configs {
		if strings.Contains(name, " ConfigMap ") || strings.HasSuffix(name, " values.config") {
			continue // inside a manifest or Helm values: a modeline would apply to the whole file
		}
		first, _, _ := strings.Cut(string(raw), "\n")
		ref, ok := strings.CutPrefix(first, "# yaml-language-server: $schema=")
		if !ok {
			t.Errorf("%s: first line %q does not name the schema", name, first)
			continue
		}
		target := filepath.Join("../..", filepath.Dir(name), ref)
		if filepath.Clean(target) != filepath.Clean("../../"+SchemaFile) {
			t.Errorf("%s: $schema=%s does not point at %s", name, ref, SchemaFile)
		}
	}
}

// TestSchemaAgreesWithLoader: documents the loader accepts validate, and
// documents it refuses for their keys or types do not.
func TestSchemaAgreesWithLoader(t *testing.T) {
	s := compile(t, "")
	base := "listen: 127.0.0.1:8080\nauth:\n  mode: none\nbackends:\n  - name: b\n    url: http://127.0.0.1:9000/mcp\n"
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	as := "listen: 127.0.0.1:8080\nencryption_key: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\nbackends: [{name: b, url: 'http://127.0.0.1:9000/mcp'}]\nauth:\n  mode: authorization_server\n  authorization_server:\n    upstream: {type: static, users: [{username: u, password_hash: '" + string(hash) + "'}]}\n"
	lookup := func(k string) (string, bool) {
		v, ok := map[string]string{"N": "7"}[k]
		return v, ok
	}
	for _, tc := range []struct {
		name, doc string
		valid     bool
	}{
		{"minimal", base, true},
		{"duration string", base + "shutdown_timeout: 45s\n", true},
		{"duration compound", base + "shutdown_timeout: 1h30m\n", true},
		{"env in an integer", base + "security:\n  max_in_flight_per_ip: ${N}\n", true},
		{"env in a duration", base + "shutdown_timeout: ${T:-30s}\n", true},
		{"audience as a string", "auth:\n  mode: jwt\n  jwt:\n    issuers: [{issuer: 'https://i.example.com', audience: a}]\nbackends: [{name: b, url: 'http://127.0.0.1:9000/mcp'}]\n", true},
		{"audience as a list", "auth:\n  mode: jwt\n  jwt:\n    issuers: [{issuer: 'https://i.example.com', audience: [a, b]}]\nbackends: [{name: b, url: 'http://127.0.0.1:9000/mcp'}]\n", true},
		{"refresh_grace bare 0", strings.Replace(as, "    upstream:", "    refresh_grace: 0\n    upstream:", 1), true},
		{"refresh_grace 10s", strings.Replace(as, "    upstream:", "    refresh_grace: 10s\n    upstream:", 1), true},
		{"policy map of roles", base + "policy:\n  roles:\n    r: {tools: ['*']}\n  groups:\n    g: [r]\n", true},
		{"stdio backend", "listen: 127.0.0.1:8080\nauth: {mode: none}\nbackends:\n  - name: b\n    command: [python3, -m, srv]\n    env: {K: v}\n    idle_timeout: 5m\n", true},

		{"unknown top-level key", base + "listn: x\n", false},
		{"unknown nested key", "auth:\n  mode: jwt\n  jwt:\n    issuers: [{issuer: 'https://i.example.com', audience: a, audiance: b}]\nbackends: [{name: b, url: 'http://127.0.0.1:9000/mcp'}]\n", false},
		{"unknown key in a map value", base + "policy:\n  roles:\n    r: {tool: ['*']}\n", false},
		{"duration without unit", base + "shutdown_timeout: 30\n", false},
		{"duration in words", base + "shutdown_timeout: 30 seconds\n", false},
		{"string for an integer", base + "security:\n  max_body_bytes: lots\n", false},
		{"value not allowed", base + "log:\n  format: xml\n", false},
		{"list for an object", base + "tls: [a]\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, loadErr := config.Parse([]byte(tc.doc), lookup, config.Overrides{})
			schemaErr := s.Validate(instance(t, []byte(tc.doc)))
			if (loadErr == nil) != tc.valid {
				t.Fatalf("loader: valid=%v, want %v: %v", loadErr == nil, tc.valid, loadErr)
			}
			if (schemaErr == nil) != tc.valid {
				t.Fatalf("schema: valid=%v, want %v: %v", schemaErr == nil, tc.valid, schemaErr)
			}
		})
	}
}

// TestEveryObjectClosed: additionalProperties is false on every object with
// fixed keys, so the schema refuses unknown keys as the loader does.
func TestEveryObjectClosed(t *testing.T) {
	raw, err := os.ReadFile("../../" + SchemaFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	objects := 0
	var walk func(v any, at string)
	walk = func(v any, at string) {
		switch v := v.(type) {
		case map[string]any:
			if _, ok := v["properties"]; ok {
				objects++
				if v["additionalProperties"] != false {
					t.Errorf("%s: object without additionalProperties: false", at)
				}
			}
			for k, c := range v {
				walk(c, at+"/"+k)
			}
		case []any:
			for i, c := range v {
				walk(c, at+"/"+string(rune('0'+i)))
			}
		}
	}
	walk(doc, "#")
	if objects < 20 {
		t.Fatalf("only %d objects in the schema", objects)
	}
}
