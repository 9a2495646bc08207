"""The outage tracker's rules (bridge/ops/outages.py), on a clock the test moves: what
is told to the admins and when, what the metrics and ``/ready``'s body say.

The alerts go through the real ``AdminAlerts`` and text catalog to a notice port that
keeps what it was asked to post (the admin room); the end-to-end cases, with real
servers, are tests/reliability/test_outages.py and tests/mail/test_outage.py.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from bridge.app.wiring import build_translator
from bridge.ops.alerts import AdminAlerts
from bridge.ops.outages import Down, Outages


class Room:
    """The admin room: what was posted to it."""

    def __init__(self) -> None:
        self.notices: list[str] = []

    async def send_notice(self, room_id: str, text: str) -> str:
        self.notices.append(text)
        return f"$n{len(self.notices)}"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def tracker(
    alert_after: float = 60.0, tells: bool = True
) -> tuple[Outages, Room, Clock, CollectorRegistry]:
    room, clock, registry = Room(), Clock(), CollectorRegistry()
    alerts = AdminAlerts(room, build_translator(strict=True), admin_room="!admin:x")
    outages = Outages(
        registry, alerts, alert_after=alert_after, clock=clock, tells=lambda name: tells
    )
    return outages, room, clock, registry


def up_metric(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value("santeguard_dependency_up", {"dependency": name})


async def test_a_blip_is_only_logged_a_long_outage_told_twice() -> None:
    outages, room, clock, registry = tracker()
    await outages.report("smtp", True)
    await outages.report("smtp", False, "unreachable")
    clock.now += 5
    await outages.report("smtp", True)
    assert room.notices == []  # a 5 s blip: no page
    assert outages.report_body() == {"smtp": {"up": True}}

    await outages.report("smtp", False, "unreachable")
    clock.now += 59
    await outages.poll()
    assert room.notices == [] and up_metric(registry, "smtp") == 0
    body = outages.report_body()["smtp"]
    assert body == {
        "up": False,
        "since": body["since"],
        "down_seconds": 59,
        "detail": "unreachable",
    }
    clock.now += 2
    await outages.poll()
    await outages.poll()  # told once, however many rounds
    assert len(room.notices) == 1 and "injoignable depuis" in room.notices[0]
    assert "1 min 01 s" in room.notices[0] and "/ The SMTP relay" in room.notices[0]
    clock.now += 3600
    await outages.report("smtp", True)
    assert len(room.notices) == 2
    assert "de nouveau joignable, après 1 h 01 min" in room.notices[1]
    assert up_metric(registry, "smtp") == 1
    assert (
        registry.get_sample_value("santeguard_dependency_outages_total", {"dependency": "smtp"})
        == 2
    )


async def test_the_homeserver_is_told_only_once_back() -> None:
    outages, room, clock, _ = tracker()
    outages.watch("homeserver", carries_alerts=True)
    await outages.report("homeserver", True)
    await outages.report("homeserver", False)
    clock.now += 600
    await outages.poll()
    assert room.notices == []  # it could not reach the room anyway
    await outages.report("homeserver", True)
    assert len(room.notices) == 1
    assert "a été injoignable de" in room.notices[0] and "(10 min 00 s)" in room.notices[0]


async def test_probes_decide_and_a_failing_probe_is_down() -> None:
    outages, _, _, registry = tracker(alert_after=0)
    state = {"up": True}

    async def database() -> bool:
        if not state["up"]:
            raise OSError("refused")
        return True

    async def directory() -> bool | None:
        raise Down("http_503")

    outages.watch("database", database)
    outages.watch("directory", directory)
    await outages.poll()
    assert outages.up("database") is True and outages.up("directory") is False
    assert outages.report_body()["directory"]["detail"] == "http_503"
    state["up"] = False
    await outages.poll()
    assert outages.report_body()["database"]["detail"] == "OSError"
    assert outages.down() == ["database", "directory"]
    assert up_metric(registry, "database") == 0


async def test_listeners_hear_each_transition_and_followers_stay_quiet() -> None:
    outages, room, clock, _ = tracker(alert_after=0, tells=False)
    heard: list[bool] = []

    async def listener(up: bool) -> None:
        heard.append(up)

    outages.add_listener("directory", listener)
    await outages.report("directory", False, "connection")
    await outages.report("directory", False, "connection")
    clock.now += 120
    await outages.poll()
    await outages.report("directory", True)
    assert heard == [False, True]
    assert room.notices == []  # another replica (the leader) speaks
