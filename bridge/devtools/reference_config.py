"""The configuration reference, read from the settings model (``bridge.config.Config``).

Every key of every section is listed with its dotted path, environment variable, type,
constraints, default and description. The English descriptions are the model's own
``description=``; the French ones come from :mod:`bridge.devtools.reference_fr`. A key
without a description in either language stops the generation (`ReferenceGapError`), so
the reference cannot silently fall behind the model.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from bridge.devtools import reference_fr as fr
from bridge.devtools.reference_md import Lang, cell, guide_links, header

__all__ = ["ConfigKey", "ConfigSection", "ReferenceGapError", "read_sections", "render_config"]


class ReferenceGapError(Exception):
    """The model and the reference's texts disagree: a key or section lacks a text, or a
    text names a key that no longer exists."""


SECTION_INTROS: Mapping[str, str] = {
    "homeserver": "The homeserver SantéGuard sits next to.",
    "appservice": "The application service itself: where it listens, its users on the "
    "homeserver and the tokens it shares with the homeserver (written by "
    "`santeguard generate-registration`).",
    "antispam": "The synchronous gate that Synapse's synapse_http_antispam modules call "
    "before an invite, a join, a room creation or a message.",
    "database": "Storage. SQLite is the embedded default, for one process only; PostgreSQL "
    "is recommended in production and needed for several replicas.",
    "dispatch": "Handling of stored events: every transaction is stored before it is "
    "acknowledged, then handled in order within each room.",
    "gate": "The gate: who may be in protected rooms, and what may be said there.",
    "directory": "Where practitioners' identities are checked: the Annuaire Santé (extract "
    "or FHIR API) and Pro Santé Connect.",
    "logging": "Logs go to stderr; secrets are scrubbed from every line.",
    "bot": "The in-room admin bot and its commands.",
    "encryption": "The bot's own end-to-end encrypted device: it reads commands in "
    "encrypted rooms and answers them encrypted.",
    "mail": "Secure health mail (MSSanté): rooms linked with `!sg mail link` exchange mail "
    "through the network's application mailbox. Off by default.",
    "retention": "Retention: the bounds of every protected room's m.room.retention, the "
    "closure of inactive rooms and the purge-proof audit. Durations are written 90d (or "
    "90j), 12h, 2w (2sem), 6mo (6mois), 1y (1a).",
    "audit": "The audit log's seal (signed checkpoints of the hash chain's head) and how "
    "long its entries are kept.",
    "cluster": "Several replicas on one PostgreSQL database: the leader's lease and how "
    "fresh each replica's gate must be. Ignored on SQLite (one process).",
}
"""English introduction of each section (the French ones are in reference_fr)."""

SECTION_GUIDES: Mapping[str, tuple[str, ...]] = {
    "homeserver": ("install.md", "synapse.md"),
    "appservice": ("synapse.md", "install.md"),
    "antispam": ("synapse.md",),
    "database": ("install.md", "cluster.md"),
    "dispatch": ("architecture.md", "operations.md"),
    "gate": ("identity.md", "synapse.md"),
    "directory": ("identity.md",),
    "logging": ("operations.md",),
    "bot": ("commands.md",),
    "encryption": ("e2ee.md",),
    "mail": ("mail.md",),
    "retention": ("retention.md",),
    "audit": ("audit.md",),
    "cluster": ("cluster.md",),
}
"""The guides in docs/ that explain each section (English names)."""

_TEXT: Mapping[Lang, Mapping[str, str]] = {
    "en": {
        "title": "Configuration reference",
        "other": "Version française : [configuration.fr.md](configuration.fr.md).",
        "intro": (
            "SantéGuard reads one YAML file (`santeguard run -c config.yaml`; "
            "[config/example-config.yaml](../config/example-config.yaml) is a commented "
            "example) and never writes it back. Any key can be overridden from the "
            "environment: `SANTEGUARD_<SECTION>__<KEY>` (upper case, two underscores), "
            "which wins over the file; lists are given as JSON there "
            "(`SANTEGUARD_BOT__ADMINS='[\"@admin:sante.example\"]'`). Relative paths are "
            "relative to the config file. Secrets are never printed: prefer the environment "
            "for them. `santeguard check-config -c config.yaml` validates a file and names "
            "every wrong key."
        ),
        "sections": "Sections",
        "key": "Key and environment variable",
        "type": "Type",
        "default": "Default",
        "description": "Description",
        "required": "**required**",
        "secret": "secret, never shown",
        "guides": "Guide:",
        "or_null": "or null",
        "one_of": "one of",
        "str": "string",
        "int": "integer",
        "float": "number",
        "bool": "boolean",
        "list": "list of strings",
        "secret_type": "secret string",
    },
    "fr": fr.CONFIG_TEXT,
}


@dataclass(frozen=True, slots=True)
class ConfigKey:
    """One configuration key, as the reference shows it."""

    path: str
    env: str
    kind: str  # str, int, float, bool, list, secret_type, literal
    nullable: bool
    choices: tuple[str, ...]
    constraints: tuple[str, ...]  # "≥ 1", "≤ 65535"…
    default: str | None  # YAML-like text; None when the key is required
    secret: bool
    description: str


@dataclass(frozen=True, slots=True)
class ConfigSection:
    name: str
    keys: tuple[ConfigKey, ...]


_SCALARS: Mapping[object, str] = {str: "str", int: "int", float: "float", bool: "bool"}
_BOUNDS: tuple[tuple[type[Any], str, str], ...] = (
    (at.Ge, "ge", "≥"),
    (at.Gt, "gt", ">"),
    (at.Le, "le", "≤"),
    (at.Lt, "lt", "<"),
)


def _kind(path: str, annotation: object) -> tuple[str, bool, tuple[str, ...]]:
    """(kind, nullable, literal choices) of a field's annotation."""
    nullable = False
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        nullable = len(members) < len(get_args(annotation))
        if len(members) != 1:
            raise ReferenceGapError(f"{path}: unions other than `X | None` are not described")
        annotation = members[0]
    if annotation is SecretStr:
        return "secret_type", nullable, ()
    if get_origin(annotation) is Literal:
        return "literal", nullable, tuple(str(a) for a in get_args(annotation))
    if get_origin(annotation) is list and get_args(annotation) == (str,):
        return "list", nullable, ()
    if annotation in _SCALARS:
        return _SCALARS[annotation], nullable, ()
    raise ReferenceGapError(f"{path}: type {annotation!r} is not described by the reference")


def _yaml(value: object) -> str:
    """A default as it would be written in the YAML file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    return str(value)


def _constraints(field: FieldInfo) -> tuple[str, ...]:
    out: list[str] = []
    for item in field.metadata:
        for cls, attr, sign in _BOUNDS:
            if isinstance(item, cls):
                out.append(f"{sign} {_yaml(getattr(item, attr))}")
    return tuple(out)


def _section_model(path: str, field: FieldInfo) -> type[BaseModel]:
    model = field.annotation
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ReferenceGapError(f"{path}: a top-level key must be a section model")
    return model


def read_sections(model: type[BaseSettings]) -> tuple[ConfigSection, ...]:
    """Every section and key of ``model``, in declaration order.

    Raises `ReferenceGapError` when a key has no ``description=``.
    """
    prefix = str(model.model_config.get("env_prefix") or "")
    delimiter = str(model.model_config.get("env_nested_delimiter") or "__")
    sections: list[ConfigSection] = []
    undescribed: list[str] = []
    for name, section_field in model.model_fields.items():
        keys: list[ConfigKey] = []
        for key, field in _section_model(name, section_field).model_fields.items():
            path = f"{name}.{key}"
            kind, nullable, choices = _kind(path, field.annotation)
            if not (field.description or "").strip():
                undescribed.append(path)
            keys.append(
                ConfigKey(
                    path=path,
                    env=f"{prefix}{name}{delimiter}{key}".upper(),
                    kind=kind,
                    nullable=nullable,
                    choices=choices,
                    constraints=_constraints(field),
                    default=None
                    if field.is_required()
                    else _yaml(field.get_default(call_default_factory=True, validated_data={})),
                    secret=kind == "secret_type",
                    description=" ".join((field.description or "").split()),
                )
            )
        sections.append(ConfigSection(name, tuple(keys)))
    if undescribed:
        raise ReferenceGapError(
            "keys without description= in the settings model: " + ", ".join(undescribed)
        )
    return tuple(sections)


def check_catalogs(sections: Sequence[ConfigSection]) -> None:
    """The texts outside the model (intros, guides, French) match its keys exactly."""
    names = {s.name for s in sections}
    paths = {k.path for s in sections for k in s.keys}
    problems: list[str] = []
    for label, have, want in (
        ("English section intros", set(SECTION_INTROS), names),
        ("section guides", set(SECTION_GUIDES), names),
        ("French section intros (reference_fr.SECTIONS)", set(fr.SECTIONS), names),
        ("French descriptions (reference_fr.FIELDS)", set(fr.FIELDS), paths),
    ):
        if missing := sorted(want - have):
            problems.append(f"{label}: missing {', '.join(missing)}")
        if stale := sorted(have - want):
            problems.append(f"{label}: no such key {', '.join(stale)}")
    if problems:
        raise ReferenceGapError("; ".join(problems))


def _type_cell(key: ConfigKey, t: Mapping[str, str]) -> str:
    if key.kind == "literal":
        text = f"{t['one_of']} " + ", ".join(f"`{c}`" for c in key.choices)
    else:
        text = t[key.kind]
    if key.nullable:
        text += f" {t['or_null']}"
    return "<br>".join([text, ", ".join(key.constraints)]) if key.constraints else text


def _default_cell(key: ConfigKey, t: Mapping[str, str]) -> str:
    if key.default is None:
        return t["required"]
    if key.secret:
        return "—"
    return f"`{key.default}`"


def _description(key: ConfigKey, lang: Lang, t: Mapping[str, str]) -> str:
    text = cell(key.description if lang == "en" else fr.FIELDS[key.path])
    return f"{text} _({t['secret']})_" if key.secret else text


def render_config(model: type[BaseSettings], lang: Lang) -> str:
    """The Markdown reference of ``model`` in ``lang``."""
    sections = read_sections(model)
    check_catalogs(sections)
    t = _TEXT[lang]
    intros = SECTION_INTROS if lang == "en" else fr.SECTIONS
    out = [*header(t["title"], t["other"], model), t["intro"], "", f"## {t['sections']}", ""]
    out += [f"- [`{s.name}`](#{s.name}) — {intros[s.name]}" for s in sections]
    for s in sections:
        out += ["", f"## `{s.name}`", "", intros[s.name], ""]
        out += [f"{t['guides']} {guide_links(SECTION_GUIDES[s.name], lang)}.", ""]
        out += [
            f"| {t['key']} | {t['type']} | {t['default']} | {t['description']} |",
            "|---|---|---|---|",
        ]
        out += [
            f"| `{k.path}`<br>`{k.env}` | {_type_cell(k, t)} | {_default_cell(k, t)} "
            f"| {_description(k, lang, t)} |"
            for k in s.keys
        ]
    return "\n".join(out) + "\n"
