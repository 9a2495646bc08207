"""Where the HTTP server listens: behind the connection guard (bridge/spine/guard.py),
with the limits of ``appservice.*``, its metrics in the instance's registry."""

from __future__ import annotations

from aiohttp import web

from bridge.config import Config
from bridge.ops.metrics import Metrics
from bridge.spine.guard import ConnectionGuard, GuardLimits, start_guarded


def guard_limits(cfg: Config) -> GuardLimits:
    a = cfg.appservice
    return GuardLimits(
        header_timeout=a.header_timeout_seconds,
        body_timeout=a.body_timeout_seconds,
        keepalive=a.keepalive_seconds,
        max_connections=a.max_connections,
        max_body_bytes=a.max_body_bytes,
    )


async def listen(
    app: web.Application, cfg: Config, metrics: Metrics
) -> tuple[web.AppRunner, ConnectionGuard]:
    """Start serving ``app``; ``runner.cleanup()`` stops it."""
    return await start_guarded(
        app,
        guard_limits(cfg),
        cfg.appservice.hostname,
        cfg.appservice.port,
        registry=metrics.registry,
    )
