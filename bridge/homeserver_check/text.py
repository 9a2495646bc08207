"""Texts of `santeguard check-homeserver` (``hscheck.*``), French first."""

from __future__ import annotations

from collections.abc import Mapping

_ADMIN_CALL_FR = (
    "l'audit ne peut pas prouver les purges ni purger sans lui. Rendez-le administrateur : "
    "curl -X PUT -H 'Authorization: Bearer <jeton d'un administrateur>' "
    "-d '{{\"admin\": true}}' '{url}' — ou, dans la base de Synapse : "
    "UPDATE users SET admin = 1 WHERE name = '{user}';"
)
_ADMIN_CALL_EN = (
    "the audit cannot prove purges, nor purge, without it. Make it a server admin: "
    "curl -X PUT -H 'Authorization: Bearer <an admin's access token>' "
    "-d '{{\"admin\": true}}' '{url}' — or, in Synapse's database: "
    "UPDATE users SET admin = 1 WHERE name = '{user}';"
)

CATALOG: Mapping[str, Mapping[str, str]] = {
    "fr": {
        # What each check is about
        "hscheck.encryption": "chiffrement par défaut de tous les salons "
        "(encryption_enabled_by_default_for_room_type: all)",
        "hscheck.registration": "enregistrement SantéGuard dans app_service_config_files",
        "hscheck.antispam": "module synapse_http_antispam.HTTPAntispam",
        "hscheck.callbacks": "enabled_callbacks listés explicitement et contenant {cbs}",
        "hscheck.unanswered": "aucun callback activé que la porte ne décide pas "
        "(Synapse refuserait toujours l'action)",
        "hscheck.fail_closed": "callbacks fermés en cas de panne (fail_open: false)",
        "hscheck.room_rules": (
            "module bridge.gate.synapse_module.SanteGuardRoomRules (création de salons)"
        ),
        "hscheck.msc": "experimental_features msc2409_to_device_messages_enabled et "
        "msc3202_transaction_extensions",
        "hscheck.retention": "rétention activée (retention.enabled: true)",
        "hscheck.purge_jobs": "tâches de purge couvrant toutes les durées de conservation "
        "(retention.purge_jobs)",
        "hscheck.purge_interval": "intervalle des tâches de purge au plus "
        "retention.purge_interval de SantéGuard",
        "hscheck.retention_bounds": "durées par salon permises dans les bornes du réseau "
        "(retention.allowed_lifetime_min/max)",
        "hscheck.retention_default": "politique par défaut du réseau "
        "(retention.default_policy.max_lifetime)",
        "hscheck.open_registration": "inscription fermée (enable_registration)",
        "hscheck.federation": "fédération limitée aux serveurs autorisés "
        "(federation_domain_whitelist)",
        "hscheck.url_previews": "aperçus de liens désactivés (url_preview_enabled: false)",
        "hscheck.password_policy": "politique de mot de passe : 14 caractères au moins, "
        "majuscule, minuscule, chiffre et symbole (password_config.policy)",
        "hscheck.password_with_sso": "connexion par mot de passe coupée à côté de "
        "Pro Santé Connect (password_config.enabled: false)",
        "hscheck.enforcer_admin": "utilisateur de contrôle administrateur du serveur "
        "(API d'administration)",
        # States, severities, layout
        "hscheck.ok": "OK",
        "hscheck.missing": "À CORRIGER",
        "hscheck.not_run": "NON VÉRIFIÉ",
        "hscheck.severity.critical": "critique",
        "hscheck.severity.warning": "attention",
        "hscheck.severity.info": "info",
        "hscheck.add_yaml": "à mettre dans homeserver.yaml :",
        "hscheck.summary": "{ok} OK, {fix} à corriger (dont {critical} critiques), "
        "{not_checked} non vérifiés",
        # What is wrong, or why not checked
        "hscheck.hint.no_appservices": "app_service_config_files est vide ou absent",
        "hscheck.hint.no_registration": "fichier d'enregistrement non fourni : "
        "relancez avec -r registration.yaml",
        "hscheck.hint.registration_missing": "{path} n'existe pas",
        "hscheck.hint.registration_not_listed": "{path} n'est pas dans app_service_config_files",
        "hscheck.hint.no_antispam": "le module synapse_http_antispam.HTTPAntispam est absent",
        "hscheck.hint.all_callbacks": "sans enabled_callbacks, le module les active tous",
        "hscheck.hint.unanswered": "activés : {callbacks}",
        "hscheck.hint.fail_open": "ouverts en cas de panne : {callbacks}",
        "hscheck.hint.encryption": "vaut {value} : des salons sont créés en clair",
        "hscheck.hint.needs_config": "à comparer avec la configuration de SantéGuard : "
        "relancez avec -c config.yaml",
        "hscheck.hint.retention_disabled": "la rétention est coupée : Synapse ne purge "
        "jamais rien, quelle que soit la politique des salons",
        "hscheck.hint.purge_jobs_malformed": "purge_jobs illisible (Synapse refuserait "
        "de démarrer)",
        "hscheck.hint.purge_jobs_gap": "aucune tâche ne purge les salons dont la durée "
        "va de {low} à {high} jours",
        "hscheck.hint.purge_interval": "la tâche la plus lente passe tous les {interval}, "
        "SantéGuard attend {expected} : l'audit verra des messages expirés non purgés",
        "hscheck.hint.bounds_malformed": "allowed_lifetime_min/max illisibles",
        "hscheck.hint.bounds_absent": "Synapse ne ramène pas la durée d'un salon dans les "
        "bornes du réseau",
        "hscheck.hint.bounds_narrower": "Synapse ramène les durées dans [{min}, {max}] "
        "jours, plus étroit que les bornes du réseau [{net_min}, {net_max}] : des salons "
        "ne sont pas purgés comme ils l'annoncent",
        "hscheck.hint.bounds_wider": "Synapse permet [{min}, {max}] jours, au-delà des "
        "bornes du réseau [{net_min}, {net_max}]",
        "hscheck.hint.no_default_policy": "pas de default_policy.max_lifetime : un salon "
        "sans politique n'est jamais purgé",
        "hscheck.hint.default_policy_differs": "{value} jours, le réseau déclare {expected} jours",
        "hscheck.hint.registration_open": "n'importe qui peut créer un compte",
        "hscheck.hint.registration_unverified": "inscription ouverte sans vérification "
        "(enable_registration_without_verification)",
        "hscheck.hint.registration_any_3pid": "toute adresse e-mail permet de s'inscrire "
        "(allowed_local_3pids absent)",
        "hscheck.hint.federation_open": "federation_domain_whitelist absent : le serveur "
        "fédère avec n'importe quel serveur",
        "hscheck.hint.federation_malformed": "federation_domain_whitelist n'est pas une liste",
        "hscheck.hint.federation_extra": "autorisés en fédération mais pas par "
        "gate.allowed_servers : {servers}",
        "hscheck.hint.federation_missing": "dans gate.allowed_servers mais pas dans la "
        "liste de fédération : {servers}",
        "hscheck.hint.url_previews": "le serveur va chercher les liens postés : les "
        "adresses partent chez des tiers",
        "hscheck.hint.password_policy": "à régler : {keys}",
        "hscheck.hint.password_with_sso": "Pro Santé Connect est configuré mais la "
        "connexion par mot de passe reste ouverte",
        "hscheck.hint.enforcer_not_admin": "{user} n'est pas administrateur du serveur",
        "hscheck.hint.enforcer_unregistered": "{user} n'existe pas encore : démarrez "
        "SantéGuard une fois, puis relancez",
        "hscheck.hint.as_token_refused": "le serveur refuse le jeton de l'appservice "
        "(HTTP {status})",
        "hscheck.hint.admin_api_status": "l'API d'administration a répondu HTTP {status}",
        "hscheck.hint.unreachable": "serveur injoignable à {address} ({error})",
        "hscheck.hint.enforcer_needs_config": "vérification en direct : relancez avec "
        "-c config.yaml",
        "hscheck.hint.live_skipped": "vérification en direct désactivée (--no-live)",
        # How to fix what is not in a homeserver.yaml block
        "hscheck.fix.generate_registration": "générez-le avec santeguard "
        "generate-registration -c config.yaml -r <chemin>",
        "hscheck.fix.in_antispam_config": "dans le bloc config du module "
        "synapse_http_antispam.HTTPAntispam",
        "hscheck.fix.remove_callbacks": "retirez de enabled_callbacks : {callbacks}",
        "hscheck.fix.registration": "ou gardez-la sur invitation : "
        "registration_requires_token: true",
        "hscheck.fix.federation": "la liste des serveurs de gate.allowed_servers",
        "hscheck.fix.federation_list": "listez les serveurs du réseau ([] coupe la fédération)",
        "hscheck.fix.password_with_sso": "les comptes se connectent par Pro Santé Connect ; "
        "enabled: only_for_reauth garde le mot de passe pour la seule réauthentification",
        "hscheck.fix.as_token_refused": "Synapse doit charger le registration.yaml dont "
        "SantéGuard utilise les jetons (app_service_config_files), puis redémarrer",
        "hscheck.fix.enforcer_admin": _ADMIN_CALL_FR,
    },
    "en": {
        "hscheck.encryption": "every room encrypted by default "
        "(encryption_enabled_by_default_for_room_type: all)",
        "hscheck.registration": "SantéGuard registration in app_service_config_files",
        "hscheck.antispam": "synapse_http_antispam.HTTPAntispam module",
        "hscheck.callbacks": "enabled_callbacks listed explicitly and containing {cbs}",
        "hscheck.unanswered": "no enabled callback that the gate does not decide "
        "(Synapse would always refuse the action)",
        "hscheck.fail_closed": "callbacks fail closed (fail_open: false)",
        "hscheck.room_rules": (
            "bridge.gate.synapse_module.SanteGuardRoomRules module (room creation)"
        ),
        "hscheck.msc": "experimental_features msc2409_to_device_messages_enabled and "
        "msc3202_transaction_extensions",
        "hscheck.retention": "retention enabled (retention.enabled: true)",
        "hscheck.purge_jobs": "purge jobs covering every lifetime (retention.purge_jobs)",
        "hscheck.purge_interval": "purge job interval at most SantéGuard's "
        "retention.purge_interval",
        "hscheck.retention_bounds": "per-room lifetimes allowed within the network's bounds "
        "(retention.allowed_lifetime_min/max)",
        "hscheck.retention_default": "the network's default policy "
        "(retention.default_policy.max_lifetime)",
        "hscheck.open_registration": "registration closed (enable_registration)",
        "hscheck.federation": "federation restricted to the allowed servers "
        "(federation_domain_whitelist)",
        "hscheck.url_previews": "URL previews off (url_preview_enabled: false)",
        "hscheck.password_policy": "password policy: at least 14 characters, upper case, "
        "lower case, digit and symbol (password_config.policy)",
        "hscheck.password_with_sso": "password login off beside Pro Santé Connect "
        "(password_config.enabled: false)",
        "hscheck.enforcer_admin": "enforcement user is a server admin (admin API)",
        "hscheck.ok": "OK",
        "hscheck.missing": "TO FIX",
        "hscheck.not_run": "NOT CHECKED",
        "hscheck.severity.critical": "critical",
        "hscheck.severity.warning": "warning",
        "hscheck.severity.info": "info",
        "hscheck.add_yaml": "put in homeserver.yaml:",
        "hscheck.summary": "{ok} OK, {fix} to fix ({critical} critical), {not_checked} not checked",
        "hscheck.hint.no_appservices": "app_service_config_files is empty or missing",
        "hscheck.hint.no_registration": "no registration file given: "
        "run again with -r registration.yaml",
        "hscheck.hint.registration_missing": "{path} does not exist",
        "hscheck.hint.registration_not_listed": "{path} is not in app_service_config_files",
        "hscheck.hint.no_antispam": "the synapse_http_antispam.HTTPAntispam module is missing",
        "hscheck.hint.all_callbacks": "without enabled_callbacks the module enables them all",
        "hscheck.hint.unanswered": "enabled: {callbacks}",
        "hscheck.hint.fail_open": "failing open: {callbacks}",
        "hscheck.hint.encryption": "is {value}: some rooms are created unencrypted",
        "hscheck.hint.needs_config": "to compare with SantéGuard's configuration: "
        "run again with -c config.yaml",
        "hscheck.hint.retention_disabled": "retention is off: Synapse never purges "
        "anything, whatever the rooms' policies say",
        "hscheck.hint.purge_jobs_malformed": "purge_jobs cannot be read (Synapse would "
        "refuse to start)",
        "hscheck.hint.purge_jobs_gap": "no job purges rooms whose lifetime is from {low} "
        "to {high} days",
        "hscheck.hint.purge_interval": "the slowest job runs every {interval}, SantéGuard "
        "expects {expected}: the audit will see expired messages not yet purged",
        "hscheck.hint.bounds_malformed": "allowed_lifetime_min/max cannot be read",
        "hscheck.hint.bounds_absent": "Synapse does not bring a room's lifetime within the "
        "network's bounds",
        "hscheck.hint.bounds_narrower": "Synapse clamps lifetimes to [{min}, {max}] days, "
        "narrower than the network's bounds [{net_min}, {net_max}]: some rooms are not "
        "purged as they declare",
        "hscheck.hint.bounds_wider": "Synapse allows [{min}, {max}] days, beyond the "
        "network's bounds [{net_min}, {net_max}]",
        "hscheck.hint.no_default_policy": "no default_policy.max_lifetime: a room without "
        "a policy is never purged",
        "hscheck.hint.default_policy_differs": "{value} days, the network declares {expected} days",
        "hscheck.hint.registration_open": "anyone can create an account",
        "hscheck.hint.registration_unverified": "registration open without verification "
        "(enable_registration_without_verification)",
        "hscheck.hint.registration_any_3pid": "any e-mail address can register "
        "(no allowed_local_3pids)",
        "hscheck.hint.federation_open": "no federation_domain_whitelist: the server "
        "federates with any server",
        "hscheck.hint.federation_malformed": "federation_domain_whitelist is not a list",
        "hscheck.hint.federation_extra": "federated with but not in gate.allowed_servers: "
        "{servers}",
        "hscheck.hint.federation_missing": "in gate.allowed_servers but not in the "
        "federation list: {servers}",
        "hscheck.hint.url_previews": "the server fetches posted links: the addresses go "
        "to third parties",
        "hscheck.hint.password_policy": "to set: {keys}",
        "hscheck.hint.password_with_sso": "Pro Santé Connect is configured but password "
        "login is still on",
        "hscheck.hint.enforcer_not_admin": "{user} is not a server admin",
        "hscheck.hint.enforcer_unregistered": "{user} does not exist yet: start SantéGuard "
        "once, then run again",
        "hscheck.hint.as_token_refused": "the homeserver refuses the appservice token "
        "(HTTP {status})",
        "hscheck.hint.admin_api_status": "the admin API answered HTTP {status}",
        "hscheck.hint.unreachable": "homeserver unreachable at {address} ({error})",
        "hscheck.hint.enforcer_needs_config": "live check: run again with -c config.yaml",
        "hscheck.hint.live_skipped": "live check switched off (--no-live)",
        "hscheck.fix.generate_registration": "generate it with santeguard "
        "generate-registration -c config.yaml -r <path>",
        "hscheck.fix.in_antispam_config": "in the config block of the "
        "synapse_http_antispam.HTTPAntispam module",
        "hscheck.fix.remove_callbacks": "remove from enabled_callbacks: {callbacks}",
        "hscheck.fix.registration": "or keep it invitation-only: registration_requires_token: true",
        "hscheck.fix.federation": "the servers of gate.allowed_servers",
        "hscheck.fix.federation_list": "list the network's servers ([] turns federation off)",
        "hscheck.fix.password_with_sso": "accounts log in with Pro Santé Connect; "
        "enabled: only_for_reauth keeps passwords for re-authentication only",
        "hscheck.fix.as_token_refused": "Synapse must load the registration.yaml whose "
        "tokens SantéGuard uses (app_service_config_files), then restart",
        "hscheck.fix.enforcer_admin": _ADMIN_CALL_EN,
    },
}
