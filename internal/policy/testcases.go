package policy

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
	"go.yaml.in/yaml/v3"

	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/validate"
)

// TestFile is a policy test table, kept beside the policy it tests:
//
//	policy: vsphere.yaml        # relative to this file: a policy or a full config
//	cases:
//	  - case: readers can list VMs
//	    sub: alice
//	    groups: [vsphere-readers]
//	    tool: list_vms
//	    expect: allow
type TestFile struct {
	Policy string     `yaml:"policy"`
	Cases  []TestCase `yaml:"cases"`
}

// TestCase is one row of a policy test table.
type TestCase struct {
	// Case is a label for the row.
	Case string `yaml:"case"`
	// The caller. Iss defaults to "https://issuer.test". Scopes omitted
	// means a token without a scope claim (fallback_scopes apply); an
	// empty list means a scope claim with no scopes. EmailVerified
	// defaults to true when Email is set.
	Sub           string   `yaml:"sub"`
	Iss           string   `yaml:"iss"`
	Email         string   `yaml:"email"`
	EmailVerified *bool    `yaml:"email_verified"`
	Groups        []string `yaml:"groups"`
	Scopes        []string `yaml:"scopes"`
	// The request. Method defaults to tools/call. Tool and Name are
	// synonyms: the tool or prompt name or the resource URI. Ref is
	// "prompt" or "resource" for completion/complete; Subscriptions are the
	// URIs of subscriptions/listen. Args are the call's arguments.
	Method        string   `yaml:"method"`
	Backend       string   `yaml:"backend"`
	Tool          string   `yaml:"tool"`
	Name          string   `yaml:"name"`
	Ref           string   `yaml:"ref"`
	Subscriptions []string `yaml:"subscriptions"`
	Args          any      `yaml:"args"`
	// The expectation: Expect is allow, deny or would_deny (the Effect).
	// MissingScopes, when set, must equal the decision's. Visible, when
	// set, is the expected list visibility of the target.
	Expect        string   `yaml:"expect"`
	MissingScopes []string `yaml:"missing_scopes"`
	Visible       *bool    `yaml:"visible"`
}

// TestResult is the outcome of one TestCase.
type TestResult struct {
	Case     TestCase
	Decision Decision
	Pass     bool
	// Problem says what differed, when Pass is false.
	Problem string
}

// LoadTests reads a test table. It returns the table and the path of the
// policy it names, resolved against the table's directory.
func LoadTests(path string) (*TestFile, string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, validate.YAMLError(err))
	}
	var tf TestFile
	if err := decodeStrict(&root, &tf); err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	if tf.Policy == "" {
		return nil, "", fmt.Errorf("%s: policy: the file under test is required", path)
	}
	if len(tf.Cases) == 0 {
		return nil, "", fmt.Errorf("%s: cases: no test cases", path)
	}
	policy := tf.Policy
	if !filepath.IsAbs(policy) {
		policy = filepath.Join(filepath.Dir(path), policy)
	}
	return &tf, policy, nil
}

// Principal builds the caller of the case.
func (c *TestCase) Principal() *identity.Principal {
	iss := c.Iss
	if iss == "" {
		iss = "https://issuer.test"
	}
	verified := c.Email != ""
	if c.EmailVerified != nil {
		verified = *c.EmailVerified
	}
	return &identity.Principal{
		Issuer: iss, Subject: c.Sub, Username: c.Sub, Email: c.Email, EmailVerified: verified,
		Groups: c.Groups, Scopes: c.Scopes,
	}
}

// Request builds the request of the case.
func (c *TestCase) Request() (Request, error) {
	req := Request{Method: c.Method, Backend: c.Backend, Name: c.Name, RefKind: c.Ref, Subscriptions: c.Subscriptions}
	if req.Method == "" {
		req.Method = "tools/call"
	}
	if c.Tool != "" {
		if c.Name != "" && c.Name != c.Tool {
			return req, fmt.Errorf("tool and name differ")
		}
		req.Name = c.Tool
	}
	switch c.Ref {
	case "", mcp.RefPrompt, mcp.RefResource:
	default:
		return req, fmt.Errorf("ref must be %q or %q", mcp.RefPrompt, mcp.RefResource)
	}
	switch args := c.Args.(type) {
	case nil:
	case string: // a JSON text, used as is (duplicate names are errors)
		v := jsontext.Value(args)
		if !v.IsValid() || v.Kind() != '{' {
			return req, fmt.Errorf("args must be a JSON object without duplicate names")
		}
		req.Arguments = json.RawMessage(args)
	case map[string]any:
		b, err := json.Marshal(args)
		if err != nil {
			return req, fmt.Errorf("args: %w", err)
		}
		req.Arguments = b
	default:
		return req, fmt.Errorf("args must be a mapping")
	}
	return req, nil
}

// RunTestFile runs the test table at path against the policy it names and
// writes one line per case and a summary ("N passed, M failed") to w. It
// returns the number of failed cases.
func RunTestFile(path string, w io.Writer) (int, error) {
	tf, policyPath, err := LoadTests(path)
	if err != nil {
		return 0, err
	}
	cfg, err := LoadFile(policyPath)
	if err != nil {
		return 0, err
	}
	e, err := Compile(*cfg)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", policyPath, err)
	}
	failed := 0
	for _, r := range RunTests(e, tf.Cases) {
		if !r.Pass {
			failed++
		}
		fmt.Fprintln(w, r)
	}
	fmt.Fprintf(w, "%d passed, %d failed\n", len(tf.Cases)-failed, failed)
	return failed, nil
}

// RunTests runs every case against e.
func RunTests(e *Engine, cases []TestCase) []TestResult {
	out := make([]TestResult, len(cases))
	for i, c := range cases {
		out[i] = runCase(e, c)
	}
	return out
}

func runCase(e *Engine, c TestCase) TestResult {
	res := TestResult{Case: c}
	switch c.Expect {
	case EffectAllow, EffectDeny, EffectWouldDeny:
	default:
		res.Problem = fmt.Sprintf("expect must be allow, deny or would_deny, not %q", c.Expect)
		return res
	}
	req, err := c.Request()
	if err != nil {
		res.Problem = err.Error()
		return res
	}
	p := c.Principal()
	res.Decision = e.Decide(p, req)
	var problems []string
	if res.Decision.Effect != c.Expect {
		problems = append(problems, fmt.Sprintf("got %s (%s), want %s", res.Decision.Effect, res.Decision.Rule, c.Expect))
	}
	if c.MissingScopes != nil && !slices.Equal(sortedCopy(c.MissingScopes), sortedCopy(res.Decision.MissingScopes)) {
		problems = append(problems, fmt.Sprintf("missing scopes %v, want %v", res.Decision.MissingScopes, c.MissingScopes))
	}
	if c.Visible != nil {
		if got := e.Visible(p, req.Method, req.Backend, req.Name); got != *c.Visible {
			problems = append(problems, fmt.Sprintf("visible=%v, want %v", got, *c.Visible))
		}
	}
	res.Problem = strings.Join(problems, "; ")
	res.Pass = res.Problem == ""
	return res
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// String renders a result as one line.
func (r TestResult) String() string {
	label := r.Case.Case
	if label == "" {
		label = fmt.Sprintf("%s %s as %s", r.Case.Method, r.Case.Tool+r.Case.Name, r.Case.Sub)
	}
	if r.Pass {
		return fmt.Sprintf("PASS  %s: %s (%s)", label, r.Decision.Effect, r.Decision.Rule)
	}
	return fmt.Sprintf("FAIL  %s: %s", label, r.Problem)
}
