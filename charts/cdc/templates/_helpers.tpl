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

{{/*
The connectors this release runs, as a YAML list: one per outbox. Without cdc.outboxes, one connector from
cdc.postgres.table/slot/publication and cdc.kafka.topicTemplate/deadLetterTopic, named like the release (its
objects keep the names and selectors of a single-outbox release). With cdc.outboxes, one per entry, its objects named
<fullname>-<entry name> and its pods labelled app.kubernetes.io/component: <entry name>. Each item: name ("" for the
single connector), fullname, table, slot, publication, topicTemplate, deadLetterTopic, columns.
*/}}
{{- define "cdc.connectors" -}}
{{- $fullname := include "cdc.fullname" . }}
{{- $connectors := list }}
{{- if not .Values.cdc.outboxes }}
{{- $connectors = append $connectors (dict "name" "" "fullname" $fullname "table" .Values.cdc.postgres.table "slot" .Values.cdc.postgres.slot "publication" .Values.cdc.postgres.publication "topicTemplate" .Values.cdc.kafka.topicTemplate "deadLetterTopic" .Values.cdc.kafka.deadLetterTopic "columns" (.Values.cdc.postgres.columns | default dict)) }}
{{- else }}
{{- $names := dict }}
{{- $slots := dict }}
{{- range $index, $outbox := .Values.cdc.outboxes }}
{{- $at := printf "cdc.outboxes[%d]" $index }}
{{- if not (kindIs "map" $outbox) }}
{{- fail (printf "%s must be a mapping with name, table, slot, publication and topicTemplate" $at) }}
{{- end }}
{{- $name := toString ($outbox.name | default "") }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $name) }}
{{- fail (printf "%s.name is required: a DNS label (lower-case letters, digits, '-'), the suffix of its objects' names; got %q" $at $name) }}
{{- end }}
{{- if hasKey $names $name }}
{{- fail (printf "%s.name %q is used twice: each outbox's objects are named after it" $at $name) }}
{{- end }}
{{- $_ := set $names $name true }}
{{- range $key := list "table" "slot" "publication" "topicTemplate" }}
{{- if not (get $outbox $key) }}
{{- fail (printf "%s.%s is required (outbox %q)" $at $key $name) }}
{{- end }}
{{- end }}
{{- if hasKey $slots (toString $outbox.slot) }}
{{- fail (printf "%s.slot %q is used twice: PostgreSQL lets one connector read a slot, so the second would wait forever" $at $outbox.slot) }}
{{- end }}
{{- $_ := set $slots (toString $outbox.slot) true }}
{{- $objectName := printf "%s-%s" $fullname $name }}
{{- if gt (len $objectName) 63 }}
{{- fail (printf "%s.name %q makes the object name %q longer than 63 characters: shorten it or fullnameOverride" $at $name $objectName) }}
{{- end }}
{{- $connectors = append $connectors (dict "name" $name "fullname" $objectName "table" $outbox.table "slot" $outbox.slot "publication" $outbox.publication "topicTemplate" $outbox.topicTemplate "deadLetterTopic" ($outbox.deadLetterTopic | default $.Values.cdc.kafka.deadLetterTopic) "columns" ($outbox.columns | default $.Values.cdc.postgres.columns | default dict)) }}
{{- end }}
{{- end }}
{{- toYaml $connectors }}
{{- end }}

{{/*
Selector labels of one connector's pods: the release's, plus the outbox's name as app.kubernetes.io/component when
the release runs several. The scope of this and of cdc.connectorLabels is the chart's top-level objects (Values,
Release, Chart, Capabilities, Template, Files) plus Connector, an item of cdc.connectors.
*/}}
{{- define "cdc.connectorSelectorLabels" -}}
{{ include "cdc.selectorLabels" . }}
{{- with .Connector.name }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{/*
Labels of one connector's objects.
*/}}
{{- define "cdc.connectorLabels" -}}
{{ include "cdc.labels" . }}
{{- with .Connector.name }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{/*
A number for a PromQL expression: YAML numbers reach templates as float64, which would print 1073741824 as
1.073741824e+09; whole numbers are printed as integers.
*/}}
{{- define "cdc.number" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) }}
{{- int64 . }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}
