"""Builds the homeserver watch and the appservice ping listening to it.

Why a module of its own: the composition root only creates it, starts it once the HTTP
site is listening (the ping makes the homeserver call SantéGuard back, and its
transactions follow at once) and stops it. Other parts (outage tracking) add their own
listeners to ``SanteGuard.homeserver_watch``.

The probe period reuses ``cluster.heartbeat_seconds`` (default 1 s): the same "is my
connection to a dependency alive" cadence as the lease and change feed, cheap (one
``GET /_matrix/client/versions``) and short enough that a homeserver coming back is
pinged within about a second. Every replica pings; Synapse retries its pending
transactions towards the one URL of the registration, whichever replica answers.
"""

from __future__ import annotations

from bridge.config import Config
from bridge.matrix.client import MatrixClient
from bridge.matrix.ping import AppservicePinger, HomeserverWatch, PingMetrics
from bridge.ops.metrics import Metrics


def build_homeserver_watch(
    config: Config, matrix: MatrixClient, metrics: Metrics, *, replica: str
) -> tuple[HomeserverWatch, AppservicePinger]:
    """The watch (probing ``matrix.homeserver_reachable``) with the pinger subscribed."""
    interval = config.cluster.heartbeat_seconds
    watch = HomeserverWatch(matrix.homeserver_reachable, interval=interval)
    appservice_id = config.appservice.id

    async def ping(txn_id: str) -> float:
        return await matrix.ping_appservice(appservice_id, txn_id)

    pinger = AppservicePinger(
        ping, PingMetrics(metrics.registry), interval=interval, replica=replica
    )
    watch.add_listener(pinger.on_change)
    return watch, pinger
