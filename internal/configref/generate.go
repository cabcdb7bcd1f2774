package configref

import "path/filepath"

// DocsGoFile is the generated file holding the doc comments, relative to
// the repository root.
const DocsGoFile = "internal/configref/docs_gen.go"

// Generate produces every generated file from the source tree at repoRoot,
// keyed by path relative to it.
func Generate(repoRoot string) (map[string][]byte, error) {
	docs, err := ParseDocs(repoRoot)
	if err != nil {
		return nil, err
	}
	n, err := Build(docs)
	if err != nil {
		return nil, err
	}
	goSrc, err := DocsGo(docs)
	if err != nil {
		return nil, err
	}
	schema, err := Schema(n)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		filepath.FromSlash(DocsGoFile):    goSrc,
		filepath.FromSlash(ReferenceFile): append(Markdown(n), '\n'),
		filepath.FromSlash(SchemaFile):    schema,
	}, nil
}
