package validate

import (
	"reflect"
	"slices"
	"testing"
)

func TestYAMLFields(t *testing.T) {
	type Inner struct {
		A int `yaml:"a"`
		B int `yaml:"b,omitempty"`
	}
	type outer struct {
		Named    string `yaml:"named"`
		NoTag    string
		Skipped  string `yaml:"-"`
		hidden   string // unexported: not a key
		*Inner   `yaml:",inline"`
		Trailing bool `yaml:"trailing"`
	}
	var keys []string
	var owners []string
	for f := range YAMLFields(reflect.TypeFor[outer]()) {
		keys = append(keys, f.Key)
		owners = append(owners, f.Owner.Name())
	}
	if want := []string{"named", "notag", "a", "b", "trailing"}; !slices.Equal(keys, want) {
		t.Errorf("keys = %q, want %q", keys, want)
	}
	if want := []string{"outer", "outer", "Inner", "Inner", "outer"}; !slices.Equal(owners, want) {
		t.Errorf("owners = %q, want %q", owners, want)
	}
	// Stopping early is honoured.
	n := 0
	for range YAMLFields(reflect.TypeFor[outer]()) {
		n++
		break
	}
	if n != 1 {
		t.Errorf("n = %d", n)
	}
}
