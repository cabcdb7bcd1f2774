package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/policy"
	"github.com/mcpgate/mcpgate/internal/validate"
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
		endpoint   string
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

At an aggregated endpoint of a full config (--endpoint, by name or path, or
--backend naming the endpoint), --tool is the name a client sees there
(vsphere__get_vm, or a renamed one): it is explained as what the endpoint
routes it to, the backend and the tool's original name, as the gateway
decides it.

Exits 0 when the request is allowed, 1 when it is denied (or would be, in
shadow mode).`,
		Example: `  mcpgate policy explain --config examples/policies/vsphere.yaml \
    --sub alice --groups vsphere-operators --tool delete_vm --args '{"vm_name":"web-1"}'
  mcpgate policy explain --config mcpgate.yaml --endpoint /mcp --sub alice --groups ops --tool vsphere__get_vm`,
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
			topo, err := config.ReadTopology(configPath)
			if err != nil {
				return err
			}
			if len(topo.Backends) > 0 {
				// A full config: the policy must name its backends, as at start.
				var p validate.Problems
				cfg.CheckBackends("policy", topo.Known(), &p)
				if err := p.Err(); err != nil {
					return err
				}
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
			if endpoint == "" && topo.Backends != nil {
				if _, ok := topo.Endpoint(req.Backend); ok {
					endpoint = req.Backend // the gateway routes it as the endpoint does
				}
			}
			var via *config.Topology
			exposed := req.Name
			if endpoint != "" {
				if err := routeAtEndpoint(topo, endpoint, cmd.Flags().Changed("backend"), &req); err != nil {
					return err
				}
				via = topo
			}
			x := e.Explain(c.Principal(), req)
			if via != nil {
				ep, _ := via.Endpoint(endpoint)
				x.Endpoint = ep.Name
				if exposed != req.Name {
					x.Exposed = exposed
				}
			}
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
	f.StringVar(&endpoint, "endpoint", "", "aggregated endpoint (name or path, from --config): --tool/--name is the name the endpoint exposes")
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

// routeAtEndpoint rewrites req, named as a client of the aggregated endpoint
// sees it, into what the gateway decides there (aggregate.Endpoint.Route):
// a tool or prompt goes to its backend under its original name, a resource
// URI to the backend that serves URIs no list has named, and anything else
// is decided with the endpoint's name. backendSet says whether --backend
// was given (then it must be the endpoint).
func routeAtEndpoint(topo *config.Topology, endpoint string, backendSet bool, req *policy.Request) error {
	ep, ok := topo.Endpoint(endpoint)
	if !ok {
		if len(topo.Endpoints) == 0 {
			return fmt.Errorf("--endpoint %s: the --config file configures no aggregated endpoint (give a full mcpgate config)", endpoint)
		}
		var have []string
		for _, e := range topo.Endpoints {
			have = append(have, e.Name+" ("+e.Path+")")
		}
		return fmt.Errorf("--endpoint %s: no such endpoint; the config has %s", endpoint, strings.Join(have, ", "))
	}
	if backendSet && req.Backend != ep.Name && req.Backend != ep.Path {
		return fmt.Errorf("--backend %s and --endpoint %s: the endpoint finds the backend; give one of them", req.Backend, endpoint)
	}
	req.Backend = ep.Name
	switch {
	case req.Method == "tools/call" || req.Method == "prompts/get" || req.Method == "completion/complete" && req.RefKind == "prompt":
		b, name, ok := ep.Resolve(req.Name)
		if !ok {
			return fmt.Errorf("endpoint %s exposes no tool or prompt %q: its names are <backend>%s<name>, or a rename", ep.Name, req.Name, ep.Separator)
		}
		req.Backend, req.Name = b, name
	case strings.HasPrefix(req.Method, "resources/") && req.Method != "resources/list" && req.Method != "resources/templates/list",
		req.Method == "subscriptions/listen", req.Method == "completion/complete":
		b, ok := ep.ResourceBackend()
		if !ok {
			return fmt.Errorf("endpoint %s routes a resource URI to the backend that listed it: explain it with --backend <that backend> instead of --endpoint", ep.Name)
		}
		req.Backend = b
	}
	return nil
}
