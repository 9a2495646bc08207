"""Declaring commands and collecting them into a registry built from objects."""

from __future__ import annotations

import pytest

from bot.builtin import BuiltinCommands
from bot.commands import (
    Arg,
    ArgKind,
    CommandDefinitionError,
    CommandRegistry,
    CommandSpec,
    DuplicateCommandError,
    Permission,
    command,
    spec_of,
)
from bot.context import CommandContext


class Retention:
    """A handler object as another component would write it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int | None]] = []

    @command(
        "purge",
        "help.description.ping",
        args=(Arg("room"), Arg("days", ArgKind.INT, optional=True)),
        permission=Permission.NETWORK_ADMIN,
        aliases=("purger",),
    )
    async def purge(self, ctx: CommandContext, room: str, days: int | None = None) -> None:
        self.calls.append((room, days))

    async def not_a_command(self, ctx: CommandContext) -> None:
        raise AssertionError


def test_from_handlers_collects_decorated_methods_of_each_object() -> None:
    registry = CommandRegistry.from_handlers(BuiltinCommands(), Retention())
    assert [c.spec.name for c in registry] == ["help", "language", "ping", "purge", "status"]
    assert len(registry) == 5
    assert "not_a_command" not in registry


def test_lookup_by_name_or_alias_is_case_insensitive() -> None:
    registry = CommandRegistry.from_handlers(Retention())
    purge = registry.get("purge")
    assert purge is not None
    assert registry.get("PURGE") is purge
    assert registry.get("Purger") is purge
    assert registry.get("purgez") is None


def test_handlers_are_bound_to_their_object() -> None:
    handler = Retention()
    registry = CommandRegistry.from_handlers(handler)
    purge = registry.get("purge")
    assert purge is not None
    assert purge.handler.__self__ is handler  # type: ignore[attr-defined]


def test_registries_are_independent() -> None:
    """No global registry: building one registry does not affect another."""
    assert len(CommandRegistry.from_handlers(Retention())) == 1
    assert len(CommandRegistry.from_handlers(BuiltinCommands())) == 4


def test_closest_match_maps_aliases_to_the_canonical_name() -> None:
    registry = CommandRegistry.from_handlers(BuiltinCommands())
    assert registry.closest("stauts") == "status"
    assert registry.closest("langeu") == "language"
    assert registry.closest("xyzzy") is None


class Other:
    @command("ping", "help.description.ping")
    async def my_ping(self, ctx: CommandContext) -> None:
        pass


class AliasClash:
    @command("pong", "help.description.ping", aliases=("statut",))
    async def pong(self, ctx: CommandContext) -> None:
        pass


@pytest.mark.parametrize("other", [Other(), AliasClash()])
def test_duplicate_names_or_aliases_are_refused(other: object) -> None:
    with pytest.raises(DuplicateCommandError):
        CommandRegistry.from_handlers(BuiltinCommands(), other)


def test_same_object_twice_is_a_duplicate() -> None:
    handler = Retention()
    with pytest.raises(DuplicateCommandError):
        CommandRegistry.from_handlers(handler, handler)


def test_classes_are_refused() -> None:
    with pytest.raises(CommandDefinitionError, match="instance"):
        CommandRegistry.from_handlers(Retention)


def test_handler_signature_must_fit_the_arguments() -> None:
    class Mismatch:
        @command("x", "k", args=(Arg("who"),))
        async def x(self, ctx: CommandContext, whom: str) -> None:
            pass

    class OptionalWithoutDefault:
        @command("y", "k", args=(Arg("n", ArgKind.INT, optional=True),))
        async def y(self, ctx: CommandContext, n: int) -> None:
            pass

    for handler in (Mismatch(), OptionalWithoutDefault()):
        with pytest.raises(CommandDefinitionError, match="signature"):
            CommandRegistry.from_handlers(handler)


def test_decorator_requires_async_and_single_use() -> None:
    with pytest.raises(CommandDefinitionError, match="async"):
        command("x", "k")(lambda self, ctx: None)  # type: ignore[type-var]

    async def h(self: object, ctx: CommandContext) -> None:
        pass

    command("x", "k")(h)
    spec = spec_of(h)
    assert spec == CommandSpec("x", "k")
    with pytest.raises(CommandDefinitionError, match="twice"):
        command("y", "k")(h)


@pytest.mark.parametrize(
    "make",
    [
        lambda: CommandSpec("Bad Name", "k"),
        lambda: CommandSpec("x", "k", aliases=("x",)),
        lambda: CommandSpec("x", "k", args=(Arg("a"), Arg("a"))),
        lambda: CommandSpec("x", "k", args=(Arg("a", ArgKind.REST), Arg("b"))),
        lambda: CommandSpec("x", "k", args=(Arg("a", optional=True), Arg("b"))),
        lambda: Arg("not-an-identifier"),
        lambda: Arg("n", ArgKind.INT, choices=("1", "2")),
        lambda: Arg("c", choices=("a b",)),
    ],
)
def test_invalid_declarations_fail_at_definition(make: object) -> None:
    with pytest.raises(CommandDefinitionError):
        make()  # type: ignore[operator]


def test_usage_line() -> None:
    spec = CommandSpec(
        "grant",
        "k",
        args=(
            Arg("user", ArgKind.MXID),
            Arg("lang", choices=("fr", "en"), optional=True),
            Arg("reason", ArgKind.REST, optional=True),
        ),
    )
    assert spec.usage("!sg") == "!sg grant <user> [fr|en] [reason…]"
