package main

import (
	"fmt"
	"strings"
)

// policyRules is the number of roles (and group mappings) in the benchmark
// policy; the caller's group maps to rule callerRule, near the end, so a
// linear scan would pay for the rules before it.
const (
	policyRules = 20
	callerRule  = 18
)

var callerGroup = fmt.Sprintf("team-%02d", callerRule)

// gatewayYAML is mcpgate's configuration for the benchmark: jwt mode against
// the local issuer, the backend twice (/mcp answering with SSE, jsonPath
// with JSON), a 20-rule policy, file audit with the default fsync
// interval, and rate limits set far above the offered load (the limiter
// stays in the request path, it just never refuses).
func gatewayYAML(listen, issuerURL, backendURL, auditPath string) string {
	base := "http://" + listen
	var b strings.Builder
	fmt.Fprintf(&b, `listen: %s
public_url: %s
log:
  level: info
auth:
  mode: jwt
  jwt:
    issuers:
      - issuer: %s
        audience: [%s/mcp, %s%s]
        allow_private_issuer: true
  scopes_supported: [mcp:tools]
rate_limit:
  per_ip: { rps: 1000000, burst: 1000000 }
  per_user: { rps: 1000000, burst: 1000000 }
backends:
  - name: demo
    url: %s
  - name: demo-json
    path: %s
    url: %s
audit:
  sink: file
  path: %s
policy:
  roles:
`, listen, base, issuerURL, base, base, jsonPath, backendURL, jsonPath, strings.TrimSuffix(backendURL, "/mcp")+jsonPath, auditPath)
	for i := 0; i < policyRules; i++ {
		tools := fmt.Sprintf(`["svc%02d_list_*", "svc%02d_get_*", "svc%02d_admin"]`, i, i, i)
		if i == callerRule {
			// Everything but the two write tools: every tool in a list is
			// decided, two are filtered out, and the response stays about
			// the size of the backend's, so that the client's parsing costs
			// the same on every target.
			tools = `["echo", "count", "list_*", "get_*", "tool_*"]`
		}
		fmt.Fprintf(&b, "    role-%02d: { tools: %s }\n", i, tools)
	}
	b.WriteString("  groups:\n")
	for i := 0; i < policyRules; i++ {
		fmt.Fprintf(&b, "    team-%02d: [role-%02d]\n", i, i)
	}
	return b.String()
}
