package helm

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/mcpgate/mcpgate/internal/server/servertest"
)

// exportedMetrics starts a real gateway (authorization-server mode, metrics
// on), sends the requests that create a series of every labelled family (an
// unauthenticated MCP request, a token request) and returns the metric
// families /metrics lists, with their types.
func exportedMetrics(t *testing.T) map[string]string {
	t.Helper()
	dir := t.TempDir()
	base := servertest.Start(t, func(base string) string {
		return servertest.MinimalAuthServer + `
metrics: { enabled: true }
audit: { sink: file, path: ` + filepath.Join(dir, "audit.log") + ` }
`
	})
	for _, req := range []struct{ path, ctype, body string }{
		{"/mcp", "application/json", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`}, // 401
		{"/token", "application/x-www-form-urlencoded", "grant_type=refresh_token&refresh_token=x&client_id=y"},
	} {
		resp, err := http.Post(base+req.path, req.ctype, strings.NewReader(req.body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	families := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			families[f[2]] = f[3]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return families
}

var (
	quoted    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	matchers  = regexp.MustCompile(`\{[^}]*\}`)
	ranges    = regexp.MustCompile(`\[[^\]]*\]`)
	grouping  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	ident     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	operators = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "Inf": true, "NaN": true}
)

// metricNames returns the metric names a PromQL expression selects: every
// identifier that is not a function, a keyword, a label or a grouping list.
func metricNames(expr string) []string {
	e := quoted.ReplaceAllString(expr, `""`)
	e = matchers.ReplaceAllString(e, " ")
	e = ranges.ReplaceAllString(e, " ")
	e = grouping.ReplaceAllString(e, " ")
	var out []string
	for _, m := range ident.FindAllStringIndex(e, -1) {
		name := e[m[0]:m[1]]
		if m[0] > 0 && strings.ContainsAny(e[m[0]-1:m[0]], "0123456789.$") {
			continue // part of a number (1e3) or a variable
		}
		if strings.HasPrefix(strings.TrimLeft(e[m[1]:], " \t\n"), "(") || operators[name] {
			continue // a function call or an operator
		}
		out = append(out, name)
	}
	return out
}

// unknownMetrics lists the names of exprs that are not exported: a name is
// known if it is a family, or a histogram's/summary's _bucket, _count or _sum.
func unknownMetrics(exprs []string, families map[string]string) []string {
	var bad []string
	for _, e := range exprs {
		for _, n := range metricNames(e) {
			if _, ok := families[n]; ok {
				continue
			}
			known := false
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				if base, ok := strings.CutSuffix(n, suffix); ok {
					typ := families[base]
					known = typ == "histogram" || (typ == "summary" && suffix != "_bucket")
				}
			}
			if !known {
				bad = append(bad, n)
			}
		}
	}
	sort.Strings(bad)
	return slices.Compact(bad)
}

// dashboardExprs returns every query of the dashboard (panels and template
// variables), after checking the JSON parses.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, chart, "files", "mcpgate-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatal("dashboard without uid or panels")
	}
	var exprs []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			if q.Expr == "" {
				t.Errorf("panel %q has an empty query", p.Title)
			}
			exprs = append(exprs, q.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if inner, ok := strings.CutPrefix(v.Definition, "label_values("); ok {
			exprs = append(exprs, strings.SplitN(inner, ",", 2)[0])
		}
	}
	return exprs
}

// alertExprs returns the expr of every rule in the example alerts.
func alertExprs(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, chart, "files", "mcpgate-alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("alerts: %v", err)
	}
	var exprs []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("rule %+v without alert name or expr", r)
			}
			exprs = append(exprs, r.Expr)
		}
	}
	return exprs
}

// TestDashboardAndAlertsUseExportedMetrics: every metric the dashboard and
// the alerts query is one a running gateway exports, and the alerts the
// issue asks for are there.
func TestDashboardAndAlertsUseExportedMetrics(t *testing.T) {
	families := exportedMetrics(t)
	dash, alerts := dashboardExprs(t), alertExprs(t)
	if bad := unknownMetrics(dash, families); len(bad) > 0 {
		t.Errorf("the dashboard queries metrics the gateway does not export: %v", bad)
	}
	if bad := unknownMetrics(alerts, families); len(bad) > 0 {
		t.Errorf("the alerts query metrics the gateway does not export: %v", bad)
	}
	// What each required alert rests on is exported and used.
	used := map[string]bool{}
	for _, e := range alerts {
		for _, n := range metricNames(e) {
			used[n] = true
		}
	}
	for _, n := range []string{
		"mcpgate_requests_total",                             // authn failures (401), backend errors (502/504)
		"mcpgate_audit_write_failures_total",                 // audit write failures
		"mcpgate_authserver_request_duration_seconds_bucket", // token endpoint latency
	} {
		if !used[n] {
			t.Errorf("no alert uses %s", n)
		}
	}
}

// The name extraction itself: names inside label matchers, strings, ranges
// and grouping clauses are not metrics; functions are not; a misspelt
// metric is reported.
func TestMetricNames(t *testing.T) {
	expr := `histogram_quantile(0.99, sum by (le, endpoint) (rate(mcpgate_x_bucket{endpoint="token", job=~"$job"}[$__rate_interval]))) > 1
  and on (job) sum without (pod) (rate(mcpgate_y_total[5m])) > 0.2 * sum(mcpgate_z)`
	if got, want := metricNames(expr), []string{"mcpgate_x_bucket", "mcpgate_y_total", "mcpgate_z"}; !slices.Equal(got, want) {
		t.Errorf("metricNames = %v, want %v", got, want)
	}
	families := map[string]string{"mcpgate_x": "histogram", "mcpgate_y_total": "counter", "mcpgate_c": "counter"}
	if got := unknownMetrics([]string{expr, "mcpgate_c_bucket", "rate(mcpgate_requets_total[5m])"}, families); !slices.Equal(got, []string{"mcpgate_c_bucket", "mcpgate_requets_total", "mcpgate_z"}) {
		t.Errorf("unknownMetrics = %v", got)
	}
}
