# ruff: noqa: E501  (message catalogs read best one sentence per line)
"""French and English texts of the mail bridge: commands, room notices, problems, alerts."""

from __future__ import annotations

from collections.abc import Mapping

PROBLEMS: Mapping[str, tuple[str, str]] = {
    "expired": ("le certificat du serveur a expiré", "the server's certificate has expired"),
    "unknown_ca": (
        "le certificat du serveur n'est pas signé par l'autorité configurée (ca_file, IGC-Santé)",
        "the server's certificate is not signed by the configured authority (ca_file, IGC-Santé)",
    ),
    "wrong_host": (
        "le certificat du serveur ne correspond pas à son nom d'hôte",
        "the server's certificate does not match its host name",
    ),
    "client_cert_refused": (
        "le serveur a refusé le certificat client de la boîte applicative",
        "the server refused the application mailbox's client certificate",
    ),
    "client_cert_missing": (
        "aucun certificat client n'est configuré (client_cert)",
        "no client certificate is configured (client_cert)",
    ),
    "client_key_missing": (
        "la clé du certificat client est introuvable (client_key)",
        "the client certificate's key is missing (client_key)",
    ),
    "client_cert_unreadable": (
        "le certificat client ou sa clé est illisible",
        "the client certificate or its key cannot be read",
    ),
    "client_cert_expired": (
        "le certificat client a expiré : renouvelez-le",
        "the client certificate has expired: renew it",
    ),
    "client_cert_not_yet_valid": (
        "le certificat client n'est pas encore valide",
        "the client certificate is not valid yet",
    ),
    "client_cert_expires_soon": (
        "le certificat client expire dans moins de 30 jours",
        "the client certificate expires in less than 30 days",
    ),
    "ca_missing": (
        "le fichier d'autorités (ca_file) est introuvable",
        "the CA bundle (ca_file) is missing",
    ),
    "tls_version": (
        "le serveur n'accepte pas TLS 1.2 ou plus",
        "the server does not accept TLS 1.2 or later",
    ),
    "no_starttls": (
        "le serveur ne propose pas STARTTLS : aucun envoi en clair",
        "the server does not offer STARTTLS: nothing is sent in clear",
    ),
    "unreachable": ("le serveur est injoignable", "the server is unreachable"),
    "login_refused": (
        "la connexion à la boîte a été refusée (identifiant ou certificat)",
        "the mailbox refused the login (user name or certificate)",
    ),
    "tls_error": ("la négociation TLS a échoué", "the TLS handshake failed"),
    "timeout": ("le serveur ne répond pas à temps", "the server did not answer in time"),
    "ca_unreadable": (
        "le fichier d'autorités (ca_file) est illisible",
        "the CA bundle (ca_file) cannot be read",
    ),
    "session_refused": (
        "le serveur refuse la session (accueil ou EHLO)",
        "the server refuses the session (greeting or EHLO)",
    ),
    "folder_unavailable": ("le dossier IMAP est inaccessible", "the IMAP folder cannot be opened"),
    "server_error": ("le serveur a répondu par une erreur", "the server answered with an error"),
    "other": ("erreur inattendue", "unexpected error"),
}

REASONS: Mapping[str, tuple[str, str]] = {
    "oversize": ("courriel trop volumineux", "mail too large"),
    "too_deep": ("structure MIME trop imbriquée", "MIME structure nested too deep"),
    "too_many_parts": ("trop de parties MIME", "too many MIME parts"),
    "decoded_too_large": ("contenu décodé trop volumineux", "decoded content too large"),
    "header_injection": ("en-têtes forgés (injection)", "forged headers (injection)"),
    "no_sender": ("expéditeur absent ou illisible", "sender missing or unreadable"),
    "malformed": ("courriel mal formé", "malformed mail"),
    "sender_not_allowed": (
        "expéditeur hors de la liste blanche MSSanté",
        "sender not on the MSSanté allow-list",
    ),
    "unknown_room": ("aucun salon lié ne correspond", "no linked room matches"),
    "room_refused": ("le salon a refusé le message", "the room refused the message"),
    "auto_submitted": ("réponse automatique", "automatic reply"),
    "auto_reply_header": ("réponse automatique", "automatic reply"),
    "bulk_precedence": ("envoi en masse", "bulk mail"),
    "own_message": ("notre propre courriel revenu (boucle)", "our own mail coming back (loop)"),
    "receipt_unknown": (
        "accusé de lecture d'un message inconnu",
        "read receipt for an unknown message",
    ),
}


def problem_code(code: str | None) -> str:
    return code if code is not None and code in PROBLEMS else "other"


CATALOG: Mapping[str, Mapping[str, str]] = {
    "fr": {
        "help.description.mail": "Messagerie sécurisée (MSSanté) : `link <adresse> [objet]`, `unlink`, `status`, `queue`, `quarantine`, `xdm [n°…|tout]`.",
        "mail.disabled": "La passerelle de messagerie sécurisée n'est pas configurée sur ce réseau (section mail).",
        "mail.link_usage": "Usage : `{prefix} mail link <adresse MSSanté> [objet]`.",
        "mail.bad_address": "Adresse invalide : {address}.",
        "mail.not_allowed": "{address} n'appartient pas à l'espace de confiance MSSanté (liste blanche) : liaison refusée.",
        "mail.default_subject": "Échange sécurisé",
        "mail.linked": "Salon lié à {address} (objet : « {subject} »). Les messages des professionnels vérifiés partent par messagerie sécurisée ; les réponses arrivent ici.",
        "mail.not_linked": "Ce salon n'est lié à aucune adresse. `{prefix} mail link <adresse>` le lie.",
        "mail.unlinked": "Liaison avec {address} supprimée : plus rien ne part ni n'arrive par messagerie.",
        "mail.status_link": "Lié à : {address} (objet « {subject} »).",
        "mail.status_unlinked": "Non lié (`{prefix} mail link <adresse>`).",
        "mail.status_mailbox": "Boîte applicative : {mailbox}.",
        "mail.status_problem": "⚠ {channel} : {problem}.",
        "mail.status_healthy": "Relais SMTP/IMAP et certificats : OK.",
        "mail.status_counts": "Courriels de ce salon : {sent} envoyé(s), {pending} en attente, {failed} en échec.",
        "mail.queue_empty": "Aucun courriel en attente ni en échec pour ce salon.",
        "mail.queue_header": "{count} courriel(s) en attente ou en échec :",
        "mail.queue_pending": "⏳ → {to} : {attempts} essai(s), prochain {due} ; dernière réponse : {reply}",
        "mail.queue_failed": "✗ → {to} : échec après {attempts} essai(s) ; réponse : {reply}",
        "mail.queue_cancelled": "– → {to} : annulé.",
        "mail.quarantine_admins_only": "La quarantaine est réservée aux administrateurs du réseau.",
        "mail.quarantine_empty": "Quarantaine vide.",
        "mail.quarantine_header": "{count} courriel(s) en quarantaine (les plus récents d'abord) :",
        "mail.quarantine_item": "{when} — {sender} — {reason} — {message_id}",
        "mail.xdm_no_files": "Aucun fichier de ce salon n'est disponible pour un envoi XDM.",
        "mail.xdm_list_header": "Fichiers du salon (envoi : `{prefix} mail xdm 1 3` ou `tout`) :",
        "mail.xdm_bad_choice": "Choix invalide : {value}.",
        "mail.xdm_queued": "Paquet IHE XDM de {count} document(s) mis en file pour {to} ({message_id}).",
        "mail.xdm_not_verified": "Seul un professionnel vérifié peut envoyer des documents par messagerie sécurisée.",
        "mail.bytes_unit": "o",
        "mail.xdm_listing": "Documents IHE XDM reçus ({count}), vérifiés (présence, taille, SHA-1) :",
        "mail.xdm_refused": "Pièce IHE_XDM.ZIP refusée : {reason}.",
        "mail.not_verified": "Message de {user} non envoyé par messagerie : seuls les professionnels de santé vérifiés peuvent écrire à l'extérieur.",
        "mail.too_large": "Message non envoyé par messagerie : trop volumineux pour le relais.",
        "mail.build_refused": "Message non envoyé par messagerie : son nom, son objet ou un nom de fichier contient des en-têtes forgés.",
        "mail.file_skipped": "Fichier {name} non joint au courriel ({reason}).",
        "mail.sent": "✓ Envoyé à {to}.",
        "mail.retrying": "↻ Pas encore remis à {to} : {reason}. Nouvel essai dans {minutes} min ; rien n'est perdu.",
        "mail.failed": "✗ Échec de l'envoi à {to} : {reply}.",
        "mail.gave_up": "✗ Abandon de l'envoi à {to} après plusieurs jours d'essais : {reply}.",
        "alert.mail_recovered": "Messagerie sécurisée ({channel}) : rétablie.",
        "alert.mail_failed": "Un courriel du salon {room} vers {to} a échoué ({reply}) — {message_id}.",
        "alert.mail_quarantined": "Courriel de {sender} mis en quarantaine : {reason}. `!sg mail quarantine` pour la liste.",
        "cli.mail_allowlist_imported": "Liste blanche MSSanté importée : {count} domaine(s) ({skipped} entrée(s) ignorée(s)).",
        "cli.mail_allowlist_error": "Liste blanche refusée ({reason}) : l'ancienne reste en vigueur.",
        **{f"mail.problem.{k}": v[0] for k, v in PROBLEMS.items()},
        **{
            f"alert.mail_problem.{k}": f"Messagerie sécurisée ({{channel}}) : {v[0]}."
            for k, v in PROBLEMS.items()
        },
        **{f"mail.reason.{k}": v[0] for k, v in REASONS.items()},
    },
    "en": {
        "help.description.mail": "Secure health mail (MSSanté): `link <address> [subject]`, `unlink`, `status`, `queue`, `quarantine`, `xdm [n…|all]`.",
        "mail.disabled": "The secure mail bridge is not configured on this network (mail section).",
        "mail.link_usage": "Usage: `{prefix} mail link <MSSanté address> [subject]`.",
        "mail.bad_address": "Invalid address: {address}.",
        "mail.not_allowed": "{address} is not in the MSSanté trust space (allow-list): link refused.",
        "mail.default_subject": "Secure exchange",
        "mail.linked": "Room linked to {address} (subject: “{subject}”). Verified practitioners' messages leave by secure mail; replies arrive here.",
        "mail.not_linked": "This room is not linked to any address. `{prefix} mail link <address>` links it.",
        "mail.unlinked": "Link with {address} removed: nothing leaves or arrives by mail any more.",
        "mail.status_link": "Linked to: {address} (subject “{subject}”).",
        "mail.status_unlinked": "Not linked (`{prefix} mail link <address>`).",
        "mail.status_mailbox": "Application mailbox: {mailbox}.",
        "mail.status_problem": "⚠ {channel}: {problem}.",
        "mail.status_healthy": "SMTP/IMAP relay and certificates: OK.",
        "mail.status_counts": "Mail from this room: {sent} sent, {pending} pending, {failed} failed.",
        "mail.queue_empty": "No pending or failed mail for this room.",
        "mail.queue_header": "{count} pending or failed mail(s):",
        "mail.queue_pending": "⏳ → {to}: {attempts} attempt(s), next {due}; last reply: {reply}",
        "mail.queue_failed": "✗ → {to}: failed after {attempts} attempt(s); reply: {reply}",
        "mail.queue_cancelled": "– → {to}: cancelled.",
        "mail.quarantine_admins_only": "The quarantine is for network admins only.",
        "mail.quarantine_empty": "Quarantine is empty.",
        "mail.quarantine_header": "{count} quarantined mail(s), newest first:",
        "mail.quarantine_item": "{when} — {sender} — {reason} — {message_id}",
        "mail.xdm_no_files": "No file of this room is available for an XDM package.",
        "mail.xdm_list_header": "Files of this room (send: `{prefix} mail xdm 1 3` or `all`):",
        "mail.xdm_bad_choice": "Invalid choice: {value}.",
        "mail.xdm_queued": "IHE XDM package of {count} document(s) queued for {to} ({message_id}).",
        "mail.xdm_not_verified": "Only a verified practitioner can send documents by secure mail.",
        "mail.bytes_unit": "bytes",
        "mail.xdm_listing": "IHE XDM documents received ({count}), checked (present, size, SHA-1):",
        "mail.xdm_refused": "IHE_XDM.ZIP attachment refused: {reason}.",
        "mail.not_verified": "{user}'s message was not mailed: only verified health professionals may write outside.",
        "mail.too_large": "Message not mailed: too large for the relay.",
        "mail.build_refused": "Message not mailed: a name, subject or file name carries forged headers.",
        "mail.file_skipped": "File {name} not attached to the mail ({reason}).",
        "mail.sent": "✓ Sent to {to}.",
        "mail.retrying": "↻ Not delivered to {to} yet: {reason}. Next attempt in {minutes} min; nothing is lost.",
        "mail.failed": "✗ Sending to {to} failed: {reply}.",
        "mail.gave_up": "✗ Gave up sending to {to} after days of attempts: {reply}.",
        "alert.mail_recovered": "Secure mail ({channel}): back to normal.",
        "alert.mail_failed": "A mail from room {room} to {to} failed ({reply}) — {message_id}.",
        "alert.mail_quarantined": "Mail from {sender} quarantined: {reason}. `!sg mail quarantine` lists them.",
        "cli.mail_allowlist_imported": "MSSanté allow-list imported: {count} domain(s) ({skipped} entry(ies) skipped).",
        "cli.mail_allowlist_error": "Allow-list refused ({reason}): the previous one stays in force.",
        **{f"mail.problem.{k}": v[1] for k, v in PROBLEMS.items()},
        **{
            f"alert.mail_problem.{k}": f"Secure mail ({{channel}}): {v[1]}."
            for k, v in PROBLEMS.items()
        },
        **{f"mail.reason.{k}": v[1] for k, v in REASONS.items()},
    },
}
