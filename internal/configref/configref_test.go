package configref

import (
	"testing"
)

// TestEveryKeyDocumented: every key of the configuration has a doc comment,
// so the reference never lists a bare key.
func TestEveryKeyDocumented(t *testing.T) {
	docs, err := ParseDocs("../..")
	if err != nil {
		t.Fatal(err)
	}
	n, err := Build(docs)
	if err != nil {
		t.Fatal(err)
	}
	n.Walk(func(c *Node) {
		if c.Key != "" && c.Doc == "" {
			t.Errorf("%s: no doc comment on its Go field (or its type)", c.Path)
		}
	})
}
