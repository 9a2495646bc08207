"""Slow clients against SantéGuard at its default limits: descriptors held, and a normal
request's latency meanwhile.

SantéGuard (SQLite, default ``appservice.*`` limits unless overridden) runs in this
process; a child process opens N connections that each send nothing (``silent``), half
their headers (``headers``) or their headers and half a body (``body``), and keeps them.
Printed: this process's descriptors (``/proc/self/fd``) before, once the connections are
open, and once the timeout has passed; how many the child still holds; the latency of a
normal transaction sent meanwhile. ``--unguarded`` serves with aiohttp's plain TCPSite,
for comparison (nothing is closed then).

    .venv/bin/python -m bench.slow_clients --mode silent -n 3000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from bridge.app import SanteGuard
from bridge.devtools.testconfig import HS_TOKEN, make_config

_CHILD = r"""
import asyncio, sys
port, n, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
token = sys.argv[4] if mode == "body-auth" else "not-the-token"
SEND = {
    "silent": b"",
    "headers": b"PUT /_matrix/app/v1/transactions/x HTTP/1.1\r\nHost: sg\r\nAuthoriz",
    "body": (b"PUT /_matrix/app/v1/transactions/x HTTP/1.1\r\nHost: sg\r\n"
             b"Authorization: Bearer " + token.encode() + b"\r\nContent-Length: 1000\r\n\r\n{"),
}[mode.split("-")[0]]
async def main():
    streams = []
    for _ in range(n):
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            continue
        if SEND:
            w.write(SEND)
        streams.append((r, w))
    print("opened", len(streams), flush=True)
    async def watch(r):
        try:
            await r.read()
        except OSError:
            pass
    tasks = [asyncio.create_task(watch(r)) for r, _ in streams]
    while True:
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        print("open", sum(not t.done() for t in tasks), flush=True)
asyncio.run(main())
"""


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def normal_request(port: int) -> float | None:
    """Latency of one transaction on a new connection; None if it was refused."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = b'{"events": []}'
    started = time.perf_counter()
    writer.write(
        b"PUT /_matrix/app/v1/transactions/n%d HTTP/1.1\r\nHost: sg\r\nConnection: close\r\n"
        % time.monotonic_ns()
        + f"Authorization: Bearer {HS_TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    reply = await reader.read()
    writer.close()
    return time.perf_counter() - started if reply.startswith(b"HTTP/1.1 200") else None


async def normal_requests(port: int, label: str) -> None:
    lat = [await normal_request(port) for _ in range(20)]
    ok = sorted(x for x in lat if x is not None)
    median = f"median {ok[len(ok) // 2] * 1000:.1f} ms" if ok else "none served"
    print(f"normal transactions {label}: {len(ok)}/20 served, {median}")


async def ask(child: asyncio.subprocess.Process) -> str:
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(b"?\n")
    await child.stdin.drain()
    return (await child.stdout.readline()).decode().strip()


async def run(args: argparse.Namespace) -> None:
    overrides: dict[str, Any] = {"max_body_bytes": 10 * 1024 * 1024}  # the default
    if args.max_connections:
        overrides["max_connections"] = args.max_connections
    work = Path(tempfile.mkdtemp(prefix="sg-slow-"))
    cfg = make_config(
        f"sqlite:///{work / 'santeguard.db'}",
        appservice=overrides,
        encryption={"store_path": str(work / "crypto")},  # not in the working directory
    )
    app = SanteGuard(cfg)
    await app.start()
    port = cfg.appservice.port
    plain: web.AppRunner | None = None
    if args.unguarded:  # the same app on aiohttp's TCPSite, beside, for comparison
        port = port + 1 if port < 65535 else port - 1
        plain = web.AppRunner(app._server().build_app(), access_log=None)
        await plain.setup()
        await web.TCPSite(plain, "127.0.0.1", port).start()
    a = cfg.appservice
    wait = {"silent": a.header_timeout_seconds, "headers": a.header_timeout_seconds}.get(
        args.mode, a.body_timeout_seconds
    )
    print(
        f"limits: header {a.header_timeout_seconds}s, body {a.body_timeout_seconds}s, "
        f"keep-alive {a.keepalive_seconds}s, max_connections {a.max_connections}; "
        f"{'UNGUARDED' if args.unguarded else 'guarded'}; {args.n} x {args.mode}"
    )
    before = fds()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, str(port), str(args.n), args.mode, HS_TOKEN,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        print("child:", (await child.stdout.readline()).decode().strip())
        await asyncio.sleep(1)
        held = fds()
        print(f"server fds: before {before}, connections open {held} (+{held - before})")
        print(f"child still {await ask(child)}")
        await normal_requests(port, "meanwhile")
        await asyncio.sleep(wait + 2)
        after = fds()
        print(f"after {wait + 2:.0f}s: server fds {after} (+{after - before})")
        print(f"child still {await ask(child)}")
        await normal_requests(port, "after")
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()
        if plain is not None:
            await plain.cleanup()
        await app.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=3000, help="connections the child opens")
    parser.add_argument(
        "--mode", choices=("silent", "headers", "body", "body-auth"), default="silent"
    )
    parser.add_argument("--max-connections", type=int, default=0, help="override the cap")
    parser.add_argument("--unguarded", action="store_true", help="aiohttp's TCPSite instead")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
