{{/*
One track's Deployment. Called with (list $ "stable") and (list $ "canary"): both tracks run
the same pod spec but for TRACK, the image and the replica count.
*/}}
{{- define "scholarship-api.deployment" -}}
{{- $root := index . 0 -}}{{- $track := index . 1 -}}
{{- $v := $root.Values -}}
{{- $name := include "scholarship-api.trackName" (list $root $track) -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "scholarship-api.labels" $root | nindent 4 }}
    scholarship.dev/track: {{ $track }}
spec:
  {{- /* With the autoscaler on, the HPA owns the stable replica count, not the chart. */}}
  {{- if not (and (eq $track "stable") $v.autoscaling.enabled) }}
  {{- $stableReplicas := ternary $v.autoscaling.minReplicas $v.stable.replicas $v.autoscaling.enabled }}
  replicas: {{ ternary (default $stableReplicas $v.canary.replicas) $v.stable.replicas (eq $track "canary") }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  selector:
    matchLabels:
      {{- include "scholarship-api.trackSelectorLabels" (list $root $track) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "scholarship-api.trackSelectorLabels" (list $root $track) | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $v.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      automountServiceAccountToken: false
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ include "scholarship-api.terminationGrace" $root }}
      containers:
        - name: api
          image: {{ include "scholarship-api.image" (list $root $track) | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          env:
            {{- include "scholarship-api.env" (list $root $track) | nindent 12 }}
          ports:
            - name: http
              containerPort: {{ $v.containerPort }}
              protocol: TCP
          # Migrations run at start-up; give them a minute before liveness counts.
          startupProbe:
            httpGet: { path: /healthz, port: http }
            periodSeconds: 2
            failureThreshold: 30
          livenessProbe:
            httpGet: { path: /healthz, port: http }
            periodSeconds: 10
            failureThreshold: 3
          # /readyz turns 503 at SIGTERM, so endpoints drain before the process stops.
          readinessProbe:
            httpGet: { path: /readyz, port: http }
            periodSeconds: 2
            failureThreshold: 1
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $v.securityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if or $v.redis.caBundle.secretName $v.redis.caBundle.configMapName }}
            - name: redis-ca
              mountPath: /etc/scholarship-api/redis-ca
              readOnly: true
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 16Mi
        {{- if $v.redis.caBundle.secretName }}
        - name: redis-ca
          secret:
            secretName: {{ $v.redis.caBundle.secretName }}
            items: [{ key: {{ $v.redis.caBundle.key }}, path: ca.crt }]
        {{- else if $v.redis.caBundle.configMapName }}
        - name: redis-ca
          configMap:
            name: {{ $v.redis.caBundle.configMapName }}
            items: [{ key: {{ $v.redis.caBundle.key }}, path: ca.crt }]
        {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml $v.topologySpreadConstraints | nindent 8 }}
      {{- else }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "scholarship-api.trackSelectorLabels" (list $root $track) | nindent 14 }}
      {{- end }}
{{- end -}}
