package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Work with configuration files"}
	var f configFlags
	check := &cobra.Command{
		Use:   "check [FILE]",
		Short: "Validate a config file and print every problem found",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				f.path = args[0]
			}
			cfg, err := f.load()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "OK: %s (auth mode %s, %d backend(s))\n", f.path, cfg.Auth.Mode, len(cfg.Backends))
			return nil
		},
	}
	f.register(check)
	cmd.AddCommand(check)
	return cmd
}
