"""The demo's narration, French and English: the same catalog mechanism as the bot's."""

from __future__ import annotations

from collections.abc import Mapping

CATALOG: Mapping[str, Mapping[str, str]] = {
    "fr": {
        "title": "SantéGuard — démonstration (tout tourne en local, rien ne sort de cette machine)",
        "start": "Démarrage de SantéGuard (SQLite : {db}) puis d'un Synapse jetable sur {hs} …",
        "workdir": "Répertoire de travail (jetons, clés, bases, journaux) : {path} — {fate}",
        "workdir_delete": "supprimé à l'arrêt de la démo (gardé si elle échoue ; "
        "--keep pour le garder toujours).",
        "workdir_keep": "gardé à l'arrêt de la démo (--keep).",
        "logs": "Journaux de SantéGuard : {path}",
        "started": "Prêt en {s:.1f} s : le homeserver livre ses transactions à SantéGuard, et "
        "appelle sa porte synchrone (module synapse_http_antispam) avant chaque invitation, "
        "entrée ou message.",
        "import": "Import de l'extraction de l'Annuaire Santé ({file}) : {read} lignes, "
        "{kept} gardées, {rejected} rejetées, {people} professionnels.",
        "users": "Comptes créés : {users} (aucun n'est encore vérifié).",
        "admin_room": "L'administrateur du réseau ouvre son salon d'administration avec le bot.",
        "cmd": "{who} tape : {cmd}",
        "reply": "   ↳ bot : {reply}",
        "refused": "   ↳ REFUSÉ par le homeserver : {reason}",
        "allowed": "   ↳ accepté",
        "clear_room": "Le Dr Exemple essaie de créer un salon NON chiffré …",
        "enc_room": "Le Dr Exemple crée un salon chiffré « {name} » : le compte de contrôle de "
        "SantéGuard y est ajouté d'office avec le droit de faire respecter les règles ({pl}) ; "
        "il n'a pas d'appareil de chiffrement, il ne peut donc rien lire. Le bot, lui, n'entre "
        "que là où on l'invite.",
        "invite_anon": "Il invite {user}, qui n'est pas un professionnel vérifié …",
        "join_anon": "{user} essaie d'entrer seul dans le salon (public) …",
        "invite_nurse": "Il invite l'infirmière vérifiée {user} …",
        "clear_msg": "Il envoie un message EN CLAIR dans le salon protégé …",
        "retention_born": "Le salon est né avec la politique de conservation du réseau : "
        "m.room.retention = {days} jours (bornes du réseau : {low} à {high} jours).",
        "retention_long": "Le Dr Exemple essaie de conserver l'historique 10 ans (Synapse "
        "l'accepterait sans broncher) …",
        "retention_set": "Il choisit 90 jours, dans les bornes …",
        "control_notice": "   ↳ compte de contrôle, aux membres : {notice}",
        "e2ee": "Le Dr Exemple invite le bot dans « {name} », ouvre Element (appareil chiffré) et "
        "tape une commande : elle part chiffrée, le bot la déchiffre avec son propre appareil "
        "et répond chiffré.",
        "e2ee_reply": "   ↳ réponse chiffrée du bot, déchiffrée par le Dr Exemple : {reply}",
        "e2ee_wire": "   ↳ ce que le serveur stocke : {type} ({algorithm}), sans texte en clair.",
        "deactivate": "Nouvelle extraction de l'annuaire : {user} n'y figure plus (cessation "
        "d'activité). La re-vérification tourne …",
        "removed": "   ↳ {user} retiré de {n} salon(s) protégé(s) ; motif affiché : « {reason} »",
        "audit": "Journal d'audit : {n} décisions enregistrées, chaîne de hachage {state}.",
        "audit_ok": "intacte",
        "audit_bad": "CASSÉE à l'entrée {seq}",
        "sealed": "Point de contrôle signé (Ed25519) de la tête de la chaîne : entrée n° {seq}, "
        "écrit dans {file} ; « santeguard audit verify -c config.yaml » détecte toute "
        "modification, suppression ou troncature.",
        "report": "Rapport DPO (une page HTML autonome, à ouvrir dans un navigateur) : {path}",
        "durable": "Chaque transaction du homeserver est écrite en base avant d'être acquittée : "
        "{txns} transactions reçues, {pending} événements en attente.",
        "connect": "Pour vous connecter avec un client Matrix (Element, etc.) :\n"
        "  homeserver : {hs}\n  identifiant : {user}   mot de passe : {password}\n"
        "  (identifiants jetables : ils ne servent que tant que la démo tourne)",
        "mail_skipped": "Dovecot n'est pas installé ({binary} absent) : la partie messagerie "
        "sécurisée (MSSanté) est sautée. `make demo` l'installe.",
        "mail_lab": "Service de messagerie MSSanté local : une autorité de certification créée "
        "à l'instant (à la place de l'IGC-Santé), un relais SMTP (port {smtp}) qui exige "
        "STARTTLS et un certificat client, et Dovecot qui tient la boîte applicative {mailbox} "
        "(IMAP sur TLS, port {imap}). La section mail de SantéGuard pointe dessus : autorité "
        "épinglée, certificat client, TLS 1.2 minimum.",
        "mail_link": "Messagerie sécurisée : {who} crée un salon chiffré privé « {name} » "
        "avec le bot et le lie à l'adresse MSSanté de son correspondant hospitalier, "
        "{address} (le domaine doit être dans la liste blanche de l'espace de confiance).",
        "mail_room_name": "Avis cardio — CHU Exemple",
        "mail_message_body": "Bonjour Dr Durand, pouvez-vous relire l'ECG de M. X (patient "
        "fictif) avant la RCP de jeudi ? Merci.",
        "mail_send": "{who} écrit dans le salon (message chiffré) : « {text} »",
        "mail_relay": "   ↳ le relais a reçu le courriel en TLS (STARTTLS exigé), certificat "
        "client de la boîte applicative : {subject} ; MAIL FROM {sender} → RCPT TO {rcpt}",
        "mail_header": "      {name} : {value}",
        "mail_xdm_title": "Compte rendu de consultation de cardiologie",
        "mail_reply": "Le Dr Durand répond depuis la messagerie de son hôpital, dans le fil, "
        "avec une pièce IHE_XDM.ZIP ({size} o) : {files}.",
        "mail_document": "{name} ({mime}, {size} o)",
        "mail_reply_body": "Bonjour, ECG relu : normal. Compte rendu et tracé joints (paquet "
        "IHE XDM). Bien cordialement, Dr Claire Durand",
        "mail_inbox": "   ↳ le relais l'a remise dans la boîte applicative (Dovecot) ; SantéGuard "
        "l'a lue en IMAP (TLS + certificat client, IDLE), l'a rattachée au salon par "
        "l'adresse +étiquette de Reply-To, a vérifié le paquet XDM et l'a postée au nom du "
        "correspondant :",
        "mail_ghost": "   ↳ dans le salon, de {ghost} (chiffré par l'appareil de la passerelle, "
        "déchiffré par celui du Dr Exemple) : {text}",
        "mail_listing": "   ↳ liste des documents, vérifiée : {text}",
        "mail_file": "   ↳ fichier chiffré {name} ({mime}, {size} o), déchiffré : {same}",
        "mail_same": "identique au document envoyé",
        "mail_differs": "DIFFÉRENT du document envoyé",
        "stopping_mail": "Arrêt : SantéGuard, Synapse, puis le relais et le Dovecot de la "
        "démo. Aucun processus ne reste derrière.",
        "running": "La démo tourne. Ctrl-C pour tout arrêter.",
        "stopping": "Arrêt : SantéGuard, puis Synapse. Aucun processus ne reste derrière.",
        "deleted": "Répertoire de travail supprimé : {path} (jetons, clés, bases, journaux).",
        "kept": "Répertoire de travail gardé (--keep) : {path}",
        "kept_failed": "La démo a échoué : répertoire de travail gardé pour le diagnostic : "
        "{path} (journaux de SantéGuard : {log})",
        "delete_failed": "ÉCHEC de la suppression de {path} : {error}",
        "not_demo_dir": "{path} existe et n'est pas un répertoire de la démo : "
        "choisissez-en un autre avec --workdir.",
        "done": "Terminé.",
    },
    "en": {
        "title": "SantéGuard — demo (everything runs locally; nothing leaves this machine)",
        "start": "Starting SantéGuard (SQLite: {db}), then a throwaway Synapse on {hs} …",
        "workdir": "Working directory (tokens, keys, databases, logs): {path} — {fate}",
        "workdir_delete": "deleted when the demo stops (kept if it fails; --keep always keeps it).",
        "workdir_keep": "kept when the demo stops (--keep).",
        "logs": "SantéGuard's logs: {path}",
        "started": "Ready in {s:.1f} s: the homeserver delivers its transactions to SantéGuard "
        "and calls its synchronous gate (synapse_http_antispam module) before every invite, "
        "join or message.",
        "import": "Importing the Annuaire Santé extract ({file}): {read} lines, {kept} kept, "
        "{rejected} rejected, {people} practitioners.",
        "users": "Accounts created: {users} (none verified yet).",
        "admin_room": "The network admin opens an admin room with the bot.",
        "cmd": "{who} types: {cmd}",
        "reply": "   ↳ bot: {reply}",
        "refused": "   ↳ REFUSED by the homeserver: {reason}",
        "allowed": "   ↳ accepted",
        "clear_room": "Dr Exemple tries to create an UNENCRYPTED room …",
        "enc_room": "Dr Exemple creates an encrypted room “{name}”: SantéGuard's enforcement "
        "account is added automatically with the power to enforce the rules ({pl}); it has no "
        "encryption device, so it can read nothing. The bot only enters where it is invited.",
        "invite_anon": "He invites {user}, who is not a verified professional …",
        "join_anon": "{user} tries to join the (public) room on their own …",
        "invite_nurse": "He invites the verified nurse {user} …",
        "clear_msg": "He sends a message IN CLEAR in the protected room …",
        "retention_born": "The room was born with the network's retention policy: "
        "m.room.retention = {days} days (network bounds: {low} to {high} days).",
        "retention_long": "Dr Exemple tries to keep history for 10 years (Synapse would "
        "accept it without a word) …",
        "retention_set": "He chooses 90 days, within the bounds …",
        "control_notice": "   ↳ enforcement account, to the members: {notice}",
        "e2ee": "Dr Exemple invites the bot into “{name}”, opens his encrypted client and types "
        "a command: it leaves encrypted, the bot decrypts it with its own device and answers "
        "encrypted.",
        "e2ee_reply": "   ↳ the bot's encrypted reply, decrypted by Dr Exemple: {reply}",
        "e2ee_wire": "   ↳ what the server stores: {type} ({algorithm}), no clear text.",
        "deactivate": "New directory extract: {user} is no longer listed (stopped practising). "
        "Re-verification runs …",
        "removed": "   ↳ {user} removed from {n} protected room(s); reason shown: “{reason}”",
        "audit": "Audit log: {n} decisions recorded, hash chain {state}.",
        "audit_ok": "intact",
        "audit_bad": "BROKEN at entry {seq}",
        "sealed": "Signed (Ed25519) checkpoint of the chain's head: entry {seq}, written to "
        "{file}; `santeguard audit verify -c config.yaml` detects any edit, deletion or "
        "truncation.",
        "report": "DPO report (one self-contained HTML page, open it in a browser): {path}",
        "durable": "Every homeserver transaction is written to the database before it is "
        "acked: {txns} transactions received, {pending} events pending.",
        "connect": "To connect with a Matrix client (Element, …):\n"
        "  homeserver: {hs}\n  username: {user}   password: {password}\n"
        "  (throwaway credentials: they only work while the demo runs)",
        "mail_skipped": "Dovecot is not installed ({binary} is missing): the secure mail "
        "(MSSanté) part is skipped. `make demo` installs it.",
        "mail_lab": "Local MSSanté-like mail service: a certificate authority made just now "
        "(standing in for IGC-Santé), an SMTP relay (port {smtp}) demanding STARTTLS and a "
        "client certificate, and Dovecot holding the application mailbox {mailbox} (IMAP "
        "over TLS, port {imap}). SantéGuard's mail section points at it: pinned CA, client "
        "certificate, TLS 1.2 minimum.",
        "mail_link": "Secure mail: {who} creates a private encrypted room “{name}” with the "
        "bot and links it to his hospital correspondent's MSSanté address, {address} (its "
        "domain must be on the trust space's allow-list).",
        "mail_room_name": "Cardiology opinion — CHU Exemple",
        "mail_message_body": "Hello Dr Durand, could you read Mr X's ECG (a made-up patient) "
        "before Thursday's MDT meeting? Thanks.",
        "mail_send": "{who} writes in the room (an encrypted message): “{text}”",
        "mail_relay": "   ↳ the relay received the mail over TLS (STARTTLS required), with the "
        "application mailbox's client certificate: {subject}; MAIL FROM {sender} → "
        "RCPT TO {rcpt}",
        "mail_header": "      {name}: {value}",
        "mail_xdm_title": "Cardiology consultation report",
        "mail_reply": "Dr Durand answers from her hospital's mail system, in the thread, with "
        "an IHE_XDM.ZIP attachment ({size} bytes): {files}.",
        "mail_document": "{name} ({mime}, {size} bytes)",
        "mail_reply_body": "Hello, ECG read: normal. Report and tracing attached (IHE XDM "
        "package). Kind regards, Dr Claire Durand",
        "mail_inbox": "   ↳ the relay delivered it into the application mailbox (Dovecot); "
        "SantéGuard read it over IMAP (TLS + client certificate, IDLE), matched it to the "
        "room by the +tag address of Reply-To, checked the XDM package and posted it as the "
        "correspondent:",
        "mail_ghost": "   ↳ in the room, from {ghost} (encrypted by the bridge's device, "
        "decrypted by Dr Exemple's): {text}",
        "mail_listing": "   ↳ the document list, checked: {text}",
        "mail_file": "   ↳ encrypted file {name} ({mime}, {size} bytes), decrypted: {same}",
        "mail_same": "identical to the document sent",
        "mail_differs": "DIFFERENT from the document sent",
        "stopping_mail": "Stopping SantéGuard, Synapse, then the demo's relay and Dovecot. "
        "No process is left behind.",
        "running": "The demo is running. Ctrl-C stops everything.",
        "stopping": "Stopping SantéGuard, then Synapse. No process is left behind.",
        "deleted": "Working directory deleted: {path} (tokens, keys, databases, logs).",
        "kept": "Working directory kept (--keep): {path}",
        "kept_failed": "The demo failed: working directory kept for diagnosis: {path} "
        "(SantéGuard's logs: {log})",
        "delete_failed": "FAILED to delete {path}: {error}",
        "not_demo_dir": "{path} exists and is not a demo directory: choose another one "
        "with --workdir.",
        "done": "Done.",
    },
}
