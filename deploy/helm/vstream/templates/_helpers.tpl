{{/* Names and labels. */}}
{{- define "vstream.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "vstream.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "api") */}}
{{- define "vstream.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "vstream.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "vstream.fullname" .)) -}}
{{- end -}}

{{- define "vstream.vllmService" -}}
{{- printf "%s-vllm" (include "vstream.fullname" .) -}}
{{- end -}}

{{/*
The settings as the app sees them: .Values.config, plus what the chart decides (the vLLM endpoint when
vllm.enabled). Returned as JSON because templates can only return strings.
*/}}
{{- define "vstream.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- if .Values.vllm.enabled -}}
{{- $model := dict "type" "openai" "model" .Values.vllm.servedModelName "base_url" (printf "http://%s:%v/v1" (include "vstream.vllmService" .) .Values.vllm.port) -}}
{{- $_ := set $cfg "model" (mustMergeOverwrite (get $cfg "model" | default dict) $model) -}}
{{- end -}}
{{- toJson $cfg -}}
{{- end -}}

{{/* The topic prefix, clip partitions and consumer group, computed as vstream/names.py does. */}}
{{- define "vstream.kafka" -}}
{{- $kafka := (fromJson (include "vstream.config" .)).kafka | default dict -}}
{{- $prefix := hasKey $kafka "topic_prefix" | ternary (get $kafka "topic_prefix") "vstream." -}}
{{- $parts := hasKey $kafka "clip_partitions" | ternary (get $kafka "clip_partitions") 4 -}}
{{- toJson (dict "bootstrap" ($kafka.bootstrap | default "127.0.0.1:9092") "clips" (printf "%sclips" $prefix) "inferGroup" (printf "%sinfer-workers" $prefix) "partitions" (int64 $parts)) -}}
{{- end -}}

{{/*
VSTREAM_* variables from a settings map: a nested map is a group (VSTREAM_GROUP__NAME), anything else a
top-level setting. Strings go as they are, everything else as JSON (lists, booleans; whole numbers
without Helm's float exponent). null and "" keep the application's default.
*/}}
{{- define "vstream.env" -}}
{{- range $group, $v := . }}
{{- if kindIs "map" $v }}
{{- range $name, $value := $v }}
{{- if not (or (kindIs "invalid" $value) (and (kindIs "string" $value) (eq $value ""))) }}
{{ printf "VSTREAM_%s__%s" (upper $group) (upper $name) }}: {{ kindIs "string" $value | ternary $value (toJson $value) | quote }}
{{- end }}
{{- end }}
{{- else if not (or (kindIs "invalid" $v) (and (kindIs "string" $v) (eq $v ""))) }}
{{ printf "VSTREAM_%s" (upper $group) }}: {{ kindIs "string" $v | ternary $v (toJson $v) | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The ConfigMap's settings: the config less every setting secrets.values gives (a password-carrying
redis.url, say), so no variable is set twice and the secret one is the one the app sees.
*/}}
{{- define "vstream.publicConfig" -}}
{{- $cfg := fromJson (include "vstream.config" .) -}}
{{- range $group, $v := (.Values.secrets.values | default dict) }}
{{- if and (kindIs "map" $v) (kindIs "map" (get $cfg $group)) }}
{{- range $name, $value := $v }}
{{- if $value }}
{{- $_ := unset (get $cfg $group) $name }}
{{- end }}
{{- end }}
{{- else if $v }}
{{- $_ := unset $cfg $group }}
{{- end }}
{{- end }}
{{- toJson $cfg -}}
{{- end -}}

{{- define "vstream.image" -}}
{{- $img := mustMergeOverwrite (deepCopy .root.Values.image) (.override | default dict) -}}
{{- printf "%s:%s" $img.repository ($img.tag | default .root.Chart.AppVersion) -}}
{{- end -}}

{{/* Pod spec parts every vstream pod shares: (dict "root" $ "component" "api" "spec" .Values.api) */}}
{{- define "vstream.podCommon" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets: {{ toYaml . | nindent 2 }}
{{- end }}
securityContext: {{ toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .spec.nodeSelector }}
nodeSelector: {{ toYaml . | nindent 2 }}
{{- end }}
{{- with .spec.tolerations }}
tolerations: {{ toYaml . | nindent 2 }}
{{- end }}
{{- with .spec.affinity }}
affinity: {{ toYaml . | nindent 2 }}
{{- end }}
volumes:
  # readOnlyRootFilesystem: the cache, var/ and /tmp are the only places a vstream process writes
  - name: tmp
    emptyDir: {}
  - name: cache
    emptyDir: {}
  - name: var
    emptyDir: {}
{{- with .root.Values.extraVolumes }}
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Container parts every vstream container shares. */}}
{{- define "vstream.containerCommon" -}}
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
securityContext: {{ toYaml .root.Values.securityContext | nindent 2 }}
envFrom:
  - configMapRef:
      name: {{ include "vstream.fullname" .root }}-config
  - secretRef:
      name: {{ include "vstream.secretName" .root }}
resources: {{ toYaml .spec.resources | nindent 2 }}
volumeMounts:
  - {name: tmp, mountPath: /tmp}
  - {name: cache, mountPath: /var/cache/vstream}
  - {name: var, mountPath: /app/var}
{{- with .root.Values.extraVolumeMounts }}
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
