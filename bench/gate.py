"""The synchronous gate's cost, three ways, in one run (loopback only, bounded).

1. Callback latency under open-loop load: callbacks scheduled at a fixed rate
   (``--rate``, default 1,000/s; each sent on time, never waiting for the previous
   one), a production-like mix (``bench/gate_mix.py``: encrypted messages, joins,
   invitations, membership and state events, verified and unverified users, protected
   rooms; ``--mix join`` for joins alone), against a bare allow-all aiohttp callback
   server and against SantéGuard's real gate on production defaults (SQLite,
   ``--directory`` verified users). Each server runs in its own process; the
   load generator (a lean keep-alive HTTP/1.1 client, uvloop) runs here. Latency runs
   from each actual send; the generator's lag behind its schedule is printed beside
   it. Two diagnostic targets locate the cost: SantéGuard's HTTP server with an
   allow-all gate, and the real gate policy with its audit write skipped.
2. Synapse ``POST /join`` latency: a Synapse with no modules against a DevStack's
   Synapse (synapse-http-antispam → SantéGuard's gate, plus the room module, the
   appservice and its bot). In each, a verified owner creates a public encrypted room
   (protected in the gated one) and ``--joiners`` verified users join one after
   another, the homeservers taking turns. Two more homeservers in the same rotation
   locate the cost: Synapse with the antispam module calling a bare allow-all server
   (the reference's ×1.09 case), and the same DevStack with an allow-all gate.
3. Backstop join→kick latency: a DevStack whose Synapse asks the gate about messages
   only (``check_event_for_spam``), so unverified users get into a protected public
   room and only the appservice backstop removes them. Measured as the kick event's
   ``origin_server_ts`` minus the join event's (same homeserver clock), from
   ``/messages``.

The gated stacks run in child processes (SantéGuard in its own process, as deployed).

    python -m bench.gate
    python -m bench.gate --only callbacks --profile-dir /tmp/sg-prof
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.gate_backstop import bench_backstop_async
from bench.gate_callbacks import bench_callbacks
from bench.gate_join import bench_joins_async

# The parts live in bench/gate_callbacks.py, gate_join.py and gate_backstop.py; the
# servers and stacks they measure in bench/gate_hosts.py, generic helpers in common.py.

_serial = itertools.count()


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--only", choices=["callbacks", "joins", "backstop"], action="append")
    ap.add_argument("--rate", type=float, default=1000.0, help="callbacks per second")
    ap.add_argument("--seconds", type=float, default=5.0, help="measured seconds per target")
    ap.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per target")
    ap.add_argument("--rounds", type=int, default=3, help="callback rounds (median reported)")
    ap.add_argument(
        "--mix",
        choices=["production", "join"],
        default="production",
        help="callbacks sent: a production-like mix (bench/gate_mix.py) or joins alone",
    )
    ap.add_argument(
        "--client-loop", choices=["uvloop", "asyncio"], default="uvloop", help="load generator"
    )
    ap.add_argument(
        "--untuned",
        action="store_true",
        help="callbacks: SantéGuard without the interpreter settings `santeguard run` applies",
    )
    ap.add_argument("--directory", type=int, default=1000, help="verified users in the gate DB")
    ap.add_argument("--joiners", type=int, default=100)
    ap.add_argument("--join-warmup", type=int, default=5)
    ap.add_argument("--join-gap", type=float, default=0.05, help="pause between joins (s)")
    ap.add_argument("--intruders", type=int, default=50)
    ap.add_argument("--intruder-interval", type=float, default=0.3, help="seconds")
    ap.add_argument("--profile-dir", help="write a cProfile of the gate process here")
    args = ap.parse_args()
    if not (1 <= args.rate <= 5000 and 0 < args.seconds <= 30 and 1 <= args.rounds <= 10):
        ap.error("keep the load bounded: rate 1..5000/s, seconds ≤ 30, rounds ≤ 10")
    if args.joiners + args.join_warmup > 500 or args.intruders > 200:
        ap.error("keep the run bounded: ≤ 500 joiners, ≤ 200 intruders")
    if args.profile_dir:
        Path(args.profile_dir).mkdir(parents=True, exist_ok=True)
    parts = args.only or ["callbacks", "joins", "backstop"]
    tmp = Path(tempfile.mkdtemp(prefix="sg-bench-gate-"))
    started = time.monotonic()
    try:
        for part in parts:
            t0 = time.monotonic()
            load = os.getloadavg()[0]
            if part == "callbacks":
                lines = bench_callbacks(args, tmp / f"cb{next(_serial)}")
            elif part == "joins":
                lines = asyncio.run(bench_joins_async(args, tmp / f"joins{next(_serial)}"))
            else:
                lines = asyncio.run(bench_backstop_async(args, tmp / f"backstop{next(_serial)}"))
            print(
                "\n".join(lines) + f"\n   ({time.monotonic() - t0:.0f} s; load average "
                f"{load:.2f} before, {os.getloadavg()[0]:.2f} after)\n",
                flush=True,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"total {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
