"""`make demo`: a throwaway Synapse and SantéGuard on loopback, narrated.

What it shows is what works today: the gate for verified practitioners (RPPS/ADELI checked
against the Annuaire Santé), forced end-to-end encryption, the `!sg` commands, the
hash-chained audit log and the secure-mail bridge (``demo_mail``: a room linked to a local
MSSanté-like mailbox, a mail out and an IHE XDM reply back in).

Everything lives in one working directory (``demo-data/`` by default: tokens, keys,
SQLite databases, the homeserver's files and the logs), created afresh on each run and
deleted when the demo stops, unless ``--keep`` is given or the demo fails (then it is kept
for diagnosis). The narration and the bot speak French by default (``--lang en`` for
English). ``--once`` ends after the scenario instead of running until Ctrl-C (the test
suite uses it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bot.i18n import Translator
from bridge.devtools import demo_mail
from bridge.devtools.client import MatrixError, SimpleClient
from bridge.devtools.demo_text import CATALOG
from bridge.devtools.maillab import MailLab
from bridge.devtools.nio_peer import NioPeer, notice_from
from bridge.devtools.stack import DevStack
from bridge.identity.sources.extract import import_extract
from bridge.ops.log import setup_logging
from bridge.report.cli import build_report
from bridge.report.render import render_html

SAMPLE = Path(__file__).resolve().parent / "demo_extract.txt"
ENCRYPTED = [
    {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
]


class Narrator:
    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.text = Translator(CATALOG, strict=True)
        self.t0 = time.monotonic()

    def say(self, key: str, **params: Any) -> None:
        elapsed = time.monotonic() - self.t0
        print(f"[{elapsed:6.2f}s] {self.text.t(key, self.lang, **params)}", flush=True)


def _is_bot_join(bot: str) -> Any:
    return lambda ev: (
        ev.get("type") == "m.room.member"
        and ev.get("state_key") == bot
        and ev.get("content", {}).get("membership") == "join"
    )


def _bot_notice(bot: str) -> Any:
    return lambda ev: ev.get("sender") == bot and ev.get("content", {}).get("msgtype") == "m.notice"


async def _wait(predicate: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("demo step did not complete in time")


async def _command(
    say: Narrator, client: SimpleClient, room: str, who: str, cmd: str, stack: DevStack
) -> None:
    say.say("cmd", who=who, cmd=cmd)
    since = int(time.time() * 1000) - 1
    await client.send_text(room, cmd)
    reply = await client.wait_for_recent(
        room,
        lambda ev: (
            ev.get("sender") == stack.bot_mxid
            and ev.get("origin_server_ts", 0) > since
            and ev.get("content", {}).get("msgtype") == "m.notice"
        ),
    )
    say.say("reply", reply=reply["content"]["body"].replace("\n", " | "))


async def _attempt(say: Narrator, action: Any) -> None:
    try:
        await action
    except MatrixError as e:
        say.say("refused", reason=e.error)
        return
    say.say("allowed")


async def scenario(
    stack: DevStack, say: Narrator, workdir: Path, lab: MailLab | None = None
) -> None:
    sg = stack.santeguard
    assert sg is not None and sg.gatekeeper is not None and sg.reverifier is not None
    report = await import_extract(sg.db, SAMPLE)
    say.say(
        "import",
        file=SAMPLE.name,
        read=report.rows_read,
        kept=report.rows_kept,
        rejected=report.rows_rejected,
        people=report.practitioners,
    )

    admin, admin_c = await stack.admin()
    doc_u, doc = await stack.user("dr.exemple", displayname="Dr Julien Exemple")
    ide_u, ide = await stack.user("ide.pansement", displayname="Julie Pansement")
    anon_u, anon = await stack.user("visiteur", displayname="Visiteur")
    say.say("users", users=", ".join(u.user_id for u in (admin, doc_u, ide_u, anon_u)))
    async with admin_c, doc, ide, anon:
        say.say("admin_room")
        admin_room = await admin_c.create_room(
            name="Administration SantéGuard", invite=(stack.bot_mxid,)
        )
        await _wait(lambda: _bot_in(admin_c, admin_room, stack.bot_mxid))
        await _wait(lambda: _unprotected(sg, admin_room))
        # On joining, the bot says what the room is (an admin room: no patient data).
        hello = await admin_c.wait_for_recent(admin_room, _bot_notice(stack.bot_mxid))
        say.say("reply", reply=hello["content"]["body"])
        for cmd in (
            "!sg ping",
            f"!sg verify {doc_u.user_id} 10999990012",
            f"!sg verify {ide_u.user_id} 10999990129",
            f"!sg verify {anon_u.user_id} 10999990013",
            "!sg annuaire pansement",
        ):
            await _command(say, admin_c, admin_room, "admin", cmd, stack)

        say.say("clear_room")
        await _attempt(say, doc.create_room(name="Staff (en clair)"))
        name = "RCP oncologie"
        room = await doc.create_room(name=name, initial_state=ENCRYPTED, preset="public_chat")
        control = stack.enforcer_mxid
        await _wait(lambda: _bot_in(doc, room, control))
        levels = await doc.request("GET", f"/rooms/{room}/state/m.room.power_levels")
        say.say("enc_room", name=name, pl=f"{control}: {levels['users'][control]}")
        say.say("invite_anon", user=anon_u.user_id)
        await _attempt(say, doc.invite(room, anon_u.user_id))
        say.say("join_anon", user=anon_u.user_id)
        await _attempt(say, anon.join(room))
        say.say("invite_nurse", user=ide_u.user_id)
        await _attempt(say, doc.invite(room, ide_u.user_id))
        await ide.join(room)
        say.say("clear_msg")
        await _attempt(say, doc.send_text(room, "Patient X : résultats de la biopsie"))
        await _retention(say, sg, doc, room, control)

        await _wait(lambda: _member(sg, room, ide_u.user_id))
        say.say("e2ee", name=name)
        await doc.invite(room, stack.bot_mxid)
        async with NioPeer(
            stack.synapse.base_url,
            doc_u.user_id,
            doc_u.device_id,
            doc_u.access_token,
            workdir / "dr-exemple-device",
        ) as peer:
            await peer.wait_for_member(room, stack.bot_mxid)
            # The bot says what it can read when it joins (in both languages: `!sg leave`).
            await peer.wait_for(room, notice_from(stack.bot_mxid, "!sg leave"), timeout=30)
            since = peer.mark(room)
            say.say("cmd", who="Dr Exemple", cmd="!sg encryption")
            await peer.send_text(room, "!sg encryption")
            reply = await peer.wait_for(room, notice_from(stack.bot_mxid), since=since, timeout=30)
            say.say("e2ee_reply", reply=reply.body.replace("\n", " | "))
            wire = await doc.request("GET", f"/rooms/{room}/event/{reply.event_id}")
            say.say("e2ee_wire", type=wire["type"], algorithm=wire["content"].get("algorithm"))
            if lab is not None:
                await demo_mail.scenario(stack, say, lab, peer, doc, "Dr Exemple")
        say.say("deactivate", user=ide_u.user_id)
        lines = SAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)
        newer = workdir / "extract-next.txt"
        newer.write_text("".join(x for x in lines if "|10999990129|" not in x), encoding="utf-8")
        await import_extract(sg.db, newer)
        result = await sg.reverifier.run_once()
        kick = await doc.wait_for_recent(
            room,
            lambda ev: (
                ev.get("type") == "m.room.member"
                and ev.get("state_key") == ide_u.user_id
                and ev.get("content", {}).get("membership") == "leave"
            ),
        )
        say.say(
            "removed",
            user=ide_u.user_id,
            n=len(result.removed_from.get(ide_u.user_id, [])),
            reason=kick["content"].get("reason", ""),
        )

    txns = await sg.db.fetchval("SELECT COUNT(*) FROM txn")
    say.say("durable", txns=txns, pending=await sg.queue.depth())
    check = await sg.audit.verify()
    state = (
        say.text.t("audit_ok", say.lang)
        if check.ok
        else say.text.t("audit_bad", say.lang, seq=check.first_bad_seq)
    )
    say.say("audit", n=check.entries, state=state)
    assert sg.sealer is not None
    sealed = await sg.sealer.checkpoint()
    if sealed is not None:
        say.say("sealed", seq=sealed.seq, file=sg.config.audit.checkpoint_file)
    data = await build_report(sg.config, say.lang)
    out = workdir / "rapport-dpo.html"
    out.write_text(render_html(data, sg.translator), encoding="utf-8")
    say.say("report", path=out)
    say.say("connect", hs=stack.synapse.base_url, user=doc_u.user_id, password=doc_u.password)


async def _retention(say: Narrator, sg: Any, doc: SimpleClient, room: str, control: str) -> None:
    """The room's retention: born with the network's, out of bounds refused, changed."""
    day = 86_400_000
    path = f"/rooms/{room}/state/m.room.retention"
    bounds = sg.config.retention.bounds
    born = await doc.request("GET", path)
    say.say(
        "retention_born",
        days=born["max_lifetime"] // day,
        low=bounds.min_ms // day,
        high=bounds.max_ms // day,
    )
    say.say("retention_long")
    await _attempt(say, doc.request("PUT", path, {"max_lifetime": 3650 * day}))
    say.say("retention_set")
    await _attempt(say, doc.request("PUT", path, {"max_lifetime": 90 * day}))
    told = await doc.wait_for_recent(
        room,
        lambda ev: (
            ev.get("sender") == control and "90" in str(ev.get("content", {}).get("body", ""))
        ),
    )
    say.say("control_notice", notice=told["content"]["body"])


async def _bot_in(client: SimpleClient, room: str, bot: str) -> bool:
    return bot in await client.joined_members(room)


async def _unprotected(sg: Any, room: str) -> bool:
    return not sg.gatekeeper.is_protected(room)


async def _member(sg: Any, room: str, user: str) -> bool:
    return user in await sg.room_policies.members_of(room)


MARKER = ".santeguard-demo"


def _is_demo_dir(path: Path) -> bool:
    """Ours to delete: empty, marked by a previous run, or an older run's layout."""
    if not path.is_dir():
        return False
    if (path / MARKER).exists() or not any(path.iterdir()):
        return True
    return (path / "registration.yaml").is_file() and (path / "synapse").is_dir()


async def main_async(workdir: Path, lang: str, once: bool, keep: bool = False) -> int:
    say = Narrator(lang)
    say.say("title")
    if workdir.exists():
        if not _is_demo_dir(workdir):
            say.say("not_demo_dir", path=workdir)
            return 2
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / MARKER).write_text(
        "Working directory of `python -m bridge.devtools.demo`, which deletes it.\n",
        encoding="utf-8",
    )
    failed = False
    try:
        await _run(say, workdir, lang, once, keep)
    except Exception:
        failed = True
        raise
    finally:
        disposed = _dispose(say, workdir, keep, failed)
    if not disposed:
        return 1
    say.say("done")
    return 0


def _dispose(say: Narrator, workdir: Path, keep: bool, failed: bool) -> bool:
    """Delete the working directory (unless kept) and say exactly what happened."""
    if failed:
        say.say("kept_failed", path=workdir, log=workdir / "santeguard.log")
        return True
    if keep:
        say.say("kept", path=workdir)
        return True
    try:
        shutil.rmtree(workdir)
    except OSError as e:
        say.say("delete_failed", path=workdir, error=e)
        return False
    say.say("deleted", path=workdir)
    return True


async def _run(say: Narrator, workdir: Path, lang: str, once: bool, keep: bool) -> None:
    log_file = (workdir / "santeguard.log").open("w", encoding="utf-8")
    fate = say.text.t("workdir_keep" if keep else "workdir_delete", say.lang)
    say.say("workdir", path=workdir, fate=fate)
    lab = demo_mail.new_lab(say, workdir)
    try:
        # The bot answers in the narration's language (refusals the homeserver shows
        # stay bilingual, this language first).
        overrides: dict[str, dict[str, Any]] = {"bot": {"language": lang}}
        if lab is not None:  # first: SantéGuard's mail section points at its ports
            overrides["mail"] = await demo_mail.start_lab(say, lab)
        stack = DevStack(
            workdir,
            db_uri=f"sqlite:///{(workdir / 'santeguard.db').resolve()}",
            admins=["@admin:santeguard.test"],
            config_overrides=overrides,
        )
        stack_secrets = [stack.as_token, stack.hs_token, stack.gate_token]
        stack_secrets += [lab.password] if lab is not None else []
        setup_logging("INFO", "text", stack_secrets, stream=log_file)
        say.say("start", db=workdir / "santeguard.db", hs=stack.synapse.base_url)
        say.say("logs", path=workdir / "santeguard.log")
        await _serve(say, stack, workdir, once, lab)
    finally:
        if lab is not None:
            with contextlib.suppress(Exception):
                await lab.stop()
        log_file.close()


async def _serve(
    say: Narrator, stack: DevStack, workdir: Path, once: bool, lab: MailLab | None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    try:
        await stack.start()
        say.say("started", s=time.monotonic() - started)
        await scenario(stack, say, workdir, lab)
        if not once:
            say.say("running")
            await stop.wait()
    finally:
        say.say("stopping" if lab is None else "stopping_mail")
        with contextlib.suppress(Exception):
            await stack.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="santeguard-demo", description=__doc__)
    ap.add_argument("--lang", choices=sorted(CATALOG), default="fr")
    ap.add_argument("--once", action="store_true", help="exit after the scenario")
    ap.add_argument("--workdir", type=Path, default=Path("demo-data"))
    ap.add_argument(
        "--keep",
        action="store_true",
        help="keep the working directory (tokens, keys, databases, logs) after the demo",
    )
    args = ap.parse_args(argv)
    return asyncio.run(main_async(args.workdir, args.lang, args.once, args.keep))


if __name__ == "__main__":
    sys.exit(main())
