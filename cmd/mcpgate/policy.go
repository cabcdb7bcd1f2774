package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mcpgate/mcpgate/internal/policy"
)

// newPolicyCmd is `mcpgate policy`: explain a decision, run a policy's test
// table.
func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:           "policy",
		Short:         "Explain and test authorization policies",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.AddCommand(newPolicyExplainCmd(), newPolicyTestCmd(), newPolicyReloadCmd())
	return cmd
}

// errDenied makes `policy explain` exit non-zero for a denial, so scripts
// can use it as a check.
var errDenied = errors.New("the policy denies this request")

func newPolicyExplainCmd() *cobra.Command {
	var (
		configPath string
		c          policy.TestCase
		args       string
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "explain --config FILE --sub SUBJECT [flags]",
		Short: "Explain why a request is allowed or denied, and what would change it",
		Long: `Decide one request as the gateway would and explain the decision: the
caller's roles and where they come from, the matching patterns, the scopes
required and present, the Cedar rules that applied, the deciding rule, and
what would turn a denial into an allow.

--config is a policy file or a full mcpgate config (its policy: section is
used). Without --scopes the token is taken to have no scope claim, so
fallback_scopes apply; --scopes "" is a scope claim with no scopes.

Exits 0 when the request is allowed, 1 when it is denied (or would be, in
shadow mode).`,
		Example: `  mcpgate policy explain --config examples/policies/vsphere.yaml \
    --sub alice --groups vsphere-operators --tool delete_vm --args '{"vm_name":"web-1"}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return errors.New("--config is required")
			}
			cfg, err := policy.LoadFile(configPath)
			if err != nil {
				return err
			}
			e, err := policy.Compile(*cfg)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("scopes") {
				c.Scopes = nil
			} else if c.Scopes == nil {
				c.Scopes = []string{}
			}
			if !cmd.Flags().Changed("email-verified") {
				c.EmailVerified = nil
			}
			if args != "" {
				c.Args = args
			}
			req, err := c.Request()
			if err != nil {
				return err
			}
			x := e.Explain(c.Principal(), req)
			out := cmd.OutOrStdout()
			if asJSON {
				b, err := json.MarshalIndent(x, "", "  ")
				if err != nil {
					return err
				}
				fmt.Fprintln(out, string(b))
			} else {
				fmt.Fprint(out, x)
			}
			if x.Decision.Effect != policy.EffectAllow {
				return errDenied
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "policy file or mcpgate config file")
	f.StringVar(&c.Sub, "sub", "", "caller's subject")
	f.StringVar(&c.Iss, "iss", "", "caller's issuer (default https://issuer.test)")
	f.StringVar(&c.Email, "email", "", "caller's email")
	verified := true
	c.EmailVerified = &verified
	f.BoolVar(&verified, "email-verified", true, "whether the email is verified")
	f.StringSliceVar(&c.Groups, "groups", nil, "caller's groups, comma-separated")
	f.StringSliceVar(&c.Scopes, "scopes", nil, "token scopes, comma-separated (omit for a token without a scope claim)")
	f.StringVar(&c.Method, "method", "tools/call", "JSON-RPC method")
	f.StringVar(&c.Backend, "backend", "", "backend name")
	f.StringVar(&c.Tool, "tool", "", "tool name")
	f.StringVar(&c.Name, "name", "", "prompt name or resource URI (or tool name)")
	f.StringVar(&c.Ref, "ref", "", `completion/complete reference kind: "prompt" or "resource"`)
	f.StringSliceVar(&c.Subscriptions, "subscribe", nil, "subscriptions/listen resource URIs")
	f.StringVar(&args, "args", "", "call arguments as a JSON object")
	f.BoolVar(&asJSON, "json", false, "print the explanation as JSON")
	return cmd
}

func newPolicyTestCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "test FILE",
		Short: "Run a policy test table",
		Long: `Run the cases of a policy test table (see examples/policies/*.test.yaml)
against the policy the table names (relative to the table). Prints one line
per case and "N passed, M failed"; exits 1 if any case fails.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			failed, err := policy.RunTestFile(args[0], cmd.OutOrStdout())
			if err != nil {
				return err
			}
			if failed > 0 {
				return fmt.Errorf("%d policy test(s) failed", failed)
			}
			return nil
		},
	}
}
