# ruff: noqa: E501  (message catalogs read best one sentence per line)
"""French and English texts of the commands capability: the bot's presence in rooms."""

from __future__ import annotations

from collections.abc import Mapping

CATALOG: Mapping[str, Mapping[str, str]] = {
    "fr": {
        "bot.joined": "Bonjour, je suis le bot SantéGuard. Invité ici, je peux lire les nouveaux messages de ce salon (pas l'historique) pour répondre aux commandes `{prefix} …`. Pour me retirer : `{prefix} leave` (administrateurs du salon) ou expulsez-moi.",
        "bot.joined_admin_room": "Ceci est un salon d'administration SantéGuard, réservé aux administrateurs du réseau : aucune donnée de patient n'a sa place ici. Tapez `{prefix} help` pour les commandes.",
        "bot.leaving": "Je quitte ce salon : je n'y lirai plus rien. Pour me faire revenir, invitez-moi.",
        "help.description.leave": "Fait quitter ce salon au bot (il ne lit plus rien ici).",
    },
    "en": {
        "bot.joined": "Hello, I am the SantéGuard bot. Invited here, I can read this room's new messages (not its history) to answer `{prefix} …` commands. To remove me: `{prefix} leave` (room admins) or kick me.",
        "bot.joined_admin_room": "This is a SantéGuard administration room, reserved for the network admins: no patient data belongs here. Type `{prefix} help` for the commands.",
        "bot.leaving": "I am leaving this room: I will read nothing more here. Invite me to bring me back.",
        "help.description.leave": "Make the bot leave this room (it reads nothing more here).",
    },
}
