"""Hostile ``!sg …`` command text at volume, through the real registry and handlers.

The parser alone is property-tested in tests/bot/test_bot_parser.py. Here every command
SantéGuard registers is run by its real dispatcher, as a network admin with room-admin
power (so no permission check stops the text early), against a real database: command
names in odd cases and scripts, arguments that are huge, quoted wrongly (``"``, ``“…”``,
``« … »``, backslashes), integers of hundreds of digits, malformed Matrix IDs, NUL,
lone surrogates, bidi overrides, reply fallbacks. The contract: the command is answered
(done, refused, unknown, bad arguments) or the homeserver is reported down
(``TransientError``, retried as a whole); never an internal error; the dispatcher's
own replies never repeat the argument text; every reply renders to safe HTML; memory
bounded by the body's size.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.dispatcher import Outcome
from bot.parser import ArgumentError, bind_arguments, parse_invocation
from bot.render import to_html
from bridge.app import SanteGuard
from bridge.core.errors import TransientError
from tests.helpers import make_config
from tests.hostile.budget import MiB, Tally, budget
from tests.hostile.serve import ErrorLog, run_examples

ADMIN = "@admin:santeguard.test"
ROOM = "!cmd:santeguard.test"
MARKER = "Zq7Xv"  # in every hostile argument; a reply must never carry it back
UNSAFE_HTML = re.compile(r"<(?!/?(?:code|strong)>|br>)")
POWER = {"users": {ADMIN: 100}, "users_default": 0}

PIECES = st.sampled_from(
    [
        '"',
        "“",
        "”",
        "«",
        "»",
        "\\",
        '\\"',
        "'",
        " ",
        "\t",
        "\n",
        "\u00a0",
        "\u202e",
        "\u200b",
        "\x00",
        "\ud800",
        "@",
        ":",
        "!",
        "#",
        "$",
        "*",
        "%s",
        "{0}",
        "{x}",
        "<b>",
        "&amp;",
        "`",
        "@room",
        "9" * 300,
        "-1",
        "+0",
        "0x10",
        "1e9",
        "90d",
        "-90d",
        "999999999999999999999d",
        "10101010101",
        "@a:b",
        "@:x",
        "@a:[::1]:99999",
        "dr@x.mssante.fr",
        "a" * 5000,
        "é" * 200,
    ]
)
SEPARATORS = st.sampled_from([" ", " ", "  ", "\t", "\n", "\u3000", ""])
ARG_TEXT = st.lists(
    st.tuples(st.one_of(PIECES, st.text(max_size=12)), SEPARATORS), max_size=10
).map(lambda parts: "".join(p + sep for p, sep in parts))
# Arguments that each command accepts, for the hostile part to follow past the checks.
VALID_START = {
    "retention": ["set 90d", "set 2 ans", "set", ""],
    "room": ["professions 10 60", "protect on"],
    "mail": ["link dr@x.mssante.fr", "status", "quarantine", "xdm", "unlink"],
    "verify": ["@a:santeguard.test 10101010101"],
    "whois": ["@a:santeguard.test"],
    "unverify": ["@a:santeguard.test"],
    "annuaire": ["dupont"],
    "language": ["en", "fr"],
    "help": ["room", "mail"],
}


@st.composite
def bodies(draw: st.DrawFn, names: list[str]) -> str:
    name = draw(st.sampled_from(names))
    start = draw(st.sampled_from(["", *VALID_START.get(name, [])]))
    if draw(st.integers(0, 5)) == 0:
        name = draw(st.sampled_from([name.upper(), name.title(), name + "\u0307", ""]))
    prefix = draw(st.sampled_from(["!sg", "!sg", "!SG", "> <@a:x> !sg old\n\n!sg", "  !sg"]))
    sep = draw(st.sampled_from([" ", "\t", "\n", "\u3000", "  "]))
    marker = MARKER if draw(st.booleans()) else ""
    return f"{prefix}{sep}{name} {start} {marker}{draw(ARG_TEXT)}"


@pytest.fixture
async def app(tmp_path: Any) -> AsyncIterator[SanteGuard]:
    instance = SanteGuard(make_config(f"sqlite:///{tmp_path / 'sg.db'}"))
    await instance.start()
    yield instance
    await instance.stop()


def _names(app: SanteGuard) -> list[str]:
    out: list[str] = []
    for cmd in app.commands.registry:
        out += [cmd.spec.name, *cmd.spec.aliases]
    return sorted(out)


def _dispatcher(app: SanteGuard) -> Any:
    return app.commands._dispatcher  # the one the service runs


async def test_parse_and_bind_are_total(app: SanteGuard, tally: Tally) -> None:
    """For every registered command: a result or ArgumentError, never another exception."""
    registry, names = app.commands.registry, _names(app)

    @budget(400)
    @given(body=bodies(names))
    def example(body: str) -> None:
        with tally.memory(len(body) * 4, allowance=1 * MiB, per_byte=20):
            invocation = parse_invocation(body)
            if invocation is None or (cmd := registry.get(invocation.name)) is None:
                tally.count("not_a_command" if invocation is None else "unknown")
                return
            try:
                values = bind_arguments(cmd.spec, invocation.arg_text)
            except ArgumentError as e:
                assert e.key.startswith("error.")
                tally.count("bad_arguments")
                return
        tally.count("bound")
        for arg in cmd.spec.args:
            if arg.choices and arg.name in values:
                assert values[arg.name] in arg.choices

    await asyncio.to_thread(example)


async def test_real_handlers_never_fail_on_hostile_text(app: SanteGuard, tally: Tally) -> None:
    dispatcher, names = _dispatcher(app), _names(app)
    services = app.commands._services
    # The dispatcher logs a handler's exception at ERROR: that is what must not happen.
    with ErrorLog() as errors:

        def check(run: Any) -> None:
            @budget(200)
            @given(body=bodies(names))
            def example(body: str) -> None:
                replies: list[str] = []

                async def reply(text: str) -> None:
                    replies.append(text)

                ctx = dispatcher.context(
                    sender=ADMIN,
                    room_id=ROOM,
                    event_id=f"$h{tally.examples}",
                    origin_server_ts=0,
                    reply=reply,
                    services=services,
                )
                with tally.memory(len(body) * 4, allowance=16 * MiB, per_byte=40):
                    try:
                        outcome = run(asyncio.wait_for(dispatcher.run(ctx, body, POWER), 30))
                    except TransientError:
                        outcome = "transient"  # homeserver down: the event is retried
                assert outcome is not Outcome.FAILED, (body[:200], replies)
                for text in replies:
                    # Rendered, only the framework's own markup is HTML (bot/render.py).
                    assert not UNSAFE_HTML.search(to_html(text)), text[:300]
                    if MARKER in body and outcome in (Outcome.UNKNOWN, Outcome.BAD_ARGUMENTS):
                        # The dispatcher's own answers never repeat what was typed (a
                        # handler may name the one bad value, sent with empty m.mentions).
                        assert MARKER not in text, (body[:200], text[:300])
                tally.count(str(outcome))

            example()

        await run_examples(check)
    assert errors.messages() == []


def test_odd_origin_server_ts_is_zero(tally: Tally) -> None:
    """``int()`` of a string or a float timestamp made the command fail."""
    from bridge.commands.service import _timestamp

    for value, expected in (("abc", 0), (1.5, 0), (None, 0), (True, 0), ([1], 0), (17, 17)):
        assert _timestamp(value) == expected
        tally.count("checked")
