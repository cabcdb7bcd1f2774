package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/mcpgate/mcpgate/internal/config"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Work with configuration files"}
	cmd.AddCommand(newConfigCheckCmd(), newConfigPrintCmd())
	cmd.AddCommand(newConfigRefCmds()...)
	return cmd
}

func newConfigCheckCmd() *cobra.Command {
	var f configFlags
	var strict bool
	check := &cobra.Command{
		Use:   "check [FILE]",
		Short: "Validate a config file and print every problem and warning found",
		Long: "Validate a config file and print every problem found, then warnings: settings that are valid\n" +
			"but that, in practice, fail users (a public listener without public_url, a groups claim whose\n" +
			"scope is not requested, ...) or are for development only. Exit status 1 on problems, and with\n" +
			"--strict on warnings too.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				f.path = args[0]
			}
			return configCheck(cmd.OutOrStdout(), &f, strict)
		},
	}
	f.register(check)
	check.Flags().BoolVar(&strict, "strict", false, "fail on warnings too")
	return check
}

// configCheck loads and validates the configuration and prints what was
// read, the warnings, and a summary.
func configCheck(out io.Writer, f *configFlags, strict bool) error {
	fmt.Fprintln(out, source(f.path))
	cfg, err := f.load()
	if err != nil {
		return err
	}
	warnings := cfg.Warnings()
	for _, w := range warnings {
		fmt.Fprintf(out, "warning: %s\n", w)
	}
	fmt.Fprintf(out, "OK: auth mode %s, %d backend(s), %d warning(s)\n", cfg.Auth.Mode, len(cfg.Backends), len(warnings))
	if strict && len(warnings) > 0 {
		return errors.New("warnings found (--strict)")
	}
	return nil
}

// source says where the configuration comes from.
func source(path string) string {
	if path == "" {
		return "Read: no config file (none given with --config or MCPGATE_CONFIG); flags, MCPGATE_* environment and defaults only"
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return "Read: " + path
}

func newConfigPrintCmd() *cobra.Command {
	var f configFlags
	print := &cobra.Command{
		Use:   "print [FILE]",
		Short: "Print the effective configuration, secrets redacted",
		Long: "Print the configuration the gateway would run with, as YAML: the file after ${ENV}\n" +
			"substitution, MCPGATE_* environment overrides, flags and defaults. Secrets (encryption_key,\n" +
			"client secrets, tokens, password hashes, the store DSN, static backend credentials, stdio\n" +
			"environment values) are shown as " + config.Redacted + ".",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				f.path = args[0]
			}
			cfg, err := f.load()
			if err != nil {
				return err
			}
			b, err := cfg.Print()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "# %s\n", source(f.path))
			_, err = out.Write(b)
			return err
		},
	}
	f.register(print)
	return print
}
