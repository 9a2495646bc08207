"""Command declarations: the `@command` decorator and a registry built from handler objects.

As in mautrix-python bridges, a handler is declared next to its help text, arguments and
required permission. Unlike them there is no module-level registry: the decorator only
attaches a frozen `CommandSpec` to the function, and `CommandRegistry.from_handlers`
collects the decorated methods of the objects it is given, so every registry is explicit.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, TypeVar

if TYPE_CHECKING:
    from bot.context import CommandContext

Handler = Callable[..., Awaitable[None]]
"""A bound method ``async def h(self, ctx: CommandContext, **args) -> None``."""

_F = TypeVar("_F", bound=Callable[..., Awaitable[None]])

_SPEC_ATTR: Final = "__santeguard_command__"
_NAME_RE: Final = re.compile(r"[a-z][a-z0-9_-]*")
_ARG_NAME_RE: Final = re.compile(r"[a-z_][a-z0-9_]*")


class Permission(StrEnum):
    """Who may run a command. Network admins (config ``bot.admins``) may run everything."""

    ANYONE = "anyone"
    ROOM_MODERATOR = "room_moderator"
    ROOM_ADMIN = "room_admin"
    NETWORK_ADMIN = "network_admin"

    @property
    def min_power_level(self) -> int | None:
        """Room power level that grants this permission; None if no level does."""
        return _MIN_POWER_LEVEL[self]


_MIN_POWER_LEVEL: Final[Mapping[Permission, int | None]] = MappingProxyType(
    {
        Permission.ANYONE: 0,
        Permission.ROOM_MODERATOR: 50,
        Permission.ROOM_ADMIN: 100,
        Permission.NETWORK_ADMIN: None,
    }
)


class ArgKind(StrEnum):
    STR = "str"
    INT = "int"
    MXID = "mxid"
    REST = "rest"
    """Everything left on the line, verbatim (newlines included)."""


class CommandDefinitionError(Exception):
    """A command is declared or registered wrongly; raised at start-up, never at run time."""


class DuplicateCommandError(CommandDefinitionError):
    pass


class CommandError(Exception):
    """Raised by a handler to refuse with a translated message (not logged as a failure)."""

    def __init__(self, key: str, /, **params: object) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


@dataclass(frozen=True, slots=True)
class Arg:
    """One positional argument. ``label_key`` names the translated label shown to users."""

    name: str
    kind: ArgKind = ArgKind.STR
    optional: bool = False
    choices: tuple[str, ...] = ()
    label_key: str | None = None

    def __post_init__(self) -> None:
        if not _ARG_NAME_RE.fullmatch(self.name):
            raise CommandDefinitionError(f"argument name {self.name!r} is not an identifier")
        if self.choices and self.kind is not ArgKind.STR:
            raise CommandDefinitionError(f"argument {self.name!r}: choices need kind=str")
        if any(not c or c != c.strip() or " " in c for c in self.choices):
            raise CommandDefinitionError(f"argument {self.name!r}: choices must be single words")

    def display(self, label: str) -> str:
        """How the argument appears in a usage line: ``<x>``, ``[x]``, ``<x…>``, ``fr|en``."""
        if self.choices:
            inner = "|".join(self.choices)
            return f"[{inner}]" if self.optional else inner
        if self.kind is ArgKind.REST:
            label += "…"
        return f"[{label}]" if self.optional else f"<{label}>"


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """Everything declared about a command except its implementation."""

    name: str
    help_key: str
    args: tuple[Arg, ...] = ()
    permission: Permission = Permission.ANYONE
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for n in (self.name, *self.aliases):
            if not _NAME_RE.fullmatch(n):
                raise CommandDefinitionError(f"command name {n!r} must match {_NAME_RE.pattern}")
        if len({self.name, *self.aliases}) != 1 + len(self.aliases):
            raise CommandDefinitionError(f"command {self.name!r}: repeated name or alias")
        names = [a.name for a in self.args]
        if len(set(names)) != len(names):
            raise CommandDefinitionError(f"command {self.name!r}: repeated argument name")
        for i, arg in enumerate(self.args):
            later = self.args[i + 1 :]
            if arg.kind is ArgKind.REST and later:
                raise CommandDefinitionError(f"command {self.name!r}: rest must be last")
            if arg.optional and any(not a.optional for a in later):
                raise CommandDefinitionError(
                    f"command {self.name!r}: required argument after optional {arg.name!r}"
                )

    @property
    def label_keys(self) -> tuple[str, ...]:
        return tuple(a.label_key for a in self.args if a.label_key)

    def usage(self, prefix: str, label: Callable[[Arg], str] = lambda a: a.name) -> str:
        return " ".join([prefix, self.name, *(a.display(label(a)) for a in self.args)])


def command(
    name: str,
    help_key: str,
    args: tuple[Arg, ...] = (),
    permission: Permission = Permission.ANYONE,
    aliases: tuple[str, ...] = (),
) -> Callable[[_F], _F]:
    """Declare an ``async def method(self, ctx, **args)`` as a bot command.

    Arguments are passed as keyword arguments named after each `Arg`; an optional argument
    that was not given is not passed, so the method's default applies.
    """
    spec = CommandSpec(name, help_key, tuple(args), permission, tuple(aliases))

    def decorate(func: _F) -> _F:
        is_async: bool = inspect.iscoroutinefunction(func)  # no TypeGuard narrowing of _F
        if not is_async:
            raise CommandDefinitionError(f"command {name!r}: handler must be `async def`")
        if spec_of(func) is not None:
            raise CommandDefinitionError(f"command {name!r}: handler decorated twice")
        setattr(func, _SPEC_ATTR, spec)
        return func

    return decorate


def spec_of(func: object) -> CommandSpec | None:
    spec = getattr(func, _SPEC_ATTR, None)
    return spec if isinstance(spec, CommandSpec) else None


@dataclass(frozen=True, slots=True)
class RegisteredCommand:
    spec: CommandSpec
    handler: Handler = field(repr=False)

    async def invoke(self, ctx: CommandContext, values: Mapping[str, object]) -> None:
        await self.handler(ctx, **values)


def _check_signature(spec: CommandSpec, handler: Handler, where: str) -> None:
    """Catch handler/argument mismatches at registration instead of at the first use."""
    sig = inspect.signature(handler)
    required = {a.name: None for a in spec.args if not a.optional}
    every = {a.name: None for a in spec.args}
    for kwargs in (required, every):
        try:
            sig.bind(None, **kwargs)
        except TypeError as e:
            raise CommandDefinitionError(
                f"{where}: signature does not fit the declared arguments: {e}"
            ) from None


class CommandRegistry:
    """Commands by name and alias (case-insensitive). Immutable once built."""

    def __init__(self, commands: Iterable[RegisteredCommand]) -> None:
        by_name: dict[str, RegisteredCommand] = {}
        for cmd in commands:
            for n in (cmd.spec.name, *cmd.spec.aliases):
                key = n.casefold()
                if key in by_name:
                    raise DuplicateCommandError(
                        f"{n!r} is used by both {by_name[key].spec.name!r} and {cmd.spec.name!r}"
                    )
                by_name[key] = cmd
        self._by_name: Mapping[str, RegisteredCommand] = MappingProxyType(by_name)
        self._commands: tuple[RegisteredCommand, ...] = tuple(
            sorted({id(c): c for c in by_name.values()}.values(), key=lambda c: c.spec.name)
        )

    @classmethod
    def from_handlers(cls, *objects: object) -> CommandRegistry:
        """Collect the `@command` methods of each object (instances, not classes)."""
        found: list[RegisteredCommand] = []
        for obj in objects:
            if isinstance(obj, type):
                raise CommandDefinitionError(f"pass an instance of {obj.__name__}, not the class")
            for attr in dir(type(obj)):
                raw = inspect.getattr_static(type(obj), attr)
                spec = spec_of(raw) if inspect.isfunction(raw) else None
                if spec is None:
                    continue
                handler: Handler = getattr(obj, attr)
                _check_signature(spec, handler, f"{type(obj).__name__}.{attr}")
                found.append(RegisteredCommand(spec, handler))
        return cls(found)

    def get(self, name: str) -> RegisteredCommand | None:
        return self._by_name.get(name.casefold())

    def closest(self, name: str) -> str | None:
        """The canonical name of the command whose name or alias looks most like ``name``."""
        match = difflib.get_close_matches(name.casefold(), self._by_name.keys(), n=1, cutoff=0.6)
        return self._by_name[match[0]].spec.name if match else None

    def __iter__(self) -> Iterator[RegisteredCommand]:
        return iter(self._commands)

    def __len__(self) -> int:
        return len(self._commands)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.casefold() in self._by_name
