"""`santeguard report` end to end, and the homeserver adapter against a real Synapse."""

from __future__ import annotations

import argparse
import asyncio
import stat
from pathlib import Path

import aiohttp
import pytest
import yaml

from bridge.devtools.people import practitioner
from bridge.devtools.stack import DevStack
from bridge.devtools.testconfig import AS_TOKEN, GATE_TOKEN, HS_TOKEN, free_port
from bridge.report import cli
from bridge.report.homeserver import HomeserverRooms, HomeserverUnavailable
from bridge.report.render import render_html
from tests.report.sample import translator

ENCRYPTED = [
    {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="santeguard")
    cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_writes_the_report_when_the_homeserver_is_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "homeserver": {
                    "address": f"http://127.0.0.1:{free_port()}",  # nobody listens
                    "domain": "chu-exemple.fr",
                },
                "appservice": {
                    "address": "http://127.0.0.1:29333",
                    "as_token": AS_TOKEN,
                    "hs_token": HS_TOKEN,
                },
                "antispam": {"token": GATE_TOKEN},
                "database": {"uri": f"sqlite:///{tmp_path / 'sg.db'}"},
            }
        ),
        encoding="utf-8",
    )
    out = tmp_path / "rapport.html"
    args = _parse(["report", "-c", str(config), "--out", str(out)])
    assert args.handler(args) == 0
    page = out.read_text(encoding="utf-8")
    assert '<html lang="fr">' in page and "chu-exemple.fr" in page
    assert "Le serveur Matrix n&#x27;a pas répondu" in page
    assert "Aucun salon connu de SantéGuard." in page
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # it names members and rooms
    printed = capsys.readouterr()
    assert "Serveur Matrix non joint" in printed.err and str(out) in printed.out
    assert AS_TOKEN not in printed.out + printed.err + page


def test_cli_refuses_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("homeserver: {}\n", encoding="utf-8")
    args = _parse(["report", "-c", str(config), "--out", str(tmp_path / "r.html"), "--lang", "en"])
    assert args.handler(args) == 2
    assert not (tmp_path / "r.html").exists()


async def test_unreachable_homeserver_is_reported_as_such() -> None:
    async with aiohttp.ClientSession() as session:
        rooms = HomeserverRooms(
            session, f"http://127.0.0.1:{free_port()}", AS_TOKEN, "@santeguard_control:x"
        )
        with pytest.raises(HomeserverUnavailable) as err:
            await rooms.joined_rooms()
    assert AS_TOKEN not in str(err.value) and AS_TOKEN not in repr(rooms)


@pytest.mark.synapse
async def test_real_homeserver_view_and_report(gated_stack: DevStack) -> None:
    """A protected room seen by the enforcement user, and the CLI's report of it."""
    n = id(gated_stack) % 100_000
    _, doc = await gated_stack.practitioner(
        f"report{n}", practitioner(9999_10000 + n % 1000, last="RAPPORT", first="Jeanne")
    )
    async with doc:
        room = await doc.create_room(initial_state=ENCRYPTED, name="RCP <b>rapport</b>")
        for _ in range(200):
            if gated_stack.enforcer_mxid in await doc.joined_members(room):
                break
            await asyncio.sleep(0.05)
    async with aiohttp.ClientSession() as session:
        rooms = HomeserverRooms(
            session, gated_stack.homeserver_address, gated_stack.as_token, gated_stack.enforcer_mxid
        )
        assert room in await rooms.joined_rooms()
        seen = await rooms.room(room)
        assert await rooms.room(f"!absent{n}:{gated_stack.server_name}") is None
    assert seen is not None and seen.name == "RCP <b>rapport</b>" and seen.encrypted
    assert doc.user_id in seen.members and gated_stack.enforcer_mxid in seen.members

    cfg = gated_stack.config()
    data = await cli.build_report(cfg, "en")
    assert data.homeserver_reached
    [row] = [r for r in data.rooms if r.room_id == room]
    assert row.live and row.protected and row.encrypted and row.verified_members == 1
    page = render_html(data, translator())
    assert "RCP &lt;b&gt;rapport&lt;/b&gt;" in page and f'data-room-id="{room}"' in page
