// Command mcpgate is an authorization gateway for MCP servers.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/mcpgate/mcpgate/internal/procsec"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// hardenErr is the outcome of procsec.Harden at start-up.
var hardenErr error

func main() {
	// First thing: no core dumps, and no same-user process (such as a stdio
	// MCP server this gateway starts) may read our memory or environment,
	// which hold the encryption key. serve reports the outcome.
	hardenErr = procsec.Harden()
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "mcpgate:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "mcpgate",
		Short:         "Authorization gateway for MCP servers",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newServeCmd(),
		newConfigCmd(),
		newVersionCmd(),
		newDemoBackendCmd(),
		newQuickstartCmd(),
		newAuditCmd(),
		newUsersCmd(),
		newKeysCmd(),
		newGrantsCmd(),
		newPolicyCmd(),
		newHealthcheckCmd(),
		newCertsCmd(),
	)
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "mcpgate", version)
		},
	}
}
