package validate

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

type inner struct {
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`
}

type durOrZero time.Duration

func (durOrZero) ExpectedYAML() string { return "0 or a duration" }
func (d *durOrZero) UnmarshalYAML(n *yaml.Node) error {
	if n.Value == "0" {
		*d = 0
		return nil
	}
	var v time.Duration
	if err := n.Decode(&v); err != nil {
		return err
	}
	*d = durOrZero(v)
	return nil
}

type outer struct {
	Name    string            `yaml:"name"`
	On      bool              `yaml:"on"`
	Limit   inner             `yaml:"limit"`
	List    []inner           `yaml:"list"`
	Map     map[string]inner  `yaml:"map"`
	Wait    time.Duration     `yaml:"wait"`
	Grace   durOrZero         `yaml:"grace"`
	Any     any               `yaml:"any"`
	Strings map[string]string `yaml:"strings"`
}

func TestCheckYAML(t *testing.T) {
	tests := []struct {
		doc  string
		want []string
	}{
		{"name: x\non: true\nlimit: {rate: 1.5, burst: 2}\nlist: [{rate: 1}]\nmap: {a: {burst: 1}}\nwait: 5s\ngrace: 0\nany: [1, {a: b}]\nstrings: {k: v}\n", nil},
		{"limit: 50\n", []string{"limit: expected a mapping (keys burst, rate), found the number 50 (line 1)"}},
		{"limit: {rate: fast}\n", []string{`limit.rate: expected a number, found the text "fast" (line 1)`}},
		{"list: {rate: 1}\n", []string{"list: expected a list, found a mapping (line 1)"}},
		{"list: [{burst: many}]\n", []string{`list[0].burst: expected a whole number, found the text "many" (line 1)`}},
		{"map: [1]\n", []string{"map: expected a mapping, found a list (line 1)"}},
		{"map: {a: {brust: 1}}\n", []string{"map.a.brust: unknown key (line 1)"}},
		{"on: maybe\n", []string{`on: expected true or false, found the text "maybe" (line 1)`}},
		{"wait: 5\n", []string{"wait: expected a duration such as 30s, 5m or 1h, found the number 5 (line 1)"}},
		{"grace: later\n", []string{`grace: expected 0 or a duration, found the text "later" (line 1)`}},
		{"name: [a]\n", []string{"name: expected text, found a list (line 1)"}},
		{"Name: x\n", []string{"Name: unknown key (line 1); did you mean name?"}},
		{"name: ~\nlimit:\n", nil}, // empty values keep defaults
		{"- 1\n", []string{"(top level): expected a mapping (keys any, grace, limit, list, map, name, on, strings, ...), found a list (line 1)"}},
	}
	for _, tc := range tests {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(tc.doc), &n); err != nil {
			t.Fatal(err)
		}
		var p Problems
		CheckYAML(n.Content[0], reflect.TypeFor[outer](), "", &p)
		if got := p.List(); !slicesEqual(got, tc.want) {
			t.Errorf("%q:\n got %q\nwant %q", tc.doc, got, tc.want)
		}
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

func TestYAMLError(t *testing.T) {
	var v struct{ A int }
	err := YAMLError(yaml.Unmarshal([]byte("a: x\n"), &v))
	var ve *Error
	if !errors.As(err, &ve) || strings.Contains(err.Error(), "!!") || strings.Contains(err.Error(), "unmarshal") {
		t.Errorf("YAMLError = %v", err)
	}
	if err := YAMLError(yaml.Unmarshal([]byte("a: [\n"), &v)); err == nil || !strings.HasPrefix(err.Error(), "not valid YAML: ") {
		t.Errorf("syntax: %v", err)
	}
	if YAMLError(nil) != nil {
		t.Error("YAMLError(nil) != nil")
	}
}
