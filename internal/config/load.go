package config

import (
	"errors"
	"fmt"
	"io/fs"
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
			return nil, readError(path, err)
		}
	}
	return parse(raw, os.LookupEnv, flags, filepath.Dir(path))
}

// readError says which file could not be read, as an absolute path
// (relative paths are resolved against a working directory the user may
// not think of), and why, without Go's syscall wording.
func readError(path string, err error) error {
	abs, aerr := filepath.Abs(path)
	if aerr != nil {
		abs = path
	}
	tried := path
	if abs != path {
		tried = fmt.Sprintf("%s (%s)", path, abs)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("config file not found: tried %s; pass the file with --config or MCPGATE_CONFIG", tried)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("config file %s is not readable by this user", tried)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("config file %s: %w", tried, err)
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
		return nil, nil, fmt.Errorf("config file: %w", validate.YAMLError(err))
	}
	cfg = &Config{}
	if len(root.Content) == 0 {
		return cfg, nil, nil // empty file: defaults only
	}
	var p validate.Problems
	substitute(root.Content[0], "", lookup, &p)
	if err := p.Err(); err != nil {
		return nil, nil, err
	}
	// Unknown keys and values of the wrong kind, by key path.
	var keys validate.Problems
	validate.CheckYAML(root.Content[0], reflect.TypeOf(cfg).Elem(), "", &keys)
	if err := root.Content[0].Decode(cfg); err != nil {
		if len(keys.List()) > 0 {
			return nil, nil, keys.Err()
		}
		return nil, nil, validate.YAMLError(err)
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
