{{/* Name of every object of the release (one operator per cluster). */}}
{{- define "elemental-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "elemental-operator.labels" -}}
app.kubernetes.io/name: {{ include "elemental-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "elemental-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "elemental-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* registry/repository:tag, with Rancher's system default registry. */}}
{{- define "elemental-operator.registry" -}}
{{- with .Values.global.cattle.systemDefaultRegistry }}{{ trimSuffix "/" . }}/{{ end -}}
{{- end -}}

{{- define "elemental-operator.image" -}}
{{ include "elemental-operator.registry" . }}{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "elemental-operator.guardImage" -}}
{{ include "elemental-operator.registry" . }}{{ .Values.uninstallGuard.image.repository }}:{{ .Values.uninstallGuard.image.tag }}
{{- end -}}
