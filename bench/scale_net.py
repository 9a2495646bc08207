"""The synthetic network of ``bench.scale``: rooms, members and their events.

Deterministic from ``(rooms, users, seed, epoch_ms)``, so the load sender, the fake
homeserver and the checks all see the same network without passing it around. Every
room is created the way Synapse delivers it to an appservice: ``m.room.create``, the
creator's join, power levels, join rules, ``m.room.encryption``, an ``m.room.retention``
within the network's bounds, the enforcement user invited (the room module does it) and
joining, the members joining, the bot invited in one room out of ten, then encrypted
messages — one past the room's lifetime (the retention audit must prove it purged),
two recent. State is dated 200 days back, the expired message 120 days back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

SERVER = "santeguard.test"
BOT = f"@santeguard:{SERVER}"
ENFORCER = f"@santeguard_control:{SERVER}"
DAY_MS = 86_400_000
LIFETIME_MS = 90 * DAY_MS  # each room's declared m.room.retention
MESSAGES = 3  # per room: the first is past the lifetime, the others recent
EXPIRED_MESSAGES = 1


@dataclass(frozen=True)
class Network:
    rooms: int
    users: int
    epoch_ms: int
    members_per_room: int = 10
    verified_share: float = 0.95
    bot_every: int = 10  # the bot is invited into one room out of ``bot_every``
    seed: int = 1
    _index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    # -- people ---------------------------------------------------------------------

    @property
    def verified(self) -> int:
        """Users 0 … verified-1 are bound to a practitioner; the others are not."""
        return int(self.users * self.verified_share)

    def user(self, n: int) -> str:
        return f"@ps{n:06d}:{SERVER}"

    def unverified_user(self, k: int) -> str:
        return self.user(self.verified + k % max(1, self.users - self.verified))

    def members(self, i: int) -> list[str]:
        """Room ``i``'s members (all verified), its creator first; spread over the users
        by a multiplier prime to their number, so most users are in one or two rooms."""
        v = self.verified
        return [
            self.user(((i * self.members_per_room + j) * 7919) % v)
            for j in range(self.members_per_room)
        ]

    # -- rooms ----------------------------------------------------------------------

    def room_id(self, i: int) -> str:
        digest = hashlib.blake2b(f"{self.seed}:{i}".encode(), digest_size=16).hexdigest()
        letters = "".join(chr(ord("a") + int(c, 16) % 26) for c in digest[:18])
        return f"!{letters}:{SERVER}"

    def room_index(self, room_id: str) -> int | None:
        if not self._index:
            self._index.update({self.room_id(i): i for i in range(self.rooms)})
        return self._index.get(room_id)

    def has_bot(self, i: int) -> bool:
        return i % self.bot_every == 0

    def message_id(self, i: int, k: int) -> str:
        return f"$m{self.seed}r{i}k{k}"

    def message_expired(self, event_id: str) -> bool:
        """Whether a message ID is one of the expired ones (the fake homeserver purged it)."""
        k = event_id.rpartition("k")[2]
        return event_id.startswith("$m") and k.isdigit() and int(k) < EXPIRED_MESSAGES

    def events(self, i: int) -> list[dict[str, Any]]:
        """Room ``i``'s timeline as transactions deliver it, oldest first."""
        room = self.room_id(i)
        members = self.members(i)
        creator = members[0]
        created = self.epoch_ms - 200 * DAY_MS + i * 1000
        out: list[dict[str, Any]] = []

        def ev(kind: str, sender: str, content: dict[str, Any], **extra: Any) -> None:
            n = len(out)
            out.append(
                {
                    "type": kind,
                    "room_id": room,
                    "sender": sender,
                    "event_id": extra.pop("event_id", f"$s{self.seed}r{i}n{n}"),
                    "origin_server_ts": extra.pop("ts", created + n),
                    "content": content,
                    "unsigned": {"age": 1},
                    **extra,
                }
            )

        ev("m.room.create", creator, {"room_version": "10", "creator": creator}, state_key="")
        ev("m.room.member", creator, {"membership": "join"}, state_key=creator)
        ev(
            "m.room.power_levels",
            creator,
            {"users": {creator: 100, ENFORCER: 100}, "users_default": 0, "events_default": 0},
            state_key="",
        )
        ev("m.room.join_rules", creator, {"join_rule": "public"}, state_key="")
        ev("m.room.encryption", creator, {"algorithm": "m.megolm.v1.aes-sha2"}, state_key="")
        ev("m.room.retention", creator, {"max_lifetime": LIFETIME_MS}, state_key="")
        ev("m.room.member", creator, {"membership": "invite"}, state_key=ENFORCER)
        ev("m.room.member", ENFORCER, {"membership": "join"}, state_key=ENFORCER)
        for m in members[1:]:
            ev("m.room.member", m, {"membership": "join", "displayname": m[1:9]}, state_key=m)
        if self.has_bot(i):
            ev("m.room.member", creator, {"membership": "invite"}, state_key=BOT)
        for k in range(MESSAGES):
            age = 120 * DAY_MS if k < EXPIRED_MESSAGES else DAY_MS - k
            ev(
                "m.room.encrypted",
                members[k % len(members)],
                _ciphertext(i, k),
                event_id=self.message_id(i, k),
                ts=self.epoch_ms - age,
            )
        return out

    def state(self, i: int) -> list[dict[str, Any]]:
        """Room ``i``'s current state (the bot joined where it was invited)."""
        state: dict[tuple[str, str], dict[str, Any]] = {}
        for e in self.events(i):
            if "state_key" in e:
                state[(e["type"], e["state_key"])] = e
        if self.has_bot(i):
            joined = dict(state[("m.room.member", BOT)], sender=BOT, content={"membership": "join"})
            state[("m.room.member", BOT)] = joined
        return list(state.values())

    def transactions(self, per_txn: int = 100) -> Iterator[bytes]:
        """The whole network as transaction bodies, rooms in order, ``per_txn`` events each."""
        batch: list[dict[str, Any]] = []
        for i in range(self.rooms):
            batch += self.events(i)
            while len(batch) >= per_txn:
                yield json.dumps({"events": batch[:per_txn]}).encode()
                batch = batch[per_txn:]
        if batch:
            yield json.dumps({"events": batch}).encode()

    def traffic(self, txns: int, per_txn: int, tag: str) -> list[bytes]:
        """New encrypted messages spread over the network's rooms (the ingest load)."""
        bodies = []
        for t in range(txns):
            events = []
            for e in range(per_txn):
                n = t * per_txn + e
                i = (n * 7919) % self.rooms
                events.append(
                    {
                        "type": "m.room.encrypted",
                        "room_id": self.room_id(i),
                        "sender": self.members(i)[n % self.members_per_room],
                        "event_id": f"$t{tag}n{n}",
                        "origin_server_ts": self.epoch_ms + n,
                        "content": _ciphertext(i, n),
                        "unsigned": {"age": 12},
                    }
                )
            bodies.append(json.dumps({"events": events}).encode())
        return bodies


def _ciphertext(i: int, k: int) -> dict[str, Any]:
    """An ``m.room.encrypted`` content of a realistic size (a short message's megolm)."""
    blob = hashlib.sha512(f"{i}:{k}".encode()).hexdigest() * 4
    return {
        "algorithm": "m.megolm.v1.aes-sha2",
        "ciphertext": blob,
        "device_id": "SCALEDEVICE",
        "sender_key": blob[:43],
        "session_id": blob[43:86],
    }
