{{/* Names and labels shared by every template. */}}

{{- define "flashsale-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name prefix, at most 63 characters (DNS label). */}}
{{- define "flashsale-operator.fullname" -}}
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

{{- define "flashsale-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flashsale-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flashsale-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flashsale-operator.labels" -}}
helm.sh/chart: {{ include "flashsale-operator.chart" . }}
{{ include "flashsale-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: flashsale
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "flashsale-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "flashsale-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "flashsale-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "flashsale-operator.leaseName" -}}
{{- default (include "flashsale-operator.fullname" .) .Values.operator.leaseName }}
{{- end }}

{{/*
The rules the operator needs on FlashSales and the data plane it creates, for the ClusterRole or
for each namespaced Role. Leases are granted separately, only in the release namespace.
Exactly the requests the operator makes (test/journey.test.ts compares them with the apiserver's
audit log): reads are informers (list, watch); children are written by server-side apply (patch;
an apply that creates the object is also authorized as create); the finalizer is a merge patch;
status is a PUT; Events are core/v1 POSTs.
*/}}
{{- define "flashsale-operator.rules" -}}
- apiGroups: [flashsale.dev]
  resources: [flashsales]
  verbs: [list, watch, patch]
- apiGroups: [flashsale.dev]
  resources: [flashsales/status]
  verbs: [update]
# Owner references with blockOwnerDeletion (checked by OwnerReferencesPermissionEnforcement).
- apiGroups: [flashsale.dev]
  resources: [flashsales/finalizers]
  verbs: [update]
# delete: a closer of a removed bucket; the workers first when a sale with deletionPolicy Delete goes.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, patch, delete]
# delete: an owned Service that is no longer in the plan.
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch, create, patch, delete]
# The API pods' PodDisruptionBudget; delete: an owned budget that is no longer in the plan.
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}
