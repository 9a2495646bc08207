"""Built-in commands: help, ping, status and language, through the real dispatcher."""

from __future__ import annotations

import pytest

from bot.builtin import BuiltinCommands, format_duration
from bot.commands import Arg, ArgKind, Permission, command
from bot.context import CommandContext
from bot.i18n import DEFAULT_CATALOGS, SUPPORTED_LANGUAGES, Lang, Translator
from tests.bot.harness import ADMIN, MEMBER, ROOM_ADMIN, FakeClock, FakeServices, Room, make_room


class Retention:
    @command(
        "purge",
        "help.description.status",
        args=(Arg("days", ArgKind.INT),),
        permission=Permission.NETWORK_ADMIN,
    )
    async def purge(self, ctx: CommandContext, days: int) -> None:
        pass


@pytest.fixture(params=SUPPORTED_LANGUAGES)
def lang(request: pytest.FixtureRequest) -> Lang:
    language: Lang = request.param
    return language


@pytest.fixture
def full_room(translator: Translator, clock: FakeClock, services: FakeServices, lang: Lang) -> Room:
    return make_room(
        Retention(), translator=translator, clock=clock, services=services, default_language=lang
    )


async def test_help_lists_every_command_with_args_text_and_permission(
    full_room: Room, translator: Translator, lang: Lang
) -> None:
    reply = await full_room.ask("!sg help")
    lines = reply.splitlines()
    assert lines[0] == translator.t("help.header", lang)
    commands = list(full_room.dispatcher.registry)
    assert [c.spec.name for c in commands] == ["help", "language", "ping", "purge", "status"]
    for cmd in commands:
        line = next(x for x in lines if x.startswith(f"- `!sg {cmd.spec.name}"))
        assert translator.t(cmd.spec.help_key, lang) in line
        assert translator.t(f"permission.{cmd.spec.permission.value}", lang) in line
    label = {"fr": "commande", "en": "command"}[lang]
    assert f"`!sg help [{label}]`" in reply
    assert "`!sg language fr|en`" in reply
    assert "`!sg purge <days>`" in reply


async def test_help_uses_only_the_context_language(full_room: Room, lang: Lang) -> None:
    reply = await full_room.ask("!sg help")
    other = next(x for x in SUPPORTED_LANGUAGES if x != lang)
    for key in ("help.description.ping", "help.description.status", "permission.anyone"):
        assert DEFAULT_CATALOGS[other][key] not in reply


async def test_help_for_one_command(room: Room) -> None:
    assert await room.ask("!sg help langue") == (
        "`!sg language fr|en`\n"
        "Change la langue du bot dans ce salon.\n"
        "Autorisé pour : administrateurs du salon (niveau de pouvoir ≥ 100)\n"
        "Alias : `langue`"
    )
    assert await room.ask("!sg aide PING") == (
        "`!sg ping`\nVérifie que le bot répond et mesure le délai de réponse.\n"
        "Autorisé pour : tout le monde"
    )


async def test_help_for_an_unknown_command_suggests(room: Room) -> None:
    assert await room.ask("!sg help stat") == (
        "Commande inconnue. Vouliez-vous dire `!sg status` ? "
        "Tapez `!sg help` pour la liste des commandes."
    )
    assert await room.ask("!sg help zzz") == (
        "Commande inconnue. Tapez `!sg help` pour la liste des commandes."
    )


async def test_ping_measures_from_origin_server_ts_with_the_clock(
    room: Room, clock: FakeClock
) -> None:
    sent_at = round(clock.now * 1000)
    clock.now += 0.2345
    assert await room.ask("!sg ping", origin_server_ts=sent_at) == "pong — délai : 234 ms"
    clock.now += 1.5
    assert await room.ask("!sg ping", origin_server_ts=sent_at) == "pong — délai : 1734 ms"


async def test_ping_never_reports_negative_latency(room: Room, clock: FakeClock) -> None:
    future = round(clock.now * 1000) + 5000  # homeserver clock ahead of ours
    assert await room.ask("!sg ping", origin_server_ts=future) == "pong — délai : 0 ms"


async def test_status(room: Room, services: FakeServices) -> None:
    assert await room.ask("!sg statut") == (
        "**État de SantéGuard**\n"
        "- Version : 0.1.0-test\n"
        "- Temps de fonctionnement : 1 j 2 h\n"
        "- Salons surveillés : 12\n"
        "- Événements en file d'attente : 3"
    )
    services.languages[room.room_id] = "en"
    services.uptime, services.queue = 125.9, 0
    reply = await room.ask("!sg status")
    assert "- Uptime: 2min 5s" in reply and "- Events queued: 0" in reply


async def test_language_switch_affects_following_replies(
    room: Room, services: FakeServices, clock: FakeClock
) -> None:
    assert (await room.ask("!sg ping")).startswith("pong — délai")
    assert await room.ask("!sg language EN", ROOM_ADMIN) == "Bot language for this room: English."
    assert services.languages == {room.room_id: "en"}
    assert (await room.ask("!sg ping")).startswith("pong — latency")
    assert await room.ask("!sg nope") == ("Unknown command. Type `!sg help` to list the commands.")
    assert await room.ask("!sg langue fr", ADMIN) == "Langue du bot dans ce salon : français."
    assert (await room.ask("!sg ping")).startswith("pong — délai")


async def test_language_switch_is_per_room(
    translator: Translator, clock: FakeClock, services: FakeServices
) -> None:
    cardio = make_room(translator=translator, clock=clock, services=services)
    pneumo = make_room(translator=translator, clock=clock, services=services)
    pneumo.room_id = "!pneumo:hopital.example"
    await cardio.ask("!sg language en", ROOM_ADMIN)
    assert (await cardio.ask("!sg ping")).startswith("pong — latency")
    assert (await pneumo.ask("!sg ping")).startswith("pong — délai")


async def test_language_needs_room_admin_and_a_known_language(
    room: Room, services: FakeServices
) -> None:
    assert (await room.ask("!sg language en", MEMBER)).startswith("Permission refusée")
    assert await room.ask("!sg language de", ROOM_ADMIN) == (
        "L'argument « langue » doit valoir : fr, en.\nUsage : `!sg language fr|en`"
    )
    assert await room.ask("!sg language", ROOM_ADMIN) == (
        "Argument manquant : « langue ».\nUsage : `!sg language fr|en`"
    )
    assert services.languages == {}


async def test_builtins_use_the_injected_clock_only_for_ping() -> None:
    calls: list[None] = []

    def clock() -> float:
        calls.append(None)
        return 0.0

    BuiltinCommands(clock=clock)
    assert calls == []


@pytest.mark.parametrize(
    ("seconds", "fr", "en"),
    [
        (0, "0 s", "0s"),
        (59.9, "59 s", "59s"),
        (125, "2 min 5 s", "2min 5s"),
        (3600, "1 h", "1h"),
        (3725, "1 h 2 min", "1h 2min"),
        (86_405, "1 j", "1d"),
        (93_784, "1 j 2 h", "1d 2h"),
        (-3, "0 s", "0s"),
    ],
)
def test_format_duration(
    seconds: float, fr: str, en: str, room: Room, services: FakeServices
) -> None:
    for lang, expected in (("fr", fr), ("en", en)):
        ctx = room.dispatcher.context(
            sender=MEMBER,
            room_id=room.room_id,
            event_id="$e",
            origin_server_ts=0,
            reply=room._reply,
            services=services,
            room_language=lang,
        )
        assert format_duration(seconds, ctx) == expected
