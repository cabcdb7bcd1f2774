package configref

import (
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/mcpgate/mcpgate/internal/config"
)

// TestEnumsMatchValidate: the allowed values the doc comments declare are
// the ones Validate enforces. A value outside the list is reported at the
// key, and no listed value is: a comment listing a value the code refuses,
// or an enum on a key the code does not check, fails here.
func TestEnumsMatchValidate(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	as := `
listen: 127.0.0.1:8080
encryption_key: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
backends: [{name: b, url: 'http://127.0.0.1:9000/mcp', credential: {type: none}}]
auth:
  mode: authorization_server
  authorization_server:
    upstream: {type: static, users: [{username: u, password_hash: '` + string(hash) + `'}]}
`
	introspection := `
backends: [{name: b, url: 'http://127.0.0.1:9000/mcp'}]
auth:
  mode: introspection
  introspection: {endpoint: 'https://idp.example.com/introspect', client_id: c, client_secret: s, audience: a}
`
	n, err := Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	n.Walk(func(c *Node) {
		if len(c.Enum) == 0 {
			return
		}
		count++
		base := as
		if strings.HasPrefix(c.Path, "auth.introspection.") {
			base = introspection
		}
		at := strings.ReplaceAll(c.Path, "[]", "[0]")
		problemsAt := func(v string) []string {
			var doc map[string]any
			if err := yaml.Unmarshal([]byte(base), &doc); err != nil {
				t.Fatal(err)
			}
			set(doc, strings.Split(c.Path, "."), v)
			raw, err := yaml.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			_, err = config.Parse(raw, func(string) (string, bool) { return "", false }, config.Overrides{})
			if err == nil {
				return nil
			}
			var out []string
			for _, line := range strings.Split(err.Error(), "\n") {
				if strings.HasPrefix(strings.TrimPrefix(strings.TrimSpace(line), "- "), at+": ") {
					out = append(out, line)
				}
			}
			return out
		}
		if p := problemsAt("not-a-value"); len(p) == 0 {
			t.Errorf("%s: a value outside %v is not reported at the key", c.Path, c.Enum)
		}
		for _, v := range c.Enum {
			if p := problemsAt(v); len(p) > 0 && !dependsOnOtherKeys(p) {
				t.Errorf("%s: listed value %q is refused: %v", c.Path, v, p)
			}
		}
	})
	if count < 10 {
		t.Fatalf("only %d keys with allowed values", count)
	}
}

// dependsOnOtherKeys tells a refusal because of other keys (auth.mode none
// off loopback, a preset on a static upstream) from one of the value.
func dependsOnOtherKeys(problems []string) bool {
	p := strings.Join(problems, " ")
	return strings.Contains(p, "only allowed") || strings.Contains(p, "only valid") || strings.Contains(p, "built-in users have none")
}

// set writes v at path in a decoded YAML document, creating mappings and
// using the first element of lists ("backends[]").
func set(doc map[string]any, path []string, v any) {
	key, list := strings.CutSuffix(path[0], "[]")
	if len(path) == 1 {
		doc[key] = v
		return
	}
	if list {
		items, _ := doc[key].([]any)
		if len(items) == 0 {
			items = []any{map[string]any{}}
			doc[key] = items
		}
		set(items[0].(map[string]any), path[1:], v)
		return
	}
	next, ok := doc[key].(map[string]any)
	if !ok {
		next = map[string]any{}
		doc[key] = next
	}
	set(next, path[1:], v)
}

// secretName matches keys that hold credentials.
var secretName = regexp.MustCompile(`(^|_)(secret|password|token|key|dsn)(_|$)|^value$`)

// notSecret are keys whose names look like credentials but are not.
var notSecret = map[string]bool{
	"audit.hmac_key_env":                                          true, // names the variable, holds no key
	"tls.key_file":                                                true, // a path; the file's mode protects it
	"encryption_key_file":                                         true, // likewise
	"backends[].credential.private_key_file":                      true, // likewise
	"backends[].credential.token_endpoint":                        true, // a URL
	"backends[].credential.key_id":                                true, // a key's public name (kid)
	"backends[].credential.requested_token_type":                  true, // a token type's name
	"backends[].credential.subject_token_type":                    true, // likewise
	"internal_endpoint.tls.key_file":                              true, // likewise
	"auth.authorization_server.linked_providers[].token_endpoint": true, // a URL
}

// TestSecretsMarked: a key named like a credential carries secret:"true"
// (the reference and schema tell users to use ${ENV}), or is listed above
// with the reason it is not one.
func TestSecretsMarked(t *testing.T) {
	n, err := Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	n.Walk(func(c *Node) {
		if c.Key == "" || !secretName.MatchString(c.Key) || c.Shape == Object || c.Shape == Duration {
			return
		}
		if !c.Secret && !notSecret[c.Path] {
			t.Errorf("%s looks like a credential: tag its field secret:\"true\" or list it in notSecret", c.Path)
		}
	})
	for p := range notSecret {
		if n.Lookup(p) == nil {
			t.Errorf("notSecret lists %s, which is not a key", p)
		}
	}
	for p := range derived {
		if n.Lookup(p) == nil {
			t.Errorf("derived lists %s, which is not a key", p)
		}
	}
}

// TestPrintRedactsSecrets: `mcpgate config print` hides every key marked
// secret, so the tag and the redaction cannot disagree.
func TestPrintRedactsSecrets(t *testing.T) {
	n, err := Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	const sentinel = "user:s3ntinel-value@host"
	doc := map[string]any{}
	var secrets []string
	n.Walk(func(c *Node) {
		if !c.Secret {
			return
		}
		secrets = append(secrets, c.Path)
		set(doc, strings.Split(c.Path, "."), sentinel)
		if c.Shape == List { // encryption_key_previous: a list of secrets
			set(doc, strings.Split(c.Path, "."), []any{sentinel})
		}
		if c.Shape == Map { // stdio env: a map of secret values
			set(doc, strings.Split(c.Path, "."), "")
			setMap(doc, strings.Split(c.Path, "."), map[string]any{"K": sentinel})
		}
	})
	if len(secrets) < 5 {
		t.Fatalf("only %d secret keys", len(secrets))
	}
	raw, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var cfg config.Config
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	out, err := cfg.Print()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "s3ntinel") {
		t.Errorf("config print shows a secret; secret keys: %v\n%s", secrets, out)
	}
}

// setMap is set for a map value.
func setMap(doc map[string]any, path []string, v map[string]any) {
	set(doc, path, "")
	parent := doc
	for _, k := range path[:len(path)-1] {
		key, list := strings.CutSuffix(k, "[]")
		if list {
			parent = parent[key].([]any)[0].(map[string]any)
		} else {
			parent = parent[key].(map[string]any)
		}
	}
	parent[path[len(path)-1]] = v
}
