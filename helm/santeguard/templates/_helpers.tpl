{{/* Names and labels. */}}
{{- define "santeguard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "santeguard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "santeguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "santeguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "santeguard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "santeguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: santeguard
{{- end -}}

{{- define "santeguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "santeguard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "santeguard.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* The port SantéGuard listens on inside the pod (appservice.port). */}}
{{- define "santeguard.port" -}}29340{{- end -}}

{{/* The Service's URL: where Synapse reaches SantéGuard. */}}
{{- define "santeguard.serviceURL" -}}
{{- printf "http://%s.%s.svc.%s:%s" (include "santeguard.fullname" .) .Release.Namespace .Values.clusterDomain (include "santeguard.port" .) -}}
{{- end -}}

{{- define "santeguard.appserviceAddress" -}}
{{- .Values.config.appservice.address | default (include "santeguard.serviceURL" .) | trimSuffix "/" -}}
{{- end -}}

{{- define "santeguard.antispamURL" -}}
{{- printf "%s%s" (include "santeguard.appserviceAddress" .) (.Values.config.antispam.path | default "/_santeguard/antispam") -}}
{{- end -}}

{{- define "santeguard.registrationNamespace" -}}
{{- .Values.registration.namespace | default .Release.Namespace -}}
{{- end -}}

{{/* Where the chart puts files in the pod. */}}
{{- define "santeguard.dataDir" -}}/var/lib/santeguard{{- end -}}
{{- define "santeguard.mailTlsDir" -}}/etc/santeguard/mail-tls{{- end -}}

{{/*
Secret values the chart generates when they are not given: kept across upgrades by
reading the release's Secret back from the cluster (lookup; empty in `helm template`).
Computed once per render and cached, so every template sees the same values.
*/}}
{{- define "santeguard.secretValues" -}}
{{- if not (hasKey .Values "__santeguardSecretValues") -}}
{{- $old := dict -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "santeguard.fullname" .) -}}
{{- if and $existing (hasKey $existing "data") -}}
{{- $old = $existing.data -}}
{{- end -}}
{{- $t := .Values.secrets.tokens -}}
{{- $out := dict -}}
{{- $_ := set $out "as_token" ($t.asToken | default (get $old "as_token" | b64dec) | default (randAlphaNum 64)) -}}
{{- $_ := set $out "hs_token" ($t.hsToken | default (get $old "hs_token" | b64dec) | default (randAlphaNum 64)) -}}
{{- $_ := set $out "antispam_token" ($t.antispamToken | default (get $old "antispam_token" | b64dec) | default (randAlphaNum 64)) -}}
{{- $_ := set $out "signing_key" (.Values.secrets.audit.signingKey | default (get $old "signing_key" | b64dec) | default (randBytes 32)) -}}
{{- $_ := set .Values "__santeguardSecretValues" $out -}}
{{- end -}}
{{- toJson (get .Values "__santeguardSecretValues") -}}
{{- end -}}

{{/* The Secret holding a group's keys: the admin's existingSecret, else the chart's. */}}
{{- define "santeguard.secretName" -}}
{{- $group := index .root.Values.secrets .group -}}
{{- $group.existingSecret | default (include "santeguard.fullname" .root) -}}
{{- end -}}

{{- define "santeguard.mailTlsSecretName" -}}
{{- .Values.secrets.mailTls.existingSecret | default (printf "%s-mail-tls" (include "santeguard.fullname" .)) -}}
{{- end -}}

{{/*
The appservice's tokens for the registration: generated/given ones, or read from the
admin's existingSecret (lookup; the chart fails when it cannot read it).
*/}}
{{- define "santeguard.registrationTokens" -}}
{{- if .Values.secrets.tokens.existingSecret -}}
{{- $ns := .Release.Namespace -}}
{{- $s := lookup "v1" "Secret" $ns .Values.secrets.tokens.existingSecret -}}
{{- if not (and $s (hasKey $s "data")) -}}
{{- fail (printf "registration.create: the Secret %s (secrets.tokens.existingSecret) cannot be read in namespace %s, so the chart cannot write the registration from its tokens. Create it first (keys as_token, hs_token, antispam_token), or set registration.create=false and give Synapse your own registration with the same tokens." .Values.secrets.tokens.existingSecret $ns) -}}
{{- end -}}
{{- $d := $s.data -}}
{{- toJson (dict "as_token" (get $d "as_token" | b64dec) "hs_token" (get $d "hs_token" | b64dec) "antispam_token" (get $d "antispam_token" | b64dec)) -}}
{{- else -}}
{{- include "santeguard.secretValues" . -}}
{{- end -}}
{{- end -}}

{{/* Python's re.escape, as bridge/registration.py uses it (Go's QuoteMeta leaves '-'). */}}
{{- define "santeguard.reEscape" -}}
{{- regexQuoteMeta . | replace "-" "\\-" -}}
{{- end -}}

{{- define "santeguard.senderLocalpart" -}}
{{- $bot := .Values.config.appservice.bot_username | default "santeguard" -}}
{{- .Values.registration.senderLocalpart | default (printf "%s_as_%s" $bot (sha256sum (printf "%s/%s" .Release.Namespace (include "santeguard.fullname" .)) | trunc 8)) -}}
{{- end -}}

{{/* A SantéGuard duration (90d, 6mo, 1y, 12h; j, sem, mois, a) in milliseconds. */}}
{{- define "santeguard.durationMs" -}}
{{- $text := toString . | lower -}}
{{- $pattern := "^([0-9]+) ?(h|d|j|w|sem|mo|mois|y|a)$" -}}
{{- if not (regexMatch $pattern $text) -}}
{{- fail (printf "%q is not a duration the chart reads: write e.g. 90d, 12h, 2w, 6mo, 1y" $text) -}}
{{- end -}}
{{- $units := dict "h" 3600000 "d" 86400000 "j" 86400000 "w" 604800000 "sem" 604800000 "mo" 2592000000 "mois" 2592000000 "y" 31536000000 "a" 31536000000 -}}
{{- $n := regexReplaceAll $pattern $text "${1}" | atoi -}}
{{- $u := regexReplaceAll $pattern $text "${2}" -}}
{{- mul $n (get $units $u) -}}
{{- end -}}

{{/* The shortest exact Synapse duration for a SantéGuard one (as check-homeserver writes it). */}}
{{- define "santeguard.synapseDuration" -}}
{{- $ms := include "santeguard.durationMs" . | int64 -}}
{{- $out := printf "%d" $ms -}}
{{- range $unit := list (list "s" 1000) (list "m" 60000) (list "h" 3600000) (list "d" 86400000) (list "w" 604800000) (list "y" 31536000000) -}}
{{- $size := index $unit 1 | int64 -}}
{{- if eq (mod $ms $size) (int64 0) -}}
{{- $out = printf "%d%s" (div $ms $size) (index $unit 0) -}}
{{- end -}}
{{- end -}}
{{- $out -}}
{{- end -}}

{{/* Refusals: configurations the chart would deploy broken. */}}
{{- define "santeguard.validate" -}}
{{- $c := .Values.config -}}
{{- if not $c.homeserver.address -}}
{{- fail "config.homeserver.address is required: Synapse's client-server API as SantéGuard reaches it, e.g. http://matrix-synapse.matrix.svc.cluster.local:8008" -}}
{{- end -}}
{{- if not $c.homeserver.domain -}}
{{- fail "config.homeserver.domain is required: the server name after ':' in user IDs" -}}
{{- end -}}
{{- $db := .Values.database -}}
{{- if hasPrefix "sqlite" (lower $db.uri) -}}
{{- fail "database.uri: SQLite is for one process only; the chart runs replicas and needs PostgreSQL (postgres://user:password@host:5432/db)" -}}
{{- end -}}
{{- if and $db.uri (not (regexMatch "^postgres(ql)?://" $db.uri)) -}}
{{- fail "database.uri must start with postgres:// or postgresql://" -}}
{{- end -}}
{{- if not (or $db.uri $db.host $db.existingSecretUriKey) -}}
{{- fail "database: give database.host (PostgreSQL) with its password, or database.uri; SQLite is not supported by the chart" -}}
{{- end -}}
{{- if and $db.host (not $db.uri) (not $db.existingSecretUriKey) (not $db.password) (not $db.existingSecret) -}}
{{- fail "database.password (or database.existingSecret) is required with database.host" -}}
{{- end -}}
{{- if and $db.existingSecretUriKey (not $db.existingSecret) -}}
{{- fail "database.existingSecretUriKey needs database.existingSecret" -}}
{{- end -}}
{{- $enc := $c.encryption | default dict -}}
{{- $inDb := true -}}
{{- if hasKey $enc "store_in_database" -}}{{- $inDb = $enc.store_in_database -}}{{- end -}}
{{- $encOn := true -}}
{{- if hasKey $enc "enabled" -}}{{- $encOn = $enc.enabled -}}{{- end -}}
{{- if and (not $inDb) $encOn (gt (int .Values.replicaCount) 1) -}}
{{- fail "replicaCount > 1 needs config.encryption.store_in_database: true: whichever replica leads must find the bot's device in the database" -}}
{{- end -}}
{{- if and .Values.persistence.enabled (gt (int .Values.replicaCount) 1) -}}
{{- fail "persistence.enabled needs replicaCount: 1 (one volume, one process)" -}}
{{- end -}}
{{- if and (not $inDb) $encOn (not .Values.persistence.enabled) -}}
{{- fail "config.encryption.store_in_database: false keeps the bot's device in files: set persistence.enabled (and replicaCount: 1), or the device would be lost at every restart" -}}
{{- end -}}
{{- $mail := $c.mail | default dict -}}
{{- if $mail.enabled -}}
{{- $tls := .Values.secrets.mailTls -}}
{{- if not (or $tls.existingSecret (and $tls.ca $tls.clientCert $tls.clientKey)) -}}
{{- fail "config.mail.enabled needs secrets.mailTls: ca, clientCert and clientKey (PEM), or existingSecret" -}}
{{- end -}}
{{- if not (or .Values.secrets.mail.existingSecret .Values.secrets.mail.imapPassword) -}}
{{- fail "config.mail.enabled needs secrets.mail.imapPassword (or secrets.mail.existingSecret)" -}}
{{- end -}}
{{- end -}}
{{- $dir := $c.directory | default dict -}}
{{- if and (eq ($dir.source | default "extract") "fhir") (not (or .Values.secrets.directory.fhirApiKey .Values.secrets.directory.existingSecret)) -}}
{{- fail "config.directory.source: fhir needs secrets.directory.fhirApiKey (or secrets.directory.existingSecret)" -}}
{{- end -}}
{{- if .Values.networkPolicy.enabled -}}
{{- $np := .Values.networkPolicy -}}
{{- if not (or $np.postgresql.cidrs $np.postgresql.peers) -}}
{{- fail "networkPolicy.postgresql: give the CIDRs (cidrs) or peers (peers) of PostgreSQL, or SantéGuard could not reach its database; or set networkPolicy.enabled=false" -}}
{{- end -}}
{{- if and $mail.enabled (not (and $np.smtp.cidrs $np.imap.cidrs)) -}}
{{- fail "config.mail.enabled with networkPolicy.enabled: give networkPolicy.smtp.cidrs and networkPolicy.imap.cidrs (the MSSanté operator's servers)" -}}
{{- end -}}
{{- if and (eq ($dir.source | default "extract") "fhir") (not $np.directory.cidrs) -}}
{{- fail "config.directory.source: fhir with networkPolicy.enabled: give networkPolicy.directory.cidrs (the Annuaire Santé FHIR API)" -}}
{{- end -}}
{{- end -}}
{{- range $k := list "default_max_lifetime" "min_lifetime" "max_lifetime" "purge_interval" -}}
{{- if hasKey ($c.retention | default dict) $k -}}
{{- $_ := include "santeguard.durationMs" (index $c.retention $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The config.yaml SantéGuard reads: the values' config plus what the chart decides. */}}
{{- define "santeguard.configYaml" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $app := $cfg.appservice -}}
{{- $_ := set $app "address" (include "santeguard.appserviceAddress" .) -}}
{{- $_ := set $app "hostname" "0.0.0.0" -}}
{{- $_ := set $app "port" (include "santeguard.port" . | int) -}}
{{- $data := include "santeguard.dataDir" . -}}
{{- $enc := $cfg.encryption | default dict -}}
{{- $_ := set $enc "store_path" (printf "%s/crypto" $data) -}}
{{- $_ := set $cfg "encryption" $enc -}}
{{- $audit := $cfg.audit | default dict -}}
{{- $_ := set $audit "key_file" (printf "%s/audit/signing.key" $data) -}}
{{- $_ := set $audit "checkpoint_file" (printf "%s/audit/checkpoints.jsonl" $data) -}}
{{- $_ := set $cfg "audit" $audit -}}
{{- $mail := $cfg.mail | default dict -}}
{{- if $mail.enabled -}}
{{- $tls := include "santeguard.mailTlsDir" . -}}
{{- $_ := set $mail "ca_file" (printf "%s/ca.crt" $tls) -}}
{{- $_ := set $mail "client_cert" (printf "%s/tls.crt" $tls) -}}
{{- $_ := set $mail "client_key" (printf "%s/tls.key" $tls) -}}
{{- end -}}
{{- $_ := set $cfg "mail" $mail -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* A NetworkPolicyPeer from {namespaceSelector, podSelector}; an empty namespaceSelector
is left out (it would mean every namespace): the peer is then in the release's namespace. */}}
{{- define "santeguard.peer" -}}
{{- $peer := dict "podSelector" (.podSelector | default dict) -}}
{{- with .namespaceSelector -}}
{{- $_ := set $peer "namespaceSelector" . -}}
{{- end -}}
{{- toYaml $peer -}}
{{- end -}}
