"""The `!sg` command reference, read from the registry the running bridge builds.

The registry is the application's own (`bridge.app.SanteGuard` builds it with
`build_command_service` from the framework's built-ins and every capability's handler
objects), built offline: a placeholder configuration with every default, a throwaway
directory, no network and no database connection. The help texts and argument labels
come from the bot's translator, in French and English, as `!sg help` shows them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel

from bot.commands import Arg, CommandRegistry, Permission, RegisteredCommand
from bot.i18n import Translator
from bridge.app import SanteGuard
from bridge.app.wiring import build_command_service, build_translator
from bridge.config import BotConfig, Config
from bridge.devtools.reference_config import ReferenceGapError
from bridge.devtools.reference_md import Lang, cell, guide_links, header, inline

__all__ = ["CommandGroup", "app_registry", "groups_of", "render_commands"]


@dataclass(frozen=True, slots=True)
class CommandGroup:
    """Commands whose handlers are defined under one of ``modules`` (dotted prefixes)."""

    name: str
    modules: tuple[str, ...]
    guides: tuple[str, ...]
    title: Mapping[Lang, str]
    intro: Mapping[Lang, str]


GROUPS: Final[tuple[CommandGroup, ...]] = (
    CommandGroup(
        "bot",
        ("bot.", "bridge.commands."),
        ("architecture.md",),
        {"en": "The bot", "fr": "Le bot"},
        {
            "en": "Commands every SantéGuard bot has: help, health and the room's language.",
            "fr": "Les commandes de tout bot SantéGuard : aide, santé et langue du salon.",
        },
    ),
    CommandGroup(
        "identity",
        ("bridge.identity.",),
        ("identity.md",),
        {"en": "Verified practitioners", "fr": "Professionnels vérifiés"},
        {
            "en": "Binding accounts to practitioners of the Annuaire Santé (RPPS/ADELI), "
            "and looking them up.",
            "fr": "Associer des comptes à des professionnels de l'Annuaire Santé "
            "(RPPS/ADELI), et les rechercher.",
        },
    ),
    CommandGroup(
        "rooms",
        ("bridge.gate.",),
        ("identity.md", "synapse.md"),
        {"en": "Room rules", "fr": "Règles des salons"},
        {
            "en": "Whether the gate protects a room, and which professions may be in it.",
            "fr": "Si la porte protège un salon, et quelles professions peuvent y être.",
        },
    ),
    CommandGroup(
        "encryption",
        ("bridge.e2ee.",),
        ("e2ee.md",),
        {"en": "Encryption", "fr": "Chiffrement"},
        {
            "en": "The bot's encrypted device, seen from a room.",
            "fr": "L'appareil chiffré du bot, vu depuis un salon.",
        },
    ),
    CommandGroup(
        "mail",
        ("bridge.mail.",),
        ("mail.md",),
        {"en": "Secure health mail", "fr": "Messagerie sécurisée de santé"},
        {
            "en": "Linking a room to an MSSanté address, and following its mail.",
            "fr": "Lier un salon à une adresse MSSanté, et suivre ses courriels.",
        },
    ),
    CommandGroup(
        "retention",
        ("bridge.retention.",),
        ("retention.md",),
        {"en": "Retention", "fr": "Conservation"},
        {
            "en": "Rooms' retention policies, and the proof that expired history is gone.",
            "fr": "Politiques de conservation des salons, et preuve que l'historique "
            "expiré a disparu.",
        },
    ),
    CommandGroup(
        "report",
        ("bridge.report.",),
        ("report.md",),
        {"en": "DPO report", "fr": "Rapport DPO"},
        {
            "en": "The data protection officer's report, as a file in the admin room.",
            "fr": "Le rapport du délégué à la protection des données, en fichier dans le "
            "salon d'administration.",
        },
    ),
)

_TEXT: Final[Mapping[Lang, Mapping[str, str]]] = {
    "en": {
        "title": "Command reference",
        "other": "Version française : [commands.fr.md](commands.fr.md).",
        "intro": (
            "Commands are messages that start with `{prefix}` (the `bot.prefix` setting, see "
            "[configuration.md](configuration.md#bot)) in a room the bot has joined: invite "
            "it, then type `{prefix} help`. Command names are case-insensitive; the aliases "
            "are alternative names. Arguments are separated by spaces: quote one that "
            'contains spaces (`"…"`, `“…”` or `« … »`). The bot answers in the room\'s '
            "language (`{prefix} language`, otherwise `bot.language`).\n\n"
            "Who may run what: {permissions}. Network administrators (`bot.admins`) may run "
            "every command in every room; in room version 12 and later, the room's creators "
            "hold every room permission. Each command, run or refused, is recorded in the "
            "audit log by name only, never with its arguments. The registry does not "
            "record where a command may be used: the few that check the room themselves "
            "(`{prefix} report` answers only in an admin room, for instance) say so in "
            "their help text."
        ),
        "summary": "Summary",
        "command": "Command",
        "permission": "Permission",
        "description": "Description",
        "syntax": "Syntax:",
        "aliases": "Aliases:",
        "permission_is": "Permission:",
        "arguments": "Arguments:",
        "guides": "Guide:",
        "colon": ":",
        "list_sep": "; ",
        "required": "required",
        "optional": "optional",
        "one_of": "one of",
        "kind.str": "one word (quote it to include spaces)",
        "kind.int": "a whole number",
        "kind.mxid": "a Matrix user ID (`@user:server`)",
        "kind.rest": "the rest of the line, as typed",
    },
    "fr": {
        "title": "Référence des commandes",
        "other": "English version: [commands.md](commands.md).",
        "intro": (
            "Les commandes sont des messages qui commencent par `{prefix}` (le réglage "
            "`bot.prefix`, voir [configuration.fr.md](configuration.fr.md#bot)) dans un "
            "salon où le bot est entré : invitez-le, puis tapez `{prefix} help`. Les noms de "
            "commande ne tiennent pas compte de la casse ; les alias sont d'autres noms. "
            "Les arguments sont séparés par des espaces : mettez entre guillemets celui qui "
            'en contient (`"…"`, `“…”` ou `« … »`). Le bot répond dans la langue du salon '
            "(`{prefix} language`, sinon `bot.language`).\n\n"
            "Qui peut lancer quoi : {permissions}. Les administrateurs du réseau "
            "(`bot.admins`) peuvent lancer toutes les commandes dans tous les salons ; à "
            "partir de la version 12 des salons, les créateurs d'un salon y ont toutes les "
            "permissions. Chaque commande, lancée ou refusée, est inscrite au journal "
            "d'audit par son seul nom, jamais avec ses arguments. Le registre ne dit pas où "
            "une commande peut servir : les quelques-unes qui vérifient le salon elles-mêmes "
            "(`{prefix} report` ne répond que dans un salon d'administration, par exemple) "
            "le disent dans leur aide."
        ),
        "summary": "Résumé",
        "command": "Commande",
        "permission": "Permission",
        "description": "Description",
        "syntax": "Syntaxe :",
        "aliases": "Alias :",
        "permission_is": "Permission :",
        "arguments": "Arguments :",
        "guides": "Guide :",
        "colon": " :",
        "list_sep": " ; ",
        "required": "obligatoire",
        "optional": "facultatif",
        "one_of": "au choix",
        "kind.str": "un mot (entre guillemets pour inclure des espaces)",
        "kind.int": "un nombre entier",
        "kind.mxid": "un identifiant Matrix (`@utilisateur:serveur`)",
        "kind.rest": "le reste de la ligne, tel quel",
    },
}

_PLACEHOLDERS: Final[Mapping[str, Mapping[str, Any]]] = {
    "homeserver": {"address": "http://127.0.0.1:9", "domain": "reference.invalid"},
    "appservice": {
        "address": "http://127.0.0.1:9",
        "as_token": "reference-placeholder-as",
        "hs_token": "reference-placeholder-hs",
    },
    "antispam": {"token": "reference-placeholder-gate"},
}
"""The required keys, with values that reach nothing (nothing is started)."""


def _offline_config(workdir: Path) -> Config:
    """Every default, except the required keys and every path (in ``workdir``).

    Built section by section and without the environment, so a ``SANTEGUARD_*`` variable
    of the shell that runs the generator cannot change the reference.
    """
    given: dict[str, dict[str, Any]] = {k: dict(v) for k, v in _PLACEHOLDERS.items()}
    given["database"] = {"uri": f"sqlite:///{workdir / 'santeguard.db'}"}
    given["encryption"] = {"store_path": str(workdir / "crypto")}
    given["audit"] = {
        "key_file": str(workdir / "audit.key"),
        "checkpoint_file": str(workdir / "checkpoints.jsonl"),
    }
    sections: dict[str, Any] = {}
    for name, field in Config.model_fields.items():
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        sections[name] = model.model_validate(given.get(name, {}))
    return Config.model_construct(**sections)


async def app_registry() -> CommandRegistry:
    """The registry the bridge answers with, built as `SanteGuard` builds it."""
    with tempfile.TemporaryDirectory(prefix="santeguard-reference-") as tmp:
        app = SanteGuard(_offline_config(Path(tmp)))
        try:
            return app.commands.registry
        finally:
            await app.session.close()


def _module(cmd: RegisteredCommand) -> str:
    return str(getattr(cmd.handler, "__module__", ""))


def groups_of(
    registry: CommandRegistry, groups: Sequence[CommandGroup] = GROUPS
) -> list[tuple[CommandGroup, list[RegisteredCommand]]]:
    """The commands by group, in the groups' order; a command no group covers is an error
    (a new capability's commands need a group: title, introduction and guide)."""
    found: dict[str, list[RegisteredCommand]] = {g.name: [] for g in groups}
    orphans: list[str] = []
    for cmd in registry:
        group = next((g for g in groups if _module(cmd).startswith(g.modules)), None)
        if group is None:
            orphans.append(f"{cmd.spec.name} ({_module(cmd)})")
        else:
            found[group.name].append(cmd)
    if orphans:
        raise ReferenceGapError(
            "commands in no group of reference_commands.GROUPS: " + ", ".join(orphans)
        )
    return [(g, found[g.name]) for g in groups if found[g.name]]


def _arg_line(arg: Arg, label: str, t: Mapping[str, str]) -> str:
    need = t["optional"] if arg.optional else t["required"]
    if arg.choices:
        what = f"{t['one_of']} " + ", ".join(f"`{c}`" for c in arg.choices)
    else:
        what = t[f"kind.{arg.kind.value}"]
    return f"  - **{inline(label)}** ({need}){t['colon']} {what}."


def _command(cmd: RegisteredCommand, translator: Translator, prefix: str, lang: Lang) -> list[str]:
    t, spec, label = _TEXT[lang], cmd.spec, _labeller(translator, lang)
    out = [f"### `{prefix} {spec.name}`", "", inline(translator.t(spec.help_key, lang)), ""]
    out.append(f"- {t['syntax']} `{spec.usage(prefix, label)}`")
    if spec.aliases:
        out.append(f"- {t['aliases']} " + ", ".join(f"`{a}`" for a in spec.aliases))
    out.append(f"- {t['permission_is']} {translator.t(f'permission.{spec.permission}', lang)}")
    if spec.args:
        out.append(f"- {t['arguments']}")
        out += [_arg_line(a, label(a), t) for a in spec.args]
    return out


def render_commands(
    registry: CommandRegistry,
    translator: Translator,
    lang: Lang,
    *,
    prefix: str | None = None,
) -> str:
    """The Markdown command reference in ``lang``."""
    t = _TEXT[lang]
    prefix = prefix or str(BotConfig.model_fields["prefix"].default)
    grouped = groups_of(registry)
    permissions = t["list_sep"].join(translator.t(f"permission.{p}", lang) for p in Permission)
    out = header(t["title"], t["other"], build_command_service)
    out += [t["intro"].format(prefix=prefix, permissions=permissions), ""]
    out += [f"## {t['summary']}", ""]
    out += [f"| {t['command']} | {t['permission']} | {t['description']} |", "|---|---|---|"]
    for _, cmds in grouped:
        for cmd in cmds:
            usage = cmd.spec.usage(prefix, _labeller(translator, lang))
            out.append(
                f"| [{cell(f'`{usage}`')}](#{_anchor(prefix, cmd)}) "
                f"| {translator.t(f'permission.{cmd.spec.permission}', lang)} "
                f"| {cell(translator.t(cmd.spec.help_key, lang))} |"
            )
    for group, cmds in grouped:
        out += ["", f"## {group.title[lang]}", "", group.intro[lang], ""]
        if group.guides:
            out += [f"{t['guides']} {guide_links(group.guides, lang)}.", ""]
        for cmd in cmds:
            out += [*_command(cmd, translator, prefix, lang), ""]
    return "\n".join(out).rstrip("\n") + "\n"


def _labeller(translator: Translator, lang: Lang) -> Callable[[Arg], str]:
    """An argument's label as `!sg help` shows it in ``lang``."""

    def label(arg: Arg) -> str:
        return translator.t(arg.label_key, lang) if arg.label_key else arg.name

    return label


def _anchor(prefix: str, cmd: RegisteredCommand) -> str:
    """GitHub's anchor for the ``### `!sg name``` heading."""
    text = f"{prefix} {cmd.spec.name}".lower()
    return "".join(c for c in text if c.isalnum() or c in "-_ ").replace(" ", "-")


def default_translator() -> Translator:
    """The bot's one translator, strict: a help key without a text fails the generation."""
    return build_translator(strict=True)
