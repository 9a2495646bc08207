"""The callbacks the gate benchmark sends: a production-like mix, as synapse-http-antispam
0.5.1 would send them.

In a running network most callbacks are ``check_event_for_spam`` for what members post
(end-to-end encrypted messages, whose bodies carry a Megolm ciphertext of a few hundred
bytes to a few KB), then joins, invitations and the membership events that follow them.
The shares below are stated in the benchmark's output; unverified users (who are
refused, and whose refusal is audited before it is answered) are a fixed share of the
joins and invitations, and a small share of senders (members who slipped in before the
backstop removed them). Every room is protected (``gate.protect_by_default``).

Events are shaped like ``format_event_for_client_v2(event.get_dict())`` plus
``event_id``: the fields the module really sends, not only those the gate reads.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass

from bench.gate_hosts import GATE_PATH, SERVER

#: (callback, share of requests). The rest of ``check_event_for_spam`` splits below.
MIX = (
    ("check_event_for_spam", 0.70),
    ("user_may_join_room", 0.20),
    ("user_may_invite", 0.10),
)
#: Of ``check_event_for_spam``: encrypted messages, membership events, other state.
EVENT_KINDS = (("encrypted", 0.85), ("member", 0.10), ("state", 0.05))
UNVERIFIED_JOINERS = 0.20  # of joins and invitations: refused, audited
UNVERIFIED_SENDERS = 0.01  # of events: refused, audited
ROOMS = 50


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes


def _b64(rng: random.Random, n: int) -> str:
    return base64.b64encode(rng.randbytes(n)).decode().rstrip("=")


def _event_id(rng: random.Random) -> str:
    return "$" + base64.urlsafe_b64encode(rng.randbytes(32)).decode().rstrip("=")


def _event(rng: random.Random, kind: str, room: str, sender: str, ts: int) -> dict[str, object]:
    base: dict[str, object] = {
        "room_id": room,
        "sender": sender,
        "origin_server_ts": ts,
        "unsigned": {},
        "event_id": _event_id(rng),
    }
    if kind == "encrypted":
        content: dict[str, object] = {
            "algorithm": "m.megolm.v1.aes-sha2",
            "ciphertext": _b64(rng, rng.randint(160, 1600)),
            "device_id": "".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ", k=10)),
            "sender_key": _b64(rng, 32),
            "session_id": _b64(rng, 32),
        }
        if rng.random() < 0.1:  # a reply or a reaction keeps its relation in clear
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": _event_id(rng)}}
        return {"type": "m.room.encrypted", "content": content, **base}
    if kind == "member":
        content = {"membership": "join", "displayname": f"Dr {sender[1:8]}", "avatar_url": None}
        return {"type": "m.room.member", "state_key": sender, "content": content, **base}
    name = {"name": f"Staff {rng.randrange(1000)} — RCP"}
    return {"type": "m.room.name", "state_key": "", "content": name, **base}


def _pick(rng: random.Random, table: Sequence[tuple[str, float]]) -> str:
    x, acc = rng.random(), 0.0
    for name, share in table:
        acc += share
        if x < acc:
            return name
    return table[-1][0]


def mixed_requests(n: int, verified: Sequence[str], seed: int) -> list[Request]:
    """``n`` callbacks drawn from ``MIX`` (reproducible for a given ``seed``)."""
    rng = random.Random(seed)
    rooms = [f"!room{seed}x{i}:{SERVER}" for i in range(ROOMS)]
    out = []
    ts = 1_790_000_000_000
    for _ in range(n):
        callback = _pick(rng, MIX)
        room = rng.choice(rooms)
        ts += 1

        def user(unverified_share: float) -> str:
            if rng.random() < unverified_share:
                return f"@anon{rng.randrange(10_000)}:{SERVER}"
            return rng.choice(verified)

        payload: dict[str, object]
        if callback == "user_may_join_room":
            payload = {"user": user(UNVERIFIED_JOINERS), "room": room, "is_invited": False}
        elif callback == "user_may_invite":
            invitee = user(UNVERIFIED_JOINERS)
            payload = {"inviter": rng.choice(verified), "invitee": invitee, "room_id": room}
        else:
            kind = _pick(rng, EVENT_KINDS)
            payload = {"event": _event(rng, kind, room, user(UNVERIFIED_SENDERS), ts)}
        out.append(Request(f"{GATE_PATH}/{callback}", json.dumps(payload).encode()))
    return out


def describe() -> str:
    """The mix in one line, for the benchmark's output."""
    calls = ", ".join(f"{int(share * 100)} % {name}" for name, share in MIX)
    kinds = "/".join(f"{int(share * 100)}" for _, share in EVENT_KINDS)
    refused = (
        sum(share for name, share in MIX if name != "check_event_for_spam") * UNVERIFIED_JOINERS
        + dict(MIX)["check_event_for_spam"] * UNVERIFIED_SENDERS
    )
    return (
        f"{calls} (events: encrypted/membership/state {kinds} %); "
        f"{int(UNVERIFIED_JOINERS * 100)} % of joiners and invitees and "
        f"{int(UNVERIFIED_SENDERS * 100)} % of senders unverified (≈ {refused * 100:.0f} % "
        f"refused and audited); {ROOMS} protected rooms"
    )
