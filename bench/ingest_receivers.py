"""The receivers of the ingest benchmark, each run in a child process of its own.

Each takes its arguments, then the port and an event to set once it listens, and serves
until SIGTERM. SantéGuard's can be profiled: pyinstrument when it is installed (it
samples, so asyncio's callbacks are charged to what they do), cProfile otherwise; the
profile is written when the receiver is told to stop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.common import HS_TOKEN, make_config, wait_stop
from bench.ingest_traffic import ProductionTraffic, protect


async def _until_sigterm() -> None:
    """Until SIGTERM, or the benchmark's own end: no receiver outlives the run."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await wait_stop(stop, os.getppid(), 3600)


def serve_bare(port: int, ready: Any) -> None:
    """The floor: token check, JSON parse, 200."""

    async def handler(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {HS_TOKEN}":
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        json.loads(await request.read())
        return web.json_response({})

    async def main() -> None:
        app = web.Application(client_max_size=10 * 1024 * 1024)
        app.router.add_put("/_matrix/app/v1/transactions/{txn}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await _until_sigterm()

    asyncio.run(main())


def serve_floor(db_uri: str, port: int, ready: Any) -> None:
    """The durable floor: the bare handler plus one committed INSERT of the raw body
    before the 200 (SQLite ``synchronous=FULL`` in WAL mode, from a worker thread so
    the loop never waits on an fsync; or PostgreSQL through asyncpg). What a receiver
    pays that parses, then stores, one commit each; SantéGuard on PostgreSQL sends its
    insert first and parses while the database commits."""
    import sqlite3
    from concurrent.futures import ThreadPoolExecutor

    sql = "INSERT INTO txn (id, body) VALUES ($1, $2)"

    async def main() -> None:
        if db_uri.startswith("sqlite"):
            conn = sqlite3.connect(
                db_uri.removeprefix("sqlite://"), isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            conn.execute("CREATE TABLE txn (id TEXT PRIMARY KEY, body BLOB)")
            thread = ThreadPoolExecutor(max_workers=1)
            lite = sql.replace("$1", "?").replace("$2", "?")

            def insert(txn: str, body: bytes) -> None:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(lite, (txn, body))
                conn.execute("COMMIT")

            async def store(txn: str, body: bytes) -> None:
                await asyncio.get_running_loop().run_in_executor(thread, insert, txn, body)

        else:
            import asyncpg

            pool = await asyncpg.create_pool(db_uri, min_size=1, max_size=2)
            await pool.execute("CREATE TABLE txn (id TEXT PRIMARY KEY, body BYTEA)")
            # As SantéGuard's own table (v01_initial): megolm ciphertext does not
            # compress, and trying costs a millisecond a transaction.
            await pool.execute("ALTER TABLE txn ALTER COLUMN body SET STORAGE EXTERNAL")

            async def store(txn: str, body: bytes) -> None:
                await pool.execute(sql, txn, body)

        async def handler(request: web.Request) -> web.Response:
            if request.headers.get("Authorization") != f"Bearer {HS_TOKEN}":
                return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
            body = await request.read()
            json.loads(body)
            await store(request.match_info["txn"], body)
            return web.json_response({})

        app = web.Application(client_max_size=10 * 1024 * 1024)
        app.router.add_put("/_matrix/app/v1/transactions/{txn}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await _until_sigterm()

    asyncio.run(main())


def serve_mautrix(port: int, ready: Any) -> None:
    """mautrix-python's ``AppService`` as a bridge starts it, with a no-op handler and an
    in-memory state store: what a typical Python appservice pays before its ack."""
    from mautrix.appservice import AppService, ASStateStore
    from mautrix.client.state_store import MemoryStateStore

    class MemoryASStateStore(ASStateStore, MemoryStateStore):
        def __init__(self) -> None:
            ASStateStore.__init__(self)
            MemoryStateStore.__init__(self)

    async def noop(event: Any) -> None:
        return None

    async def main() -> None:
        logging.basicConfig(level=logging.WARNING)
        appservice = AppService(
            server="http://127.0.0.1:9",  # never called: receiving needs no homeserver
            domain="santeguard.test",
            as_token="as-token-bench",
            hs_token=HS_TOKEN,
            bot_localpart="bench",
            id="bench",
            state_store=MemoryASStateStore(),
            aiohttp_params={"client_max_size": 10 * 1024 * 1024},
        )
        appservice.matrix_event_handler(noop)
        await appservice.start("127.0.0.1", port)
        ready.set()
        await _until_sigterm()
        await appservice.stop()

    asyncio.run(main())


def serve_homeserver(port: int, ready: Any) -> None:
    """The homeserver's side of what the dispatcher does for this traffic: a member's
    join in a protected room reads the room's retention policy and posts a welcome
    notice (the enforcement user joins first, as far as mautrix's intent knows; its
    account exists). Everything else (the bot's device) answers 502, as an
    unreachable homeserver would, and is retried in the background."""
    enforcer = "@santeguard_control:santeguard.test"
    state_of: dict[str, dict[str, Any]] = {
        "m.room.create": {"creator": "@anne.martin0:santeguard.test", "room_version": "10"},
        "m.room.power_levels": {
            "users": {enforcer: 100},
            "users_default": 0,
            "events_default": 0,
            "state_default": 50,
        },
        "m.room.encryption": {"algorithm": "m.megolm.v1.aes-sha2"},
        "m.room.retention": {"max_lifetime": 180 * 86_400_000},
    }
    sent = 0

    async def state(request: web.Request) -> web.Response:
        content = state_of.get(request.match_info["type"])
        if content is None:
            return web.json_response({"errcode": "M_NOT_FOUND", "error": "no state"}, status=404)
        if request.query.get("format") != "event":
            return web.json_response(content)
        return web.json_response(
            {
                "type": request.match_info["type"],
                "state_key": "",
                "content": content,
                "sender": content.get("creator", enforcer),
                "room_id": request.match_info["room"],
                "event_id": "$state",
                "origin_server_ts": 1_700_000_000_000,
            }
        )

    async def send(request: web.Request) -> web.Response:
        nonlocal sent
        await request.read()
        sent += 1
        return web.json_response({"event_id": f"$bench-{sent}"})

    async def register(request: web.Request) -> web.Response:
        await request.read()  # SantéGuard's users exist already, as in a deployment
        return web.json_response({"errcode": "M_USER_IN_USE", "error": "taken"}, status=400)

    async def join(request: web.Request) -> web.Response:
        await request.read()  # the enforcement user is in every protected room already
        return web.json_response({"room_id": request.match_info["room"]})

    async def versions(request: web.Request) -> web.Response:
        return web.json_response({"versions": ["v1.11"]})

    async def other(request: web.Request) -> web.Response:
        return web.json_response({"errcode": "M_UNKNOWN", "error": "stand-in"}, status=502)

    async def main() -> None:
        app = web.Application()
        rooms = "/_matrix/client/{version}/rooms/{room}"
        app.router.add_get(rooms + "/state/{type}/{key:.*}", state)
        app.router.add_get(rooms + "/state/{type}", state)
        app.router.add_put(rooms + "/send/{type}/{txn}", send)
        app.router.add_post("/_matrix/client/{version}/register", register)
        app.router.add_post("/_matrix/client/{version}/join/{room}", join)
        app.router.add_get("/_matrix/client/versions", versions)
        app.router.add_route("*", "/{tail:.*}", other)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await _until_sigterm()

    asyncio.run(main())


class _Profiler:
    def __init__(self, out: str) -> None:
        self._out = out
        try:
            if os.environ.get("SANTEGUARD_BENCH_CPROFILE"):  # self times instead of a tree
                raise ImportError
            from pyinstrument import Profiler
        except ImportError:
            import cProfile

            self._cprofile: Any = cProfile.Profile()
            self._pyinstrument: Any = None
        else:
            self._pyinstrument = Profiler(interval=0.0005, async_mode="disabled")
            self._cprofile = None

    def start(self) -> None:
        if self._pyinstrument is not None:
            self._pyinstrument.start()
        else:
            self._cprofile.enable()

    def write(self) -> None:
        if self._pyinstrument is not None:
            self._pyinstrument.stop()
            Path(self._out + ".txt").write_text(
                self._pyinstrument.output_text(unicode=True, show_all=False)
            )
            Path(self._out + ".html").write_text(self._pyinstrument.output_html())
            return
        import pstats

        self._cprofile.disable()
        self._cprofile.dump_stats(self._out + ".prof")
        with open(self._out + ".txt", "w") as f:
            pstats.Stats(self._cprofile, stream=f).sort_stats("tottime").print_stats(80)


def serve_santeguard(
    db_uri: str,
    synchronous: str,
    traffic: str,
    homeserver: str,
    workdir: str,
    profile: str | None,
    intake_only: bool,
    port: int,
    ready: Any,
) -> None:
    """SantéGuard with production defaults; ``traffic`` plain keeps the rooms unprotected
    (as the older benchmark did, its clear messages would otherwise be redacted).
    ``intake_only`` (a diagnostic, not a deployment): transactions are stored and acked
    but never handed to the dispatcher, which shows what the intake costs alone."""
    from bridge.app import SanteGuard

    async def main() -> None:
        cfg = make_config(
            db_uri,
            homeserver,
            appservice={
                "port": port,
                "address": f"http://127.0.0.1:{port}",
                "max_body_bytes": 10 * 1024 * 1024,
            },
            database={"sqlite_synchronous": synchronous},
            # The bot's device gets this far against the stand-in: never in the checkout.
            encryption={"store_path": str(Path(workdir) / "crypto")},
            gate={"protect_by_default": traffic != "plain"},
            dispatch={"retry_base_seconds": 0.5, "max_attempts": 5},
            logging={"level": "ERROR"},
        )
        logging.getLogger().setLevel(logging.ERROR)
        app = SanteGuard(cfg)
        if intake_only:  # the server takes its hand-over when it is built, at start
            app.leadership.stored = lambda seq, events: None  # type: ignore[method-assign]
        await app.start()
        if traffic != "plain":
            await protect(app, ProductionTraffic())
        from bridge.app.runtime import tune_after_start

        tune_after_start()  # as ``santeguard run`` does once started
        profiler = _Profiler(profile) if profile else None
        if profiler is not None:
            profiler.start()
        ready.set()
        await _until_sigterm()
        if profiler is not None:
            profiler.write()
        await app.stop()  # its database threads end before the loop closes

    asyncio.run(main())
