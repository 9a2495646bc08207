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
        "durable": "Chaque transaction du homeserver est écrite en base avant d'être acquittée : "
        "{txns} transactions reçues, {pending} événements en attente.",
        "connect": "Pour vous connecter avec un client Matrix (Element, etc.) :\n"
        "  homeserver : {hs}\n  identifiant : {user}   mot de passe : {password}\n"
        "  (identifiants jetables : ils ne servent que tant que la démo tourne)",
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
        "durable": "Every homeserver transaction is written to the database before it is "
        "acked: {txns} transactions received, {pending} events pending.",
        "connect": "To connect with a Matrix client (Element, …):\n"
        "  homeserver: {hs}\n  username: {user}   password: {password}\n"
        "  (throwaway credentials: they only work while the demo runs)",
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
