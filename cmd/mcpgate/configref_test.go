package main

import (
	"bytes"
	"os"
	"testing"
)

// TestConfigSchemaAndDocs: `mcpgate config schema` and `config docs` print
// exactly the checked-in docs/mcpgate.schema.json and
// docs/config-reference.md, so a user's binary and the repository agree.
func TestConfigSchemaAndDocs(t *testing.T) {
	for _, tc := range []struct{ sub, file string }{
		{"schema", "../../docs/mcpgate.schema.json"},
		{"docs", "../../docs/config-reference.md"},
	} {
		t.Run(tc.sub, func(t *testing.T) {
			want, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			cmd := newConfigCmd()
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetArgs([]string{tc.sub})
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Errorf("config %s output (%d bytes) differs from %s (%d bytes)", tc.sub, out.Len(), tc.file, len(want))
			}
		})
	}
}
