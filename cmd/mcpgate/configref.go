package main

import (
	"github.com/spf13/cobra"

	"github.com/mcpgate/mcpgate/internal/configref"
)

// newConfigRefCmds are `config schema` and `config docs`: the JSON Schema
// and the key-by-key reference, generated from the config types (the same
// text as docs/mcpgate.schema.json and docs/config-reference.md).
func newConfigRefCmds() []*cobra.Command {
	schema := &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of the config file (for yaml-language-server)",
		Long: "Print the JSON Schema (draft-07) of mcpgate.yaml. Editors with yaml-language-server complete and check\n" +
			"a config whose first line is  # yaml-language-server: $schema=PATH-OR-URL",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := configref.Build(nil)
			if err != nil {
				return err
			}
			out, err := configref.Schema(n)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	docs := &cobra.Command{
		Use:   "docs",
		Short: "Print the reference of every config key (Markdown)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := configref.Build(nil)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(append(configref.Markdown(n), '\n'))
			return err
		},
	}
	return []*cobra.Command{schema, docs}
}
