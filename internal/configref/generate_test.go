package configref

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestGeneratedFilesUpToDate regenerates the reference, the schema and the
// embedded doc comments from the source tree and compares them with the
// checked-in files: a config field added, renamed, re-documented or
// re-defaulted without `go generate ./internal/configref` fails here.
func TestGeneratedFilesUpToDate(t *testing.T) {
	files, err := Generate("../..")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Fatalf("generated %d files, want 3", len(files))
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join("../..", name))
		if err != nil {
			t.Errorf("%s: %v (run go generate ./internal/configref)", name, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run go generate ./internal/configref", name)
		}
	}
}

// TestEmbeddedDocsMatchSource: what the binary prints (mcpgate config schema,
// config docs) is the checked-in text, built from the embedded doc comments.
func TestEmbeddedDocsMatchSource(t *testing.T) {
	n, err := Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	schema, err := Schema(n)
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile("../../" + SchemaFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(schema, onDisk) {
		t.Errorf("the schema built from docs_gen.go differs from %s: run go generate ./internal/configref", SchemaFile)
	}
	md, err := os.ReadFile("../../" + ReferenceFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(Markdown(n), '\n'), md) {
		t.Errorf("the reference built from docs_gen.go differs from %s: run go generate ./internal/configref", ReferenceFile)
	}
}

// TestReferenceLinksResolve: links into the reference from the other docs
// name headings it has (keys move when the code changes; links must follow).
func TestReferenceLinksResolve(t *testing.T) {
	ref, err := os.ReadFile("../../" + ReferenceFile)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(ref), "\n") {
		if h, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " "); ok && strings.HasPrefix(line, "#") {
			anchors[anchor(h)] = true
		}
	}
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
	link := regexp.MustCompile(`config-reference\.md#([^)\s]+)`)
	found := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(raw), -1) {
			found++
			if !anchors[m[1]] {
				t.Errorf("%s links to config-reference.md#%s, which has no such heading", f, m[1])
			}
		}
	}
	if found == 0 {
		t.Fatal("no links into the reference found")
	}
}
