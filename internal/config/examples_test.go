package config

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"
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

// TestKubernetesManifestConfig: the config in deploy/kubernetes's ConfigMap
// loads too, with its policy file beside it.
func TestKubernetesManifestConfig(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/kubernetes/mcpgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var doc struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
		}
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("no ConfigMap found: %v", err)
		}
		if doc.Kind != "ConfigMap" {
			continue
		}
		dir := t.TempDir()
		for name, text := range doc.Data {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		env := map[string]string{"MCPGATE_ENCRYPTION_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "OIDC_CLIENT_SECRET": "s"}
		lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
		if _, err := parse([]byte(doc.Data["config.yaml"]), lookup, Overrides{}, dir); err != nil {
			t.Fatal(err)
		}
		return
	}
}
