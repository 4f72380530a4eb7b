{{/*
Names and labels shared by every template (the same scheme as prometheus-adapter's and KEDA's charts).
*/}}

{{- define "faro.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "faro.fullname" -}}
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

{{- define "faro.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "faro.labels" -}}
helm.sh/chart: {{ include "faro.chart" . }}
app.kubernetes.io/name: {{ include "faro.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: faro
{{- end }}

{{/* Selector labels of one component: include "faro.selectorLabels" (list . "optimizer") */}}
{{- define "faro.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "faro.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* All labels of one component's objects. */}}
{{- define "faro.componentLabels" -}}
{{ include "faro.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "faro.optimizer.fullname" -}}
{{- printf "%s-optimizer" (include "faro.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "faro.adapter.fullname" -}}
{{- printf "%s-adapter" (include "faro.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "faro.keda.fullname" -}}
{{- printf "%s-keda-scaler" (include "faro.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "faro.optimizer.serviceAccountName" -}}
{{- if .Values.optimizer.serviceAccount.create }}
{{- default (include "faro.optimizer.fullname" .) .Values.optimizer.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.optimizer.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "faro.adapter.serviceAccountName" -}}
{{- if .Values.adapter.serviceAccount.create }}
{{- default (include "faro.adapter.fullname" .) .Values.adapter.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.adapter.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "faro.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Name of the Secret with the adapter's serving certificate (keys tls.crt, tls.key). */}}
{{- define "faro.adapter.tlsSecretName" -}}
{{- if eq .Values.tls.mode "existingSecret" }}
{{- required "tls.existingSecret.name is required when tls.mode=existingSecret" .Values.tls.existingSecret.name }}
{{- else }}
{{- printf "%s-tls" (include "faro.adapter.fullname" .) }}
{{- end }}
{{- end }}

{{/* Secret with the optimizer's plan-API serving certificate (keys tls.crt, tls.key, ca.crt). */}}
{{- define "faro.optimizer.tlsSecretName" -}}
{{- if eq .Values.tls.mode "existingSecret" }}
{{- required "tls.existingSecret.optimizerName is required when tls.mode=existingSecret (the plan API's serving certificate with ca.crt)" .Values.tls.existingSecret.optimizerName }}
{{- else }}
{{- printf "%s-tls" (include "faro.optimizer.fullname" .) }}
{{- end }}
{{- end }}

{{/* Secret with the adapter's plan-API client certificate (keys tls.crt, tls.key, ca.crt). */}}
{{- define "faro.adapter.clientTlsSecretName" -}}
{{- if eq .Values.tls.mode "existingSecret" }}
{{- required "tls.existingSecret.adapterClientName is required when tls.mode=existingSecret (the adapter's plan-API client certificate with ca.crt)" .Values.tls.existingSecret.adapterClientName }}
{{- else }}
{{- printf "%s-client-tls" (include "faro.adapter.fullname" .) }}
{{- end }}
{{- end }}

{{/* The ClusterTriggerAuthentication ScaledObject triggers name in authenticationRef. */}}
{{- define "faro.keda.authName" -}}
{{- printf "%s-keda" (include "faro.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Secret (in adapter.keda.namespace) with KEDA's client certificate and the CA, for the ClusterTriggerAuthentication. */}}
{{- define "faro.keda.clientSecretName" -}}
{{- if eq .Values.tls.mode "existingSecret" }}
{{- required "tls.existingSecret.kedaClientName is required when tls.mode=existingSecret and adapter.keda.clusterTriggerAuthentication.create (a Secret in adapter.keda.namespace with ca.crt, tls.crt, tls.key)" .Values.tls.existingSecret.kedaClientName }}
{{- else }}
{{- printf "%s-client" (include "faro.keda.fullname" .) }}
{{- end }}
{{- end }}

{{/* true when the plan gRPC API is served with TLS (always, unless optimizer.planApi.insecure). */}}
{{- define "faro.planApiTLS" -}}
{{- if not .Values.optimizer.planApi.insecure }}true{{ end }}
{{- end }}

{{/* DNS names of the optimizer's plan-API serving certificate. */}}
{{- define "faro.optimizer.dnsNames" -}}
{{- $ns := .Release.Namespace -}}
{{- $svc := include "faro.optimizer.fullname" . -}}
{{- toJson (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns)) -}}
{{- end }}

{{/* true when Faro registers the v1beta1.external.metrics.k8s.io APIService. */}}
{{- define "faro.servesApiService" -}}
{{- if or (eq .Values.mode "apiService") (eq .Values.mode "both") }}true{{ end }}
{{- end }}

{{/* true when the adapter serves KEDA's external-scaler gRPC API. */}}
{{- define "faro.servesKeda" -}}
{{- if or (eq .Values.mode "keda") (eq .Values.mode "both") }}true{{ end }}
{{- end }}

{{/* DNS names of the adapter's serving certificate. */}}
{{- define "faro.adapter.dnsNames" -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list -}}
{{- range $svc := list (include "faro.adapter.fullname" .) (include "faro.keda.fullname" .) -}}
{{- $names = append $names $svc -}}
{{- $names = append $names (printf "%s.%s" $svc $ns) -}}
{{- $names = append $names (printf "%s.%s.svc" $svc $ns) -}}
{{- $names = append $names (printf "%s.%s.svc.cluster.local" $svc $ns) -}}
{{- end -}}
{{- toJson $names -}}
{{- end }}

{{/* Pod-level settings shared by both Deployments: include "faro.podSettings" (list . .Values.optimizer) */}}
{{- define "faro.podSettings" -}}
{{- $root := index . 0 -}}
{{- $c := index . 1 -}}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $c.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
