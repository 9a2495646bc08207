"""Message catalog for the bot's replies: French first, English selectable.

Catalogs are read-only mappings; a `Translator` is built from them at run time, so other
components can add their own keys with `Translator.merged` instead of patching a global.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal, TypeGuard

log = logging.getLogger("santeguard.bot.i18n")

Lang = Literal["fr", "en"]
SUPPORTED_LANGUAGES: Final[tuple[Lang, ...]] = ("fr", "en")
DEFAULT_LANGUAGE: Final[Lang] = "fr"

Catalog = Mapping[str, str]


class MissingTranslationError(KeyError):
    """A message key exists in no catalog: a programming error, not a user error."""


def is_language(value: object) -> TypeGuard[Lang]:
    return value in SUPPORTED_LANGUAGES


def placeholders(template: str) -> frozenset[str]:
    """Names of the ``{placeholders}`` in a template (for catalog consistency checks)."""
    return frozenset(
        field.split(".", 1)[0].split("[", 1)[0]
        for _, field, _, _ in string.Formatter().parse(template)
        if field
    )


class Translator:
    """Looks up and formats messages; English falls back to French key by key.

    ``strict`` makes an unknown key or a missing parameter raise (tests use it); otherwise
    the key itself is shown and a warning logged, so a typo never kills a reply in production.
    """

    def __init__(
        self,
        catalogs: Mapping[str, Catalog] | None = None,
        *,
        fallback: Lang = DEFAULT_LANGUAGE,
        strict: bool = False,
    ) -> None:
        source = DEFAULT_CATALOGS if catalogs is None else catalogs
        if fallback not in source:
            raise ValueError(f"fallback language {fallback!r} has no catalog")
        self._catalogs: Mapping[str, Catalog] = MappingProxyType(
            {lang: MappingProxyType(dict(cat)) for lang, cat in source.items()}
        )
        self.fallback: Final[Lang] = fallback
        self.strict: Final[bool] = strict

    @property
    def catalogs(self) -> Mapping[str, Catalog]:
        return self._catalogs

    def merged(self, extra: Mapping[str, Catalog]) -> Translator:
        """A new translator with ``extra`` keys added; redefining a key is an error."""
        combined: dict[str, dict[str, str]] = {k: dict(v) for k, v in self._catalogs.items()}
        for lang, cat in extra.items():
            target = combined.setdefault(lang, {})
            clash = target.keys() & cat.keys()
            if clash:
                raise ValueError(f"{lang}: keys already defined: {', '.join(sorted(clash))}")
            target.update(cat)
        return Translator(combined, fallback=self.fallback, strict=self.strict)

    def bilingual(self, key: str, first: str = DEFAULT_LANGUAGE, /, **params: object) -> str:
        """Both languages, ``first`` first: for texts the homeserver shows as they are
        (refusal reasons, kick reasons) where no reader's language is known."""
        other = "en" if first == "fr" else "fr"
        return f"{self.t(key, first, **params)} / {self.t(key, other, **params)}"

    def has(self, key: str) -> bool:
        return key in self._catalogs[self.fallback]

    def require(self, *keys: str) -> None:
        """Fail fast (at start-up) if any key is missing from the fallback catalog."""
        missing = [k for k in keys if not self.has(k)]
        if missing:
            raise MissingTranslationError(", ".join(missing))

    def t(self, key: str, lang: str, /, **params: object) -> str:
        template = self._catalogs.get(lang, {}).get(key)
        if template is None:
            template = self._catalogs[self.fallback].get(key)
        if template is None:
            if self.strict:
                raise MissingTranslationError(key)
            log.warning("Missing translation key %r", key)
            return key
        try:
            return template.format_map(params)
        except (KeyError, IndexError, ValueError):
            if self.strict:
                raise
            log.warning("Bad parameters for translation key %r", key)
            return template


_FR: Final[Catalog] = MappingProxyType(
    {
        # Dispatcher
        "bare_prefix": "Tapez `{prefix} help` pour la liste des commandes.",
        "unknown_command": (
            "Commande inconnue. Tapez `{prefix} help` pour la liste des commandes."
        ),
        "unknown_command.suggestion": (
            "Commande inconnue. Vouliez-vous dire `{prefix} {suggestion}` ? "
            "Tapez `{prefix} help` pour la liste des commandes."
        ),
        "permission_denied": (
            "Permission refusée : `{prefix} {command}` est réservée aux {permission}."
        ),
        "internal_error": (
            "Une erreur interne est survenue et la commande n'a pas abouti. "
            "L'incident a été journalisé (référence : `{reference}`)."
        ),
        "usage": "Usage : `{usage}`",
        # Argument errors
        "error.missing_argument": "Argument manquant : « {arg} ».",
        "error.too_many_arguments": "Trop d'arguments.",
        "error.invalid_int": "L'argument « {arg} » doit être un nombre entier.",
        "error.invalid_mxid": (
            "L'argument « {arg} » doit être un identifiant Matrix (@utilisateur:serveur)."
        ),
        "error.invalid_choice": "L'argument « {arg} » doit valoir : {choices}.",
        "error.unclosed_quote": "Guillemet non fermé.",
        # Permissions (plural, after "réservée aux")
        "permission.anyone": "tout le monde",
        "permission.room_moderator": "modérateurs du salon (niveau de pouvoir ≥ 50)",
        "permission.room_admin": "administrateurs du salon (niveau de pouvoir ≥ 100)",
        "permission.network_admin": "administrateurs du réseau SantéGuard",
        # Help
        "help.header": "**Commandes SantéGuard**",
        "help.line": "- `{usage}` — {description} _({permission})_",
        "help.footer": "Détail d'une commande : `{prefix} help <commande>`",
        "help.detail": "`{usage}`\n{description}\nAutorisé pour : {permission}",
        "help.aliases": "Alias : {aliases}",
        "help.description.help": "Affiche la liste des commandes, ou le détail d'une commande.",
        "help.description.ping": "Vérifie que le bot répond et mesure le délai de réponse.",
        "help.description.status": (
            "Affiche la version, le temps de fonctionnement, le nombre de salons surveillés "
            "et la file d'attente."
        ),
        "help.description.language": "Change la langue du bot dans ce salon.",
        "arg.command": "commande",
        "arg.language": "langue",
        # Built-ins
        "pong": "pong — délai : {rtt_ms} ms",
        "status.report": (
            "**État de SantéGuard**\n"
            "- Version : {version}\n"
            "- Temps de fonctionnement : {uptime}\n"
            "- Salons surveillés : {rooms}\n"
            "- Événements en file d'attente : {queue}"
        ),
        "duration.days": "{n} j",
        "duration.hours": "{n} h",
        "duration.minutes": "{n} min",
        "duration.seconds": "{n} s",
        "language.changed": "Langue du bot dans ce salon : {language}.",
        "language.name.fr": "français",
        "language.name.en": "anglais",
    }
)

_EN: Final[Catalog] = MappingProxyType(
    {
        "bare_prefix": "Type `{prefix} help` to list the commands.",
        "unknown_command": "Unknown command. Type `{prefix} help` to list the commands.",
        "unknown_command.suggestion": (
            "Unknown command. Did you mean `{prefix} {suggestion}`? "
            "Type `{prefix} help` to list the commands."
        ),
        "permission_denied": (
            "Permission denied: `{prefix} {command}` is restricted to {permission}."
        ),
        "internal_error": (
            "An internal error occurred and the command did not complete. "
            "The incident was logged (reference: `{reference}`)."
        ),
        "usage": "Usage: `{usage}`",
        "error.missing_argument": "Missing argument: “{arg}”.",
        "error.too_many_arguments": "Too many arguments.",
        "error.invalid_int": "Argument “{arg}” must be a whole number.",
        "error.invalid_mxid": "Argument “{arg}” must be a Matrix user ID (@user:server).",
        "error.invalid_choice": "Argument “{arg}” must be one of: {choices}.",
        "error.unclosed_quote": "Unclosed quote.",
        "permission.anyone": "anyone",
        "permission.room_moderator": "room moderators (power level ≥ 50)",
        "permission.room_admin": "room administrators (power level ≥ 100)",
        "permission.network_admin": "SantéGuard network administrators",
        "help.header": "**SantéGuard commands**",
        "help.line": "- `{usage}` — {description} _({permission})_",
        "help.footer": "Details of one command: `{prefix} help <command>`",
        "help.detail": "`{usage}`\n{description}\nAllowed for: {permission}",
        "help.aliases": "Aliases: {aliases}",
        "help.description.help": "List the commands, or show the details of one.",
        "help.description.ping": "Check that the bot responds and measure its latency.",
        "help.description.status": (
            "Show the version, uptime, number of watched rooms and queue depth."
        ),
        "help.description.language": "Change the bot's language in this room.",
        "arg.command": "command",
        "arg.language": "language",
        "pong": "pong — latency: {rtt_ms} ms",
        "status.report": (
            "**SantéGuard status**\n"
            "- Version: {version}\n"
            "- Uptime: {uptime}\n"
            "- Rooms watched: {rooms}\n"
            "- Events queued: {queue}"
        ),
        "duration.days": "{n}d",
        "duration.hours": "{n}h",
        "duration.minutes": "{n}min",
        "duration.seconds": "{n}s",
        "language.changed": "Bot language for this room: {language}.",
        "language.name.fr": "French",
        "language.name.en": "English",
    }
)

DEFAULT_CATALOGS: Final[Mapping[str, Catalog]] = MappingProxyType({"fr": _FR, "en": _EN})
