// Command gen writes the configuration reference, the JSON Schema and the
// doc comments the binary embeds; run it with go generate ./internal/configref.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mcpgate/mcpgate/internal/configref"
)

func main() {
	root := flag.String("root", ".", "repository root")
	flag.Parse()
	files, err := configref.Generate(*root)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(*root, name), data, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
