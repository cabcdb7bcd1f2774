package helm

import (
	"encoding/base64"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type object = map[string]any

// render runs helm template and decodes every document.
func render(t *testing.T, args ...string) (map[string]object, error) {
	t.Helper()
	out, errOut, err := helm(t, append([]string{"template", "mg", chart}, args...)...)
	if err != nil {
		return nil, errors.New(errOut)
	}
	docs := map[string]object{}
	dec := yaml.NewDecoder(strings.NewReader(out))
	for {
		var o object
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("helm template output: %v\n%s", err, out)
		}
		if o == nil {
			continue
		}
		kind := o["kind"].(string)
		if _, dup := docs[kind]; dup && kind != "ConfigMap" {
			t.Fatalf("two %s objects", kind)
		}
		if kind == "ConfigMap" && strings.HasSuffix(dig(o, "metadata", "name").(string), "-dashboard") {
			kind = "DashboardConfigMap"
		}
		if kind == "Service" && strings.HasSuffix(dig(o, "metadata", "name").(string), "-internal") {
			kind = "InternalService"
		}
		docs[kind] = o
	}
	return docs, nil
}

// dig walks maps (string keys) and lists (int keys); nil when absent.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(object)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func container(t *testing.T, docs map[string]object) object {
	t.Helper()
	c, ok := dig(docs["Deployment"], "spec", "template", "spec", "containers", 0).(object)
	if !ok {
		t.Fatal("no container in the Deployment")
	}
	return c
}

// configCheck runs `mcpgate config check` on the rendered config.yaml (and
// policy.yaml beside it) with the rendered Secret's keys as files: the
// secrets mount of the Deployment is replaced by a temporary directory, in
// the config and in the environment the Deployment sets.
func configCheck(t *testing.T, docs map[string]object, existingSecret map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets")
	if err := os.Mkdir(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	data := existingSecret
	if data == nil {
		data = map[string]string{}
		for k, v := range dig(docs["Secret"], "data").(object) {
			b, err := base64.StdEncoding.DecodeString(v.(string))
			if err != nil {
				t.Fatal(err)
			}
			data[k] = string(b)
		}
	}
	for k, v := range data {
		if err := os.WriteFile(filepath.Join(secrets, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := container(t, docs)
	mount := ""
	for _, m := range dig(c, "volumeMounts").([]any) {
		if dig(m, "name") == "secrets" {
			mount = dig(m, "mountPath").(string)
		}
	}
	if mount == "" {
		t.Fatal("the secrets volume is not mounted")
	}
	for name, text := range dig(docs["ConfigMap"], "data").(object) {
		text := strings.ReplaceAll(text.(string), mount+"/", secrets+"/")
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	envList, _ := dig(c, "env").([]any)
	for _, e := range envList {
		v, _ := dig(e, "value").(string)
		env = append(env, dig(e, "name").(string)+"="+strings.Replace(v, mount+"/", secrets+"/", 1))
	}
	cmd := exec.Command(mcpgate(t), "config", "check", filepath.Join(dir, "config.yaml"))
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		cfg, _ := os.ReadFile(filepath.Join(dir, "config.yaml"))
		t.Fatalf("mcpgate config check: %v\n%s\nconfig.yaml:\n%s", err, out, cfg)
	}
	return string(out)
}

func TestChartDefaults(t *testing.T) {
	docs, err := render(t, requiredSecrets...)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget", "NetworkPolicy"} {
		if docs[kind] == nil {
			t.Errorf("no %s", kind)
		}
	}
	for _, kind := range []string{"HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule", "DashboardConfigMap", "PersistentVolumeClaim"} {
		if docs[kind] != nil {
			t.Errorf("%s rendered, but it is off by default", kind)
		}
	}
	if got := dig(docs["Deployment"], "spec", "replicas"); got != 2 {
		t.Errorf("replicas = %v, want 2", got)
	}
	if got := dig(docs["Service"], "spec", "sessionAffinity"); got != "ClientIP" {
		t.Errorf("Service sessionAffinity = %v, want ClientIP (MCP sessions are per replica)", got)
	}
	c := container(t, docs)
	for path, want := range map[string]any{
		"securityContext.readOnlyRootFilesystem":   true,
		"securityContext.allowPrivilegeEscalation": false,
		"securityContext.runAsNonRoot":             true,
		"securityContext.capabilities.drop":        []any{"ALL"},
		"livenessProbe.httpGet.path":               "/healthz",
		"startupProbe.httpGet.path":                "/healthz",
		"readinessProbe.httpGet.path":              "/readyz",
	} {
		var keys []any
		for _, k := range strings.Split(path, ".") {
			keys = append(keys, k)
		}
		if got := dig(c, keys...); !reflect.DeepEqual(got, want) {
			t.Errorf("container %s = %v, want %v", path, got, want)
		}
	}
	if got := dig(docs["Deployment"], "spec", "template", "spec", "automountServiceAccountToken"); got != false {
		t.Errorf("automountServiceAccountToken = %v, want false", got)
	}
	// Secrets reach the process as files, never as environment values.
	env := map[string]string{}
	for _, e := range dig(c, "env").([]any) {
		if dig(e, "valueFrom") != nil {
			t.Errorf("env %v takes a value from an object; secrets must be files", e)
		}
		v, _ := dig(e, "value").(string)
		env[dig(e, "name").(string)] = v
	}
	if env["MCPGATE_STORE_DSN_FILE"] != "/run/secrets/mcpgate/store-dsn" || env["OIDC_CLIENT_SECRET_FILE"] != "/run/secrets/mcpgate/OIDC_CLIENT_SECRET" {
		t.Errorf("env = %v, want MCPGATE_STORE_DSN_FILE and OIDC_CLIENT_SECRET_FILE under /run/secrets/mcpgate", env)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(dig(docs["ConfigMap"], "data", "config.yaml").(string)), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["encryption_key_file"] != "/run/secrets/mcpgate/encryption-key" || dig(cfg, "store", "driver") != "postgres" ||
		dig(cfg, "metrics", "enabled") != true || cfg["listen"] != "0.0.0.0:8080" || dig(cfg, "policy", "file") != "policy.yaml" {
		t.Errorf("rendered config = %v", cfg)
	}
	if out := configCheck(t, docs, nil); !strings.Contains(out, "OK:") {
		t.Errorf("config check: %s", out)
	}
	// The NetworkPolicy opens the http port only; no internal port by default.
	ingress := dig(docs["NetworkPolicy"], "spec", "ingress").([]any)
	if len(ingress) != 1 || dig(ingress[0], "ports", 0, "port") != "http" {
		t.Errorf("NetworkPolicy ingress = %v", ingress)
	}
}

// Everything optional on: autoscaling, ServiceMonitor, PrometheusRule,
// dashboard, a restricted egress.
func TestChartEverythingOn(t *testing.T) {
	docs, err := render(t, append(requiredSecrets,
		"--set", "autoscaling.enabled=true",
		"--set", "metrics.serviceMonitor.enabled=true",
		"--set", "metrics.prometheusRule.enabled=true",
		"--set", "metrics.grafanaDashboard.enabled=true",
		"--set", "networkPolicy.egress[0].to[0].namespaceSelector.matchLabels.name=db",
		"--set", "networkPolicy.ingressFrom[0].namespaceSelector.matchLabels.name=ingress")...)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule", "DashboardConfigMap", "PodDisruptionBudget"} {
		if docs[kind] == nil {
			t.Errorf("no %s", kind)
		}
	}
	if _, ok := dig(docs["Deployment"], "spec").(object)["replicas"]; ok {
		t.Error("the Deployment sets replicas although the HPA owns them")
	}
	rules, err := os.ReadFile(filepath.Join(root, chart, "files", "mcpgate-alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want object
	if err := yaml.Unmarshal(rules, &want); err != nil {
		t.Fatal(err)
	}
	if got := dig(docs["PrometheusRule"], "spec"); !reflect.DeepEqual(got, want) {
		t.Errorf("PrometheusRule spec differs from files/mcpgate-alerts.yaml:\n%v", got)
	}
	if dig(docs["DashboardConfigMap"], "data", "mcpgate.json") == nil {
		t.Error("dashboard ConfigMap without mcpgate.json")
	}
	types := dig(docs["NetworkPolicy"], "spec", "policyTypes").([]any)
	if !reflect.DeepEqual(types, []any{"Ingress", "Egress"}) || dig(docs["NetworkPolicy"], "spec", "ingress", 0, "from", 0, "namespaceSelector") == nil {
		t.Errorf("NetworkPolicy = %v", docs["NetworkPolicy"])
	}
	configCheck(t, docs, nil)
}

// One replica on SQLite: a PVC, the Recreate strategy, no PDB.
func TestChartSQLite(t *testing.T) {
	docs, err := render(t, "--set", "replicaCount=1", "--set", "store.driver=sqlite",
		"--set", "secrets.encryptionKey="+testKey, "--set", "secrets.values.OIDC_CLIENT_SECRET=x")
	if err != nil {
		t.Fatal(err)
	}
	if docs["PersistentVolumeClaim"] == nil || docs["PodDisruptionBudget"] != nil ||
		dig(docs["Deployment"], "spec", "strategy", "type") != "Recreate" {
		t.Errorf("sqlite: PVC %v, PDB %v, strategy %v", docs["PersistentVolumeClaim"] != nil, docs["PodDisruptionBudget"] != nil,
			dig(docs["Deployment"], "spec", "strategy"))
	}
	if _, ok := dig(docs["Secret"], "data").(object)["store-dsn"]; ok {
		t.Error("sqlite: the Secret holds a store-dsn")
	}
	configCheck(t, docs, nil)
}

// auth.mode jwt with an existing Secret: no key, no store, no chart Secret.
func TestChartJWTExistingSecret(t *testing.T) {
	docs, err := render(t, "-f", "deploy/helm/testdata/jwt.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if docs["Secret"] != nil {
		t.Error("a Secret is rendered although secrets.existingSecret is set")
	}
	cfg := dig(docs["ConfigMap"], "data", "config.yaml").(string)
	if dig(container(t, docs), "env") != nil {
		t.Errorf("env = %v, want none", dig(container(t, docs), "env"))
	}
	if strings.Contains(cfg, "encryption_key_file") || strings.Contains(cfg, "store:") {
		t.Errorf("jwt mode config has authorization-server keys:\n%s", cfg)
	}
	configCheck(t, docs, map[string]string{})
}

// The values schema and the templates refuse unsafe or unsupported values.
func TestChartRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"sqlite with two replicas", []string{"--set", "store.driver=sqlite"}, "'/replicaCount': value must be 1"},
		{"sqlite with autoscaling", []string{"--set", "store.driver=sqlite", "--set", "replicaCount=1", "--set", "autoscaling.enabled=true"}, "'/autoscaling/enabled': value must be false"},
		{"config.listen (owned by the chart)", []string{"--set", "config.listen=0.0.0.0:9999"}, "'/config': 'not' failed"},
		{"config.encryption_key", []string{"--set", "config.encryption_key=" + testKey}, "'/config': 'not' failed"},
		{"config.store", []string{"--set", "config.store.driver=memory"}, "'/config': 'not' failed"},
		{"writable root fs", []string{"--set", "securityContext.readOnlyRootFilesystem=false"}, "'/securityContext/readOnlyRootFilesystem'"},
		{"added capability", []string{"--set", "securityContext.capabilities.add[0]=NET_ADMIN"}, "'/securityContext/capabilities/add'"},
		{"root", []string{"--set", "podSecurityContext.runAsNonRoot=false"}, "'/podSecurityContext/runAsNonRoot'"},
		{"internal endpoint client without backends", []string{"--set", "internalEndpoint.clients[0].spiffe_id=spiffe://x/y"}, "'/internalEndpoint/clients/0'"},
		{"secret as env value", []string{"--set", "extraEnv[0].name=X", "--set", "extraEnv[0].valueFrom.secretKeyRef.name=s"}, "'/extraEnv/0'"},
		{"unknown value", []string{"--set", "replicas=3"}, "additional properties 'replicas' not allowed"},
		{"no replicas", []string{"--set", "replicaCount=0"}, "'/replicaCount': minimum"},
		{"bad secret ref name", []string{"--set", "secrets.refs[0]=A-B"}, "'/secrets/refs/0'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, append(append([]string{}, requiredSecrets...), tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one naming %q", err, tc.want)
			}
		})
	}
	t.Run("missing encryption key", func(t *testing.T) {
		_, err := render(t, "--set", "secrets.storeDSN=postgres://x", "--set", "secrets.values.OIDC_CLIENT_SECRET=x")
		if err == nil || !strings.Contains(err.Error(), "secrets.encryptionKey is required") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("missing DSN", func(t *testing.T) {
		_, err := render(t, "--set", "secrets.encryptionKey="+testKey, "--set", "secrets.values.OIDC_CLIENT_SECRET=x")
		if err == nil || !strings.Contains(err.Error(), "secrets.storeDSN is required") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("sqlite refused by the template too", func(t *testing.T) {
		_, err := render(t, append(append([]string{"--skip-schema-validation"}, requiredSecrets...), "--set", "store.driver=sqlite")...)
		if err == nil || !strings.Contains(err.Error(), "store.driver sqlite allows one replica") {
			t.Errorf("err = %v", err)
		}
	})
}

// TestChartInternalEndpoint: the internal token endpoint gets a second
// port on the pod and the Service, its TLS Secret mounted, a NetworkPolicy
// rule open to in-cluster pods only, and a config section that passes
// `mcpgate config check`.
func TestChartInternalEndpoint(t *testing.T) {
	args := append([]string{"--set", "internalEndpoint.enabled=true", "--set", "internalEndpoint.tlsSecret=mcpgate-internal-tls",
		"--set", "internalEndpoint.clients[0].spiffe_id=spiffe://cluster.local/ns/tools/sa/tools-mcp",
		"--set", "internalEndpoint.clients[0].backends[0]=tools"}, requiredSecrets...)
	docs, err := render(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	ingress := dig(docs["NetworkPolicy"], "spec", "ingress").([]any)
	if len(ingress) != 2 || dig(ingress[1], "ports", 0, "port") != "internal" ||
		!reflect.DeepEqual(dig(ingress[1], "from"), []any{object{"namespaceSelector": object{}}}) {
		t.Errorf("NetworkPolicy ingress = %v", ingress)
	}
	c := container(t, docs)
	if dig(c, "ports", 1, "name") != "internal" || dig(c, "ports", 1, "containerPort") != 9443 {
		t.Errorf("container ports = %v", dig(c, "ports"))
	}
	if dig(docs["InternalService"], "spec", "ports", 0, "name") != "internal" || dig(docs["InternalService"], "spec", "type") != "ClusterIP" ||
		len(dig(docs["Service"], "spec", "ports").([]any)) != 1 {
		t.Errorf("services: internal %v, public %v", docs["InternalService"], dig(docs["Service"], "spec", "ports"))
	}
	var mounted bool
	for _, v := range dig(docs["Deployment"], "spec", "template", "spec", "volumes").([]any) {
		mounted = mounted || dig(v, "secret", "secretName") == "mcpgate-internal-tls"
	}
	if !mounted {
		t.Error("the internal endpoint's TLS Secret is not a volume")
	}
	cfg := dig(docs["ConfigMap"], "data", "config.yaml").(string)
	for _, want := range []string{"internal_endpoint:", "listen: 0.0.0.0:9443", "client_ca_file: /run/secrets/mcpgate-internal-tls/ca.crt",
		"trust_domain: cluster.local", "spiffe_id: spiffe://cluster.local/ns/tools/sa/tools-mcp"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config.yaml lacks %q:\n%s", want, cfg)
		}
	}
	configCheck(t, docs, nil)

	for _, tt := range []struct {
		name, want string
		extra      []string
	}{
		{"no TLS secret", "internalEndpoint.tlsSecret", []string{"--set", "internalEndpoint.enabled=true"}},
		{"jwt mode", "internalEndpoint needs config.auth.mode authorization_server", []string{"--set", "internalEndpoint.enabled=true", "--set", "internalEndpoint.tlsSecret=x", "-f", "deploy/helm/testdata/jwt.yaml"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := render(t, append(tt.extra, requiredSecrets...)...); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
