"""Issue 8, parts 2 to 4, against a real Synapse (both databases).

- A member who got in behind the gate's back (a homeserver admin's join) cannot post
  while in the room, and the backstop removes them.
- Clear text cannot ride in room state in a protected room; what still reaches
  SantéGuard is redacted and audited.
- A network admin's room is closed to everyone but the network admins.
- SantéGuard reads only where it was asked in: the enforcement user, which sits in every
  room, has no device, and the bot's device gets no room key where it was not invited.

Some steps must happen while a removal is pending (a member who got in "while they are
in"): the enforcement user's kick of that one member is held until the test has checked
what it needs (``kick_held``), then let go. Nothing is timed: every wait is bounded
polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import secrets
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import yaml
from nio import MegolmEvent, RoomKeyRequest, SyncResponse

from bridge.devtools.client import MatrixError, SimpleClient
from bridge.devtools.nio_peer import NioPeer, notice_from
from bridge.devtools.people import practitioner
from bridge.devtools.stack import DevStack
from bridge.devtools.synapse import RegisteredUser
from bridge.identity.model import Practitioner
from tests.logscan import SENT

pytestmark = pytest.mark.synapse

_n = itertools.count()
MEGOLM = "m.megolm.v1.aes-sha2"
ENCRYPTED = [{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}]

# The gate's reasons, as the homeserver shows them (French first).
NOT_VERIFIED = "n'est pas un professionnel de santé vérifié"
STATE_TEXT = "un état de salon ne peut pas transporter de texte en clair"
ADMIN_ROOM_CLOSED = "réservé aux administrateurs du réseau"


# -- people and rooms ---------------------------------------------------------------------


def doctor(last: str = "REGLE", first: str = "Anne", profession: str = "10") -> Practitioner:
    return practitioner(888_00000 + next(_n), last=last, first=first, profession=profession)


def uniq(name: str) -> str:
    return f"{name}{next(_n)}{secrets.token_hex(2)}"


def santeguard(stack: DevStack) -> Any:
    sg = stack.santeguard
    assert sg is not None and sg.gatekeeper is not None
    return sg


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("condition not met")


async def is_joined(client: SimpleClient, room: str, user: str) -> bool:
    return user in await client.joined_members(room)


async def protected_room(stack: DevStack, owner: SimpleClient, **kw: Any) -> str:
    room = await owner.create_room(initial_state=ENCRYPTED, **kw)
    await wait_until(lambda: is_joined(owner, room, stack.enforcer_mxid))
    return room


async def refused(call: Awaitable[Any]) -> MatrixError:
    """The homeserver's refusal of ``call`` (which must be refused)."""
    with pytest.raises(MatrixError) as err:
        await call
    return err.value


async def admin_join(stack: DevStack, room: str, user_id: str) -> tuple[int, Any]:
    """A homeserver admin joins ``user_id`` to ``room`` (Synapse admin API)."""
    token = await stack.synapse.admin_token()
    return await stack.synapse.request(
        "POST",
        f"/_synapse/admin/v1/join/{quote(room)}",
        token=token,
        json={"user_id": user_id},
        expect=None,
    )


async def send_raw(client: SimpleClient, room: str, event_type: str, content: Any) -> str:
    data = await client.request(
        "PUT", f"/rooms/{quote(room)}/send/{event_type}/{uniq('txn')}", content
    )
    return str(data["event_id"])


async def put_state(
    client: SimpleClient, room: str, event_type: str, state_key: str, content: Any
) -> str:
    path = f"/rooms/{quote(room)}/state/{event_type}/{quote(state_key)}"
    data = await client.request("PUT", path, content)
    return str(data["event_id"])


def fake_megolm(device_id: str) -> dict[str, Any]:
    """What an encrypted event looks like on the wire, with ciphertext nobody can open."""
    return {
        "algorithm": MEGOLM,
        "ciphertext": "AwgAEpAB" + secrets.token_urlsafe(96),
        "device_id": device_id,
        "sender_key": secrets.token_urlsafe(32)[:43],
        "session_id": secrets.token_urlsafe(32)[:43],
    }


async def left_event(client: SimpleClient, room: str, user: str) -> dict[str, Any]:
    """The (most recent) event by which ``user`` left ``room``."""
    return await client.wait_for_recent(
        room,
        lambda ev: (
            ev.get("type") == "m.room.member"
            and ev.get("state_key") == user
            and ev.get("content", {}).get("membership") == "leave"
        ),
        timeout=30,
    )


async def audit_entries(stack: DevStack, room: str, limit: int = 100) -> list[Any]:
    return list(await santeguard(stack).audit.recent(limit, room_id=room))


async def wait_audited(
    stack: DevStack, room: str, action: str, subject: str | None = None, *, actor: str | None = None
) -> Any:
    found: list[Any] = []

    async def seen() -> bool:
        for entry in await audit_entries(stack, room):
            if (
                entry.action == action
                and (subject is None or entry.subject == subject)
                and (actor is None or entry.actor == actor)
            ):
                found.append(entry)
                return True
        return False

    await wait_until(seen)
    return found[0]


async def redeliver(stack: DevStack, events: list[dict[str, Any]]) -> None:
    """Hand events to SantéGuard as the homeserver does, in a transaction of their own."""
    sg = santeguard(stack)
    async with (
        aiohttp.ClientSession() as http,
        http.put(
            f"{sg.config.appservice.address}/_matrix/app/v1/transactions/{uniq('redeliver')}",
            json={"events": events},
            headers={"Authorization": f"Bearer {stack.hs_token}"},
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()


async def is_redacted(client: SimpleClient, room: str, event_id: str) -> bool:
    event = await client.request("GET", f"/rooms/{quote(room)}/event/{quote(event_id)}")
    return not event.get("content") and "redacted_because" in event.get("unsigned", {})


async def is_encrypted(client: SimpleClient, room: str) -> bool:
    try:
        state = await client.request("GET", f"/rooms/{quote(room)}/state/m.room.encryption")
    except MatrixError:
        return False
    return bool(state.get("algorithm") == MEGOLM)


@contextlib.asynccontextmanager
async def kick_held(
    stack: DevStack, monkeypatch: pytest.MonkeyPatch, user_id: str
) -> AsyncIterator[asyncio.Event]:
    """Hold the enforcement user's kick of ``user_id`` until the block ends.

    Yields an event set once the backstop has got as far as kicking them: from then until
    the block ends, ``user_id`` is a member the gate does not admit, "while they are in".
    """
    matrix = santeguard(stack).enforcer_matrix
    original = matrix.kick
    reached, release = asyncio.Event(), asyncio.Event()

    async def kick(room_id: str, target: str, reason: str) -> None:
        if target == user_id:
            reached.set()
            await release.wait()
        await original(room_id, target, reason)

    monkeypatch.setattr(matrix, "kick", kick)
    try:
        yield reached
    finally:
        release.set()


# -- part 2: a member added behind the gate's back --------------------------------------


async def test_admin_join_api_does_not_take_an_ordinary_user_past_the_gate(
    gated_stack: DevStack,
) -> None:
    """Synapse's admin join checks the joining user with the gate (it is not an admin)."""
    _, doc = await gated_stack.practitioner(uniq("doc"), doctor())
    anon_user, _ = await gated_stack.user(uniq("anon"))
    async with doc:
        room = await protected_room(gated_stack, doc, preset="public_chat")
        status, body = await admin_join(gated_stack, room, anon_user.user_id)
        assert status == 403, body
        assert f"{anon_user.user_id} {NOT_VERIFIED}" in str(body.get("error"))
        assert anon_user.user_id not in await doc.joined_members(room)
    refusal = await wait_audited(
        gated_stack, room, "gate.refused.user_may_join_room", anon_user.user_id
    )
    assert refusal.details["reason"] == "not_verified"


async def test_member_added_behind_the_gates_back_cannot_post_and_is_removed(
    gated_stack: DevStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A homeserver admin account (unverified) joined through the admin API: Synapse lets
    a server admin past the join check. While in the room it can send nothing, clear or
    encrypted-looking; the backstop removes it, by the enforcement user, saying why."""
    _, doc = await gated_stack.practitioner(uniq("doc"), doctor())
    ops_user, ops = await gated_stack.user(uniq("exploitant"), admin=True)
    async with doc, ops:
        room = await protected_room(gated_stack, doc, preset="public_chat")
        async with kick_held(gated_stack, monkeypatch, ops_user.user_id) as kicking:
            status, body = await admin_join(gated_stack, room, ops_user.user_id)
            assert status == 200, body
            await asyncio.wait_for(kicking.wait(), 30)  # the backstop is on it
            assert ops_user.user_id in await doc.joined_members(room)

            err = await refused(ops.send_text(room, "Résultats du patient envoyés par l'admin"))
            assert err.status == 403
            assert f"{ops_user.user_id} {NOT_VERIFIED}" in str(err.error)

            err = await refused(
                send_raw(ops, room, "m.room.encrypted", fake_megolm(ops_user.device_id))
            )
            assert err.status == 403
            assert f"{ops_user.user_id} {NOT_VERIFIED}" in str(err.error)
            assert ops_user.user_id in await doc.joined_members(room)  # still in: refused

        await wait_until(lambda: _not_joined(doc, room, ops_user.user_id), timeout=30)
        kick = await left_event(doc, room, ops_user.user_id)
        assert kick["sender"] == gated_stack.enforcer_mxid
        assert f"{ops_user.user_id} {NOT_VERIFIED}" in kick["content"]["reason"]

    removed = await wait_audited(gated_stack, room, "backstop.removed", ops_user.user_id)
    assert removed.details["reason"] == "not_verified"
    refusals = [
        e
        for e in await audit_entries(gated_stack, room)
        if e.action == "gate.refused.check_event_for_spam" and e.subject == ops_user.user_id
    ]
    assert len(refusals) >= 2
    assert {e.details["reason"] for e in refusals} == {"not_verified"}


async def _not_joined(client: SimpleClient, room: str, user: str) -> bool:
    return not await is_joined(client, room, user)


# -- part 3: clear text in room state -----------------------------------------------------


async def test_clear_text_in_state_events_is_refused_in_a_protected_room(
    gated_stack: DevStack,
) -> None:
    doc_user, doc = await gated_stack.practitioner(uniq("doc"), doctor())
    message_text = "Mme D., 54 ans, HbA1c 9,1 % : à revoir"
    html_text = "<b>Lit 12</b> : sortie prévue demain"
    for text in (message_text, html_text):
        SENT.add(text)  # no log may hold them either (logscan records only /send/)
    async with doc:
        room = await protected_room(gated_stack, doc)

        err = await refused(
            put_state(doc, room, "m.room.message", "x", {"msgtype": "m.text", "body": message_text})
        )
        assert err.status == 403
        assert STATE_TEXT in str(err.error)

        err = await refused(
            put_state(
                doc,
                room,
                "org.example.note",
                "",
                {"format": "org.matrix.custom.html", "formatted_body": html_text},
            )
        )
        assert err.status == 403
        assert STATE_TEXT in str(err.error)

        # Room state without text passes, of a known type or not.
        await put_state(doc, room, "m.room.topic", "", {"topic": "Staff du mardi"})
        await put_state(doc, room, "org.example.note", "", {"colour": "bleu"})
        topic = await doc.request("GET", f"/rooms/{quote(room)}/state/m.room.topic")
        assert topic == {"topic": "Staff du mardi"}

    refusals = [
        e
        for e in await audit_entries(gated_stack, room)
        if e.action == "gate.refused.check_event_for_spam" and e.subject == doc_user.user_id
    ]
    assert len(refusals) == 2
    assert {e.details["reason"] for e in refusals} == {"state_text_not_allowed"}


async def test_clear_text_in_state_that_reaches_santeguard_is_redacted(
    gated_stack: DevStack,
) -> None:
    """State with text set while the room was not protected (an admin room), handed to
    SantéGuard again once the room is protected, is redacted and audited."""
    admin_user, admin = await gated_stack.admin()
    message_text = "Bilan de M. T. laissé dans l'état du salon"
    html_text = "<i>Patient en chambre 4</i>, allergie pénicilline"
    for text in (message_text, html_text):
        SENT.add(text)
    async with admin:
        room = await admin.create_room(name="Salon à protéger", invite=(gated_stack.bot_mxid,))
        await wait_until(lambda: is_joined(admin, room, gated_stack.bot_mxid))
        await wait_until(lambda: _is_admin_room(gated_stack, room))
        in_message = await put_state(
            admin, room, "m.room.message", "x", {"msgtype": "m.text", "body": message_text}
        )
        in_custom = await put_state(
            admin, room, "org.example.note", "", {"formatted_body": html_text}
        )
        await admin.send_text(room, "!sg room protect on")
        await wait_until(lambda: is_encrypted(admin, room))
        await wait_until(lambda: _is_protected(gated_stack, room))
        events = [
            await admin.request("GET", f"/rooms/{quote(room)}/event/{quote(event_id)}")
            for event_id in (in_message, in_custom)
        ]
        assert all("state_key" in ev for ev in events)
        await redeliver(gated_stack, events)

        async def both_redacted() -> bool:
            return all([await is_redacted(admin, room, e) for e in (in_message, in_custom)])

        await wait_until(both_redacted)
        redaction = await admin.wait_for_recent(
            room, lambda ev: ev.get("type") == "m.room.redaction" and ev.get("redacts") == in_custom
        )
        assert redaction["sender"] == gated_stack.enforcer_mxid
        assert STATE_TEXT in redaction["content"]["reason"]

    async def both_audited() -> bool:
        return {
            e.details.get("event_id")
            for e in await audit_entries(gated_stack, room)
            if e.action == "backstop.redacted"
        } >= {in_message, in_custom}

    await wait_until(both_audited)
    for entry in await audit_entries(gated_stack, room):
        if entry.action == "backstop.redacted":
            assert entry.subject == admin_user.user_id
            assert entry.details["reason"] == "state_text_not_allowed"


async def _is_admin_room(stack: DevStack, room: str) -> bool:
    return bool(santeguard(stack).gatekeeper.is_admin_room(room))


async def _is_protected(stack: DevStack, room: str) -> bool:
    return bool(santeguard(stack).gatekeeper.is_protected(room))


# -- part 3: admin rooms are closed -------------------------------------------------------


async def test_admin_room_is_closed_to_everyone_but_network_admins(
    gated_stack: DevStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, admin = await gated_stack.admin()
    anon_user, anon = await gated_stack.user(uniq("anon"))
    doc_user, doc = await gated_stack.practitioner(uniq("doc"), doctor())
    ops_user, ops = await gated_stack.user(uniq("exploitant"), admin=True)
    async with admin, anon, doc, ops:
        # Public, so that a join needs no invite and only the gate can refuse it.
        room = await admin.create_room(
            name="Administration", invite=(gated_stack.bot_mxid,), preset="public_chat"
        )
        await wait_until(lambda: _is_admin_room(gated_stack, room))
        await admin.wait_for_recent(
            room,
            lambda ev: (
                ev.get("sender") == gated_stack.bot_mxid
                and "salon d'administration" in ev.get("content", {}).get("body", "")
            ),
        )

        for user_id, client in ((anon_user.user_id, anon), (doc_user.user_id, doc)):
            err = await refused(admin.invite(room, user_id))
            assert err.status == 403
            assert ADMIN_ROOM_CLOSED in str(err.error) and user_id in str(err.error)
            err = await refused(client.join(room))
            assert err.status == 403
            assert ADMIN_ROOM_CLOSED in str(err.error) and user_id in str(err.error)
        members = await admin.joined_members(room)
        assert anon_user.user_id not in members and doc_user.user_id not in members

        # A homeserver admin account got in anyway: it cannot post, and is removed.
        async with kick_held(gated_stack, monkeypatch, ops_user.user_id) as kicking:
            status, body = await admin_join(gated_stack, room, ops_user.user_id)
            assert status == 200, body
            await asyncio.wait_for(kicking.wait(), 30)
            assert ops_user.user_id in await admin.joined_members(room)
            err = await refused(ops.send_text(room, "Question sur un dossier de patient"))
            assert err.status == 403
            assert ADMIN_ROOM_CLOSED in str(err.error)
        await wait_until(lambda: _not_joined(admin, room, ops_user.user_id), timeout=30)
        kick = await left_event(admin, room, ops_user.user_id)
        assert kick["sender"] == gated_stack.enforcer_mxid
        assert ADMIN_ROOM_CLOSED in kick["content"]["reason"]
        assert ops_user.user_id in kick["content"]["reason"]

        # The network admin still talks to the bot there.
        await admin.send_text(room, "!sg ping")
        await admin.wait_for_recent(
            room,
            lambda ev: (
                ev.get("sender") == gated_stack.bot_mxid
                and ev.get("content", {}).get("body", "").lower().startswith("pong")
            ),
        )

    entries = await audit_entries(gated_stack, room)
    invite_refusals = {
        e.subject: e.details["reason"]
        for e in entries
        if e.action == "gate.refused.user_may_invite"
    }
    assert invite_refusals == {
        anon_user.user_id: "admin_room_closed",
        doc_user.user_id: "admin_room_closed",
    }
    removed = await wait_audited(gated_stack, room, "backstop.removed", ops_user.user_id)
    assert removed.details["reason"] == "admin_room_closed"


# -- part 4: SantéGuard reads only where it was asked in --------------------------------


def _namespace(stack: DevStack) -> list[re.Pattern[str]]:
    registration = yaml.safe_load(stack.registration_path.read_text(encoding="utf-8"))
    return [re.compile(ns["regex"]) for ns in registration["namespaces"]["users"]]


def _ours(stack: DevStack, users: set[str]) -> set[str]:
    patterns = _namespace(stack)
    return {u for u in users if any(p.fullmatch(u) for p in patterns)}


def _bot_client(stack: DevStack) -> Any:
    crypto = santeguard(stack).crypto
    assert crypto is not None and crypto._client is not None
    return crypto._client


def _bot_sessions_for(stack: DevStack, room: str) -> list[Any]:
    """The Megolm sessions the bot's device holds for ``room`` (in memory)."""
    return [s for s in _bot_client(stack).olm.inbound_group_store if s.room_id == room]


def _stored_sessions_for(stack: DevStack, room: str) -> dict[str, set[str]]:
    """Inbound Megolm session IDs for ``room`` in every crypto store on disk, per file."""
    store = Path(stack.config().encryption.store_path)
    found: dict[str, set[str]] = {}
    for path in sorted(store.glob("*.db")):
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute(
                "SELECT session_id FROM megolminboundsessions WHERE room_id = ?", (room,)
            ).fetchall()
        finally:
            conn.close()
        found[path.name] = {str(row[0]) for row in rows}
    return found


def _files_named_for(stack: DevStack, user_id: str) -> list[Path]:
    """Files of SantéGuard's crypto store that belong to ``user_id`` (nio names its
    database ``<user>_<device>.db``)."""
    store = Path(stack.config().encryption.store_path)
    localpart = user_id.split(":", 1)[0].lstrip("@")
    return [p for p in store.rglob("*") if localpart in p.name or user_id in p.name]


def _bot_can_decrypt(stack: DevStack, raw: dict[str, Any]) -> bool:
    """Whether the bot's device holds the Megolm session that opens ``raw``.

    Looked up without trying to decrypt: nio's failed decryption may itself send a room
    key request (its "wedged session" recovery), which would disturb what is checked.
    """
    megolm = MegolmEvent.from_dict(raw)
    assert isinstance(megolm, MegolmEvent)
    session = _bot_client(stack).olm.inbound_group_store.get(
        raw["room_id"], megolm.sender_key, megolm.session_id
    )
    return session is not None


async def _devices(stack: DevStack, user_id: str) -> list[Any]:
    token = await stack.synapse.admin_token()
    _, body = await stack.synapse.request(
        "GET", f"/_synapse/admin/v2/users/{quote(user_id)}/devices", token=token
    )
    return list(body["devices"])


async def _verified_peer(
    stack: DevStack, tmp_path: Path, name: str
) -> tuple[RegisteredUser, SimpleClient, NioPeer]:
    user, client = await stack.practitioner(uniq(name), doctor())
    peer = NioPeer(
        stack.synapse.base_url, user.user_id, user.device_id, user.access_token, tmp_path / name
    )
    await peer.start()
    return user, client, peer


class PeerSyncs:
    """Watches a peer's syncs: how many completed, and the room key requests they
    brought (nio hands those to no callback, and runs no response callback for
    ``sync()``, so they are read off each sync response)."""

    def __init__(self, peer: NioPeer) -> None:
        self.peer = peer
        self.count = 0
        self.key_requests: list[RoomKeyRequest] = []
        sync = peer.client.sync

        async def watched_sync(*args: Any, **kwargs: Any) -> Any:
            response = await sync(*args, **kwargs)
            if isinstance(response, SyncResponse):
                self.key_requests += [
                    e for e in response.to_device_events if isinstance(e, RoomKeyRequest)
                ]
                self.count += 1
            return response

        peer.client.sync = watched_sync

    def asked_by(self, user_id: str, room: str) -> list[RoomKeyRequest]:
        return [r for r in self.key_requests if r.sender == user_id and r.room_id == room]

    async def advance(self, n: int, timeout: float = 30) -> None:
        """Wait for ``n`` more syncs: what was sent to the peer before has reached it."""
        target = self.count + n
        await self.peer.wait_until(lambda: self.count >= target, timeout)


async def test_santeguard_reads_only_where_it_was_asked_in(
    gated_stack: DevStack, tmp_path: Path
) -> None:
    """In a protected room it was not invited to, no SantéGuard store can read what a
    practitioner's E2EE client says; invited, the bot reads what is said from then on,
    never what was said before."""
    stack = gated_stack
    bot, enforcer = stack.bot_mxid, stack.enforcer_mxid
    doc_user, doc, peer = await _verified_peer(stack, tmp_path, "alice")
    syncs = PeerSyncs(peer)
    try:
        async with doc:
            room = await peer.create_encrypted_room(name="Staff")
            await peer.wait_for_member(room, enforcer)

            # (a) The bot is not there; SantéGuard's only member is the enforcement user.
            members = await doc.joined_members(room)
            assert bot not in members
            assert _ours(stack, members) == {enforcer}

            # (b) No SantéGuard user in the room has a device: nothing to share keys with.
            keys = await doc.request(
                "POST", "/keys/query", {"device_keys": {m: [] for m in members}}
            )
            assert doc_user.device_id in keys["device_keys"][doc_user.user_id]
            for member in _ours(stack, members):
                assert keys["device_keys"].get(member, {}) == {}, member
            assert await _devices(stack, enforcer) == []

            # (c) A practitioner's encrypted message there is for the practitioners only.
            secret = "Compte rendu opératoire de Mme B. : reprise au bloc"
            first_id = await peer.send_text(room, secret)
            first = await doc.request("GET", f"/rooms/{quote(room)}/event/{quote(first_id)}")
            assert first["type"] == "m.room.encrypted"
            assert "reprise au bloc" not in str(first)
            assert not _bot_can_decrypt(stack, first)
            assert _bot_sessions_for(stack, room) == []
            stored = _stored_sessions_for(stack, room)
            assert stored and all(ids == set() for ids in stored.values()), stored
            assert _files_named_for(stack, enforcer) == []  # the enforcement user: no store

            # Invited, the bot joins and says what it can read (French by default).
            since = peer.mark(room)
            await doc.invite(room, bot)
            greeting = await peer.wait_for(
                room,
                notice_from(bot, "je peux lire les nouveaux messages"),
                since=since,
                timeout=30,
            )
            assert greeting.decrypted
            assert "(pas l'historique)" in greeting.body
            since = peer.mark(room)
            ping_id = await peer.send_text(room, "!sg ping")
            pong = await peer.wait_for(room, notice_from(bot, "pong"), since=since, timeout=30)
            assert pong.decrypted
            # It reads what is said now, and what was said before it came stays closed.
            ping = await doc.request("GET", f"/rooms/{quote(room)}/event/{quote(ping_id)}")
            assert _bot_can_decrypt(stack, ping)
            assert not _bot_can_decrypt(stack, first)
            stored = _stored_sessions_for(stack, room)
            assert ping["content"]["session_id"] in set().union(*stored.values())
            assert first["content"]["session_id"] not in set().union(*stored.values())

            # `!sg leave` (the room's creator is its admin): it says so, and is gone.
            since = peer.mark(room)
            await peer.send_text(room, "!sg leave")
            bye = await peer.wait_for(
                room, notice_from(bot, "Je quitte ce salon"), since=since, timeout=30
            )
            assert bye.decrypted
            await wait_until(lambda: _not_joined(doc, room, bot), timeout=30)
            assert _ours(stack, await doc.joined_members(room)) == {enforcer}
        await wait_audited(stack, room, "bot.asked_to_leave", actor=doc_user.user_id)
        # The bot asked nobody for the keys of a room it was not in (every to-device
        # message sent so far has reached the peer once it synced twice more).
        await syncs.advance(2)
        asked = {r.session_id for r in syncs.asked_by(bot, room)}
        assert not asked, (
            f"the bot's device asked for room keys: {sorted(asked)}; the message sent "
            f"before it was invited is session {first['content']['session_id']}"
        )
    finally:
        await peer.stop()


async def test_bot_greets_where_invited_and_leaves_when_asked(
    gated_stack: DevStack, tmp_path: Path
) -> None:
    """Invited into an encrypted room, the bot says (in French by default) that it reads
    the new messages, not the history; `!sg leave` by a room admin: it says so and goes."""
    stack = gated_stack
    bot, enforcer = stack.bot_mxid, stack.enforcer_mxid
    doc_user, doc, peer = await _verified_peer(stack, tmp_path, "chloe")
    try:
        async with doc:
            room = await peer.create_encrypted_room(name="Staff")
            await peer.wait_for_member(room, enforcer)
            since = peer.mark(room)
            await doc.invite(room, bot)
            greeting = await peer.wait_for(
                room,
                notice_from(bot, "je peux lire les nouveaux messages de ce salon"),
                since=since,
                timeout=30,
            )
            assert greeting.decrypted
            assert "(pas l'historique)" in greeting.body and "!sg leave" in greeting.body
            since = peer.mark(room)
            await peer.send_text(room, "!sg ping")
            assert (await peer.wait_for(room, notice_from(bot, "pong"), since=since)).decrypted

            since = peer.mark(room)
            await peer.send_text(room, "!sg leave")
            bye = await peer.wait_for(room, notice_from(bot, "Je quitte ce salon"), since=since)
            assert bye.decrypted and "je n'y lirai plus rien" in bye.body
            await wait_until(lambda: _not_joined(doc, room, bot), timeout=30)
            assert _ours(stack, await doc.joined_members(room)) == {enforcer}
            left = await left_event(doc, room, bot)
            assert left["sender"] == bot
        await wait_audited(stack, room, "bot.asked_to_leave", actor=doc_user.user_id)
    finally:
        await peer.stop()


async def test_bot_asks_for_no_room_key_where_it_was_not_invited(
    gated_stack: DevStack, tmp_path: Path
) -> None:
    """The appservice sees the events of every room (its namespace covers them, and the
    enforcement user is everywhere), but the bot's device must not go after the keys of
    a room it was not asked into: no room key request reaches the practitioner."""
    stack = gated_stack
    bot = stack.bot_mxid
    _, doc, peer = await _verified_peer(stack, tmp_path, "bea")
    ops_user, _ = await stack.user(uniq("exploitant"), admin=True)
    syncs = PeerSyncs(peer)
    try:
        async with doc:
            room = await protected_room(stack, doc, preset="public_chat")
            await peer.join(room)
            await peer.send_text(room, "Transmissions de nuit : rien à signaler")
            # A later event of the room SantéGuard visibly acts on: once it has, it is
            # done with the encrypted message (events of a room are handled in order).
            status, body = await admin_join(stack, room, ops_user.user_id)
            assert status == 200, body

            async def removed_or_asked() -> bool:
                return bool(syncs.asked_by(bot, room)) or await _not_joined(
                    doc, room, ops_user.user_id
                )

            await wait_until(removed_or_asked, timeout=30)
        await syncs.advance(2)
        asked = syncs.asked_by(bot, room)
        assert asked == [], (
            f"the bot's device asked {peer.user_id} for {len(asked)} room key(s) of a room "
            "it was not invited to"
        )
    finally:
        await peer.stop()


async def test_encrypted_talk_without_the_bot_does_not_hold_up_enforcement(
    gated_stack: DevStack, tmp_path: Path
) -> None:
    """Events of a room are handled in order: an encrypted message in a room the bot is
    not in must not keep the room's later events (here a removal by the backstop)
    waiting behind attempts to decrypt it (the bot's device waits up to
    ``give_up_seconds`` for a key, then tries to tell a room it is not in)."""
    stack = gated_stack
    _, doc, peer = await _verified_peer(stack, tmp_path, "bea")
    ops_user, _ = await stack.user(uniq("exploitant"), admin=True)
    try:
        async with doc:
            room = await protected_room(stack, doc, preset="public_chat")
            await peer.join(room)
            await peer.send_text(room, "Transmissions de nuit : patient du 8 stable")
            status, body = await admin_join(stack, room, ops_user.user_id)
            assert status == 200, body
            await wait_until(lambda: _not_joined(doc, room, ops_user.user_id), timeout=30)
            kick = await left_event(doc, room, ops_user.user_id)
            assert kick["sender"] == stack.enforcer_mxid
    finally:
        await peer.stop()
