{{/*
The gatehouse container, and what a pod needs around it. The standalone Deployment
uses these templates, and so does an app chart that runs gatehouse as a sidecar. In
the app chart (this chart as a dependency with standalone.enabled=false, which still
renders the ConfigMap):

  spec:
    terminationGracePeriodSeconds: {{ include "gatehouse.terminationGracePeriodSeconds" (dict "values" .Values.gatehouse "context" $) }}
    enableServiceLinks: false
    containers:
      - name: app
        ...
      {{- include "gatehouse.sidecar" (dict "values" .Values.gatehouse "context" $) | nindent 6 }}
    volumes:
      {{- include "gatehouse.sidecarVolumes" (dict "values" .Values.gatehouse "context" $) | nindent 6 }}

and on the pod template's metadata.annotations:

      {{- include "gatehouse.sidecarAnnotations" (dict "values" .Values.gatehouse "context" $) | nindent 8 }}

Each template renders a YAML list item (or map entries) without leading indentation;
nindent places it. See README.md, "Sidecar".
*/}}

{{/* Where the ConfigMap is mounted; the config file is gatehouse.toml in it. */}}
{{- define "gatehouse.configDir" -}}/etc/gatehouse/config{{- end -}}

{{/* The gatehouse container, as one list item of a pod's containers (or initContainers). */}}
{{- define "gatehouse.sidecar" -}}
{{- $v := .values -}}
- name: gatehouse
  image: {{ include "gatehouse.image" . | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if $v.sidecar.native }}
  {{- $kube := .context.Capabilities.KubeVersion.Version }}
  {{- if not (semverCompare ">=1.29.0-0" $kube) }}
  {{- fail (printf "gatehouse: sidecar.native needs Kubernetes >= 1.29 (an init container with restartPolicy: Always); this cluster is %s: set gatehouse.sidecar.native=false and list gatehouse.sidecar under containers" $kube) }}
  {{- end }}
  restartPolicy: Always
  {{- end }}
  command:
    {{- toYaml $v.command | nindent 4 }}
  args:
    - run
    - --config
    - {{ include "gatehouse.configDir" . }}/gatehouse.toml
  ports:
    - name: gh-proxy
      containerPort: {{ int $v.ports.proxy }}
      protocol: TCP
    - name: gh-admin
      containerPort: {{ int $v.ports.admin }}
      protocol: TCP
    {{- if $v.exposeApi }}
    - name: gh-api
      containerPort: {{ int $v.ports.api }}
      protocol: TCP
    {{- end }}
  {{- $env := include "gatehouse.env" . | trim }}
  {{- if $env }}
  env:
    {{- $env | nindent 4 }}
  {{- end }}
  {{- with $v.envFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.startupProbe }}
  startupProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.livenessProbe }}
  livenessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.readinessProbe }}
  readinessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: gatehouse-config
      mountPath: {{ include "gatehouse.configDir" . }}
      readOnly: true
    {{- with $v.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/*
Environment of the gatehouse container: values from Secrets, then `env`. An empty
GATEHOUSE_* value is refused here, as gatehouse refuses it at start (empty is not
"unset": an empty api token would otherwise mean no api authentication).
*/}}
{{- define "gatehouse.env" -}}
{{- $s := .values.secrets -}}
{{- range $e := .values.env -}}
{{- if and (hasPrefix "GATEHOUSE_" (toString $e.name)) (not $e.valueFrom) -}}
{{- $value := "" -}}
{{- if and (hasKey $e "value") (not (kindIs "invalid" $e.value)) -}}{{- $value = toString $e.value -}}{{- end -}}
{{- if eq $value "" -}}
{{- fail (printf "gatehouse: env %s is empty, and gatehouse refuses an empty GATEHOUSE_* variable at start; remove it or give it a value" $e.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $s.apiToken.name }}
- name: GATEHOUSE_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $s.apiToken.name }}
      key: {{ $s.apiToken.key }}
{{- end }}
{{- if $s.storeUrl.name }}
- name: {{ $s.storeUrl.env }}
  valueFrom:
    secretKeyRef:
      name: {{ $s.storeUrl.name }}
      key: {{ $s.storeUrl.key }}
{{- end }}
{{- if $s.jwtHsSecret.name }}
- name: GATEHOUSE_AUTH_HS_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $s.jwtHsSecret.name }}
      key: {{ $s.jwtHsSecret.key }}
{{- end }}
{{- with .values.env }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The pod volumes gatehouse needs (the config, then extraVolumes), as list items. */}}
{{- define "gatehouse.sidecarVolumes" -}}
- name: gatehouse-config
  configMap:
    name: {{ include "gatehouse.configMapName" . }}
{{- with .values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Pod template annotations: the config checksum, so that a config change rolls the pods
(nothing when rollOnConfigChange=false; then reload in place, see values.yaml).
Renders map entries, possibly none.
*/}}
{{- define "gatehouse.sidecarAnnotations" -}}
{{- if .values.rollOnConfigChange -}}
checksum/gatehouse-config: {{ include "gatehouse.configChecksum" . }}
{{- end -}}
{{- end -}}
