# ruff: noqa: E501  (message catalogs read best one sentence per line)
"""French and English texts of the gate: refusal reasons, room commands, alerts.

A refusal reason ``r`` of a :class:`~bridge.core.decision.Decision` is the key
``gate.reason.r``; its params fill the placeholders.
"""

from __future__ import annotations

from collections.abc import Mapping

CATALOG: Mapping[str, Mapping[str, str]] = {
    "fr": {
        "gate.reason.not_verified": "{user} n'est pas un professionnel de santé vérifié (RPPS/ADELI) : ce salon protégé lui est fermé.",
        "gate.reason.verification_expired": "La vérification de {user} a expiré le {date} : accès suspendu jusqu'à la prochaine vérification.",
        "gate.reason.server_not_allowed": "Le serveur {server} ne fait pas partie du réseau de santé : {user} ne peut pas entrer dans ce salon.",
        "gate.reason.profession_not_allowed": "Ce salon est réservé aux professions suivantes : {allowed}. {user} ({profession}) ne peut pas y entrer.",
        "gate.reason.no_longer_active": "{user} n'exerce plus selon l'Annuaire Santé : vérification retirée, accès aux salons protégés fermé.",
        "gate.reason.creator_not_verified": "Seuls les professionnels de santé vérifiés peuvent créer des salons.",
        "gate.reason.room_not_encrypted": "Les salons doivent être chiffrés de bout en bout (m.megolm.v1.aes-sha2) dès leur création.",
        "gate.reason.message_not_encrypted": "Message refusé : ce salon protégé n'accepte que des messages chiffrés de bout en bout.",
        "gate.reason.state_text_not_allowed": "Refusé : un état de salon ne peut pas transporter de texte en clair (body, formatted_body) dans un salon protégé.",
        "gate.reason.third_party_invite": "SantéGuard refuse les invitations par adresse e-mail ou numéro de téléphone : invitez le compte Matrix du professionnel.",
        "gate.reason.admin_room_closed": "Ce salon d'administration est réservé aux administrateurs du réseau : {user} ne peut pas y entrer.",
        "help.description.room": "Règles du salon : `professions <codes…|aucune>`, `protect on|off`.",
        "arg.action": "action",
        "arg.values": "valeurs",
        "gate.room_professions": "Professions admises dans ce salon : {list}.",
        "gate.room_professions_all": "Toutes les professions vérifiées sont admises dans ce salon.",
        "gate.room_professions_set": "Professions admises : {list}. Membres à retirer : {removed}.",
        "gate.room_bad_code": "Profession inconnue : {value}.",
        "gate.room_protect": "Protection du salon : {state}. Membres à retirer : {removed}.",
        "gate.room_usage": "Usage : `{prefix} room professions <codes…|aucune>` ou `{prefix} room protect on|off`.",
        "gate.room_needs_admin": "Seuls les administrateurs du réseau peuvent changer la protection d'un salon.",
        "gate.on": "activée",
        "gate.off": "désactivée",
        "alert.enforcer_removed": "Le compte de contrôle de SantéGuard a été retiré du salon {room} par {by} : SantéGuard ne peut plus y faire respecter les règles. Réinvitez-le avec le niveau de pouvoir 100.",
        "alert.remove_failed": "SantéGuard n'arrive pas à retirer {user} de {room} ({reason}) : {attempts} essai(s) ; il réessaie jusqu'à y parvenir.",
    },
    "en": {
        "gate.reason.not_verified": "{user} is not a verified health professional (RPPS/ADELI): this protected room is closed to them.",
        "gate.reason.verification_expired": "{user}'s verification expired on {date}: access suspended until it is checked again.",
        "gate.reason.server_not_allowed": "Server {server} is not part of the health network: {user} cannot enter this room.",
        "gate.reason.profession_not_allowed": "This room is restricted to these professions: {allowed}. {user} ({profession}) cannot enter it.",
        "gate.reason.no_longer_active": "{user} no longer practises according to the health directory: verification withdrawn, protected rooms closed.",
        "gate.reason.creator_not_verified": "Only verified health professionals can create rooms.",
        "gate.reason.room_not_encrypted": "Rooms must be end-to-end encrypted (m.megolm.v1.aes-sha2) from creation.",
        "gate.reason.message_not_encrypted": "Message refused: this protected room accepts only end-to-end encrypted messages.",
        "gate.reason.state_text_not_allowed": "Refused: room state cannot carry clear text (body, formatted_body) in a protected room.",
        "gate.reason.third_party_invite": "SantéGuard refuses invitations by e-mail address or phone number: invite the practitioner's Matrix account.",
        "gate.reason.admin_room_closed": "This administration room is reserved for the network admins: {user} cannot enter it.",
        "help.description.room": "Room rules: `professions <codes…|none>`, `protect on|off`.",
        "arg.action": "action",
        "arg.values": "values",
        "gate.room_professions": "Professions admitted in this room: {list}.",
        "gate.room_professions_all": "Every verified profession is admitted in this room.",
        "gate.room_professions_set": "Professions admitted: {list}. Members to remove: {removed}.",
        "gate.room_bad_code": "Unknown profession: {value}.",
        "gate.room_protect": "Room protection: {state}. Members to remove: {removed}.",
        "gate.room_usage": "Usage: `{prefix} room professions <codes…|none>` or `{prefix} room protect on|off`.",
        "gate.room_needs_admin": "Only network admins can change a room's protection.",
        "gate.on": "on",
        "gate.off": "off",
        "alert.enforcer_removed": "SantéGuard's enforcement account was removed from room {room} by {by}: SantéGuard can no longer enforce the rules there. Invite it back with power level 100.",
        "alert.remove_failed": "SantéGuard cannot remove {user} from {room} ({reason}): {attempts} attempt(s); it keeps trying until it succeeds.",
    },
}
