package main

import (
	"os"
	"testing"
)

// TestMain lets the test binary double as the mcpgate command (a real
// gateway process, hardened by main) and as a stdio MCP server probing what
// it can read of that gateway.
func TestMain(m *testing.M) {
	switch os.Getenv("MCPGATE_TEST_ROLE") {
	case "gateway":
		os.Args = append([]string{"mcpgate"}, os.Args[1:]...)
		main()
		os.Exit(0)
	case "gateway-unhardened": // the control: main without procsec.Harden
		if err := newRootCmd().Execute(); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	case "probe":
		runProbe()
		os.Exit(0)
	}
	os.Exit(m.Run())
}
