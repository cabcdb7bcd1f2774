package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/mcpgate/mcpgate/internal/validate"
)

// Load reads the config file at path and applies, in order: ${ENV}
// substitution, strict decoding, MCPGATE_* environment overrides, flag
// overrides, defaults, and validation. An empty path means no file.
func Load(path string, flags Overrides) (*Config, error) {
	var raw []byte
	if path != "" {
		var err error
		if raw, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
	}
	return parse(raw, os.LookupEnv, flags, filepath.Dir(path))
}

// Parse is Load on bytes; lookup resolves environment variables. Relative
// file paths in the config are relative to the working directory.
func Parse(raw []byte, lookup func(string) (string, bool), flags Overrides) (*Config, error) {
	return parse(raw, lookup, flags, "")
}

func parse(raw []byte, lookup func(string) (string, bool), flags Overrides, dir string) (*Config, error) {
	cfg, keyProblems, err := decode(raw, lookup)
	if err != nil {
		return nil, err
	}
	cfg.Policy.SetBaseDir(dir) // policy.file and cedar_file are relative to the config file
	if err := ApplyEnv(cfg, lookup); err != nil {
		return nil, err
	}
	if err := flags.Apply(cfg); err != nil {
		return nil, err
	}
	keyProblems = append(keyProblems, cfg.readKeyFile()...)
	cfg.SetDefaults()
	// Unknown keys and invalid values are reported together, so one run of
	// `mcpgate config check` shows every problem.
	err = cfg.Validate()
	var ve *validate.Error
	switch {
	case len(keyProblems) == 0:
		return cfg, err
	case errors.As(err, &ve):
		return nil, &validate.Error{Problems: append(keyProblems, ve.Problems...)}
	default:
		return nil, &validate.Error{Problems: keyProblems}
	}
}

// readKeyFile loads EncryptionKey from EncryptionKeyFile.
func (c *Config) readKeyFile() []string {
	var p validate.Problems
	switch {
	case c.EncryptionKeyFile == "":
	case c.EncryptionKey != "":
		p.Add("encryption_key_file", "cannot be combined with encryption_key (or MCPGATE_ENCRYPTION_KEY)")
	default:
		v, err := ReadSecretFile(c.EncryptionKeyFile)
		if err != nil {
			p.Add("encryption_key_file", "%v", err)
		}
		c.EncryptionKey = strings.TrimSpace(v)
	}
	return p.List()
}

// envRef matches ${NAME} and ${NAME:-default}.
var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// decode decodes strictly (every unknown key is reported with its key path
// and line) and substitutes ${ENV} references inside scalar values. The
// substitution runs on the parsed tree, not the text, so a secret containing
// YAML syntax cannot change the document's structure.
func decode(raw []byte, lookup func(string) (string, bool)) (cfg *Config, unknownKeys []string, err error) {
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return nil, nil, fmt.Errorf("parse config: %w", err)
	}
	cfg = &Config{}
	if len(root.Content) == 0 {
		return cfg, nil, nil // empty file: defaults only
	}
	var keys, p validate.Problems
	checkKeys(root.Content[0], reflect.TypeOf(cfg).Elem(), "", &keys)
	substitute(root.Content[0], "", lookup, &p)
	if err := p.Err(); err != nil {
		return nil, nil, err
	}
	if err := root.Content[0].Decode(cfg); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return nil, nil, &validate.Error{Problems: append(keys.List(), te.Errors...)}
		}
		return nil, nil, fmt.Errorf("decode config: %w", err)
	}
	return cfg, keys.List(), nil
}

// substitute expands ${NAME} and ${NAME:-default} in scalar values. NAME may
// instead be given as NAME_FILE, a file holding the value (see lookupFile).
// An unset variable without a default is an error: a missing secret must not
// silently become an empty string.
func substitute(n *yaml.Node, path string, lookup func(string) (string, bool), p *validate.Problems) {
	switch n.Kind {
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "${") {
			return
		}
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(m string) string {
			sub := envRef.FindStringSubmatch(m)
			v, ok, err := lookupFile(lookup, sub[1])
			if err != nil {
				p.Add(path, "%v (line %d)", err, n.Line)
				return ""
			}
			if ok {
				return v
			}
			if sub[2] != "" {
				return sub[3]
			}
			p.Add(path, "environment variable %s is not set (line %d)", sub[1], n.Line)
			return ""
		})
		if n.Style == 0 {
			n.Tag = "" // re-resolve plain scalars so ${PORT} can fill an int
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			substitute(n.Content[i+1], validate.Join(path, n.Content[i].Value), lookup, p)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			substitute(c, validate.Index(path, i), lookup, p)
		}
	}
}

// checkKeys walks the YAML tree beside the Go type and reports unknown keys
// with their path, which yaml's own strict mode reports only by line.
func checkKeys(n *yaml.Node, t reflect.Type, path string, p *validate.Problems) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // type errors are reported by the decoder
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			key := validate.Join(path, k.Value)
			if !ok {
				p.Add(key, "unknown key (line %d)", k.Line)
				continue
			}
			checkKeys(v, ft, key, p)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			checkKeys(n.Content[i+1], t.Elem(), validate.Join(path, n.Content[i].Value), p)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, c := range n.Content {
			checkKeys(c, t.Elem(), validate.Index(path, i), p)
		}
	}
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}
