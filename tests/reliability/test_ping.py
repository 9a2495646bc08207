"""The homeserver watch and the appservice ping (bridge/matrix/ping.py).

The watch and the pinger are driven here by scripted probes and pings (stand-ins for the
homeserver, so each transition is exact); ``ping_appservice``'s errors come from the
lab's real Synapse. The ping that succeeds, and what it is for, is proven end to end by
test_outage_latency.py and test_crash_events.py (the child's
``santeguard_appservice_pings_total{outcome="ok"}``).
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from bridge.matrix.client import AppservicePingError, MatrixClient
from bridge.matrix.ping import AppservicePinger, HomeserverWatch, PingMetrics

from .lab import Lab


def _sample(registry: CollectorRegistry, outcome: str) -> float:
    value = registry.get_sample_value("santeguard_appservice_pings_total", {"outcome": outcome})
    return value or 0.0


async def test_watch_calls_listeners_on_each_transition_only() -> None:
    answers = [True, True, False, False, True]
    seen: list[bool] = []

    async def probe() -> bool:
        return answers.pop(0)

    async def listener(up: bool) -> None:
        seen.append(up)

    async def broken(up: bool) -> None:
        raise RuntimeError("a listener that fails")

    watch = HomeserverWatch(probe, interval=60)
    watch.add_listener(broken)
    watch.add_listener(listener)
    assert watch.up is None
    for _ in range(5):
        await watch.probe_once()
    assert seen == [True, False, True]  # the first probe counts; a failing listener too
    assert watch.up is True


async def test_a_probe_that_raises_is_down() -> None:
    async def probe() -> bool:
        raise OSError("unreachable")

    seen: list[bool] = []

    async def listener(up: bool) -> None:
        seen.append(up)

    watch = HomeserverWatch(probe, interval=60)
    watch.add_listener(listener)
    assert await watch.probe_once() is False
    assert seen == [False] and watch.up is False


async def test_watch_probes_in_the_background_until_stopped() -> None:
    probes = 0

    async def probe() -> bool:
        nonlocal probes
        probes += 1
        return True

    watch = HomeserverWatch(probe, interval=0.01)
    await watch.start()
    for _ in range(200):
        if probes >= 3:
            break
        await asyncio.sleep(0.01)
    await watch.stop()
    after = probes
    await asyncio.sleep(0.05)
    assert after >= 3 and probes == after


async def test_pinger_retries_a_failing_ping_then_stops_once_it_succeeds() -> None:
    results: list[Exception | float] = [
        AppservicePingError(502, "M_CONNECTION_FAILED", "ConnectionRefusedError"),
        AppservicePingError(None, "M_CONNECTION_FAILED", "ClientConnectorError"),
        0.004,
    ]
    asked: list[str] = []

    async def ping(txn_id: str) -> float:
        asked.append(txn_id)
        result = results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    registry = CollectorRegistry()
    pinger = AppservicePinger(ping, PingMetrics(registry), interval=0.01, replica="r1")
    await pinger.on_change(True)
    await asyncio.wait_for(pinger.succeeded.wait(), 10)
    await pinger.stop()
    assert len(asked) == 3 and len(set(asked)) == 3 and all("r1" in t for t in asked)
    assert (_sample(registry, "failed"), _sample(registry, "ok")) == (2, 1)
    assert pinger.last_duration == 0.004


async def test_pinger_gives_up_on_a_homeserver_without_ping_and_stops_when_down() -> None:
    calls = 0

    async def unsupported(txn_id: str) -> float:
        nonlocal calls
        calls += 1
        raise AppservicePingError(404, "M_UNRECOGNIZED", "Unrecognized request")

    registry = CollectorRegistry()
    metrics = PingMetrics(registry)
    pinger = AppservicePinger(unsupported, metrics, interval=0.01)
    await pinger.on_change(True)
    await asyncio.sleep(0.1)
    assert calls == 1 and _sample(registry, "unsupported") == 1

    async def failing(txn_id: str) -> float:
        nonlocal calls
        calls += 1
        raise AppservicePingError(502, "M_CONNECTION_FAILED", "refused")

    pinger = AppservicePinger(failing, metrics, interval=0.01)
    await pinger.on_change(True)
    await asyncio.sleep(0.05)
    await pinger.on_change(False)  # the homeserver went down: no more pings
    stopped = calls
    await asyncio.sleep(0.05)
    assert stopped > 2 and calls == stopped


@pytest.mark.synapse
async def test_ping_errors_from_a_real_synapse(lab: Lab) -> None:
    """No SantéGuard listening (between the lab's tests): Synapse cannot call back. A
    wrong appservice ID is refused. Both name Synapse's errcode; no token in either."""
    stack = lab.stack
    async with aiohttp.ClientSession() as session:
        matrix = MatrixClient(stack.synapse.base_url, stack.bot_mxid, stack.as_token, session)
        with pytest.raises(AppservicePingError) as refused:
            await matrix.ping_appservice("santeguard", "t1", timeout=30)
        with pytest.raises(AppservicePingError) as wrong:
            await matrix.ping_appservice("not-this-one", "t2")
    assert (refused.value.status, refused.value.errcode) == (502, "M_CONNECTION_FAILED")
    assert (wrong.value.status, wrong.value.errcode) == (403, "M_FORBIDDEN")
    for error in (refused.value, wrong.value):
        assert stack.as_token not in str(error) and stack.hs_token not in str(error)
        assert not error.unsupported
