{{/* Names, labels and small shared pieces. */}}

{{- define "kubereach.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of every object name, at most 40 characters so that suffixes like -client-ca fit. */}}
{{- define "kubereach.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kubereach.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/part-of: kubereach
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The agent pods' identity labels: the bot discovers agents by these. */}}
{{- define "kubereach.agent.selectorLabels" -}}
app.kubernetes.io/name: kubereach-agent
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end -}}

{{/* Labels that say which component an object belongs to; used beside kubereach.labels (which has the instance). */}}
{{- define "kubereach.agent.componentLabels" -}}
app.kubernetes.io/name: kubereach-agent
app.kubernetes.io/component: agent
{{- end -}}

{{- define "kubereach.bot.componentLabels" -}}
app.kubernetes.io/name: kubereach-bot
app.kubernetes.io/component: bot
{{- end -}}

{{- define "kubereach.bot.selectorLabels" -}}
app.kubernetes.io/name: kubereach-bot
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: bot
{{- end -}}

{{/* The label selector string the bot lists agent pods with (KUBEREACH_AGENTS__LABEL_SELECTOR). */}}
{{- define "kubereach.agent.selectorString" -}}
app.kubernetes.io/name=kubereach-agent,app.kubernetes.io/instance={{ .Release.Name }}
{{- end -}}

{{- define "kubereach.bot.serviceAccountName" -}}
{{- if .Values.bot.serviceAccount.create -}}
{{- default (printf "%s-bot" (include "kubereach.fullname" .)) .Values.bot.serviceAccount.name -}}
{{- else -}}
{{- required "bot.serviceAccount.name is required when bot.serviceAccount.create is false" .Values.bot.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kubereach.agent.serviceAccountName" -}}
{{- if .Values.agent.serviceAccount.create -}}
{{- default (printf "%s-agent" (include "kubereach.fullname" .)) .Values.agent.serviceAccount.name -}}
{{- else -}}
{{- required "agent.serviceAccount.name is required when agent.serviceAccount.create is false" .Values.agent.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* image reference: repository@digest, else repository:tag (tag defaults to appVersion). Call with (dict "image" X "root" $). */}}
{{- define "kubereach.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Secret names of the mTLS material (the same in chart-made and cert-manager mode). */}}
{{- define "kubereach.tls.agentCaSecret" -}}{{ include "kubereach.fullname" . }}-agent-ca{{- end -}}
{{- define "kubereach.tls.clientCaSecret" -}}{{ include "kubereach.fullname" . }}-client-ca{{- end -}}
{{- define "kubereach.tls.botSecret" -}}{{ include "kubereach.fullname" . }}-bot-tls{{- end -}}

{{- define "kubereach.slack.secretName" -}}
{{- default (printf "%s-slack" (include "kubereach.fullname" .)) .Values.slack.existingSecret -}}
{{- end -}}

{{/* Whether the history lives in a database outside the pod. */}}
{{- define "kubereach.database.external" -}}
{{- if or .Values.database.existingSecret .Values.database.url -}}true{{- end -}}
{{- end -}}

{{- define "kubereach.database.secretName" -}}
{{- default (printf "%s-database" (include "kubereach.fullname" .)) .Values.database.existingSecret -}}
{{- end -}}

{{- define "kubereach.database.secretKey" -}}
{{- if .Values.database.existingSecret -}}{{ .Values.database.existingSecretKey }}{{- else -}}url{{- end -}}
{{- end -}}

{{/* Checks that no template alone can express. */}}
{{- define "kubereach.validate" -}}
{{- if and (gt (int .Values.bot.replicaCount) 1) (not (include "kubereach.database.external" .)) -}}
{{- fail "bot.replicaCount > 1 needs a shared database: set database.url or database.existingSecret (SQLite lives in one pod)" -}}
{{- end -}}
{{- if and .Values.bot.ingress.enabled (ne .Values.bot.mode "http") -}}
{{- fail "bot.ingress.enabled needs bot.mode=http: in Socket Mode Slack does not call the bot" -}}
{{- end -}}
{{- if and .Values.metrics.enabled (not .Values.bot.ops.enabled) -}}
{{- fail "metrics.enabled needs bot.ops.enabled: the bot serves /metrics on its ops port" -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) -}}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled" -}}
{{- end -}}
{{- end -}}
