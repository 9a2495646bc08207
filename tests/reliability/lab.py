"""A real Synapse and SantéGuard as a child process (`santeguard run`), to kill and restart.

Why its own stack rather than the session's ``gated_stack``: these tests send messages
while SantéGuard is down, which Synapse only accepts when ``check_event_for_spam`` is not
routed to SantéGuard's gate (with it, failing closed, nobody can write while SantéGuard is
down: the events that wait at the homeserver are then only those accepted just before a
crash). Invites, joins and room creation still go through the gate, so the rooms are
protected and encrypted as in production, and clear text that gets into them is
redacted by the backstop (``e2ee/forced.py``): an effect the homeserver records, which
is how handling is counted. The bot's device is off (it is in none of these rooms).

Everything counted comes from the two databases: SantéGuard's (``txn`` bodies, done
marks, dead letters, audit entries) and Synapse's own SQLite file
(``application_services_txns``: what it still owes the appservice; ``events`` and
``redactions``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from mautrix.util.async_db import Database

from bridge.devtools.client import MatrixError, SimpleClient
from bridge.devtools.stack import DevStack
from tests.test_enforcement_durable import _end, _spawn, _tail

AS_ID = "santeguard"  # the registration's id (bridge/devtools/stack.py)
PATIENCE = 240.0  # upper bound of every wait (a loaded machine is slow, not wrong)
SENDERS = 16  # concurrent sends by the practitioner's client
MEGOLM = {
    "algorithm": "m.megolm.v1.aes-sha2",
    "sender_key": "c2VuZGVyLWtleS1vZi10aGUtdGVzdA",
    "session_id": "c2Vzc2lvbi1vZi10aGUtdGVzdA",
    "device_id": "RELIABILITY",
}


def figure(tag: str, name: str, value: object) -> None:
    print(f"[{tag}] {name}: {value}", flush=True)


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = PATIENCE) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


@dataclass
class Lab:
    """The stack (its in-process SantéGuard stopped), the sender and the rooms."""

    stack: DevStack
    sender: SimpleClient
    rooms: list[str]
    config: Path
    db_uri: str
    db: Database
    kind: str
    sent: dict[str, tuple[str, bool]] = field(default_factory=dict)  # id -> (room, clear)

    @property
    def synapse_db(self) -> Path:
        return self.stack.synapse.workdir / "homeserver.db"


class Child:
    """SantéGuard as a child process of the test, one at a time."""

    def __init__(self, lab: Lab, workdir: Path) -> None:
        self.lab = lab
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def log(self) -> Path:
        return self.workdir / f"run-{self.runs}" / "santeguard.log"

    def spawn(self) -> subprocess.Popen[bytes]:
        assert self.proc is None or self.proc.poll() is not None
        self.runs += 1
        self.proc = _spawn(self.lab.config, self.workdir / f"run-{self.runs}")
        return self.proc

    async def listening(self) -> float:
        """Until the child answers /health; returns that moment (monotonic)."""
        url = f"http://127.0.0.1:{self.lab.stack.as_port}/health"
        proc = self.proc
        assert proc is not None
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            deadline = time.monotonic() + PATIENCE
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise AssertionError(f"santeguard exited {proc.returncode}:\n{_tail(self.log)}")
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with http.get(url) as resp:
                        if resp.status == 200:
                            return time.monotonic()
                await asyncio.sleep(0.02)
        raise AssertionError("santeguard did not listen in time")

    async def metric(self, name: str, **labels: str) -> float:
        """A sample of the child's /metrics (0 when absent)."""
        url = f"http://127.0.0.1:{self.lab.stack.as_port}/metrics"
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            text = await resp.text()
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        prefix = f"{name}{{{want}}} " if want else f"{name} "
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line.split()[-1])
        return 0.0

    async def kill(self) -> None:
        if self.proc is not None:
            await _end(self.proc, signal.SIGKILL)

    async def terminate(self) -> int:
        assert self.proc is not None
        await _end(self.proc, signal.SIGTERM)
        return int(self.proc.returncode)


async def send(lab: Lab, index: int, room: str, clear: bool, tag: str) -> str:
    """One event through Synapse, retried with the same transaction ID (as clients do:
    a retry after a lost answer returns the first event, never a second one)."""
    if clear:
        kind, content = "m.room.message", {"msgtype": "m.text", "body": f"c{index}"}
    else:
        kind, content = "m.room.encrypted", {**MEGOLM, "ciphertext": f"QUJD{index:08d}"}
    path = f"/rooms/{quote(room)}/send/{kind}/{tag}-{index}"
    for attempt in range(20):
        try:
            data = await lab.sender.request("PUT", path, content)
        except (MatrixError, aiohttp.ClientError, TimeoutError):
            if attempt == 19:
                raise
            await asyncio.sleep(0.2 * (attempt + 1))
            continue
        event_id = str(data["event_id"])
        lab.sent[event_id] = (room, clear)
        return event_id
    raise AssertionError("unreachable")


def stored_event_ids(rows: list[Any]) -> Counter[str]:
    """How many times each event ID is in the stored transactions' bodies."""
    seen: Counter[str] = Counter()
    for row in rows:
        for event in json.loads(bytes(row["body"])).get("events") or []:
            if isinstance(event, dict) and isinstance(event.get("event_id"), str):
                seen[event["event_id"]] += 1
    return seen


async def stored(lab: Lab) -> Counter[str]:
    return stored_event_ids(await lab.db.fetch("SELECT body FROM txn"))


async def pending_event_ids(lab: Lab) -> set[str]:
    rows = await lab.db.fetch("SELECT body FROM txn WHERE status = 'pending'")
    return set(stored_event_ids(rows))


async def pending_txns(lab: Lab) -> int:
    return int(await lab.db.fetchval("SELECT COUNT(*) FROM txn WHERE status = 'pending'") or 0)


def _synapse_query(path: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return list(conn.execute(sql, args).fetchall())
    finally:
        conn.close()


async def synapse(lab: Lab, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read Synapse's own database (its SQLite file), in a thread."""
    return await asyncio.to_thread(_synapse_query, lab.synapse_db, sql, args)


async def owed(lab: Lab) -> dict[int, list[str]]:
    """Transactions (their events) Synapse still owes the appservice, by Synapse's ID."""
    rows = await synapse(
        lab, "SELECT txn_id, event_ids FROM application_services_txns WHERE as_id = ?", AS_ID
    )
    return {int(r[0]): list(json.loads(r[1])) for r in rows}


async def undelivered(lab: Lab) -> tuple[int, int]:
    """How many transactions (and events) Synapse still owes the appservice."""
    txns = await owed(lab)
    return len(txns), sum(len(events) for events in txns.values())


async def appservice_up(lab: Lab) -> bool:
    """Whether Synapse holds the appservice up (no recoverer retrying its transactions)."""
    rows = await synapse(lab, "SELECT state FROM application_services_state WHERE as_id = ?", AS_ID)
    return not rows or rows[0][0] in (None, "up")


class Strands:
    """Owed transactions Synapse will not send by itself.

    Synapse 1.163 leaves a transaction behind when it is created while its recoverer
    finishes: ``_TransactionController.send`` read the state "down" (so it does not send),
    the recoverer found nothing left and set "up", and nothing sends it until the next
    failed delivery starts a recoverer (synapse/appservice/scheduler.py). Seen here as a
    transaction still owed ``settle`` seconds after the appservice is up again (a normal
    one is sent within milliseconds of its creation).
    """

    def __init__(self, lab: Lab, settle: float = 5.0) -> None:
        self.lab = lab
        self.settle = settle
        self._since: dict[int, float] = {}

    async def stranded(self) -> list[int]:
        txns = await owed(self.lab)
        if not await appservice_up(self.lab):
            self._since.clear()
            return []
        now = time.monotonic()
        self._since = {t: self._since.get(t, now) for t in txns}
        return sorted(t for t, since in self._since.items() if now - since >= self.settle)


async def accepted(lab: Lab) -> set[str]:
    """The test's events as Synapse stored them (sender and rooms of the lab)."""
    marks = ",".join("?" for _ in lab.rooms)
    rows = await synapse(
        lab,
        f"SELECT event_id FROM events WHERE sender = ? AND room_id IN ({marks}) "
        "AND type IN ('m.room.message', 'm.room.encrypted')",
        lab.sender.user_id,
        *lab.rooms,
    )
    return {str(r[0]) for r in rows}


async def redactions(lab: Lab, targets: set[str]) -> Counter[str]:
    """Redaction events Synapse holds, per redacted event (of ``targets``)."""
    rows = await synapse(lab, "SELECT redacts FROM redactions")
    return Counter(str(r[0]) for r in rows if str(r[0]) in targets)


async def audited_redactions(lab: Lab) -> Counter[str]:
    rows = await lab.db.fetch("SELECT details FROM audit_log WHERE action = 'backstop.redacted'")
    return Counter(str(json.loads(r["details"]).get("event_id")) for r in rows)
