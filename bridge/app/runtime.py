"""Interpreter settings for the long-lived ``santeguard run`` process, applied once started.

The synchronous gate answers the homeserver while it waits, so the process's pauses are
the gate's tail latency. Garbage collector pauses are cheap to remove: once started, the
process holds a large, long-lived heap (imported modules, the verification and
room-policy snapshots, the config), and every full collection walks all of it while the
event loop waits (measured ~25 ms right after start-up with an empty directory on the
2-core benchmark machine; more with a large directory). ``gc.freeze()`` moves what
exists after start-up to a permanent generation the collector no longer walks; what
requests allocate is collected as before. Frozen objects stay allocated for the life of
the process, which a heap built at start-up does anyway.

Only for the serving process: a test run that builds many instances in one interpreter
would keep each one's cyclic garbage.
"""

from __future__ import annotations

import gc


def tune_after_start() -> None:
    """Collect once, then freeze the start-up heap out of the collector's walks.
    Call once the application has started, in the serving process only."""
    gc.collect()
    gc.freeze()
