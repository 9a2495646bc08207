"""French texts of the configuration reference: one description per key, by dotted path.

The English descriptions live in the settings models (``description=``); these are their
French counterparts. `tests/test_reference_docs.py` fails when a key has no entry here or
an entry names a key that no longer exists, and so does the generator.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

CONFIG_TEXT: Final[Mapping[str, str]] = {
    "title": "Référence de la configuration",
    "other": "English version: [configuration.md](configuration.md).",
    "intro": (
        "SantéGuard lit un fichier YAML (`santeguard run -c config.yaml` ; "
        "[config/example-config.yaml](../config/example-config.yaml) en est un exemple "
        "commenté) et ne le réécrit jamais. Toute clé peut être remplacée par une variable "
        "d'environnement `SANTEGUARD_<SECTION>__<CLÉ>` (en majuscules, deux soulignés), qui "
        "l'emporte sur le fichier ; les listes s'y écrivent en JSON "
        "(`SANTEGUARD_BOT__ADMINS='[\"@admin:sante.example\"]'`). Les chemins relatifs sont "
        "relatifs au fichier de configuration. Les secrets ne sont jamais affichés : "
        "passez-les de préférence par l'environnement. `santeguard check-config -c "
        "config.yaml` valide un fichier et nomme chaque clé erronée."
    ),
    "sections": "Sections",
    "key": "Clé et variable d'environnement",
    "type": "Type",
    "default": "Défaut",
    "description": "Description",
    "required": "**obligatoire**",
    "secret": "secret, jamais affiché",
    "guides": "Guide :",
    "or_null": "ou null",
    "one_of": "au choix",
    "str": "chaîne",
    "int": "entier",
    "float": "nombre",
    "bool": "booléen",
    "list": "liste de chaînes",
    "secret_type": "chaîne secrète",
}

SECTIONS: Final[Mapping[str, str]] = {
    "homeserver": "Le serveur Matrix (homeserver) à côté duquel SantéGuard fonctionne.",
    "appservice": "Le service d'application lui-même : où il écoute, ses utilisateurs sur le "
    "homeserver et les jetons partagés avec lui (écrits par "
    "`santeguard generate-registration`).",
    "antispam": "La porte synchrone qu'appellent les modules synapse_http_antispam de "
    "Synapse avant une invitation, une entrée, une création de salon ou un message.",
    "database": "Stockage. SQLite est le choix embarqué par défaut, pour un seul processus ; "
    "PostgreSQL est recommandé en production et nécessaire pour plusieurs réplicas.",
    "dispatch": "Traitement des événements stockés : chaque transaction est stockée avant "
    "d'être acquittée, puis traitée dans l'ordre au sein de chaque salon.",
    "gate": "La porte : qui peut être dans les salons protégés, et ce qui peut s'y dire.",
    "directory": "Où l'identité des professionnels est vérifiée : l'Annuaire Santé "
    "(extraction ou API FHIR) et Pro Santé Connect.",
    "logging": "Les journaux vont sur stderr ; les secrets sont effacés de chaque ligne.",
    "bot": "Le bot d'administration dans les salons et ses commandes.",
    "encryption": "L'appareil chiffré de bout en bout du bot : il lit les commandes dans les "
    "salons chiffrés et y répond chiffré.",
    "mail": "Messagerie sécurisée de santé (MSSanté) : les salons liés par `!sg mail link` "
    "échangent des courriels via la boîte applicative du réseau. Désactivée par défaut.",
    "retention": "Conservation : les bornes du m.room.retention de chaque salon protégé, la "
    "fermeture des salons inactifs et l'audit de suppression. Les durées s'écrivent 90d (ou "
    "90j), 12h, 2w (2sem), 6mo (6mois), 1y (1a).",
    "audit": "Le scellement du journal d'audit (points de contrôle signés de la tête de la "
    "chaîne de hachage) et la durée de conservation de ses entrées.",
    "cluster": "Plusieurs réplicas sur une même base PostgreSQL : le bail du leader et la "
    "fraîcheur exigée de la porte de chaque réplica. Ignoré avec SQLite (un seul processus).",
}

FIELDS: Final[Mapping[str, str]] = {
    # homeserver
    "homeserver.address": "URL de base de l'API client-serveur du homeserver.",
    "homeserver.domain": "Nom du serveur : la partie après « : » dans les identifiants.",
    "homeserver.verify_ssl": "Vérifier le certificat TLS du homeserver (à garder à true en "
    "production).",
    # appservice
    "appservice.address": "URL à laquelle le homeserver joint SantéGuard.",
    "appservice.hostname": "Interface d'écoute ; gardez la boucle locale sauf si le "
    "homeserver tourne sur une autre machine.",
    "appservice.port": "Port TCP d'écoute.",
    "appservice.id": "Identifiant du service dans l'enregistrement (unique par homeserver).",
    "appservice.bot_username": "Partie locale de l'utilisateur du bot ; les autres "
    "utilisateurs du service sont `<bot_username>_*`.",
    "appservice.bot_displayname": "Nom affiché du bot dans les salons.",
    "appservice.enforcer_username": "Partie locale de l'utilisateur de contrôle (sans "
    "appareil E2EE, présent dans chaque salon) ; doit être dans l'espace de noms du bot "
    "(`<bot_username>_*`).",
    "appservice.enforcer_displayname": "Nom affiché de l'utilisateur de contrôle, pour que "
    "les membres voient ce qu'il est.",
    "appservice.as_token": "Jeton que SantéGuard présente au homeserver. Absent du fichier, "
    "il est lu dans le fichier d'enregistrement.",
    "appservice.hs_token": "Jeton que le homeserver présente à SantéGuard. Absent du "
    "fichier, il est lu dans le fichier d'enregistrement.",
    "appservice.registration": "Fichier d'enregistrement écrit par `santeguard "
    "generate-registration` (relatif au fichier de configuration) : les jetons y sont lus "
    "quand ils ne sont pas donnés ici.",
    "appservice.max_body_bytes": "Plus grand corps de transaction accepté, en octets (au-delà "
    ": 413 M_TOO_LARGE).",
    "appservice.header_timeout_seconds": "Une connexion dont les en-têtes de requête ne sont "
    "pas complets ce nombre de secondes après leur premier octet (ou après son ouverture) "
    "reçoit 408 et est fermée.",
    "appservice.body_timeout_seconds": "Un corps de requête qui n'avance plus pendant ce "
    "nombre de secondes, ou qui n'est pas arrivé en entier au bout de ce délai plus sa "
    "longueur à 8 Kio/s, reçoit 408 et la connexion est fermée ; un gros corps qui continue "
    "d'arriver passe. Une requête arrivée en entier n'est jamais coupée.",
    "appservice.keepalive_seconds": "Une connexion persistante inactive ce nombre de "
    "secondes entre deux requêtes est fermée. À garder au-dessus de la limite du serveur "
    "d'accueil (Synapse : 120 s), pour que Synapse ferme le premier et n'envoie jamais un "
    "rappel de la porte sur une connexion en train de se fermer.",
    "appservice.max_connections": "Nombre maximal de connexions HTTP ouvertes à la fois ; "
    "au-delà, les nouvelles sont fermées dès leur acceptation (le serveur d'accueil n'en "
    "garde que quelques-unes).",
    # antispam
    "antispam.path": "Préfixe du chemin des rappels de la porte ; le base_url des modules "
    "antispam est appservice.address suivi de ce chemin.",
    "antispam.token": "Jeton porteur qu'envoient les modules antispam de Synapse (leur "
    "`authorization`). Obligatoire : un jeton vide ou celui de l'exemple est refusé, car la "
    "porte refuserait chaque rappel.",
    # database
    "database.uri": "`sqlite:chemin/relatif.db` (relatif au fichier de configuration), "
    "`sqlite:///chemin/absolu.db` ou `postgres://utilisateur:mot-de-passe@hôte/base`. "
    "PostgreSQL est recommandé en production et nécessaire pour plusieurs réplicas.",
    "database.min_size": "Taille minimale du pool de connexions (PostgreSQL seulement).",
    "database.max_size": "Taille maximale du pool de connexions (PostgreSQL seulement).",
    "database.sqlite_synchronous": "SQLite seulement. full : chaque transaction est sur "
    "disque avant que le serveur Matrix ne reçoive son 200 (dans le journal de réception, "
    "<base>-sg-intake, jusqu'à la synchronisation suivante du WAL) ; une transaction accusée "
    "survit à un arrêt brutal de SantéGuard, à un plantage du système et à une coupure de "
    "courant. normal (WAL, sans écriture sur disque à chaque validation) : survit à un arrêt "
    "brutal de SantéGuard seulement ; sur coupure de courant ou plantage du système, des "
    "transactions déjà accusées peuvent être perdues, et le serveur Matrix ne les renvoie "
    "jamais.",
    # dispatch
    "dispatch.max_concurrent_rooms": "Salons traités en même temps ; un salon qui attend "
    "une nouvelle tentative n'en occupe aucun.",
    "dispatch.max_attempts": "Tentatives sur un événement en échec avant qu'il ne soit "
    "marqué en échec (gardé et signalé, jamais jeté).",
    "dispatch.retry_base_seconds": "Délai avant la première nouvelle tentative ; il double "
    "à chaque fois.",
    "dispatch.max_backoff_seconds": "Délai maximal entre deux tentatives sur un même événement.",
    "dispatch.keep_done_seconds": "Les transactions traitées (qui contiennent les messages) "
    "sont effacées après ce délai.",
    "dispatch.max_in_memory_events": "Nombre maximal d'événements en mémoire (environ 2 Ko "
    "chacun) ; la base garde le reste, relu dans l'ordre.",
    "dispatch.stuck_after_seconds": "Un salon dont l'événement suivant échoue depuis ce "
    "délai est signalé bloqué (métrique, /ready, alerte aux administrateurs).",
    # gate
    "gate.protect_by_default": "Chaque salon est protégé sauf si un administrateur le "
    "désactive (`!sg room protect off`).",
    "gate.reconcile_minutes": "Période du balayage qui recalcule les violations à partir "
    "des membres.",
    "gate.allowed_servers": "Autres homeservers du réseau de santé dont les utilisateurs "
    "peuvent rejoindre les salons protégés (les utilisateurs vérifiés de ce homeserver le "
    "peuvent toujours).",
    "gate.exempt_users": "Comptes jamais refusés (par exemple un bot de supervision) ; le bot "
    "SantéGuard l'est toujours.",
    "gate.require_encryption": "Les salons protégés doivent être chiffrés de bout en bout "
    "dès leur création ; les messages en clair y sont refusés (et effacés si l'un passe).",
    "gate.unencrypted_room_types": "Types de salon (creation_content.type) qui peuvent être "
    "créés sans chiffrement.",
    "gate.homeserver_encrypts_by_default": "À mettre à true si homeserver.yaml contient "
    "encryption_enabled_by_default_for_room_type: all.",
    "gate.verification_days": "Durée de validité d'une vérification sans nouveau contrôle "
    "réussi (jours).",
    "gate.admin_room": "Salon où le bot envoie les alertes aux administrateurs (annuaire "
    "injoignable, membre impossible à retirer…). Facultatif : les alertes sont toujours "
    "journalisées.",
    "gate.reverify_hours": "Période de la nouvelle vérification de chaque professionnel "
    "associé (heures) ; un nouvel import de l'extraction en déclenche une aussi.",
    # directory
    "directory.source": "extract : l'extraction publique de l'Annuaire Santé importée ; "
    "fhir : l'API FHIR de l'Annuaire Santé (clé d'API de l'ANS nécessaire).",
    "directory.fhir_base_url": "URL de base de l'API FHIR.",
    "directory.fhir_api_key": "Clé de l'API FHIR (en-tête ESANTE-API-KEY) ; obligatoire "
    "quand source vaut fhir.",
    "directory.timeout_seconds": "Délai d'attente d'une requête FHIR (secondes).",
    "directory.retries": "Nouvelles tentatives FHIR sur 5xx, 429, délai dépassé ou erreur "
    "de connexion (jamais sur les autres 4xx).",
    "directory.cache_ttl_seconds": "Les réponses FHIR (trouvé ou non) sont gardées en cache "
    "ce nombre de secondes.",
    "directory.psc_idp_id": "Pro Santé Connect : l'idp_id du fournisseur OIDC dans "
    "homeserver.yaml ; les comptes qui se connectent par lui sont vérifiés d'après leur "
    "IDNPS. Absent : désactivé.",
    "directory.homeserver_admin_token": "Jeton d'accès d'un compte administrateur du "
    "homeserver, pour lire l'identité Pro Santé Connect d'un compte (nécessaire avec "
    "psc_idp_id).",
    # logging
    "logging.level": "Niveau de journalisation. Les journaux vont sur stderr, secrets "
    "effacés de chaque ligne.",
    "logging.format": "text pour une lecture humaine, json pour un objet JSON par ligne "
    "(collecteurs de journaux).",
    # bot
    "bot.prefix": "Préfixe des commandes : les messages qui commencent par lui sont des commandes.",
    "bot.admins": "Administrateurs du réseau (identifiants Matrix) : ils peuvent lancer "
    "toutes les commandes dans tous les salons.",
    "bot.language": "Langue des réponses par défaut ; chaque salon peut changer la sienne "
    "avec `!sg language`.",
    # encryption
    "encryption.enabled": "Active l'appareil chiffré du bot. Désactivé, le bot ne peut ni "
    "lire ni répondre dans les salons chiffrés, et la messagerie ne peut pas fonctionner.",
    "encryption.store_path": "Dossier (0700) des clés de l'appareil et du magasin nio ; il "
    "doit être persistant. Relatif au fichier de configuration.",
    "encryption.store_in_database": "Garder l'appareil (identifiant, jeton, clés) et son "
    "magasin cryptographique dans la base : le réplica leader le restaure, et l'enregistre "
    "après chaque synchronisation qui l'a modifié, avant que le homeserver ne la sache "
    "reçue. Nécessaire pour plusieurs réplicas ; store_path n'est alors qu'une copie de "
    "travail.",
    "encryption.device_display_name": "Nom de l'appareil tel que les clients l'affichent.",
    "encryption.key_wait_seconds": "Attente d'une clé de salon manquante lors d'une "
    "tentative, avant que l'événement ne soit repris plus tard (secondes).",
    "encryption.give_up_seconds": "Sans la clé de salon après ce délai (secondes), le bot "
    "renonce au message et le dit dans le salon.",
    "encryption.sync_timeout_ms": "Délai d'attente longue du /sync de l'appareil (millisecondes).",
    # mail
    "mail.enabled": "Relier les salons liés à la boîte applicative ci-dessous.",
    "mail.address": "La boîte applicative (expéditrice de chaque courriel), par exemple "
    "cpts@x.mssante.fr. Obligatoire si la messagerie est activée.",
    "mail.smtp_host": "Serveur de soumission SMTP de l'opérateur MSSanté.",
    "mail.smtp_port": "Port SMTP : 587 avec starttls, 465 avec implicit.",
    "mail.smtp_tls": "STARTTLS est imposé : un relais qui ne le propose pas est refusé.",
    "mail.smtp_username": "Utilisateur SMTP AUTH, si l'opérateur en demande un en plus du "
    "certificat client.",
    "mail.smtp_password": "Le mot de passe SMTP AUTH.",
    "mail.imap_host": "Serveur IMAP de la boîte (TLS implicite seulement).",
    "mail.imap_port": "IMAP sur TLS implicite.",
    "mail.imap_username": "Identifiant IMAP de la boîte applicative. Obligatoire si la "
    "messagerie est activée.",
    "mail.imap_password": "Le mot de passe IMAP. Obligatoire si la messagerie est activée.",
    "mail.imap_folder": "Dossier lu pour le courrier entrant.",
    "mail.ca_file": "Autorités de certification épinglées (IGC-Santé en production). "
    "Obligatoire si la messagerie est activée.",
    "mail.client_cert": "Certificat client (IGC-Santé ORG AUTH_CLI), PEM. Obligatoire si la "
    "messagerie est activée.",
    "mail.client_key": "La clé privée du certificat client, PEM (à garder en 0600). "
    "Obligatoire si la messagerie est activée.",
    "mail.allowlist_patterns": "Domaines destinataires admis en plus de la liste blanche "
    "importée, par exemple `*.mssante.fr`.",
    "mail.retry_base_seconds": "Première nouvelle tentative après un échec temporaire (4xx, "
    "relais injoignable), en secondes ; double à chaque fois.",
    "mail.retry_max_seconds": "Attente maximale entre deux tentatives, en secondes.",
    "mail.give_up_days": "Renoncer à un courriel (et le dire au salon et aux "
    "administrateurs) après ce nombre de jours (RFC 5321 4.5.4.1 : au moins 4 à 5 jours).",
    "mail.claim_seconds": "Réservation par un processus des courriels qu'il envoie (s) : "
    "ceux réservés par un processus arrêté attendent ce délai. À garder au-dessus de la "
    "durée d'un lot d'envois.",
    "mail.idle_seconds": "IMAP IDLE, renouvelé à cette fréquence (secondes).",
    "mail.poll_seconds": "Interrogation périodique quand le serveur n'a pas IDLE (secondes).",
    "mail.max_mail_bytes": "Plus grand courriel envoyé ou accepté, en octets (pièces jointes "
    "comprises).",
    "mail.request_read_receipts": "Demander un accusé de lecture (MDN) aux destinataires des "
    "courriels sortants.",
    "mail.notify_sent": "Signaler au salon l'acceptation de chaque courriel.",
    # retention
    "retention.enabled": "Donner à chaque salon protégé un m.room.retention dans les bornes, "
    "refuser ceux qui en sortent, vérifier que l'historique expiré a disparu.",
    "retention.default_max_lifetime": "Durée de conservation d'un salon qui n'a pas de politique.",
    "retention.min_lifetime": "Plus courte durée qu'un salon peut déclarer.",
    "retention.max_lifetime": "Plus longue durée qu'un salon peut déclarer.",
    "retention.purge_interval": "Période de la tâche de purge du homeserver "
    "(retention.purge_jobs) : un événement expiré peut vivre ce délai de plus avant que "
    "l'audit ne signale une violation.",
    "retention.inactive_after": "Un salon sans activité depuis ce délai est fermé et purgé.",
    "retention.inactive_notice": "Les membres d'un salon inactif sont prévenus ce délai "
    "avant sa fermeture.",
    "retention.inactive_check_minutes": "Période de la recherche des salons inactifs (minutes).",
    "retention.audit_hours": "Période de l'audit de suppression (heures).",
    # audit
    "audit.signing_key": "Graine Ed25519 (32 octets, base64) qui signe les points de "
    "contrôle. Absente : la clé est lue dans key_file, généré au premier démarrage.",
    "audit.key_file": "Emplacement de la clé de signature générée (mode 0600, avec les "
    "autres secrets) quand signing_key est absent. Relatif au fichier de configuration.",
    "audit.previous_public_keys": "Clés publiques (base64) des clés de signature "
    "précédentes : les points de contrôle qu'elles ont signés restent vérifiables après un "
    "changement de clé.",
    "audit.checkpoint_file": "Fichier en ajout seul des points de contrôle signés (un objet "
    "JSON par ligne), placé là où le propriétaire de la base ne peut pas le réécrire. "
    "Relatif au fichier de configuration.",
    "audit.checkpoint_minutes": "Fréquence de signature de la tête du journal (seulement si "
    "elle a changé) ; un point est aussi fait au démarrage et à l'arrêt. Des lignes effacées "
    "après le dernier point ne sont pas détectables : ce délai borne ce qui peut être coupé "
    "sans être vu.",
    "audit.keep_days": "Les entrées plus anciennes sont élaguées (le journal reste "
    "vérifiable). Au moins 183 jours (six mois, recommandation de la CNIL).",
    # cluster
    "cluster.replica_id": "Nom de ce réplica dans les journaux, les métriques et le journal "
    "d'audit (par défaut : nom d'hôte et numéro de processus ; le chart Helm y met le nom "
    "du pod).",
    "cluster.lease_poll_seconds": "Fréquence à laquelle un suiveur tente de prendre le bail "
    "du leader (un verrou consultatif PostgreSQL, libéré quand la connexion du leader "
    "prend fin).",
    "cluster.heartbeat_seconds": "Fréquence à laquelle un réplica vérifie ses connexions de "
    "bail et de flux de changements ; un leader qui perd son bail s'arrête aussitôt.",
    "cluster.takeover_grace_seconds": "Un nouveau leader attend ce délai avant de traiter "
    "les événements, pour qu'un leader coupé de la base ait constaté sa perte et se soit "
    "arrêté.",
    "cluster.refresh_seconds": "Rechargement complet de l'instantané de la porte depuis la "
    "base : le filet de sécurité derrière les notifications de changement.",
    "cluster.max_staleness_seconds": "Passé ce délai sans flux de changements confirmé, la "
    "porte d'un réplica refuse (échec fermé) plutôt que de décider sur un instantané "
    "peut-être périmé.",
}
