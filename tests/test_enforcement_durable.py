"""Durable enforcement end to end: a real Synapse that fails SantéGuard's kicks.

SantéGuard reaches Synapse through the fault proxy (``faulty_stack``,
bridge/devtools/faultproxy.py), so a test can make ``POST /rooms/{room}/kick`` answer
502 (or anything) as long as it likes; Synapse still calls SantéGuard directly. The
removal must still happen once the fault clears: through retries with backoff, across
a SIGKILL of the SantéGuard process, and without the member's join event at all (the
reconcile sweep). Every wait is a bounded poll; nothing asserts on elapsed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from mautrix.util.async_db import Database
from pydantic import SecretStr

from bridge.app import SanteGuard
from bridge.db.database import open_database
from bridge.devtools.client import SimpleClient
from bridge.devtools.stack import DevStack
from bridge.identity.sources.extract import import_extract
from bridge.identity.sources.extract.lookup import current_import_id
from tests.test_integration_gate import protected_room, uniq, wait_until
from tests.test_integration_identity import SAMPLE, admin_room, bot_says

pytestmark = pytest.mark.synapse

# The homeserver's backoff after failed kicks is 1, 2, 4, 8, 16 s (bridge/gate/enforce.py):
# five failures and the retry after them take about 31 s, so waits are generous.
REMOVAL_TIMEOUT = 120.0


# Directory entries of tests/data's sample extract (active physicians). Practitioners
# are bound to real entries: a SantéGuard that (re)starts re-verifies every binding
# against the directory at once, and unbinds (and removes) those it does not find.
DOCTOR, MEMBER = "810999990012", "810999990020"


@pytest.fixture
async def faulty(faulty_stack: DevStack) -> AsyncIterator[DevStack]:
    """The session's faulty stack with the sample directory imported, its proxy rules
    cleared before and after each test."""
    sg = _sg(faulty_stack)
    if await current_import_id(sg.db) is None:
        await import_extract(sg.db, SAMPLE)
    faulty_stack.proxy.clear()
    try:
        yield faulty_stack
    finally:
        faulty_stack.proxy.clear()


def kick_path(*rooms: str) -> str:
    """The (decoded) path of a kick in any of ``rooms``, as a proxy rule regex."""
    alternatives = "|".join(re.escape(room) for room in rooms)
    return rf"/_matrix/client/v3/rooms/(?:{alternatives})/kick"


def _sg(stack: DevStack) -> SanteGuard:
    assert stack.santeguard is not None
    return stack.santeguard


async def _joined(client: SimpleClient, room: str, user: str) -> bool:
    return user in await client.joined_members(room)


async def _gone(client: SimpleClient, room: str, user: str) -> bool:
    return not await _joined(client, room, user)


async def _known(stack: DevStack, room: str, user: str) -> bool:
    return user in await _sg(stack).room_policies.members_of(room)


async def _rows(db: Database, user: str) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT room_id, attempts, alerted, reason, trigger FROM enforcement WHERE user_id = $1",
        user,
    )
    return [dict(r) for r in rows]


async def _no_rows(db: Database, user: str) -> bool:
    return not await _rows(db, user)


async def _audit(sg: SanteGuard, room: str, action: str, user: str) -> list[Any]:
    entries = await sg.audit.recent(100, room_id=room)
    return [e for e in entries if e.action == action and e.subject == user]


async def _practitioner(stack: DevStack, localpart: str, idnps: str) -> SimpleClient:
    """A new account bound to the directory entry ``idnps``."""
    entry = await _sg(stack).directory.lookup(idnps)
    assert entry is not None and entry.active
    _, client = await stack.practitioner(uniq(localpart), entry)
    return client


async def _member_of(
    stack: DevStack, doc: SimpleClient, n_rooms: int
) -> tuple[str, SimpleClient, list[str]]:
    """A verified practitioner joined to ``n_rooms`` new protected rooms of ``doc``'s,
    each membership recorded by SantéGuard."""
    client = await _practitioner(stack, "membre", MEMBER)
    rooms = [await protected_room(stack, doc) for _ in range(n_rooms)]
    for room in rooms:
        await doc.invite(room, client.user_id)
        await client.join(room)
        await wait_until(lambda room=room: _known(stack, room, client.user_id), timeout=30)
    return client.user_id, client, rooms


async def _unbind(stack: DevStack, user: str) -> list[str]:
    """The product's unbinding path: the unbinding and its removals in one transaction."""
    sg = _sg(stack)
    planned: list[str] = []

    async def plan(conn: Any) -> None:
        planned.extend(await sg.enforcer.plan_unbound(conn, user, trigger="test"))

    await sg.verifications.unbind(user, then=plan)
    sg.enforcer.wake()
    return planned


async def test_kick_failing_three_times_still_removes_the_member(faulty: DevStack) -> None:
    sg = _sg(faulty)
    doc = await _practitioner(faulty, "doc", DOCTOR)
    async with doc:
        user, client, [room] = await _member_of(faulty, doc, 1)
        await client.close()
        failing = faulty.proxy.fail("POST", kick_path(room), times=3)
        passed = faulty.proxy.watch("POST", kick_path(room))

        assert await _unbind(faulty, user) == [room]
        await wait_until(lambda: _gone(doc, room, user), timeout=REMOVAL_TIMEOUT)
        await wait_until(lambda: _no_rows(sg.db, user), timeout=30)
        assert (failing.matched, passed.matched) == (3, 1)  # one kick got through, once
        kick = await doc.wait_for_recent(
            room,
            lambda ev: (
                ev.get("type") == "m.room.member"
                and ev.get("state_key") == user
                and ev["content"].get("membership") == "leave"
            ),
        )
        assert kick["sender"] == faulty.enforcer_mxid
    await wait_until(lambda: _audit(sg, room, "backstop.removed", user), timeout=30)
    assert not await _audit(sg, room, "backstop.remove_failed", user)  # 3 < 5: no alert


async def test_kick_failing_five_times_alerts_and_removal_completes_once_fixed(
    faulty: DevStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    sg = _sg(faulty)
    alerts: list[tuple[str, dict[str, object]]] = []
    original = sg.alerts.alert

    async def recording(key: str, /, **params: object) -> None:
        alerts.append((key, params))
        await original(key, **params)

    monkeypatch.setattr(sg.alerts, "alert", recording)
    doc = await _practitioner(faulty, "doc", DOCTOR)
    async with doc:
        user, client, [room] = await _member_of(faulty, doc, 1)
        await client.close()
        failing = faulty.proxy.fail("POST", kick_path(room))  # until removed

        async def alerted() -> bool:  # the alert follows the audit entry
            return any(k == "alert.remove_failed" and p["user"] == user for k, p in alerts)

        assert await _unbind(faulty, user) == [room]
        await wait_until(alerted, timeout=REMOVAL_TIMEOUT)
        [(_, params)] = [(k, p) for k, p in alerts if p["user"] == user]
        assert (params["room"], params["attempts"]) == (room, 5)
        [entry] = await _audit(sg, room, "backstop.remove_failed", user)
        assert entry.details["attempts"] == 5 and entry.details["reason"] == "not_verified"
        [row] = await _rows(sg.db, user)
        assert row["attempts"] >= 5 and row["alerted"]
        assert failing.matched >= 5
        assert await _joined(doc, room, user)  # not removed, and not forgotten

        faulty.proxy.remove(failing)  # the homeserver recovers
        passed = faulty.proxy.watch("POST", kick_path(room))
        await wait_until(lambda: _gone(doc, room, user), timeout=REMOVAL_TIMEOUT)
        await wait_until(lambda: _no_rows(sg.db, user), timeout=30)
        assert passed.matched == 1
    await wait_until(lambda: _audit(sg, room, "backstop.removed", user), timeout=30)
    # Alerted once, not on every later failure.
    assert len(await _audit(sg, room, "backstop.remove_failed", user)) == 1
    assert [k for k, p in alerts if p["user"] == user] == ["alert.remove_failed"]


async def test_unverify_command_while_kicks_fail(faulty: DevStack) -> None:
    """`!sg unverify` answers and commits the removals at once; the homeserver refusing
    the kicks only delays them."""
    sg = _sg(faulty)
    admin, admin_room_id = await admin_room(faulty)
    doc = await _practitioner(faulty, "doc", DOCTOR)
    async with admin, doc:
        user, client, rooms = await _member_of(faulty, doc, 3)
        await client.close()
        failing = faulty.proxy.fail("POST", kick_path(*rooms))

        await admin.send_text(admin_room_id, f"!sg unverify {user}")
        reply = await admin.wait_for_recent(
            admin_room_id, bot_says(faulty, f"{user} n'est plus vérifié"), timeout=30
        )
        assert "3 salon(s)" in reply["content"]["body"]
        # The rows were committed with the unbinding, before the reply was sent.
        assert {r["room_id"] for r in await _rows(sg.db, user)} == set(rooms)
        assert sg.verifications.verification(user) is None

        await wait_until(lambda: _all_tried(sg.db, user, rooms), timeout=REMOVAL_TIMEOUT)
        assert failing.matched >= len(rooms)
        for room in rooms:
            assert await _joined(doc, room, user)
        assert {r["room_id"] for r in await _rows(sg.db, user)} == set(rooms)

        faulty.proxy.remove(failing)
        for room in rooms:
            await wait_until(lambda room=room: _gone(doc, room, user), timeout=REMOVAL_TIMEOUT)
        await wait_until(lambda: _no_rows(sg.db, user), timeout=30)
    entries = await sg.audit.recent(50, room_id=admin_room_id)
    assert any(e.action == "identity.unbound" and e.subject == user for e in entries)


async def _all_tried(db: Database, user: str, rooms: list[str]) -> bool:
    """Every room's removal is pending and was tried (and refused) at least once."""
    rows = await _rows(db, user)
    return {r["room_id"] for r in rows} == set(rooms) and all(r["attempts"] >= 1 for r in rows)


async def test_reconcile_sweep_removes_a_member_whose_join_was_missed(
    faulty: DevStack,
) -> None:
    """Nothing depends on one event. A Synapse server admin (not a practitioner) joins a
    protected public room: Synapse skips the join gate for server admins
    (``user_may_join_room`` is not called), so only the backstop, seeing the join event,
    would remove them. SantéGuard is made to miss that event: while the join is
    delivered, the backstop's ``m.room.member`` handler is wrapped so that it drops that
    one join (the transaction is acked and handled, the backstop never sees it). Nothing
    is planned; the reconcile sweep, reading the room's members from the homeserver,
    plans the removal and the worker carries it out."""
    sg = _sg(faulty)
    doc = await _practitioner(faulty, "doc", DOCTOR)
    root_user, root = await faulty.user(uniq("root"), admin=True)
    intruder = root_user.user_id
    async with doc, root:
        room = await protected_room(faulty, doc, preset="public_chat")
        missed = asyncio.Event()
        handlers = sg.routes._handlers["m.room.member"]  # the routes' registry (private)
        original = list(handlers)

        def blind(handler: Callable[[dict[str, Any]], Awaitable[bool]]) -> Any:
            async def handle(event: dict[str, Any]) -> bool:
                if (
                    event.get("state_key") == intruder
                    and event.get("content", {}).get("membership") == "join"
                ):
                    missed.set()
                    return False
                return await handler(event)

            return handle

        handlers[:] = [
            (blind(h) if getattr(h, "__self__", None) is sg.backstop else h, own)
            for h, own in original
        ]
        try:
            await root.join(room)  # past the gate: server admins are not asked about
            await asyncio.wait_for(missed.wait(), 30)
        finally:
            handlers[:] = original
        assert await _joined(doc, room, intruder)
        assert not await _known(faulty, room, intruder)  # SantéGuard never saw the join
        assert await _no_rows(sg.db, intruder)  # and nothing was planned

        watched = faulty.proxy.watch("POST", kick_path(room))
        assert await sg.reconciler.sweep() >= 1
        await wait_until(lambda: _gone(doc, room, intruder), timeout=REMOVAL_TIMEOUT)
        await wait_until(lambda: _no_rows(sg.db, intruder), timeout=30)
        assert watched.matched == 1
    await wait_until(lambda: _audit(sg, room, "backstop.removed", intruder), timeout=30)
    [removed] = await _audit(sg, room, "backstop.removed", intruder)
    assert removed.details["trigger"] == "reconcile"
    assert removed.details["reason"] == "not_verified"


async def test_a_sweep_keeps_why_a_pending_removal_was_planned(faulty: DevStack) -> None:
    """A removal already pending (planned by the re-verification, the kicks failing)
    that the reconcile sweep re-derives (it runs at every start, then periodically)
    keeps its reason and trigger: the kick says the practitioner no longer practises,
    and the audit names the re-verification, not the sweep."""
    sg = _sg(faulty)
    doc = await _practitioner(faulty, "doc", DOCTOR)
    async with doc:
        user, client, [room] = await _member_of(faulty, doc, 1)
        await client.close()
        failing = faulty.proxy.fail("POST", kick_path(room))

        async def plan(conn: Any) -> None:
            await sg.enforcer.plan_unbound(
                conn, user, trigger="reverification", reason="no_longer_active"
            )

        await sg.verifications.unbind(user, then=plan)
        sg.enforcer.wake()
        await wait_until(lambda: _all_tried(sg.db, user, [room]), timeout=REMOVAL_TIMEOUT)
        assert await sg.reconciler.sweep() >= 1
        [row] = await _rows(sg.db, user)
        faulty.proxy.remove(failing)
        await wait_until(lambda: _gone(doc, room, user), timeout=REMOVAL_TIMEOUT)
        kick = await doc.wait_for_recent(
            room,
            lambda ev: (
                ev.get("type") == "m.room.member"
                and ev.get("state_key") == user
                and ev["content"].get("membership") == "leave"
            ),
        )
    await wait_until(lambda: _audit(sg, room, "backstop.removed", user), timeout=30)
    [removed] = await _audit(sg, room, "backstop.removed", user)
    assert (row["reason"], row["trigger"]) == ("no_longer_active", "reverification")
    assert "n'exerce plus selon l'Annuaire Santé" in kick["content"]["reason"]
    assert removed.details == {"reason": "no_longer_active", "trigger": "reverification"}


# -- SIGKILL between the unbinding and the kick --------------------------------------------


def _plain(value: Any) -> Any:
    """A config dump with its secrets in clear, for the child process's YAML file."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _write_config(stack: DevStack, path: Path) -> Path:
    """The config the DevStack gives its in-process SantéGuard, as a file (mode 0600)."""
    data = _plain(stack.config().model_dump())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f, sort_keys=False, allow_unicode=True)
    return path


def _santeguard_command() -> list[str]:
    script = Path(sys.executable).parent / "santeguard"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bridge"]


def _spawn(config: Path, workdir: Path) -> subprocess.Popen[bytes]:
    """`santeguard run -c config` as a child process, its log in workdir/santeguard.log
    (the name tests/logscan.py searches for message texts)."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANTEGUARD_")}
    with (workdir / "santeguard.log").open("ab") as log:
        return subprocess.Popen(
            [*_santeguard_command(), "run", "-c", str(config)],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def _wait_listening(stack: DevStack, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the child answers /health; then make Synapse retry its queued transactions
    now (the appservice ping) rather than after its backoff."""
    url = f"http://127.0.0.1:{stack.as_port}/health"

    async def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"santeguard exited with {proc.returncode}:\n{_tail(log)}")
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with aiohttp.ClientSession() as http, http.get(url) as resp:
                return resp.status == 200
        return False

    await wait_until(up, timeout=60)
    await _ping(stack)


async def _ping(stack: DevStack) -> None:
    """MSC2659 ping: Synapse checks the appservice and, if it answers, retries at once
    the transactions it queued while the appservice was down."""
    url = f"{stack.synapse.base_url}/_matrix/client/v1/appservice/santeguard/ping"
    with contextlib.suppress(aiohttp.ClientError, OSError):
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
            http.post(url, json={}, headers={"Authorization": f"Bearer {stack.as_token}"}),
        ):
            pass


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


async def _end(proc: subprocess.Popen[bytes], sig: int, timeout: float = 30) -> None:
    """Signal our child (by its pid) and reap it, SIGKILL if it lingers. Waited in a
    thread: a stopping child may still call the proxy, which runs on this loop."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        await asyncio.to_thread(proc.wait, timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        await asyncio.to_thread(proc.wait, timeout)


async def _audited_removals(db: Database, user: str, rooms: list[str]) -> bool:
    rows = await db.fetch(
        "SELECT room_id FROM audit_log WHERE subject = $1 AND action = 'backstop.removed'", user
    )
    return {r["room_id"] for r in rows} == set(rooms)


async def test_sigkill_between_unbinding_and_kick(faulty: DevStack, tmp_path: Path) -> None:
    """SantéGuard runs as its own process (`santeguard run`). `!sg unverify` commits the
    unbinding and one enforcement row per room; the kicks fail at the proxy; the
    process is SIGKILLed with the rows pending; a new process on the same database,
    with the homeserver healthy again, removes the user from every room."""
    stack = faulty
    admin, admin_room_id = await admin_room(stack)
    doc = await _practitioner(stack, "doc", DOCTOR)
    procs: list[subprocess.Popen[bytes]] = []
    db: Database | None = None
    async with admin, doc:
        user, client, rooms = await _member_of(stack, doc, 3)
        await client.close()
        failing = stack.proxy.fail("POST", kick_path(*rooms))
        config = _write_config(stack, tmp_path / "santeguard.yaml")
        db_uri = stack.config().database.uri
        await stack.stop_santeguard()  # from here on only the child processes run
        try:
            first = _spawn(config, tmp_path / "run-1")
            procs.append(first)
            await _wait_listening(stack, first, tmp_path / "run-1" / "santeguard.log")
            await admin.send_text(admin_room_id, f"!sg unverify {user}")
            await admin.wait_for_recent(
                admin_room_id, bot_says(stack, f"{user} n'est plus vérifié"), timeout=60
            )
            db = open_database(db_uri)
            await db.start()
            await wait_until(lambda: _all_tried(db, user, rooms), timeout=REMOVAL_TIMEOUT)

            await _end(first, signal.SIGKILL)
            assert first.returncode == -signal.SIGKILL
            assert {r["room_id"] for r in await _rows(db, user)} == set(rooms)
            for room in rooms:
                assert await _joined(doc, room, user)
            kicks_refused = failing.matched
            assert kicks_refused >= len(rooms)

            stack.proxy.remove(failing)  # the homeserver is healthy again
            passed = stack.proxy.watch("POST", kick_path(*rooms))
            second = _spawn(config, tmp_path / "run-2")
            procs.append(second)
            await _wait_listening(stack, second, tmp_path / "run-2" / "santeguard.log")
            for room in rooms:
                await wait_until(lambda room=room: _gone(doc, room, user), timeout=REMOVAL_TIMEOUT)
            await wait_until(lambda: _no_rows(db, user), timeout=30)
            assert passed.matched == len(rooms)  # each room's kick once, by the new process
            await wait_until(lambda: _audited_removals(db, user, rooms), timeout=30)
            await _end(second, signal.SIGTERM)
            assert second.returncode == 0
        finally:
            for proc in procs:
                await _end(proc, signal.SIGKILL)
            if db is not None:
                await db.stop()
            sg = await stack.start_santeguard()  # the session's stack, as it was
            await asyncio.wait_for(sg.bot_ready.wait(), 60)
            await _ping(stack)
    verification = _sg(stack).verifications.verification(user)
    assert verification is None  # the unbinding survived the kill too
