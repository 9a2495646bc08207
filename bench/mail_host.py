"""The mail benchmark's stack host: Synapse + SantéGuard (mail bridge on) in a child process.

SantéGuard runs in its own process, as deployed, so the measuring side (the practitioner's
matrix-nio client, the relay and its timestamps, the bare baselines) never shares its
event loop. It logs at INFO, the production default, into ``santeguard.log`` in the work
directory. The host registers a verified practitioner and reports the credentials over a
pipe; with ``profile`` set it writes a cProfile of the whole process when stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import logging
import multiprocessing as mp
import os
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.common import install_stop, wait_stop

SERVER = "santeguard.test"
HOST_MAX_SECONDS = 900  # the host stops by itself after this, whatever happens here


def host_stack(
    db_uri: str,
    workdir: str,
    mail_config: dict[str, Any],
    profile: str | None,
    parent: int,
    conn: Connection,
) -> None:
    """Child process entry point; an error is reported to the parent, which fails the run."""
    profiler = cProfile.Profile() if profile else None
    try:
        if profiler is not None:
            profiler.enable()
        asyncio.run(_host(db_uri, Path(workdir), mail_config, parent, conn))
    except Exception as e:
        with contextlib.suppress(Exception):
            conn.send({"error": f"{type(e).__name__}: {e}"})
        raise
    finally:
        if profiler is not None and profile:
            profiler.disable()
            profiler.dump_stats(profile)


async def _host(
    db_uri: str, workdir: Path, mail_config: dict[str, Any], parent: int, conn: Connection
) -> None:
    from bridge.devtools.people import practitioner
    from bridge.devtools.stack import DevStack
    from bridge.ops.log import setup_logging

    stop = asyncio.Event()
    install_stop(asyncio.get_running_loop(), stop)
    stack = DevStack(
        workdir,
        db_uri=db_uri,
        admins=[f"@admin:{SERVER}"],
        config_overrides={"mail": mail_config},
    )
    with (workdir / "santeguard.log").open("a", encoding="utf-8") as log_file:
        setup_logging("INFO", "text", stack.config().secrets(), stream=log_file)
        logging.getLogger("nio").setLevel(logging.WARNING)
        await stack.start()
        try:
            user, client = await stack.practitioner(
                "doctor", practitioner(424_242, last="Curie", first="Marie")
            )
            await client.close()
            conn.send(
                {
                    "base_url": stack.synapse.base_url,
                    "user_id": user.user_id,
                    "device_id": user.device_id,
                    "access_token": user.access_token,
                    "bot": stack.bot_mxid,
                    "pid": os.getpid(),
                }
            )
            await wait_stop(stop, parent, HOST_MAX_SECONDS)
        finally:
            await stack.stop()


@dataclass
class Host:
    proc: Any
    conn: Connection
    info: dict[str, Any] = field(default_factory=dict)

    async def ready(self, timeout: float = 300) -> dict[str, Any]:
        """Wait (in a thread, not blocking the loop) for the host's report; raise its error."""
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, self.conn.poll, timeout):
            raise TimeoutError("the stack host did not report in time")
        info: dict[str, Any] = self.conn.recv()
        if "error" in info:
            raise RuntimeError(f"stack host failed: {info['error']}")
        self.info = info
        return info

    async def stop(self, grace: float = 60) -> None:
        """SIGTERM (a clean stop, so a profile gets written), SIGKILL after ``grace``."""
        if self.proc.is_alive():
            self.proc.terminate()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.proc.join, grace)
        if self.proc.is_alive():
            self.proc.kill()
            await loop.run_in_executor(None, self.proc.join, 5)


def spawn_host(
    db_uri: str, workdir: Path, mail_config: dict[str, Any], profile: Path | None
) -> Host:
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(
        target=host_stack,
        args=(
            db_uri,
            str(workdir),
            mail_config,
            str(profile) if profile else None,
            os.getpid(),
            theirs,
        ),
        daemon=True,
    )
    proc.start()
    return Host(proc, ours)
