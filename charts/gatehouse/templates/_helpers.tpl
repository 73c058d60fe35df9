{{/*
Helpers of the gatehouse chart.

Every helper that the sidecar recipe needs takes a dict, never the chart's own root
context, so that an app chart can call it with its copy of these values:

  (dict "values" .Values.gatehouse "context" $)

  values   this chart's values (in an app chart: the dependency's key, .Values.gatehouse
           or its alias; Helm has already merged this chart's defaults into it)
  context  the root context of the chart that renders (for .Release and .Capabilities)

The chart's own templates call them with (dict "values" .Values "context" $).
Resource names use the literal chart name "gatehouse", not .Chart.Name, so that the
app chart and this chart (as its dependency) compute the same names.
*/}}

{{- define "gatehouse.name" -}}
{{- default "gatehouse" .values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gatehouse.fullname" -}}
{{- if .values.fullnameOverride -}}
{{- .values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "gatehouse.name" . -}}
{{- if contains $name .context.Release.Name -}}
{{- .context.Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .context.Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The ConfigMap holding gatehouse.toml. */}}
{{- define "gatehouse.configMapName" -}}
{{- printf "%s-config" (include "gatehouse.fullname" . | trunc 56 | trimSuffix "-") -}}
{{- end -}}

{{/* The appVersion of this chart, also when an app chart renders (through .Subcharts). */}}
{{- define "gatehouse.appVersion" -}}
{{- $ctx := .context -}}
{{- if eq $ctx.Chart.Name "gatehouse" -}}
{{- $ctx.Chart.AppVersion -}}
{{- else -}}
{{- $found := "" -}}
{{- range $name, $sub := ($ctx.Subcharts | default dict) -}}
{{- if and (not $found) (eq $sub.Chart.Name "gatehouse") -}}
{{- $found = $sub.Chart.AppVersion -}}
{{- end -}}
{{- end -}}
{{- $found -}}
{{- end -}}
{{- end -}}

{{- define "gatehouse.image" -}}
{{- $img := .values.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- $tag := $img.tag | default (include "gatehouse.appVersion" .) -}}
{{- if not $tag -}}
{{- fail "gatehouse: cannot tell the image tag: set image.tag (or image.digest)" -}}
{{- end -}}
{{- printf "%s:%s" $img.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Labels of resources this chart renders itself (root context). */}}
{{- define "gatehouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gatehouse.name" (dict "values" .Values "context" .) }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "gatehouse.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "gatehouse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: proxy
{{- end -}}

{{- define "gatehouse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gatehouse.fullname" (dict "values" .Values "context" .)) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Seconds the pod needs to drain: drain_delay + shutdown_grace. */}}
{{- define "gatehouse.drainSeconds" -}}
{{- add (int .values.shutdown.drainDelaySeconds) (int .values.shutdown.graceSeconds) -}}
{{- end -}}

{{/*
terminationGracePeriodSeconds for a pod running gatehouse: the value when set (it must
exceed drain_delay + shutdown_grace), else drain_delay + shutdown_grace + 5.
An app chart using the sidecar puts this on its pod spec (or a larger value).
*/}}
{{- define "gatehouse.terminationGracePeriodSeconds" -}}
{{- $need := int (include "gatehouse.drainSeconds" .) -}}
{{- $set := .values.terminationGracePeriodSeconds -}}
{{- if kindIs "invalid" $set -}}
{{- add $need 5 -}}
{{- else if le (int $set) $need -}}
{{- fail (printf "gatehouse: terminationGracePeriodSeconds (%d) must exceed shutdown.drainDelaySeconds + shutdown.graceSeconds (%d), or the kubelet kills gatehouse mid-drain" (int $set) $need) -}}
{{- else -}}
{{- int $set -}}
{{- end -}}
{{- end -}}

{{/* ------------------------------------------------------------------------------
TOML rendering. Helm's toToml writes every number from a values file as a float
(256.0), which gatehouse refuses where it wants an integer; these templates write
whole numbers as integers, strings as TOML basic strings (JSON escapes are valid TOML
escapes), lists as inline arrays, maps as [tables] and lists of maps as
[[arrays of tables]]. Null values are left out (gatehouse then uses its default).
------------------------------------------------------------------------------ */}}

{{- define "gatehouse.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{- define "gatehouse.toml.value" -}}
{{- $v := . -}}
{{- $k := kindOf $v -}}
{{- if eq $k "string" -}}
{{- toJson $v -}}
{{- else if eq $k "bool" -}}
{{- ternary "true" "false" $v -}}
{{- else if or (eq $k "float64") (eq $k "float32") -}}
{{- if eq (floor $v) (float64 $v) -}}{{ int64 $v }}{{- else -}}{{ $v }}{{- end -}}
{{- else if has $k (list "int" "int8" "int16" "int32" "int64" "uint" "uint8" "uint16" "uint32" "uint64") -}}
{{- $v -}}
{{- else if eq $k "slice" -}}
[{{- range $i, $e := $v -}}{{- if $i }}, {{ end -}}{{- include "gatehouse.toml.value" $e -}}{{- end -}}]
{{- else if eq $k "map" -}}
{{- if not $v -}}{}{{- else -}}
{ {{- range $i, $key := keys $v | sortAlpha -}}{{- if $i }},{{ end }} {{ include "gatehouse.toml.key" $key }} = {{ include "gatehouse.toml.value" (get $v $key) -}}{{- end }} }
{{- end -}}
{{- else -}}
{{- fail (printf "gatehouse: config holds a value TOML cannot express (%s)" $k) -}}
{{- end -}}
{{- end -}}

{{/* A list of maps, written as [[array of tables]]. */}}
{{- define "gatehouse.toml.isTableArray" -}}
{{- if and (kindIs "slice" .) (gt (len .) 0) -}}
{{- $all := true -}}
{{- range . -}}{{- if not (kindIs "map" .) -}}{{- $all = false -}}{{- end -}}{{- end -}}
{{- if $all -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The body of one table: its plain keys, then its sub-tables, then its arrays of tables.
Input: dict "path" "server" "table" $map ("" path for the document root).
*/}}
{{- define "gatehouse.toml.body" -}}
{{- $path := .path -}}
{{- $t := .table -}}
{{- $order := .order | default (keys $t | sortAlpha) -}}
{{- range $key := $order -}}
{{- $v := get $t $key -}}
{{- if not (or (kindIs "invalid" $v) (kindIs "map" $v) (include "gatehouse.toml.isTableArray" $v)) }}
{{ include "gatehouse.toml.key" $key }} = {{ include "gatehouse.toml.value" $v }}
{{- end -}}
{{- end -}}
{{- range $key := $order -}}
{{- $v := get $t $key -}}
{{- $sub := include "gatehouse.toml.key" $key -}}
{{- if $path }}{{ $sub = printf "%s.%s" $path $sub }}{{ end -}}
{{- if kindIs "map" $v }}

[{{ $sub }}]
{{- include "gatehouse.toml.body" (dict "path" $sub "table" $v) -}}
{{- end -}}
{{- end -}}
{{- range $key := $order -}}
{{- $v := get $t $key -}}
{{- $sub := include "gatehouse.toml.key" $key -}}
{{- if $path }}{{ $sub = printf "%s.%s" $path $sub }}{{ end -}}
{{- if include "gatehouse.toml.isTableArray" $v -}}
{{- range $v }}

[[{{ $sub }}]]
{{- include "gatehouse.toml.body" (dict "path" $sub "table" .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "host:port", or "[v6]:port". Input: list host port. */}}
{{- define "gatehouse.hostPort" -}}
{{- $host := index . 0 -}}
{{- if contains ":" $host -}}
{{- printf "[%s]:%d" (trimSuffix "]" (trimPrefix "[" $host)) (int (index . 1)) -}}
{{- else -}}
{{- printf "%s:%d" $host (int (index . 1)) -}}
{{- end -}}
{{- end -}}

{{/* ------------------------------------------------------------------------------
gatehouse.config: the gatehouse.toml text, from .values.config plus what the chart
owns (listen addresses, shutdown timing, the default key prefix). Refuses secrets in
the config and settings that would contradict the pod spec.
------------------------------------------------------------------------------ */}}
{{- define "gatehouse.config" -}}
{{- $v := .values -}}
{{- $cfg := deepCopy ($v.config | default dict) -}}
{{- $server := get $cfg "server" | default dict -}}
{{- range $k, $from := dict "listen" "ports.proxy" "api_listen" "ports.api and exposeApi" "admin_listen" "ports.admin" "shutdown_grace" "shutdown.graceSeconds" "drain_delay" "shutdown.drainDelaySeconds" -}}
{{- if hasKey $server $k -}}
{{- fail (printf "gatehouse: config.server.%s is written by the chart from %s; remove it from config" $k $from) -}}
{{- end -}}
{{- end -}}
{{- $bind := $v.bindAddress | default "0.0.0.0" -}}
{{- $apiBind := "127.0.0.1" -}}
{{- if $v.exposeApi -}}{{- $apiBind = $bind -}}{{- end -}}
{{- $_ := set $server "listen" (include "gatehouse.hostPort" (list $bind $v.ports.proxy)) -}}
{{- $_ = set $server "admin_listen" (include "gatehouse.hostPort" (list $bind $v.ports.admin)) -}}
{{- $_ = set $server "api_listen" (include "gatehouse.hostPort" (list $apiBind $v.ports.api)) -}}
{{- $_ = set $server "drain_delay" (printf "%ds" (int $v.shutdown.drainDelaySeconds)) -}}
{{- $_ = set $server "shutdown_grace" (printf "%ds" (int $v.shutdown.graceSeconds)) -}}
{{- $_ = set $cfg "server" $server -}}
{{- $store := get $cfg "store" | default dict -}}
{{- if not (get $store "key_prefix") -}}
{{- $_ = set $store "key_prefix" (printf "%s:%s" (include "gatehouse.fullname" .) .context.Release.Namespace) -}}
{{- end -}}
{{- $url := get $store "url" | default "" -}}
{{- if regexMatch "^[a-z]+://[^/@]*:[^/@]+@" $url -}}
{{- fail "gatehouse: config.store.url carries a password, and the ConfigMap is not secret: put the URL in a Secret and set secrets.storeUrl" -}}
{{- end -}}
{{- if and $v.secrets.storeUrl.name (eq $v.secrets.storeUrl.env "REDIS_URL") (hasKey $store "url") -}}
{{- fail "gatehouse: secrets.storeUrl.env=REDIS_URL is ignored by gatehouse while config.store.url is set; remove config.store.url or use env GATEHOUSE_STORE_URL" -}}
{{- end -}}
{{- $_ = set $cfg "store" $store -}}
{{- if (get (get $cfg "api" | default dict) "token") -}}
{{- fail "gatehouse: config.api.token would be readable in the ConfigMap: put it in a Secret and set secrets.apiToken" -}}
{{- end -}}
{{- if (get (get $cfg "auth" | default dict) "hs_secret") -}}
{{- fail "gatehouse: config.auth.hs_secret would be readable in the ConfigMap: put it in a Secret and set secrets.jwtHsSecret" -}}
{{- end -}}
{{- if and $v.exposeApi (not $v.secrets.apiToken.name) -}}
{{- fail "gatehouse: exposeApi=true publishes the api listener (/v1/...) on the Service; set secrets.apiToken so every call needs the bearer token" -}}
{{- end -}}
{{- $known := list "server" "origin" "origins" "store" "cache" "auth" "api" "capacity" "locks" "reload" "log" -}}
{{- $order := list -}}
{{- range $known -}}{{- if hasKey $cfg . -}}{{- $order = append $order . -}}{{- end -}}{{- end -}}
{{- range $k := keys $cfg | sortAlpha -}}{{- if not (has $k $known) -}}{{- $order = append $order $k -}}{{- end -}}{{- end -}}
# gatehouse.toml, rendered by the gatehouse Helm chart from .Values.config.
# Every key gatehouse reads is listed with its default in the repository's config.toml.
# Environment variables (GATEHOUSE_<SECTION>_<KEY>, REDIS_URL) override this file.
{{- include "gatehouse.toml.body" (dict "path" "" "table" $cfg "order" $order) }}
{{ end -}}

{{/* sha256 of the rendered config, for the pod annotation that rolls pods on change. */}}
{{- define "gatehouse.configChecksum" -}}
{{- include "gatehouse.config" . | sha256sum -}}
{{- end -}}
