# ruff: noqa: E501  (message catalogs read best one sentence per line)
"""French and English texts of the identity capability: commands, identifier errors, alerts.

Merged into the one translator the composition root builds; a test checks that every key
exists in both languages with the same placeholders.
"""

from __future__ import annotations

from collections.abc import Mapping

CATALOG: Mapping[str, Mapping[str, str]] = {
    "fr": {
        "help.description.verify": "Associe un compte à un professionnel de l'annuaire (RPPS/ADELI).",
        "help.description.unverify": "Retire la vérification d'un compte (il quitte les salons protégés).",
        "help.description.whois": "Affiche la vérification d'un compte.",
        "help.description.annuaire": "Cherche un professionnel dans l'annuaire : nom [profession] [ville].",
        "arg.user": "utilisateur",
        "arg.identifier": "RPPS/ADELI",
        "arg.confirm": "confirmer",
        "arg.query": "recherche",
        "identity.directory_down": "L'annuaire santé est injoignable pour le moment ; réessayez plus tard.",
        "identity.directory_down_nothing_changed": "L'annuaire santé est injoignable ; rien n'a été modifié. Réessayez plus tard.",
        "identity.not_found": "Aucun professionnel actif avec l'identifiant {id} dans l'annuaire.",
        "identity.inactive": "{name} ({id}) n'exerce plus selon l'annuaire : vérification refusée.",
        "identity.name_mismatch": "Le nom affiché de {user} (« {display} ») ne correspond pas à {name} "
        "({id}). Si c'est bien la même personne, relancez avec `{prefix} verify {user} {id} confirmer`.",
        "identity.verified": "✅ {user} vérifié : {name}, {profession} ({id}), source {source}, "
        "valable jusqu'au {until}.",
        "identity.unverified": "{user} n'est plus vérifié ; retrait de {count} salon(s) protégé(s) en cours (SantéGuard réessaie jusqu'à ce que ce soit fait).",
        "identity.not_bound": "{user} n'est pas vérifié.",
        "identity.whois": "{user} : {name}, {profession} ({id}) — source {source}, vérifié le {checked}, "
        "valable jusqu'au {until}.",
        "identity.search_none": "Aucun professionnel trouvé pour « {query} ».",
        "identity.search_header": "Annuaire santé — {count} résultat(s) :",
        "identity.search_line": "- {name}, {profession}{city} — {matrix}{mail}",
        "identity.reachable": "joignable ici : {mxid}",
        "identity.unreachable": "pas encore sur ce réseau",
        "identity.mail": " — messagerie sécurisée : {mail}",
        # Identifier errors (bridge/identity/identifiers.py)
        "identity.id.empty.rpps": "Aucun numéro RPPS n'a été fourni.",
        "identity.id.empty.adeli": "Aucun numéro ADELI n'a été fourni.",
        "identity.id.empty.any": "Aucun numéro RPPS ou ADELI n'a été fourni.",
        "identity.id.not_digits.rpps": "« {raw} » n'est pas un numéro RPPS valide : seuls des chiffres sont attendus.",
        "identity.id.not_digits.adeli": "« {raw} » n'est pas un numéro ADELI valide : seuls des chiffres sont attendus.",
        "identity.id.not_digits.any": "« {raw} » n'est pas un numéro RPPS ou ADELI valide : seuls des chiffres sont attendus.",
        "identity.id.wrong_length.rpps": "Le numéro RPPS {raw} doit comporter 11 chiffres, il en a {n}.",
        "identity.id.wrong_length.adeli": "Le numéro ADELI {raw} doit comporter 9 chiffres, il en a {n}.",
        "identity.id.wrong_length.any": "Le numéro {raw} comporte {n} chiffres : un numéro RPPS en a 11 et un numéro ADELI 9 (12 et 10 sous forme IDNPS).",
        "identity.id.bad_check_key.rpps": "Le numéro RPPS {raw} a une clé de contrôle invalide (dernier chiffre).",
        "identity.id.bad_check_key.adeli": "Le numéro ADELI {raw} a une clé de contrôle invalide (dernier chiffre).",
        "identity.id.bad_check_key.any": "Le numéro {raw} a une clé de contrôle invalide (dernier chiffre).",
        # `santeguard directory import`
        "identity.import.summary": "Import {id} de {name} : {read} lignes lues, {kept} gardées, {rejected} rejetées, {practitioners} professionnels, {seconds} s.",
        "identity.import.rejected": "  - {reason} : {count} (lignes {lines})",
        # Alerts to the network admins
        "alert.reverify_unreachable": "Re-vérification interrompue : l'annuaire santé est injoignable ; personne n'a été retiré. Nouvel essai bientôt.",
        "alert.reverify_deactivated": "{user} ({name}) n'est plus actif dans l'annuaire : vérification retirée, retrait de {count} salon(s) en cours.",
    },
    "en": {
        "help.description.verify": "Bind an account to a directory practitioner (RPPS/ADELI).",
        "help.description.unverify": "Remove an account's verification (it leaves protected rooms).",
        "help.description.whois": "Show an account's verification.",
        "help.description.annuaire": "Search the health directory: name [profession] [city].",
        "arg.user": "user",
        "arg.identifier": "RPPS/ADELI",
        "arg.confirm": "confirm",
        "arg.query": "query",
        "identity.directory_down": "The health directory cannot be reached right now; please try again later.",
        "identity.directory_down_nothing_changed": "The health directory cannot be reached; nothing was changed. Try again later.",
        "identity.not_found": "No active practitioner with identifier {id} in the directory.",
        "identity.inactive": "{name} ({id}) no longer practises according to the directory: not verified.",
        "identity.name_mismatch": "{user}'s display name (“{display}”) does not match {name} ({id}). "
        "If this is the same person, run `{prefix} verify {user} {id} confirm`.",
        "identity.verified": "✅ {user} verified: {name}, {profession} ({id}), source {source}, "
        "valid until {until}.",
        "identity.unverified": "{user} is no longer verified; removal from {count} protected room(s) under way (SantéGuard retries until it is done).",
        "identity.not_bound": "{user} is not verified.",
        "identity.whois": "{user}: {name}, {profession} ({id}) — source {source}, checked {checked}, "
        "valid until {until}.",
        "identity.search_none": "No practitioner found for “{query}”.",
        "identity.search_header": "Health directory — {count} result(s):",
        "identity.search_line": "- {name}, {profession}{city} — {matrix}{mail}",
        "identity.reachable": "reachable here: {mxid}",
        "identity.unreachable": "not on this network yet",
        "identity.mail": " — secure mail: {mail}",
        "identity.id.empty.rpps": "No RPPS number was given.",
        "identity.id.empty.adeli": "No ADELI number was given.",
        "identity.id.empty.any": "No RPPS or ADELI number was given.",
        "identity.id.not_digits.rpps": "“{raw}” is not a valid RPPS number: only digits are expected.",
        "identity.id.not_digits.adeli": "“{raw}” is not a valid ADELI number: only digits are expected.",
        "identity.id.not_digits.any": "“{raw}” is not a valid RPPS or ADELI number: only digits are expected.",
        "identity.id.wrong_length.rpps": "RPPS number {raw} must have 11 digits, it has {n}.",
        "identity.id.wrong_length.adeli": "ADELI number {raw} must have 9 digits, it has {n}.",
        "identity.id.wrong_length.any": "Number {raw} has {n} digits: an RPPS number has 11 digits and an ADELI number 9 (12 and 10 in IDNPS form).",
        "identity.id.bad_check_key.rpps": "RPPS number {raw} has an invalid check key (last digit).",
        "identity.id.bad_check_key.adeli": "ADELI number {raw} has an invalid check key (last digit).",
        "identity.id.bad_check_key.any": "Number {raw} has an invalid check key (last digit).",
        "identity.import.summary": "Import {id} of {name}: {read} lines read, {kept} kept, {rejected} rejected, {practitioners} practitioners, {seconds} s.",
        "identity.import.rejected": "  - {reason}: {count} (lines {lines})",
        "alert.reverify_unreachable": "Re-verification stopped: the health directory is unreachable; nobody was removed. Retrying soon.",
        "alert.reverify_deactivated": "{user} ({name}) is no longer active in the directory: unverified, removal from {count} room(s) under way.",
    },
}
