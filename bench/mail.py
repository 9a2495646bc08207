"""The mail bridge on production-like traffic, against the bare transports, in one run.

Per SantéGuard database (``--db``, SQLite and PostgreSQL by default): a throwaway
Synapse + SantéGuard with the mail bridge on (``bench/mail_host.py``, its own process,
as deployed, logging at INFO), the lab mail service (``MailLab``: an aiosmtpd relay
demanding STARTTLS and a client certificate, Dovecot with IMAP over TLS), and a
verified practitioner on matrix-nio (vodozemac) in a protected, encrypted room linked
to a correspondent. Each sent mail is confirmed in the room (``notify_sent``, on).

1. Matrix → SMTP latency: from the practitioner's ``room_send`` returning to the relay
   accepting the mail (its DATA hook), ``--messages`` messages one at a time, each after
   the previous one's "✓ sent" notice. Baseline, interleaved message by message: the
   same mail (a fresh Message-ID) sent to the same relay by aiosmtplib over one kept
   STARTTLS connection with the client certificate (the bare transport).
2. IMAP → room: from ``Dovecot.deliver`` (LMTP, as the operator's MTA hands mail over)
   to the practitioner's client holding the decrypted message, ``--inbound`` replies
   one after another. Baseline, on the same mails: a bare aioimaplib client in IDLE
   on the same mailbox, told of the mail (EXISTS) and having fetched it.
3. Throughput: ``--burst`` messages (``--concurrency`` sends in flight) while the relay
   holds the first mail in DATA, as a slow relay would, so that they pile up in the
   outbox; once all are queued (or 25 s after the hold began: SantéGuard's SMTP client
   waits 30 s for a reply) the relay lets go and the queue drains: mails/s = mail
   queued at the release / time until the last of them is accepted. Synapse's own
   pace taking the sends is printed beside it. Baseline: as many mails sent back to
   back by the bare transport.

    python -m bench.mail                     # SQLite and PostgreSQL, ~5 minutes
    python -m bench.mail --db sqlite --profile-dir /tmp/sg-mail-prof
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import Summary
from bench.mail_host import Host, spawn_host
from bench.mail_probes import Accepts, BareIdle, BareSmtp, message_id
from bridge.devtools.maillab import CORRESPONDENT, MailLab
from bridge.devtools.nio_peer import NioPeer, notice_from
from bridge.mail.policy import message_id_for, room_tag, tagged_address

PG_ADMIN = os.environ.get("SANTEGUARD_TEST_PG", "postgres://postgres@127.0.0.1:5432/test")
DOMAIN = "cpts.mssante.test"
HOLD_MAX = 25.0  # s: SantéGuard's SMTP client gives up on a reply after 30 s


@dataclass
class Figures:
    out: Summary = field(default_factory=lambda: Summary([]))
    out_bare: Summary = field(default_factory=lambda: Summary([]))
    send_ms: Summary = field(default_factory=lambda: Summary([]))
    burst_rate: float = 0.0
    burst_send_rate: float = 0.0
    burst_backlog: int = 0
    burst_bare_rate: float = 0.0
    inbound: Summary = field(default_factory=lambda: Summary([]))
    idle_notified: Summary = field(default_factory=lambda: Summary([]))
    idle_fetched: Summary = field(default_factory=lambda: Summary([]))
    relay_connections: int = 0
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds each part took

    def lap(self, name: str, since: float) -> float:
        now = time.monotonic()
        self.phases[name] = now - since
        return now


async def _db_uri(kind: str, workdir: Path) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'santeguard.db'}", None
    name = f"sg_bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(PG_ADMIN)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    base, _, _ = PG_ADMIN.rpartition("/")
    return f"{base}/{name}", name


async def _postgres_up() -> bool:
    try:
        conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


async def _drop(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


class Room:
    """The practitioner's linked, encrypted room and what was confirmed in it."""

    def __init__(self, peer: NioPeer, room_id: str, bot: str, notices: bool) -> None:
        self.notices = notices
        self.peer = peer
        self.room_id = room_id
        self.bot = bot
        self.sent_notice = notice_from(bot, "✓")

    def confirmations(self) -> int:
        return sum(1 for e in self.peer.events.get(self.room_id, []) if self.sent_notice(e))

    async def confirmed(self, count: int, timeout: float = 60) -> None:
        if not self.notices:
            return
        await self.peer.wait_until(lambda: self.confirmations() >= count, timeout)


async def _linked_room(peer: NioPeer, bot: str, notices: bool) -> Room:
    room_id = await peer.create_encrypted_room(invite=(bot,), name="RCP cardio")
    await peer.wait_for_member(room_id, bot)
    since = peer.mark(room_id)
    await peer.send_text(room_id, f"!sg mail link {CORRESPONDENT}")
    await peer.wait_for(room_id, notice_from(bot, CORRESPONDENT), since=since, timeout=30)
    return Room(peer, room_id, bot, notices)


def _text(i: int) -> str:
    return (
        f"Bonjour, avis cardio pour le patient {i} : ECG ci-dessus, douleur thoracique "
        "atypique depuis trois jours, pas de signe de gravité. Pouvez-vous le voir cette "
        "semaine ? Merci."
    )


async def _outbound_latency(
    room: Room, accepts: Accepts, bare: BareSmtp, n: int, warmup: int, f: Figures
) -> None:
    """One message at a time; after each, the same mail once through the bare transport."""
    out, out_bare, send = [], [], []
    for i in range(warmup + n):
        confirmed = room.confirmations()
        start = time.perf_counter()
        event_id = await room.peer.send_text(room.room_id, _text(i))
        sent = time.perf_counter()
        mid = message_id_for(event_id, DOMAIN)
        accepted = await accepts.wait(mid)
        await room.confirmed(confirmed + 1)
        raw = accepts.fresh(mid, f"bare{i}", DOMAIN)
        t0 = time.perf_counter()
        await bare.send(raw, CORRESPONDENT)
        bare_accepted = await accepts.wait(message_id(raw))
        if i >= warmup:
            out.append((accepted - sent) * 1000)
            send.append((sent - start) * 1000)
            out_bare.append((bare_accepted - t0) * 1000)
    f.out, f.out_bare, f.send_ms = Summary(out), Summary(out_bare), Summary(send)


class PendingMail:
    """Counts SantéGuard's pending outbox rows, read from its database (read-only)."""

    def __init__(self, db_uri: str) -> None:
        self._uri = db_uri
        self._pg: asyncpg.Connection | None = None

    async def count(self) -> int:
        query = "SELECT COUNT(*) FROM mail_outbox WHERE status = 'pending'"
        if self._uri.startswith("sqlite:///"):
            path = self._uri.removeprefix("sqlite:///")
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                return int(db.execute(query).fetchone()[0])
        if self._pg is None:
            self._pg = await asyncpg.connect(self._uri)
        return int(await self._pg.fetchval(query))

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg.close()


async def _burst(
    room: Room, accepts: Accepts, pending: PendingMail, n: int, concurrency: int, f: Figures
) -> None:
    """``n`` messages while the relay holds the first mail, then the queue drains.

    The hold ends when all ``n`` are queued, or ``HOLD_MAX`` after it began (SantéGuard's
    SMTP client waits 30 s for a reply); the drain rate counts the mail queued by then.
    """
    todo = list(range(n))
    mids: list[str] = []
    accepts.held, accepts.gate = 0.0, asyncio.Event()

    async def sender() -> None:
        while todo:
            i = todo.pop(0)
            event_id = await room.peer.send_text(room.room_id, _text(100_000 + i))
            mids.append(message_id_for(event_id, DOMAIN))

    async def send_all() -> float:
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        return time.perf_counter()

    start = time.perf_counter()
    sending = asyncio.ensure_future(send_all())
    while True:
        if accepts.held and time.perf_counter() - accepts.held >= HOLD_MAX:
            break
        if sending.done() and await pending.count() >= n:
            break
        await asyncio.sleep(0.05)
    backlog = await pending.count()
    release = time.perf_counter()
    accepts.gate.set()
    accepts.gate = None
    f.burst_send_rate = n / (await sending - start)
    times = sorted([await accepts.wait(mid, timeout=300) for mid in mids])
    f.burst_backlog = backlog
    if backlog:  # the first ``backlog`` accepted after the release are the queued ones
        f.burst_rate = backlog / (times[backlog - 1] - release)


async def _bare_burst(accepts: Accepts, bare: BareSmtp, raws: list[bytes], f: Figures) -> None:
    mids = [message_id(r) for r in raws]
    start = time.perf_counter()
    for raw in raws:
        await bare.send(raw, CORRESPONDENT)
    last = max([await accepts.wait(mid) for mid in mids])
    f.burst_bare_rate = len(raws) / (last - start)


def _reply(i: int, tag: str, run: str) -> tuple[bytes, str]:
    token = f"réponse-{run}-{i}"
    msg = EmailMessage()
    msg["From"] = f"Dr Claire Durand <{CORRESPONDENT}>"
    msg["To"] = tagged_address(f"cpts@{DOMAIN}", tag)
    msg["Subject"] = "Re: RCP cardio"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = f"<in.{run}.{i}@chu-exemple.mssante.test>"
    msg.set_content(f"Vu le patient, {token}. ECG normal, pas de suivi particulier.\n")
    return msg.as_bytes(policy=SMTP_POLICY), token


def _body_has(token: str) -> Callable[[Any], bool]:
    return lambda event: token in str(getattr(event, "body", ""))


async def _inbound(lab: MailLab, room: Room, n: int, warmup: int, f: Figures) -> None:
    assert lab.dovecot is not None
    idle = BareIdle(lab)
    await idle.start()
    tag, run = room_tag(room.room_id), secrets.token_hex(3)
    lat, notified, fetched = [], [], []
    try:
        for i in range(warmup + n):
            raw, token = _reply(i, tag, run)
            since = room.peer.mark(room.room_id)
            seen = len(idle.fetched)
            t0 = time.perf_counter()
            await lab.dovecot.deliver(raw, sender=CORRESPONDENT)
            event = await room.peer.wait_for(
                room.room_id, _body_has(token), since=since, timeout=60
            )
            await idle.wait_fetched(seen + 1)
            if i >= warmup:
                lat.append((room.peer.received_at[event.event_id] - t0) * 1000)
                notified.append((idle.notified[seen] - t0) * 1000)
                fetched.append((idle.fetched[seen] - t0) * 1000)
    finally:
        await idle.stop()
    f.inbound, f.idle_notified, f.idle_fetched = Summary(lat), Summary(notified), Summary(fetched)


async def run_db(kind: str, args: argparse.Namespace, tmp: Path) -> Figures:
    started = time.monotonic()
    workdir = tmp / kind
    workdir.mkdir(parents=True)
    f = Figures()
    db_uri, pg_name = await _db_uri(kind, workdir)
    lab = MailLab(workdir / "mail")
    await lab.start()
    accepts = Accepts(lab)
    assert lab.relay is not None
    profile = Path(args.profile_dir) / f"santeguard-{kind}.prof" if args.profile_dir else None
    host: Host = spawn_host(
        db_uri, workdir / "stack", lab.mail_config(notify_sent=not args.no_notices), profile
    )
    peer: NioPeer | None = None
    bare = BareSmtp(lab, f"cpts@{DOMAIN}")
    pending = PendingMail(db_uri)
    t = started
    try:
        info = await host.ready()
        peer = NioPeer(
            info["base_url"],
            info["user_id"],
            info["device_id"],
            info["access_token"],
            workdir / "peer",
        )
        await peer.start()
        room = await _linked_room(peer, info["bot"], not args.no_notices)
        await bare.start()
        t = f.lap("start", started)
        relay_before = lab.relay.connections
        await _outbound_latency(room, accepts, bare, args.messages, args.warmup, f)
        f.relay_connections = lab.relay.connections - relay_before
        t = f.lap("latency", t)
        await _inbound(lab, room, args.inbound, args.inbound_warmup, f)
        t = f.lap("inbound", t)
        sample = [m for m in accepts.raws if m.startswith("<sg.")]
        raws = [
            accepts.fresh(sample[i % len(sample)], f"bareburst{i}", DOMAIN)
            for i in range(args.burst)
        ]
        await _bare_burst(accepts, bare, raws, f)
        # Last: its "✓ sent" notices trail behind (the stack is stopped meanwhile).
        await _burst(room, accepts, pending, args.burst, args.concurrency, f)
        t = f.lap("burst", t)
    finally:
        await pending.close()
        await bare.close()
        if peer is not None:
            await peer.stop()
        await host.stop()
        await lab.stop()
        if pg_name:
            await _drop(pg_name)
    f.seconds = time.monotonic() - started
    f.lap("stop", t)
    return f


def _times(ratio: float) -> str:
    return f"×{ratio:.2f}" if ratio < 10 else f"×{ratio:.0f}"


def _row(kind: str, what: str, ours: str, bare: str, ratio: str, goal: str) -> str:
    return f"{kind:<9}{what:<34}{ours:>18}{bare:>16}{ratio:>8}  {goal}"


def report(kind: str, f: Figures, args: argparse.Namespace) -> list[str]:
    ok = {True: "✔", False: "✘"}
    return [
        _row(
            kind,
            f"Matrix→SMTP p50 / p99 ms (n={len(f.out.values_ms)})",
            f"{f.out.p50:.1f} / {f.out.p99:.1f}",
            f"{f.out_bare.p50:.1f} / {f.out_bare.p99:.1f}",
            _times(f.out.p50 / f.out_bare.p50),
            f"p50 < 100 ms {ok[f.out.p50 < 100]}",
        ),
        _row(
            kind,
            f"burst of {args.burst}: drain, mails/s",
            f"{f.burst_rate:.0f}",
            f"{f.burst_bare_rate:.0f}",
            f"{f.burst_rate / f.burst_bare_rate:.2f}",
            f"≥ 200/s {ok[f.burst_rate >= 200]}",
        ),
        _row(
            kind,
            f"IMAP→room p50 / p99 ms (n={len(f.inbound.values_ms)})",
            f"{f.inbound.p50:.0f} / {f.inbound.p99:.0f}",
            f"{f.idle_fetched.p50:.0f} / {f.idle_fetched.p99:.0f}",
            _times(f.inbound.p50 / f.idle_fetched.p50),
            f"p50 < 1 s {ok[f.inbound.p50 < 1000]}",
        ),
        f"{'':<9}  (room_send p50 {f.send_ms.p50:.1f} ms; burst: Synapse took the sends "
        f"at {f.burst_send_rate:.0f}/s, {f.burst_backlog} mails queued behind the held one "
        f"drained; bare IDLE told of the mail p50 {f.idle_notified.p50:.0f} ms; SMTP "
        f"connections opened by SantéGuard in part 1: {f.relay_connections}; {f.seconds:.0f} s: "
        + ", ".join(f"{name} {s:.0f}" for name, s in f.phases.items())
        + ")",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--db", choices=["sqlite", "postgres"], action="append")
    ap.add_argument("--messages", type=int, default=300, help="Matrix → SMTP latency samples")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=8, help="burst sends in flight")
    ap.add_argument("--inbound", type=int, default=100, help="IMAP → room latency samples")
    ap.add_argument("--inbound-warmup", type=int, default=5)
    ap.add_argument(
        "--no-notices",
        action="store_true",
        help="diagnostic: notify_sent off (no ✓ notice per mail in the room)",
    )
    ap.add_argument("--profile-dir", help="write a cProfile of each SantéGuard process here")
    args = ap.parse_args()
    if args.messages > 2000 or args.burst > 5000 or args.inbound > 1000:
        ap.error("keep the run bounded: ≤ 2,000 messages, ≤ 5,000 burst, ≤ 1,000 inbound")
    if args.profile_dir:
        Path(args.profile_dir).mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix="sg-bench-mail-"))
    print(
        f"{args.messages} messages (+{args.warmup} warm-up), burst {args.burst} "
        f"(concurrency {args.concurrency}), {args.inbound} inbound mails "
        f"(+{args.inbound_warmup}); load average {os.getloadavg()[0]:.2f}"
    )
    print(_row("db", "measure", "SantéGuard", "bare", "ratio", "goal"))
    try:
        for kind in args.db or ["sqlite", "postgres"]:
            if kind == "postgres" and not asyncio.run(_postgres_up()):
                print(f"postgres (skipped: nothing answers at {PG_ADMIN}; `make postgres`)")
                continue
            figures = asyncio.run(run_db(kind, args, tmp))
            print("\n".join(report(kind, figures, args)), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
