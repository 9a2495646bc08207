"""`make demo`: a throwaway Synapse and SantéGuard on loopback, narrated.

Everything lives in ``demo-data/`` (SQLite, the homeserver's files), recreated on each run.
The narration is French by default (``--lang en`` for English). ``--once`` ends after the
scenario instead of running until Ctrl-C (the test suite uses it).
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

from ..log import setup_logging
from .stack import DevStack

TEXT: dict[str, dict[str, str]] = {
    "fr": {
        "title": "SantéGuard — démonstration (tout tourne en local, rien ne sort de cette machine)",
        "start": "Démarrage de SantéGuard (SQLite : {db}) puis d'un Synapse jetable sur {hs} …",
        "started": "Prêt en {s:.1f} s : le homeserver livre ses transactions à SantéGuard, et "
        "appelle sa porte synchrone (module synapse_http_antispam) avant chaque invitation, "
        "entrée ou message.",
        "logs": "Journaux de SantéGuard : {path}",
        "users": "Comptes de démonstration créés : {users}",
        "room": "Le Dr Martin crée le salon « {name} » et invite le bot {bot}.",
        "joined": "Le bot a rejoint le salon (invitation traitée depuis la file durable).",
        "cmd": "Le Dr Martin tape : {cmd}",
        "reply": "Réponse du bot : {reply}",
        "audit": "Journal d'audit : {n} décisions enregistrées, chaîne de hachage {state}.",
        "audit_ok": "intacte",
        "audit_bad": "CASSÉE à l'entrée {seq}",
        "durable": "Chaque transaction du homeserver est écrite en base avant d'être acquittée : "
        "{txns} transactions reçues, {pending} événements en attente.",
        "connect": "Pour vous connecter avec un client Matrix (Element, etc.) :\n"
        "  homeserver : {hs}\n  identifiant : {user}   mot de passe : {password}\n"
        "  (identifiants jetables, détruits à l'arrêt de la démo)",
        "running": "La démo tourne. Ctrl-C pour tout arrêter.",
        "stopping": "Arrêt : SantéGuard, puis Synapse. Aucun processus ne reste derrière.",
        "done": "Terminé.",
    },
    "en": {
        "title": "SantéGuard — demo (everything runs locally; nothing leaves this machine)",
        "start": "Starting SantéGuard (SQLite: {db}), then a throwaway Synapse on {hs} …",
        "started": "Ready in {s:.1f} s: the homeserver delivers its transactions to SantéGuard "
        "and calls its synchronous gate (synapse_http_antispam module) before every invite, "
        "join or message.",
        "logs": "SantéGuard's logs: {path}",
        "users": "Demo accounts created: {users}",
        "room": "Dr Martin creates the room “{name}” and invites the bot {bot}.",
        "joined": "The bot joined the room (the invite was handled from the durable queue).",
        "cmd": "Dr Martin types: {cmd}",
        "reply": "Bot reply: {reply}",
        "audit": "Audit log: {n} decisions recorded, hash chain {state}.",
        "audit_ok": "intact",
        "audit_bad": "BROKEN at entry {seq}",
        "durable": "Every homeserver transaction is written to the database before it is "
        "acked: {txns} transactions received, {pending} events pending.",
        "connect": "To connect with a Matrix client (Element, …):\n"
        "  homeserver: {hs}\n  username: {user}   password: {password}\n"
        "  (throwaway credentials, destroyed when the demo stops)",
        "running": "The demo is running. Ctrl-C stops everything.",
        "stopping": "Stopping SantéGuard, then Synapse. No process is left behind.",
        "done": "Done.",
    },
}


class Narrator:
    def __init__(self, lang: str) -> None:
        self.text = TEXT[lang]
        self.t0 = time.monotonic()

    def say(self, key: str, **params: Any) -> None:
        elapsed = time.monotonic() - self.t0
        print(f"[{elapsed:6.2f}s] {self.text[key].format(**params)}", flush=True)


def _is_bot_join(bot: str) -> Any:
    return lambda ev: (
        ev.get("type") == "m.room.member"
        and ev.get("state_key") == bot
        and ev.get("content", {}).get("membership") == "join"
    )


def _bot_notice(bot: str) -> Any:
    return lambda ev: ev.get("sender") == bot and ev.get("content", {}).get("msgtype") == "m.notice"


async def scenario(stack: DevStack, say: Narrator) -> None:
    assert stack.santeguard is not None
    martin, martin_c = await stack.user("dr.martin", displayname="Dr Julien Martin")
    durand, durand_c = await stack.user("inf.durand", displayname="Claire Durand (IDE)")
    say.say("users", users=f"{martin.user_id}, {durand.user_id}")
    async with martin_c, durand_c:
        name = "Concertation pluriprofessionnelle"
        say.say("room", name=name, bot=stack.bot_mxid)
        room = await martin_c.create_room(invite=(stack.bot_mxid,), name=name)
        await martin_c.wait_for_event(room, _is_bot_join(stack.bot_mxid))
        say.say("joined")
        for cmd in ("!sg ping", "!sg status"):
            say.say("cmd", cmd=cmd)
            await martin_c.send_text(room, cmd)
            reply = await martin_c.wait_for_event(room, _bot_notice(stack.bot_mxid))
            say.say("reply", reply=reply["content"]["body"].replace("\n", " | "))
        sg = stack.santeguard
        txns = await sg.db.fetchval("SELECT COUNT(*) FROM txn")
        say.say("durable", txns=txns, pending=await sg.queue.depth())
        check = await sg.audit.verify()
        state = (
            say.text["audit_ok"]
            if check.ok
            else say.text["audit_bad"].format(seq=check.first_bad_seq)
        )
        say.say("audit", n=check.entries, state=state)
        say.say("connect", hs=stack.synapse.base_url, user=martin.user_id, password=martin.password)


async def main_async(workdir: Path, lang: str, once: bool) -> int:
    say = Narrator(lang)
    say.say("title")
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    log_file = (workdir / "santeguard.log").open("w", encoding="utf-8")
    stack_secrets: list[str] = []
    stack = DevStack(
        workdir,
        db_uri=f"sqlite:///{(workdir / 'santeguard.db').resolve()}",
        admins=["@dr.martin:santeguard.test"],
    )
    stack_secrets += [stack.as_token, stack.hs_token, stack.gate_token]
    setup_logging("INFO", "text", stack_secrets, stream=log_file)
    say.say("start", db=workdir / "santeguard.db", hs=stack.synapse.base_url)
    say.say("logs", path=workdir / "santeguard.log")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    try:
        await stack.start()
        say.say("started", s=time.monotonic() - started)
        await scenario(stack, say)
        if not once:
            say.say("running")
            await stop.wait()
    finally:
        say.say("stopping")
        with contextlib.suppress(Exception):
            await stack.stop()
        log_file.close()
    say.say("done")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="santeguard-demo", description=__doc__)
    ap.add_argument("--lang", choices=sorted(TEXT), default="fr")
    ap.add_argument("--once", action="store_true", help="exit after the scenario")
    ap.add_argument("--workdir", type=Path, default=Path("demo-data"))
    args = ap.parse_args(argv)
    return asyncio.run(main_async(args.workdir, args.lang, args.once))


if __name__ == "__main__":
    sys.exit(main())
