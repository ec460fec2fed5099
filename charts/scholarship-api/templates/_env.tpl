{{/* The service's flags as environment variables (scholarship-api --help names them). */}}
{{- define "scholarship-api.env" -}}
{{- $root := index . 0 -}}{{- $track := index . 1 -}}
{{- $v := $root.Values -}}
- name: TRACK
  value: {{ $track }}
- name: LISTEN_ADDR
  value: "0.0.0.0:{{ $v.containerPort }}"
- name: DATABASE_URL
  valueFrom:
    secretKeyRef: { name: {{ $v.database.existingSecret }}, key: {{ $v.database.urlKey }} }
- name: DB_MAX_CONNECTIONS
  value: {{ $v.database.maxConnections | int64 | toString | quote }}
- name: BODY_LIMIT_BYTES
  value: {{ $v.bodyLimitBytes | int64 | toString | quote }}
{{- with $v.cors.allowedOrigins }}
- name: CORS_ALLOWED_ORIGINS
  value: {{ join "," . | quote }}
{{- end }}
- name: RECOMMENDATIONS_ENABLED
  value: {{ $v.recommendations.enabled | quote }}
{{- with $v.recommendations.openai }}
{{- if .baseUrl }}
- name: OPENAI_BASE_URL
  value: {{ .baseUrl | quote }}
{{- end }}
{{- if .apiKeySecret.name }}
- name: OPENAI_API_KEY
  valueFrom:
    secretKeyRef: { name: {{ .apiKeySecret.name }}, key: {{ .apiKeySecret.key }} }
{{- end }}
- name: OPENAI_MODEL
  value: {{ .model | quote }}
- name: OPENAI_TIMEOUT_MS
  value: {{ .timeoutMs | int64 | toString | quote }}
{{- end }}
- name: IDEMPOTENCY_TTL_HOURS
  value: {{ $v.idempotencyTtlHours | int64 | toString | quote }}
- name: SHUTDOWN_DRAIN_MS
  value: {{ $v.shutdown.drainMs | int64 | toString | quote }}
- name: SHUTDOWN_GRACE_SECONDS
  value: {{ $v.shutdown.graceSeconds | int64 | toString | quote }}
{{- with $v.redis }}
{{- if .url }}
{{- if .auth.existingSecret }}
{{- if .auth.usernameKey }}
- name: REDIS_USERNAME
  valueFrom:
    secretKeyRef: { name: {{ .auth.existingSecret }}, key: {{ .auth.usernameKey }} }
{{- end }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef: { name: {{ .auth.existingSecret }}, key: {{ .auth.passwordKey }} }
# Kubernetes expands $(VAR) from the variables above, so the credentials never sit in the spec.
- name: REDIS_URL
  value: {{ regexReplaceAll "^(rediss?://)" .url (printf "${1}%s:$(REDIS_PASSWORD)@" (ternary "$(REDIS_USERNAME)" "" (ne .auth.usernameKey ""))) | quote }}
{{- else }}
- name: REDIS_URL
  value: {{ .url | quote }}
{{- end }}
{{- with .sentinels }}
- name: REDIS_SENTINELS
  value: {{ join "," . | quote }}
{{- end }}
- name: REDIS_MASTER_NAME
  value: {{ .masterName | quote }}
{{- if .sentinelPasswordSecret.name }}
- name: REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef: { name: {{ .sentinelPasswordSecret.name }}, key: {{ .sentinelPasswordSecret.key }} }
{{- end }}
{{- if or .caBundle.secretName .caBundle.configMapName }}
- name: REDIS_CA_FILE
  value: /etc/scholarship-api/redis-ca/ca.crt
{{- end }}
{{- if .insecureSkipVerify }}
- name: REDIS_INSECURE_SKIP_VERIFY
  value: "true"
{{- end }}
- name: REDIS_CONNECT_TIMEOUT_MS
  value: {{ .connectTimeoutMs | int64 | toString | quote }}
- name: REDIS_COMMAND_TIMEOUT_MS
  value: {{ .commandTimeoutMs | int64 | toString | quote }}
{{- end }}
{{- end }}
{{- with $v.limiter }}
- name: LIMITER_TIMEOUT_MS
  value: {{ .timeoutMs | int64 | toString | quote }}
- name: RATE_LIMITS
  value: {{ .rateLimits | quote }}
- name: LOCAL_LIMITER_MAX_KEYS
  value: {{ .localMaxKeys | int64 | toString | quote }}
{{- with .trustedProxies }}
- name: TRUSTED_PROXIES
  value: {{ join "," . | quote }}
{{- end }}
- name: PREAUTH_LIMIT
  value: {{ .preauthLimit | quote }}
{{- end }}
- name: TESTER_HEADER
  value: {{ $v.tester.header | quote }}
{{- if $v.tester.tokenSecret.name }}
- name: TESTER_TOKEN
  valueFrom:
    secretKeyRef: { name: {{ $v.tester.tokenSecret.name }}, key: {{ $v.tester.tokenSecret.key }} }
{{- end }}
{{- with $v.auth }}
{{- if .insecureNoAuth }}
- name: INSECURE_NO_AUTH
  value: "true"
{{- else }}
- name: JWKS_URL
  value: {{ .jwksUrl | quote }}
- name: JWT_ISSUER
  value: {{ .issuer | quote }}
- name: JWT_AUDIENCE
  value: {{ .audience | quote }}
{{- end }}
- name: JWT_ALGORITHMS
  value: {{ join "," .algorithms | quote }}
- name: JWT_LEEWAY_SECONDS
  value: {{ .leewaySeconds | int64 | toString | quote }}
- name: JWT_MAX_LIFETIME_SECONDS
  value: {{ .maxLifetimeSeconds | int64 | toString | quote }}
- name: JWKS_REFRESH_COOLDOWN_SECONDS
  value: {{ .jwksRefreshCooldownSeconds | int64 | toString | quote }}
- name: JWKS_MAX_REFRESH_INTERVAL_SECONDS
  value: {{ .jwksMaxRefreshIntervalSeconds | int64 | toString | quote }}
{{- with .testerClaim }}
- name: JWT_TESTER_CLAIM
  value: {{ . | quote }}
{{- end }}
- name: SINGLE_USE_ENDPOINTS
  value: {{ .singleUseEndpoints | quote }}
- name: REPLAY_FALLBACK
  value: {{ .replayFallback | quote }}
- name: REPLAY_CACHE_MAX_ENTRIES
  value: {{ .replayCacheMaxEntries | int64 | toString | quote }}
{{- if .allowTokensWithoutJti }}
- name: ALLOW_TOKENS_WITHOUT_JTI
  value: "true"
{{- end }}
{{- end }}
- name: LOG_FILTER
  value: {{ $v.logFilter | quote }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
