# ruff: noqa: E501  (message catalogs read best one sentence per line)
"""French and English texts of the e2ee capability: `!sg encryption`, notices, alerts."""

from __future__ import annotations

from collections.abc import Mapping

CATALOG: Mapping[str, Mapping[str, str]] = {
    "fr": {
        "help.description.encryption": (
            "Indique si ce salon est chiffré de bout en bout, avec quel algorithme, et de "
            "quels appareils le bot n'a pas pu déchiffrer les messages."
        ),
        "encryption.header": "**Chiffrement de ce salon**",
        "encryption.state.on": "- Chiffré de bout en bout : oui (`{algorithm}`)",
        "encryption.state.off": (
            "- Chiffré de bout en bout : **non** — les messages sont lisibles par le serveur."
        ),
        "encryption.device": "- Appareil du bot : `{device}`",
        "encryption.device.signed": (
            "- Appareil du bot : `{device}` (signé par l'identité de signature croisée du bot)"
        ),
        "encryption.undecryptable.none": (
            "- Le bot a pu déchiffrer tous les messages qui lui ont été envoyés ici."
        ),
        "encryption.undecryptable.header": (
            "- Appareils dont le bot n'a pas pu déchiffrer de message :"
        ),
        "encryption.undecryptable.line": (
            "  - `{sender}`, appareil `{device}` : {count} message(s), dernier le {when}"
        ),
        "encryption.disabled": (
            "Le chiffrement de bout en bout du bot est désactivé dans sa configuration : "
            "il ne peut ni lire ni répondre dans les salons chiffrés."
        ),
        "encryption.undecryptable.notice": (
            "Je n'ai pas pu déchiffrer un message de `{sender}` (appareil `{device}`) : la clé "
            "de chiffrement ne m'est pas parvenue. Le message n'a pas été traité ; "
            "renvoyez-le, et vérifiez que votre application partage ses clés avec le bot."
        ),
        "alert.encryption_enable_failed": "Le salon protégé {room} n'est pas chiffré et SantéGuard n'a pas le droit de l'y activer.",
    },
    "en": {
        "help.description.encryption": (
            "Show whether this room is end-to-end encrypted, with which algorithm, and "
            "which devices the bot could not decrypt messages from."
        ),
        "encryption.header": "**Encryption of this room**",
        "encryption.state.on": "- End-to-end encrypted: yes (`{algorithm}`)",
        "encryption.state.off": (
            "- End-to-end encrypted: **no** — the server can read the messages."
        ),
        "encryption.device": "- Bot device: `{device}`",
        "encryption.device.signed": (
            "- Bot device: `{device}` (signed by the bot's cross-signing identity)"
        ),
        "encryption.undecryptable.none": ("- The bot could decrypt every message sent to it here."),
        "encryption.undecryptable.header": "- Devices the bot could not decrypt messages from:",
        "encryption.undecryptable.line": (
            "  - `{sender}`, device `{device}`: {count} message(s), last on {when}"
        ),
        "encryption.disabled": (
            "The bot's end-to-end encryption is switched off in its configuration: it can "
            "neither read nor answer in encrypted rooms."
        ),
        "encryption.undecryptable.notice": (
            "I could not decrypt a message from `{sender}` (device `{device}`): its "
            "encryption key never reached me. The message was not processed; please send "
            "it again, and check that your app shares its keys with the bot."
        ),
        "alert.encryption_enable_failed": "Protected room {room} is not encrypted and SantéGuard lacks the power to switch encryption on.",
    },
}
