"""The live check against a real Synapse: is the enforcement user a server admin?

The enforcer is registered through the appservice (as SantéGuard does), checked through
the appservice token with ``?user_id=`` (as the retention audit calls the admin API),
then made an admin with ``PUT /_synapse/admin/v1/users/<enforcer>/admin``.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from bridge.devtools.synapse import LocalSynapse
from bridge.devtools.testconfig import free_port
from bridge.homeserver_check import LiveTarget, State, enforcer_admin
from bridge.registration import build_registration
from tests.homeserver_check.cli_helpers import AS_TOKEN, by_id, run, run_json, santeguard_config
from tests.homeserver_check.configs import good

pytestmark = pytest.mark.synapse

DOMAIN = "santeguard.test"
ENFORCER = f"@santeguard_control:{DOMAIN}"


@dataclass
class Live:
    synapse: LocalSynapse
    registration: Path
    workdir: Path


@pytest.fixture(scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Live]:
    workdir = tmp_path_factory.mktemp("hscheck-live")
    registration = workdir / "registration.yaml"
    reg = build_registration(
        service_id="santeguard",
        url=f"http://127.0.0.1:{free_port()}",
        domain=DOMAIN,
        bot_username="santeguard",
        as_token=AS_TOKEN,
        hs_token="hs-token-for-the-homeserver-check-8c2d",
    )
    registration.write_text(yaml.safe_dump(reg), encoding="utf-8")
    synapse = LocalSynapse(
        workdir / "synapse", server_name=DOMAIN, appservice_registrations=[registration]
    )
    await synapse.start()
    try:
        await synapse.register_appservice_user(AS_TOKEN, str(reg["sender_localpart"]))
        await synapse.register_appservice_user(AS_TOKEN, "santeguard_control")
        yield Live(synapse, registration, workdir)
    finally:
        await synapse.stop()


async def _cli(
    live: Live, directory: Path, **config: str
) -> tuple[subprocess.CompletedProcess[str], int, dict[str, dict[str, object]]]:
    await asyncio.to_thread(directory.mkdir)
    cfg = santeguard_config(directory, live.synapse.base_url, domain=DOMAIN, **config)
    hs = good(live.registration)
    args = ("-r", str(live.registration), "-c", str(cfg))
    text = await asyncio.to_thread(run, hs, directory / "hs.yaml", "--lang", "en", *args)
    code, report = await asyncio.to_thread(run_json, None, directory / "hs.yaml", *args)
    return text, code, by_id(report)


async def test_enforcer_admin_before_and_after(live: Live, tmp_path: Path) -> None:
    text, code, found = await _cli(live, tmp_path / "before")
    before = found["enforcer_admin"]
    assert before["state"] == "fix" and before["severity"] == "critical"
    assert before["problem"] == f"{ENFORCER} n'est pas administrateur du serveur"
    assert f"{live.synapse.base_url}/_synapse/admin/v1/users/{ENFORCER}/admin" in str(before["fix"])
    assert f"UPDATE users SET admin = 1 WHERE name = '{ENFORCER}';" in str(before["fix"])
    assert code == 1 and text.returncode == 1
    assert (
        f"critical  [TO FIX] enforcement user is a server admin (admin API) — {ENFORCER} "
        "is not a server admin"
    ) in text.stdout
    assert AS_TOKEN not in text.stdout + text.stderr

    await live.synapse.request(
        "PUT",
        f"/_synapse/admin/v1/users/{ENFORCER}/admin",
        token=await live.synapse.admin_token(),
        json={"admin": True},
    )
    try:
        text, code, found = await _cli(live, tmp_path / "after")
        assert found["enforcer_admin"]["state"] == "ok"
        # Every check ran and passed: the good homeserver.yaml against this network.
        assert {f["state"] for f in found.values()} == {"ok"}
        assert code == 0 and text.returncode == 0, text.stdout
        assert (
            "critical  [OK] enforcement user is a server admin (admin API)"
            in text.stdout.splitlines()
        )
    finally:
        await live.synapse.request(
            "PUT",
            f"/_synapse/admin/v1/users/{ENFORCER}/admin",
            token=await live.synapse.admin_token(),
            json={"admin": False},
        )


async def test_enforcer_not_registered_yet(live: Live, tmp_path: Path) -> None:
    _, code, found = await _cli(live, tmp_path / "x", enforcer_username="santeguard_other")
    assert found["enforcer_admin"]["state"] == "fix"
    assert str(found["enforcer_admin"]["problem"]).startswith(
        f"@santeguard_other:{DOMAIN} n'existe pas encore"
    )
    assert code == 1


async def test_a_refused_token(live: Live, tmp_path: Path) -> None:
    f = await enforcer_admin(
        LiveTarget(live.synapse.base_url, ENFORCER, as_token="not-the-appservice-token")
    )
    assert (f.state, f.problem) == (State.FIX, "hscheck.hint.as_token_refused")
    assert f.params == {"status": "401"}


async def test_unreachable_is_not_checked() -> None:
    f = await enforcer_admin(
        LiveTarget(f"http://127.0.0.1:{free_port()}", ENFORCER, as_token=AS_TOKEN), timeout=5
    )
    assert (f.state, f.problem) == (State.NOT_CHECKED, "hscheck.hint.unreachable")
