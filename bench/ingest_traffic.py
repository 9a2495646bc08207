"""What the ingest benchmark sends, and the protected rooms it sends it to.

Production traffic is what a health network's homeserver sends SantéGuard: rooms are
end-to-end encrypted, so nine events in ten are ``m.room.encrypted`` (megolm-shaped
content of realistic size), and the rest are practitioners' memberships changing
(invite, join, leave, with ``prev_content`` as Synapse sends it). The rooms are
protected as in a deployment: ``gate.protect_by_default`` is on, each room also carries
an explicit policy (as ``!sg room protect on`` stores it), the practitioners are bound
(as ``!sg verify`` does) before the run, and the rooms' state and first members arrive
in warm-up transactions, through the endpoint being measured.

The plain traffic (``m.room.message`` into unprotected rooms) is the benchmark's older
load, kept for comparison.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.devtools.people import practitioner

DOMAIN = "santeguard.test"  # the homeserver of bench/common.make_config
MEGOLM = "m.megolm.v1.aes-sha2"
ROOMS = 10
PRACTITIONERS = 40
MEMBERS_AT_START = 8  # joined members of each room after the warm-up
ENCRYPTED_SHARE = 0.9

FIRST_NAMES = ("Anne", "Bruno", "Claire", "Damien", "Élise", "Farid", "Gaëlle", "Hugo")
LAST_NAMES = ("MARTIN", "BERNARD", "DUBOIS", "THOMAS", "ROBERT", "PETIT", "DURAND", "LEROY")


def _b64(rng: random.Random, n: int) -> str:
    """Unpadded standard base64 of ``n`` random bytes, as Matrix encodes keys and ciphertext."""
    return base64.b64encode(rng.randbytes(n)).decode().rstrip("=")


def _event_id(rng: random.Random) -> str:
    return "$" + base64.urlsafe_b64encode(rng.randbytes(32)).decode().rstrip("=")


@dataclass
class _Device:
    device_id: str
    sender_key: str
    session_ids: dict[str, str] = field(default_factory=dict)  # room -> megolm session


@dataclass
class ProductionTraffic:
    """Rooms, practitioners and their devices; generates transaction bodies in order."""

    seed: int = 12
    rooms: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    _rng: random.Random = field(init=False)
    _devices: dict[str, _Device] = field(init=False, default_factory=dict)
    _membership: dict[tuple[str, str], str] = field(init=False, default_factory=dict)
    _joined_in: dict[str, list[str]] = field(init=False, default_factory=dict)
    _ts: int = field(init=False, default=1_700_000_000_000)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        rng = self._rng
        self.rooms = [
            "!" + base64.urlsafe_b64encode(rng.randbytes(12)).decode() + f":{DOMAIN}"
            for _ in range(ROOMS)
        ]
        self.users = [
            f"@{FIRST_NAMES[i % 8].lower().replace('é', 'e').replace('ë', 'e')}."
            f"{LAST_NAMES[i // 8 % 8].lower()}{i}:{DOMAIN}"
            for i in range(PRACTITIONERS)
        ]
        for user in self.users:
            device_id = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(10))
            self._devices[user] = _Device(device_id, _b64(rng, 32))

    # -- the deployment's state ---------------------------------------------------------

    def practitioners(self) -> list[tuple[str, Any]]:
        """(user ID, directory entry) of every practitioner, to bind before the run."""
        return [
            (
                user,
                practitioner(
                    777_00000 + i,
                    last=LAST_NAMES[i // 8 % 8],
                    first=FIRST_NAMES[i % 8],
                    profession="10" if i % 3 else "60",
                ),
            )
            for i, user in enumerate(self.users)
        ]

    def setup_bodies(self) -> list[bytes]:
        """Each room's creation, encryption and first members, one transaction per room."""
        bodies = []
        for r, room in enumerate(self.rooms):
            creator = self.users[r % len(self.users)]
            events = [
                self._state(room, creator, "m.room.create", "", {"creator": creator}),
                self._state(
                    room,
                    creator,
                    "m.room.power_levels",
                    "",
                    {"users": {creator: 100}, "events_default": 0, "state_default": 50},
                ),
                self._state(room, creator, "m.room.encryption", "", {"algorithm": MEGOLM}),
            ]
            for k in range(MEMBERS_AT_START):
                user = self.users[(r * 3 + k) % len(self.users)]
                if user != creator:
                    events.append(self._member(room, creator, user, "invite"))
                events.append(self._member(room, user, user, "join"))
            bodies.append(json.dumps({"events": events}).encode())
        return bodies

    # -- traffic ------------------------------------------------------------------------

    def bodies(self, txns: int, events: int) -> list[bytes]:
        return [
            json.dumps({"events": [self._next() for _ in range(events)]}).encode()
            for _ in range(txns)
        ]

    def _next(self) -> dict[str, Any]:
        rng = self._rng
        room = rng.choice(self.rooms)
        if rng.random() < ENCRYPTED_SHARE:
            joined = self._joined(room)
            return self._encrypted(room, rng.choice(joined) if joined else self.users[0])
        user = rng.choice(self.users)
        current = self._membership.get((room, user), "leave")
        if current == "leave":
            joined = self._joined(room)
            inviter = rng.choice(joined) if joined else user
            return self._member(room, inviter, user, "invite")
        if current == "invite":
            return self._member(room, user, user, "join")
        return self._member(room, user, user, "leave")

    def _joined(self, room: str) -> list[str]:
        return self._joined_in.get(room, [])

    def _base(self, room: str, sender: str, event_type: str) -> dict[str, Any]:
        self._ts += self._rng.randint(50, 4000)
        return {
            "type": event_type,
            "room_id": room,
            "sender": sender,
            "event_id": _event_id(self._rng),
            "origin_server_ts": self._ts,
            "unsigned": {"age": self._rng.randint(5, 400)},
        }

    def _encrypted(self, room: str, sender: str) -> dict[str, Any]:
        rng = self._rng
        device = self._devices[sender]
        session = device.session_ids.setdefault(room, _b64(rng, 32))
        ev = self._base(room, sender, "m.room.encrypted")
        ev["content"] = {
            "algorithm": MEGOLM,
            # base64 of 375-1,125 bytes: 500-1,500 characters, as megolm messages are.
            "ciphertext": _b64(rng, rng.randint(375, 1125)),
            "sender_key": device.sender_key,
            "device_id": device.device_id,
            "session_id": session,
        }
        return ev

    def _state(
        self, room: str, sender: str, event_type: str, key: str, content: dict[str, Any]
    ) -> dict[str, Any]:
        ev = self._base(room, sender, event_type)
        ev["state_key"] = key
        ev["content"] = content
        return ev

    def _member(self, room: str, sender: str, user: str, membership: str) -> dict[str, Any]:
        i = self.users.index(user)
        name = f"Dr {FIRST_NAMES[i % 8]} {LAST_NAMES[i // 8 % 8]}"
        previous = self._membership.get((room, user))
        ev = self._state(
            room, sender, "m.room.member", user, {"membership": membership, "displayname": name}
        )
        if previous is not None:
            ev["unsigned"]["prev_content"] = {"membership": previous, "displayname": name}
            ev["unsigned"]["replaces_state"] = _event_id(self._rng)
        self._membership[(room, user)] = membership
        joined = self._joined_in.setdefault(room, [])
        if membership == "join" and user not in joined:
            joined.append(user)
        elif membership != "join" and user in joined:
            joined.remove(user)
        return ev


async def protect(app: Any, traffic: ProductionTraffic) -> None:
    """Bind the practitioners and protect the rooms through SantéGuard's own stores (what
    ``!sg verify`` and ``!sg room protect on`` write): database first, then memory."""
    from bridge.gate.policy import RoomPolicy
    from bridge.identity.model import Verification

    now = datetime.now(UTC)
    for user, entry in traffic.practitioners():
        verification = Verification.of(entry, "manual", now, timedelta(days=30))
        await app.verifications.bind(user, verification, bound_by="@admin:santeguard.test")
    for room in traffic.rooms:
        await app.room_policies.set_room(room, RoomPolicy(protected=True), "@admin:santeguard.test")


def plain_bodies(txns: int, events: int) -> list[bytes]:
    """The older load: clear ``m.room.message`` events in unprotected rooms."""
    rng = random.Random(7)

    def event(room: int, n: int) -> dict[str, Any]:
        return {
            "type": "m.room.message",
            "event_id": _event_id(rng),
            "room_id": f"!room{room}:bench.test",
            "sender": f"@user{n % 7}:bench.test",
            "origin_server_ts": 1_700_000_000_000 + n,
            "unsigned": {"age": 12},
            "content": {
                "msgtype": "m.text",
                "body": "Patient vu ce matin, compte rendu à suivre " * 5,
            },
        }

    return [
        json.dumps({"events": [event(t % 10, t * events + i) for i in range(events)]}).encode()
        for t in range(txns)
    ]
