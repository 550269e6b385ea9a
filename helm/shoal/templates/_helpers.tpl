{{- define "shoal.name" -}}shoal{{- end -}}
{{- define "shoal.fullname" -}}
{{- if contains "shoal" .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else -}}{{ printf "%s-shoal" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}
{{- define "shoal.labels" -}}
app.kubernetes.io/name: shoal
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
{{- define "shoal.selector" -}}
app.kubernetes.io/name: shoal
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "shoal.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}{{- end -}}

{{/* The operator's permissions, shared by the ClusterRole and the per-namespace Roles. Exact verbs, no wildcards. */}}
{{- define "shoal.rules" -}}
- apiGroups: [shoal.dev]
  resources: [containerpools, workerscalers, trainingsessions]
  verbs: [get, list, watch, patch]
- apiGroups: [shoal.dev]
  resources: [containerpools/status, workerscalers/status, trainingsessions/status]
  verbs: [get, patch]
- apiGroups: [shoal.dev]
  resources: [containerpools/scale]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, delete, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [""]
  resources: [persistentvolumeclaims, services]
  verbs: [create]
# A session's config follows its spec: written again before each pod.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [create, patch]
# A sessionAgent pool's pods each get an account: created before the pod, then handed to it (patch),
# deleted if the pod cannot be created.
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [create, patch, delete]
- apiGroups: [""]
  resources: [resourcequotas]
  verbs: [list]
- apiGroups: [apps]
  resources: [deployments/scale, statefulsets/scale, replicasets/scale]
  verbs: [get, patch]
{{- range .Values.extraScaleTargets }}
- apiGroups: [{{ .apiGroup | quote }}]
  resources: [{{ range $i, $r := .resources }}{{ if $i }}, {{ end }}{{ $r }}/scale{{ end }}]
  verbs: [get, patch]
{{- end }}
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list]
- apiGroups: [metrics.k8s.io]
  resources: [pods]
  verbs: [list]
# A session's or warm pod's agent gets a Role for get/watch/patch on its own pod; granting it needs these.
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [create, patch]
{{- end -}}
