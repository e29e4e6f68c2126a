{{/* Chart name, truncated to 63 characters (a DNS label). */}}
{{- define "kubedag.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, unless the release name already contains the chart name. */}}
{{- define "kubedag.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kubedag.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object, but the component. */}}
{{- define "kubedag.baseLabels" -}}
helm.sh/chart: {{ include "kubedag.chart" . }}
app.kubernetes.io/name: {{ include "kubedag.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubedag
{{- end }}

{{/* Labels of the operator's objects. */}}
{{- define "kubedag.labels" -}}
{{ include "kubedag.baseLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Selector labels of the operator's pods. */}}
{{- define "kubedag.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubedag.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "kubedag.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kubedag.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kubedag.workerServiceAccountName" -}}
{{- default (printf "%s-worker" (include "kubedag.fullname" .)) .Values.worker.serviceAccount.name }}
{{- end }}

{{/* The operator's image. */}}
{{- define "kubedag.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The default image of processor stages: worker.image, else the worker image of this release. */}}
{{- define "kubedag.workerImage" -}}
{{- .Values.worker.image | default (printf "ghcr.io/kubedag/worker:%s" (.Values.image.tag | default .Chart.AppVersion)) }}
{{- end }}

{{/* The ValidatingAdmissionPolicy (and its binding) that confines the worker to its own pod. */}}
{{- define "kubedag.workerAdmissionPolicyName" -}}
{{- printf "%s-worker-own-pod" (include "kubedag.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The kopf peering name (leader election) when more than one replica runs. */}}
{{- define "kubedag.peering" -}}
{{- include "kubedag.fullname" . }}
{{- end }}
