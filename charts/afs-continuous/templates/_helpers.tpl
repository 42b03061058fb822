{{/* The release's full name, at most 63 characters (a DNS label). */}}
{{- define "afs-continuous.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "afs-continuous.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "afs-continuous.labels" -}}
{{ include "afs-continuous.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "afs-continuous.serviceAccountName" -}}
{{- default (include "afs-continuous.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "afs-continuous.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* What the operator does to our own resources and to the Jobs it launches. */}}
{{- define "afs-continuous.workloadRules" -}}
- apiGroups: ["continuous.afs.dev"]
  resources: ["learningloops", "modelversions", "abtests"]
  verbs: ["get", "list", "watch", "create", "patch", "update"]
- apiGroups: ["continuous.afs.dev"]
  resources: ["learningloops/status", "modelversions/status", "abtests/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["create"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "create", "delete"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "patch"]
- apiGroups: ["networking.istio.io"]
  resources: ["virtualservices"]
  verbs: ["get", "patch"]
- apiGroups: ["split.smi-spec.io"]
  resources: ["trafficsplits"]
  verbs: ["get", "patch"]
- apiGroups: ["serving.knative.dev"]
  resources: ["services"]
  verbs: ["get", "patch"]
- apiGroups: ["serving.kserve.io"]
  resources: ["inferenceservices"]
  verbs: ["get", "patch"]
{{- range .Values.trainingKinds }}
{{- $kind := get (dict
      "TrainJob" (list "trainer.kubeflow.org" "trainjobs")
      "PyTorchJob" (list "kubeflow.org" "pytorchjobs")
      "RayJob" (list "ray.io" "rayjobs")) . }}
- apiGroups: [{{ index $kind 0 | quote }}]
  resources: [{{ index $kind 1 | quote }}]
  verbs: ["get", "create"]
{{- end }}
{{- end -}}

{{/* What kopf itself needs cluster-wide: resource discovery and namespace watching. */}}
{{- define "afs-continuous.frameworkRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end -}}

{{/* The collector's pods: a name of their own, so the operator's selectors never match them. */}}
{{- define "afs-continuous.collectorSelectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}-collector
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: collector
{{- end -}}

{{- define "afs-continuous.collectorLabels" -}}
{{ include "afs-continuous.collectorSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "afs-continuous.collectorName" -}}
{{- printf "%s-collector" (include "afs-continuous.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The pod security level; the former trainingPolicy value is named, never guessed at. */}}
{{- define "afs-continuous.podSecurityLevel" -}}
{{- if hasKey .Values "trainingPolicy" -}}
{{- fail "trainingPolicy is now podSecurityLevel: restricted (the default), baseline or privileged (what permissive was)" -}}
{{- end -}}
{{- .Values.podSecurityLevel -}}
{{- end -}}
