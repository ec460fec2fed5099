{{- define "scholarship-api.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release name, or release-chart when the release name does not contain the chart's. */}}
{{- define "scholarship-api.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 56 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 56 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Name of a track's Deployment, Service and Ingress: <fullname> and <fullname>-canary. */}}
{{- define "scholarship-api.trackName" -}}
{{- $root := index . 0 -}}{{- $track := index . 1 -}}
{{- if eq $track "canary" -}}
{{- printf "%s-canary" (include "scholarship-api.fullname" $root) -}}
{{- else -}}
{{- include "scholarship-api.fullname" $root -}}
{{- end -}}
{{- end -}}

{{- define "scholarship-api.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scholarship-api.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "scholarship-api.labels" -}}
{{ include "scholarship-api.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector of one track's pods. */}}
{{- define "scholarship-api.trackSelectorLabels" -}}
{{- $root := index . 0 -}}{{- $track := index . 1 -}}
{{ include "scholarship-api.selectorLabels" $root }}
scholarship.dev/track: {{ $track }}
{{- end -}}

{{/* <registry>/<repository>:<tag>, or @digest; the canary's own tag or digest wins. */}}
{{- define "scholarship-api.image" -}}
{{- $root := index . 0 -}}{{- $track := index . 1 -}}
{{- $image := $root.Values.image -}}
{{- $tag := default $root.Chart.AppVersion $image.tag -}}
{{- $digest := $image.digest -}}
{{- if eq $track "canary" -}}
{{- if $root.Values.canary.image.digest -}}
{{- $digest = $root.Values.canary.image.digest -}}
{{- else if $root.Values.canary.image.tag -}}
{{- $tag = $root.Values.canary.image.tag -}}{{- $digest = "" -}}
{{- end -}}
{{- end -}}
{{- $ref := printf "%s/%s" $image.registry $image.repository -}}
{{- if $digest -}}
{{- printf "%s@%s" $ref $digest -}}
{{- else -}}
{{- printf "%s:%s" $ref $tag -}}
{{- end -}}
{{- end -}}

{{/* Pod termination: the service's drain, then its grace, then a margin before SIGKILL. */}}
{{- define "scholarship-api.terminationGrace" -}}
{{- add (div (add .Values.shutdown.drainMs 999) 1000) .Values.shutdown.graceSeconds 5 -}}
{{- end -}}
