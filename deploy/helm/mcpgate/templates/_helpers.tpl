{{- define "mcpgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mcpgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mcpgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcpgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mcpgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "mcpgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "mcpgate.secretName" -}}
{{- default (include "mcpgate.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* Whether the built-in authorization server (and so the store and the key) is used. */}}
{{- define "mcpgate.as" -}}
{{- if eq (dig "auth" "mode" "" .Values.config) "authorization_server" }}true{{ end }}
{{- end }}

{{/* The most replicas that can run at once. */}}
{{- define "mcpgate.maxReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ .Values.autoscaling.maxReplicas }}{{ else }}{{ .Values.replicaCount }}{{ end }}
{{- end }}

{{- define "mcpgate.secretsDir" -}}/run/secrets/mcpgate{{- end }}
{{- define "mcpgate.containerPort" -}}8080{{- end }}

{{/*
The gateway's config: values.config plus the keys the chart owns. Multi-replica
safety is checked here as well as in the schema, with a message that says why.
*/}}
{{- define "mcpgate.config" -}}
{{- $as := include "mcpgate.as" . }}
{{- if and $as (eq .Values.store.driver "sqlite") (gt (int (include "mcpgate.maxReplicas" .)) 1) }}
{{- fail "store.driver sqlite allows one replica: set store.driver postgres for replicaCount > 1 or autoscaling" }}
{{- end }}
{{- $c := deepCopy .Values.config }}
{{- $_ := set $c "listen" (printf "0.0.0.0:%s" (include "mcpgate.containerPort" .)) }}
{{- $_ := set $c "metrics" (dict "enabled" .Values.metrics.enabled) }}
{{- if .Values.policy }}
{{- $p := deepCopy (default (dict) (get $c "policy")) }}
{{- $_ := set $p "file" "policy.yaml" }}
{{- $_ := set $c "policy" $p }}
{{- end }}
{{- if $as }}
{{- $_ := set $c "encryption_key_file" (printf "%s/encryption-key" (include "mcpgate.secretsDir" .)) }}
{{- if eq .Values.store.driver "postgres" }}
{{- /* The DSN comes from MCPGATE_STORE_DSN_FILE (the Deployment sets it). */}}
{{- $_ := set $c "store" (dict "driver" "postgres" "sweep_interval" .Values.store.sweepInterval) }}
{{- else }}
{{- $_ := set $c "store" (dict "driver" "sqlite" "dsn" "/var/lib/mcpgate/mcpgate.db" "sweep_interval" .Values.store.sweepInterval) }}
{{- end }}
{{- end }}
{{- if .Values.internalEndpoint.enabled }}
{{- if not $as }}
{{- fail "internalEndpoint needs config.auth.mode authorization_server: it hands out the upstream tokens of its grants" }}
{{- end }}
{{- if not .Values.internalEndpoint.tlsSecret }}
{{- fail "internalEndpoint.tlsSecret: name the kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt) of the internal endpoint" }}
{{- end }}
{{- $dir := include "mcpgate.internalTLSDir" . }}
{{- $_ := set $c "internal_endpoint" (dict
  "listen" (printf "0.0.0.0:%v" .Values.internalEndpoint.port)
  "tls" (dict "cert_file" (printf "%s/tls.crt" $dir) "key_file" (printf "%s/tls.key" $dir) "client_ca_file" (printf "%s/ca.crt" $dir))
  "trust_domain" .Values.internalEndpoint.trustDomain
  "clients" .Values.internalEndpoint.clients) }}
{{- end }}
{{- toYaml $c }}
{{- end }}

{{- /* Where the internal endpoint's TLS Secret is mounted. */}}
{{- define "mcpgate.internalTLSDir" -}}/run/secrets/mcpgate-internal-tls{{- end }}
