"""The dispatcher end to end: parsing, lookup, permissions, arguments and failures."""

from __future__ import annotations

import logging

import pytest

from bot.commands import Arg, ArgKind, CommandError, CommandRegistry, Permission, command
from bot.context import CommandContext
from bot.dispatcher import CommandDispatcher
from bot.i18n import MissingTranslationError, Translator
from tests.bot.harness import (
    ADMIN,
    MEMBER,
    MODERATOR,
    ROOM_ADMIN,
    FakeClock,
    FakeServices,
    Room,
    make_room,
)

SECRET = "syt_c2VjcmV0_patient-Dupont-IBAN-FR76"


class Ward:
    """Commands at each permission level, recording what ran."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, dict[str, object]]] = []

    @command("visit", "help.description.ping", args=(Arg("who", ArgKind.MXID),))
    async def visit(self, ctx: CommandContext, who: str) -> None:
        self.ran.append(("visit", {"who": who}))
        await ctx.reply("ok")

    @command("mute", "help.description.ping", permission=Permission.ROOM_MODERATOR)
    async def mute(self, ctx: CommandContext) -> None:
        self.ran.append(("mute", {}))
        await ctx.reply("ok")

    @command("settings", "help.description.ping", permission=Permission.ROOM_ADMIN)
    async def settings(self, ctx: CommandContext) -> None:
        self.ran.append(("settings", {}))
        await ctx.reply("ok")

    @command("network", "help.description.ping", permission=Permission.NETWORK_ADMIN)
    async def network(self, ctx: CommandContext) -> None:
        self.ran.append(("network", {}))
        await ctx.reply("ok")

    @command("refuse", "help.description.ping")
    async def refuse(self, ctx: CommandContext) -> None:
        raise CommandError("error.invalid_int", arg="jours")

    @command("boom", "help.description.ping")
    async def boom(self, ctx: CommandContext) -> None:
        raise RuntimeError(f"database password leaked: {SECRET}")


@pytest.fixture
def ward() -> Ward:
    return Ward()


@pytest.fixture
def ward_room(ward: Ward, translator: Translator, clock: FakeClock, services: FakeServices) -> Room:
    return make_room(ward, translator=translator, clock=clock, services=services)


async def test_non_commands_are_not_handled_and_get_no_reply(ward_room: Room) -> None:
    for body in ("bonjour", "!sgvisit", "> <@a:b> !sg ping\n\nmerci", ""):
        assert await ward_room.send(body) is False
    assert ward_room.replies == []


async def test_bare_prefix_points_to_help(ward_room: Room) -> None:
    assert await ward_room.ask("!sg") == "Tapez `!sg help` pour la liste des commandes."


async def test_unknown_command_suggests_the_closest_one(ward_room: Room) -> None:
    reply = await ward_room.ask("!sg stauts")
    assert reply == (
        "Commande inconnue. Vouliez-vous dire `!sg status` ? "
        "Tapez `!sg help` pour la liste des commandes."
    )


async def test_unknown_command_without_a_close_match(ward_room: Room) -> None:
    reply = await ward_room.ask("!sg @room<b>xyzzy</b>")
    assert reply == "Commande inconnue. Tapez `!sg help` pour la liste des commandes."
    assert "@room" not in reply  # user text is never echoed


async def test_unknown_command_in_english(
    translator: Translator, clock: FakeClock, services: FakeServices
) -> None:
    room = make_room(translator=translator, clock=clock, services=services, default_language="en")
    assert await room.ask("!sg pnig") == (
        "Unknown command. Did you mean `!sg ping`? Type `!sg help` to list the commands."
    )


@pytest.mark.parametrize(
    ("sender", "allowed"),
    [
        (MEMBER, {"visit"}),
        (MODERATOR, {"visit", "mute"}),
        (ROOM_ADMIN, {"visit", "mute", "settings"}),
        (ADMIN, {"visit", "mute", "settings", "network"}),
    ],
)
async def test_permission_matrix_through_the_dispatcher(
    ward_room: Room, ward: Ward, sender: str, allowed: set[str]
) -> None:
    for name in ("visit @x:h", "mute", "settings", "network"):
        await ward_room.ask(f"!sg {name}", sender)
    assert {name for name, _ in ward.ran} == allowed


async def test_permission_denied_names_the_permission(ward_room: Room, ward: Ward) -> None:
    reply = await ward_room.ask("!sg SETTINGS", MODERATOR)
    assert reply == (
        "Permission refusée : `!sg settings` est réservée aux "
        "administrateurs du salon (niveau de pouvoir ≥ 100)."
    )
    reply = await ward_room.ask("!sg network", ROOM_ADMIN)
    assert "administrateurs du réseau SantéGuard" in reply
    assert ward.ran == []


async def test_permission_is_checked_before_arguments(ward_room: Room) -> None:
    reply = await ward_room.ask("!sg network extra args", MEMBER)
    assert reply.startswith("Permission refusée")


async def test_arity_errors_are_translated_with_usage(
    ward_room: Room, services: FakeServices
) -> None:
    assert await ward_room.ask("!sg visit") == (
        "Argument manquant : « who ».\nUsage : `!sg visit <who>`"
    )
    assert await ward_room.ask("!sg visit @a:h @b:h") == (
        "Trop d'arguments.\nUsage : `!sg visit <who>`"
    )
    assert await ward_room.ask("!sg visit alice") == (
        "L'argument « who » doit être un identifiant Matrix (@utilisateur:serveur).\n"
        "Usage : `!sg visit <who>`"
    )
    services.languages[ward_room.room_id] = "en"
    assert await ward_room.ask("!sg visit") == "Missing argument: “who”.\nUsage: `!sg visit <who>`"
    assert await ward_room.ask("!sg ping now") == "Too many arguments.\nUsage: `!sg ping`"
    assert await ward_room.ask('!sg visit "@a:h') == ("Unclosed quote.\nUsage: `!sg visit <who>`")


async def test_arguments_reach_the_handler(ward_room: Room, ward: Ward) -> None:
    assert await ward_room.ask('!sg visit "@dr.dupont:hopital.example"') == "ok"
    assert ward.ran == [("visit", {"who": "@dr.dupont:hopital.example"})]


async def test_handler_exception_gives_a_generic_error_and_is_logged(
    ward_room: Room, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="santeguard.bot"):
        reply = await ward_room.ask("!sg boom")
    assert SECRET not in reply
    assert "password" not in reply and "RuntimeError" not in reply
    assert reply == (
        "Une erreur interne est survenue et la commande n'a pas abouti. "
        "L'incident a été journalisé (référence : `$event1`)."
    )
    [record] = caplog.records
    assert record.exc_info is not None and SECRET in str(record.exc_info[1])
    assert "boom" in record.getMessage() and "$event1" in record.getMessage()


async def test_command_error_is_a_translated_refusal_not_a_failure(
    ward_room: Room, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="santeguard.bot"):
        reply = await ward_room.ask("!sg refuse")
    assert reply == "L'argument « jours » doit être un nombre entier."
    assert caplog.records == []


async def test_dispatcher_refuses_commands_without_translations(translator: Translator) -> None:
    class Untranslated:
        @command("x", "help.description.nothing")
        async def x(self, ctx: CommandContext) -> None:
            pass

    with pytest.raises(MissingTranslationError, match=r"help\.description\.nothing"):
        CommandDispatcher(CommandRegistry.from_handlers(Untranslated()), translator)


def test_context_language_prefers_the_room_setting(
    translator: Translator, services: FakeServices
) -> None:
    dispatcher = CommandDispatcher(CommandRegistry([]), translator, default_language="en")

    async def reply(text: str) -> None:
        pass

    def lang(room_language: str | None) -> str:
        ctx = dispatcher.context(
            sender=MEMBER,
            room_id="!r:h",
            event_id="$e",
            origin_server_ts=0,
            reply=reply,
            services=services,
            room_language=room_language,
        )
        return ctx.language

    assert (lang("fr"), lang(None), lang("klingon")) == ("fr", "en", "en")
