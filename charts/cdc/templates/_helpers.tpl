{{/*
Expand the name of the chart.
*/}}
{{- define "cdc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "cdc.fullname" -}}
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

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "cdc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "cdc.labels" -}}
helm.sh/chart: {{ include "cdc.chart" . }}
{{ include "cdc.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels
*/}}
{{- define "cdc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cdc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "cdc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cdc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
A value for an environment variable, quoted. YAML numbers reach templates as float64, which would print
67108864 as 6.7108864e+07: whole numbers are printed as integers.
*/}}
{{- define "cdc.envValue" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) }}
{{- int64 . | toString | quote }}
{{- else }}
{{- toString . | quote }}
{{- end }}
{{- end }}

{{/*
cdc.relay.shutdownTimeout in whole seconds (rounded up), 25 when unset, or "" when it is not in the
[h]h:mm:ss[.fffffff] form (days are not parsed; the grace-period check is then skipped).
*/}}
{{- define "cdc.shutdownTimeoutSeconds" -}}
{{- $value := toString (default "00:00:25" .Values.cdc.relay.shutdownTimeout) }}
{{- if regexMatch "^[0-9]+:[0-9]+:[0-9]+(\\.[0-9]+)?$" $value }}
{{- $parts := splitList ":" (regexReplaceAll "\\..*$" $value "") }}
{{- $seconds := add (mul (atoi (index $parts 0)) 3600) (mul (atoi (index $parts 1)) 60) (atoi (index $parts 2)) }}
{{- if contains "." $value }}{{ add $seconds 1 }}{{ else }}{{ $seconds }}{{ end }}
{{- end }}
{{- end }}

{{/*
The Deployment's strategy. RollingUpdate (the default with replicaCount > 1): the new pod starts, waits as a Ready
standby, then an old pod stops and releases the slot after flushing and confirming; the standby takes over. Recreate
(the default with one replica): every old pod stops before a new one starts, never two versions at once.
*/}}
{{- define "cdc.strategy" -}}
{{- $type := .Values.updateStrategy.type | default (ternary "RollingUpdate" "Recreate" (gt (int .Values.replicaCount) 1)) }}
{{- if not (has $type (list "RollingUpdate" "Recreate")) }}
{{- fail (printf "updateStrategy.type must be \"\", RollingUpdate or Recreate, not %q" $type) }}
{{- end -}}
type: {{ $type }}
{{- if eq $type "RollingUpdate" }}
rollingUpdate:
  maxSurge: {{ .Values.updateStrategy.rollingUpdate.maxSurge }}
  maxUnavailable: {{ .Values.updateStrategy.rollingUpdate.maxUnavailable }}
{{- end }}
{{- end }}
