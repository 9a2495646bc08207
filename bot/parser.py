"""Parsing of ``!sg <command> [args]`` message bodies.

Two steps, because how the arguments are read depends on the command (a ``rest`` argument
takes the remainder of the line verbatim): `parse_invocation` recognises a command and its
name; `bind_arguments` reads the arguments against the command's `CommandSpec`.

Quoting: ``"…"`` (with ``\\"`` and ``\\\\`` escapes), plus the typographic ``“…”`` and
``« … »`` that French keyboards and phone autocorrect produce. Apostrophes are never quotes,
so ``l'équipe`` stays one word.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from bot.commands import Arg, ArgKind, CommandSpec

DEFAULT_PREFIX: Final = "!sg"

_QUOTES: Final[Mapping[str, str]] = MappingProxyType({'"': '"', "“": "”", "«": "»"})
_INT_RE: Final = re.compile(r"[+-]?[0-9]{1,18}")
# Localpart: historical user IDs allow almost anything but ':' and whitespace.
# Server name: DNS name, IPv4 or [IPv6], optional port.
_MXID_RE: Final = re.compile(r"@[^\s:]+:(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_MXID_MAX_LEN: Final = 255


@dataclass(frozen=True, slots=True)
class Invocation:
    """A recognised command: its case-folded name ("" for a bare prefix) and raw arguments."""

    name: str
    arg_text: str


class ArgumentError(Exception):
    """Bad arguments; ``key`` is a message key, ``arg`` the argument concerned if any."""

    def __init__(self, key: str, arg: Arg | None = None) -> None:
        super().__init__(key)
        self.key = key
        self.arg = arg


def strip_reply_fallback(body: str) -> str:
    """Drop the ``> <@user> …`` lines Matrix clients prepend to replies, and the blank after.

    Otherwise replying to a message that contains a command would run it again.
    """
    lines = body.splitlines(keepends=True)
    i = 0
    while i < len(lines) and lines[i].startswith(">"):
        i += 1
    if i == 0:
        return body
    while i < len(lines) and not lines[i].strip():
        i += 1
    return "".join(lines[i:])


def parse_invocation(body: str, prefix: str = DEFAULT_PREFIX) -> Invocation | None:
    """The command in ``body``, or None if the message is not addressed to the bot.

    The prefix must start the message (after any reply fallback and whitespace), match
    case-insensitively, and be followed by whitespace or the end: ``!sgfoo`` is not ours.
    """
    if not prefix or any(c.isspace() for c in prefix):
        raise ValueError("the command prefix must be non-empty and contain no whitespace")
    text = strip_reply_fallback(body).lstrip()
    head, rest = text[: len(prefix)], text[len(prefix) :]
    if head.casefold() != prefix.casefold() or (rest and not rest[0].isspace()):
        return None
    rest = rest.lstrip()
    end = next((i for i, c in enumerate(rest) if c.isspace()), len(rest))
    return Invocation(name=rest[:end].casefold(), arg_text=rest[end:].lstrip())


def quote_arg(value: str) -> str:
    """Quote ``value`` so that it reads back as exactly one argument."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _next_token(text: str, pos: int) -> tuple[str, int] | None:
    """The next argument starting at or after ``pos`` and where it ends; None at the end."""
    n = len(text)
    while pos < n and text[pos].isspace():
        pos += 1
    if pos >= n:
        return None
    opener = text[pos]
    closer = _QUOTES.get(opener)
    if closer is None:
        end = pos
        while end < n and not text[end].isspace():
            end += 1
        return text[pos:end], end
    chars: list[str] = []
    i = pos + 1
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] in (closer, "\\"):
            chars.append(text[i + 1])
            i += 2
        elif c == closer:
            value = "".join(chars)
            # French typography puts (non-breaking) spaces inside guillemets.
            return (value.strip() if opener == "«" else value), i + 1
        else:
            chars.append(c)
            i += 1
    raise ArgumentError("error.unclosed_quote")


def split_args(text: str) -> list[str]:
    """All arguments in ``text``, quotes resolved."""
    out: list[str] = []
    pos = 0
    while (tok := _next_token(text, pos)) is not None:
        out.append(tok[0])
        pos = tok[1]
    return out


def _rest_value(raw: str) -> str:
    """The remainder verbatim, unless it is exactly one quoted argument."""
    if raw[0] in _QUOTES:
        try:
            tok = _next_token(raw, 0)
        except ArgumentError:
            return raw
        if tok is not None and tok[1] == len(raw):
            return tok[0]
    return raw


def _convert(arg: Arg, raw: str) -> object:
    if arg.kind is ArgKind.INT:
        if not _INT_RE.fullmatch(raw):
            raise ArgumentError("error.invalid_int", arg)
        return int(raw)
    if arg.kind is ArgKind.MXID:
        if len(raw) > _MXID_MAX_LEN or not _MXID_RE.fullmatch(raw):
            raise ArgumentError("error.invalid_mxid", arg)
        return raw
    if arg.choices:
        for choice in arg.choices:
            if raw.casefold() == choice.casefold():
                return choice
        raise ArgumentError("error.invalid_choice", arg)
    return raw


def bind_arguments(spec: CommandSpec, arg_text: str) -> dict[str, object]:
    """Read ``arg_text`` against ``spec``: keyword arguments for the handler.

    Raises `ArgumentError` for missing, extra, unparsable or invalid arguments.
    """
    values: dict[str, object] = {}
    pos = 0
    for arg in spec.args:
        if arg.kind is ArgKind.REST:
            raw = arg_text[pos:].strip()
            pos = len(arg_text)
            if raw:
                values[arg.name] = _rest_value(raw)
            elif not arg.optional:
                raise ArgumentError("error.missing_argument", arg)
            break
        tok = _next_token(arg_text, pos)
        if tok is None:
            if arg.optional:
                break
            raise ArgumentError("error.missing_argument", arg)
        raw, pos = tok
        values[arg.name] = _convert(arg, raw)
    if arg_text[pos:].strip():
        raise ArgumentError("error.too_many_arguments")
    return values
