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
# ContainerClaims are the users'; the operator only reads them and writes their status.
- apiGroups: [shoal.dev]
  resources: [containerclaims]
  verbs: [get, list, watch]
- apiGroups: [shoal.dev]
  resources: [containerclaims/status]
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
# A session's config follows its spec: written again before each pod. A predictive scaler's demand
# history is written every few polls and read when a process first meets the scaler.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, patch]
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
# A session with workers > 1 runs as an Indexed Job: created, read for its failure, deleted with its pods.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, create, delete]
# Where Kubeflow Trainer is installed, a gang is a TrainJob on a TrainingRuntime of the session's own:
# the runtime written before each TrainJob (read when one of its name exists: is it the session's?);
# the TrainJob created, read, listed (a paused session's, to resume it), suspended and resumed
# (patch), deleted.
- apiGroups: [trainer.kubeflow.org]
  resources: [trainingruntimes]
  verbs: [get, create, patch]
- apiGroups: [trainer.kubeflow.org]
  resources: [trainjobs]
  verbs: [get, list, create, patch, delete]
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
{{- if .Values.sessionNetworkPolicy.enabled }}
# Each session's NetworkPolicy (sessionNetworkPolicy): who may reach its TensorBoard, stream and metrics.
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [create]
{{- end }}
{{- end -}}

{{/* Prometheus credentials: each a Secret mounted read-only under /etc/shoal/prometheus/, the
operator told the file. Nothing of them goes into env values or the rendered Deployment. */}}
{{- define "shoal.prometheusEnv" -}}
{{- $p := .Values.prometheus -}}
{{- if $p.bearerToken.secretName }}
- {name: SHOAL_PROMETHEUS_BEARER_TOKEN_FILE, value: /etc/shoal/prometheus/bearer/{{ $p.bearerToken.key }}}
{{- else if $p.bearerToken.file }}
- {name: SHOAL_PROMETHEUS_BEARER_TOKEN_FILE, value: {{ $p.bearerToken.file | quote }}}
{{- end }}
{{- if $p.basicAuth.secretName }}
- {name: SHOAL_PROMETHEUS_BASIC_AUTH_USERNAME_FILE, value: /etc/shoal/prometheus/basic-auth/{{ $p.basicAuth.usernameKey }}}
- {name: SHOAL_PROMETHEUS_BASIC_AUTH_PASSWORD_FILE, value: /etc/shoal/prometheus/basic-auth/{{ $p.basicAuth.passwordKey }}}
{{- end }}
{{- if $p.tls.caSecretName }}
- {name: SHOAL_PROMETHEUS_CA_FILE, value: /etc/shoal/prometheus/ca/{{ $p.tls.caKey }}}
{{- end }}
{{- if $p.tls.clientCertSecretName }}
- {name: SHOAL_PROMETHEUS_CERT_FILE, value: /etc/shoal/prometheus/client/tls.crt}
- {name: SHOAL_PROMETHEUS_KEY_FILE, value: /etc/shoal/prometheus/client/tls.key}
{{- end }}
{{- with $p.headers }}
- {name: SHOAL_PROMETHEUS_HEADERS, value: {{ toJson . | quote }}}
{{- end }}
{{- with $p.namespaceLabel }}
- {name: SHOAL_PROMETHEUS_NAMESPACE_LABEL, value: {{ . | quote }}}
{{- end }}
{{- end -}}

{{- define "shoal.prometheusMounts" -}}
{{- $p := .Values.prometheus -}}
{{- if $p.bearerToken.secretName }}
- {name: prometheus-bearer, mountPath: /etc/shoal/prometheus/bearer, readOnly: true}
{{- end }}
{{- if $p.basicAuth.secretName }}
- {name: prometheus-basic-auth, mountPath: /etc/shoal/prometheus/basic-auth, readOnly: true}
{{- end }}
{{- if $p.tls.caSecretName }}
- {name: prometheus-ca, mountPath: /etc/shoal/prometheus/ca, readOnly: true}
{{- end }}
{{- if $p.tls.clientCertSecretName }}
- {name: prometheus-client, mountPath: /etc/shoal/prometheus/client, readOnly: true}
{{- end }}
{{- end -}}

{{- define "shoal.prometheusVolumes" -}}
{{- $p := .Values.prometheus -}}
{{- if $p.bearerToken.secretName }}
- {name: prometheus-bearer, secret: {secretName: {{ $p.bearerToken.secretName }}, defaultMode: 0440}}
{{- end }}
{{- if $p.basicAuth.secretName }}
- {name: prometheus-basic-auth, secret: {secretName: {{ $p.basicAuth.secretName }}, defaultMode: 0440}}
{{- end }}
{{- if $p.tls.caSecretName }}
- {name: prometheus-ca, secret: {secretName: {{ $p.tls.caSecretName }}, defaultMode: 0440}}
{{- end }}
{{- if $p.tls.clientCertSecretName }}
- {name: prometheus-client, secret: {secretName: {{ $p.tls.clientCertSecretName }}, defaultMode: 0440}}
{{- end }}
{{- end -}}
