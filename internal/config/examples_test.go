package config

import (
	"os"
	"path/filepath"
	"testing"
)

// TestShippedExamples: every example config in examples/ loads and
// validates (lesson: docs with configs the code rejects).
func TestShippedExamples(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	// Secrets the examples take from the environment.
	env := map[string]string{"MCPGATE_ENCRYPTION_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "OIDC_CLIENT_SECRET": "s"}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := parse(raw, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, Overrides{}, filepath.Dir(f)); err != nil {
				t.Errorf("%s: %v", f, err)
			}
		})
	}
}
