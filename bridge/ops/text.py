# ruff: noqa: E501  (message catalogs read best one sentence per line)
"""French and English texts of outage tracking: what the admins are told when a
dependency has been down for a while, and when it is back (bridge/ops/outages.py)."""

from __future__ import annotations

from collections.abc import Mapping

CATALOG: Mapping[str, Mapping[str, str]] = {
    "fr": {
        "alert.outage_down.database": "La base de données est injoignable depuis {since} ({duration}). Le gate refuse (il ne peut plus vérifier qu'il est à jour), les transactions du serveur Matrix sont refusées et il les renverra ; rien n'est perdu.",
        "alert.outage_up.database": "La base de données est de nouveau joignable, après {duration} d'interruption (de {start} à {end}). Les transactions renvoyées par le serveur Matrix sont traitées.",
        "alert.outage_up.homeserver": "Le serveur Matrix a été injoignable de {start} à {end} ({duration}). Les actions en attente (retraits, avis, mails entrants) reprennent ; rien n'est perdu.",
        "alert.outage_down.homeserver": "Le serveur Matrix est injoignable depuis {since} ({duration}).",
        "alert.outage_up.smtp": "Le relais SMTP (messagerie sécurisée) est de nouveau joignable, après {duration} d'interruption (de {start} à {end}). Les mails en attente partent.",
        "alert.outage_down.smtp": "Le relais SMTP (messagerie sécurisée) est injoignable depuis {since} ({duration}). Les mails attendent dans la file d'envoi et partiront à son retour.",
        "alert.outage_up.imap": "Le serveur IMAP (messagerie sécurisée) est de nouveau joignable, après {duration} d'interruption (de {start} à {end}). Les mails reçus entre-temps sont relevés.",
        "alert.outage_down.imap": "Le serveur IMAP (messagerie sécurisée) est injoignable depuis {since} ({duration}). Les mails reçus restent dans la boîte et seront relevés à son retour.",
        "alert.outage_up.directory": "L'annuaire santé est de nouveau joignable, après {duration} d'interruption (de {start} à {end}). Les vérifications en attente sont relancées.",
        "alert.outage_down.directory": "L'annuaire santé est injoignable depuis {since} ({duration}). Aucun nouveau professionnel n'est vérifié ni admis, et personne n'est retiré, jusqu'à son retour.",
    },
    "en": {
        "alert.outage_down.database": "The database has been unreachable since {since} ({duration}). The gate refuses (it can no longer check it is up to date), the homeserver's transactions are refused and it will send them again; nothing is lost.",
        "alert.outage_up.database": "The database is reachable again, after {duration} of outage (from {start} to {end}). The transactions the homeserver sends again are being handled.",
        "alert.outage_up.homeserver": "The homeserver was unreachable from {start} to {end} ({duration}). Pending work (removals, notices, inbound mail) resumes; nothing is lost.",
        "alert.outage_down.homeserver": "The homeserver has been unreachable since {since} ({duration}).",
        "alert.outage_up.smtp": "The SMTP relay (secure mail) is reachable again, after {duration} of outage (from {start} to {end}). Waiting mail is being sent.",
        "alert.outage_down.smtp": "The SMTP relay (secure mail) has been unreachable since {since} ({duration}). Mail waits in the outbox and will be sent when it is back.",
        "alert.outage_up.imap": "The IMAP server (secure mail) is reachable again, after {duration} of outage (from {start} to {end}). Mail received meanwhile is being fetched.",
        "alert.outage_down.imap": "The IMAP server (secure mail) has been unreachable since {since} ({duration}). Received mail stays in the mailbox and will be fetched when it is back.",
        "alert.outage_up.directory": "The health directory is reachable again, after {duration} of outage (from {start} to {end}). Pending verifications are run again.",
        "alert.outage_down.directory": "The health directory has been unreachable since {since} ({duration}). No new practitioner is verified or admitted, and nobody is removed, until it is back.",
    },
}
