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

{{/* registry/repository:tag, with Rancher's system default registry (else the
   upstream chart's registryUrl). */}}
{{- define "elemental-operator.registry" -}}
{{- with .Values.global.cattle.systemDefaultRegistry | default .Values.registryUrl }}{{ trimSuffix "/" . }}/{{ end -}}
{{- end -}}

{{- define "elemental-operator.image" -}}
{{ include "elemental-operator.registry" . }}{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "elemental-operator.guardImage" -}}
{{ include "elemental-operator.registry" . }}{{ .Values.uninstallGuard.image.repository }}:{{ .Values.uninstallGuard.image.tag }}
{{- end -}}

{{/*
Registration mode in effect: rancher (through Rancher's APIService tunnel),
direct (the operator's HTTPS listener) or both. registration.mode=auto picks
rancher when the cluster serves management.cattle.io/v3 APIService (Rancher
is installed), else direct.
*/}}
{{- define "elemental-operator.mode" -}}
{{- $mode := .Values.registration.mode | default "auto" -}}
{{- if eq $mode "auto" -}}
{{- ternary "rancher" "direct" (.Capabilities.APIVersions.Has "management.cattle.io/v3/APIService") -}}
{{- else -}}
{{- $mode -}}
{{- end -}}
{{- end -}}

{{/* "true" when hosts register through Rancher's APIService (renders the APIService). */}}
{{- define "elemental-operator.tunnel" -}}
{{- if and .Values.registration.enabled (has (include "elemental-operator.mode" .) (list "rancher" "both")) }}true{{ end -}}
{{- end -}}

{{/* "true" when the operator's own HTTPS listener serves hosts (renders the Service and Ingress). */}}
{{- define "elemental-operator.listener" -}}
{{- if and .Values.registration.enabled (has (include "elemental-operator.mode" .) (list "direct" "both")) }}true{{ end -}}
{{- end -}}

{{/* Base URL given to hosts in direct mode; serverURL is its deprecated name. */}}
{{- define "elemental-operator.registrationURL" -}}
{{- .Values.registration.url | default .Values.serverURL | trimSuffix "/" -}}
{{- end -}}

{{/* Image pull policy; image.imagePullPolicy is the upstream chart's name for it. */}}
{{- define "elemental-operator.pullPolicy" -}}
{{- .Values.image.imagePullPolicy | default .Values.image.pullPolicy -}}
{{- end -}}

{{/* Proxy settings; the upstream chart's proxy is one URL for both schemes and its noProxy is top-level. */}}
{{- define "elemental-operator.httpProxy" -}}
{{- if kindIs "string" .Values.proxy }}{{ .Values.proxy }}{{ else }}{{ .Values.proxy.httpProxy }}{{ end -}}
{{- end -}}

{{- define "elemental-operator.httpsProxy" -}}
{{- if kindIs "string" .Values.proxy }}{{ .Values.proxy }}{{ else }}{{ .Values.proxy.httpsProxy }}{{ end -}}
{{- end -}}

{{- define "elemental-operator.noProxy" -}}
{{- if .Values.noProxy }}{{ .Values.noProxy }}{{ else if kindIs "map" .Values.proxy }}{{ .Values.proxy.noProxy }}{{ end -}}
{{- end -}}

{{/* Where the agent CA (agent.caCert) is mounted in the operator container. */}}
{{- define "elemental-operator.agentCAFile" -}}
/etc/elemental-operator/agent-ca/ca.crt
{{- end -}}

{{/*
Values of the upstream elemental-operator chart that have nothing to act on
here (no seed-image builder, no OS channels): accepted, named in NOTES.
*/}}
{{- define "elemental-operator.ignoredUpstreamValues" -}}
{{- $ignored := list -}}
{{- if .Values.image.empty }}{{ $ignored = append $ignored "image.empty" }}{{ end -}}
{{- if .Values.seedImage }}{{ $ignored = append $ignored "seedImage" }}{{ end -}}
{{- if .Values.defaultChannels }}{{ $ignored = append $ignored "defaultChannels" }}{{ end -}}
{{- if .Values.channel }}{{ $ignored = append $ignored "channel" }}{{ end -}}
{{- join ", " $ignored -}}
{{- end -}}
