"""Asking a session's creator again for a lost room key, and letting its answer in.

nio's ``request_room_key`` asks only our own devices (the bot has no other), and nio
only accepts forwarded room keys from the user's own verified devices (the bot has none).
So the request goes to the device named in the undecryptable event, and its re-share
(an ``m.forwarded_room_key``) is accepted when it matches a request we made.
"""

from __future__ import annotations

import contextlib
from typing import Any

from nio import AsyncClient, LocalProtocolError, MegolmEvent

MEGOLM = "m.megolm.v1.aes-sha2"


class KeyRequests:
    """The room keys asked for, once per session, and the forward policy that uses them."""

    def __init__(self) -> None:
        # session ID -> (sender, sender's curve25519 key, room ID) of each key request
        self._asked: dict[str, tuple[str, str, str]] = {}

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._asked

    async def request(self, client: AsyncClient, megolm: MegolmEvent) -> None:
        """Ask the device that sent ``megolm`` for its room key (once per session)."""
        session_id = str(megolm.session_id)
        if session_id in self._asked:
            return
        self._asked[session_id] = (
            str(megolm.sender),
            str(megolm.sender_key),
            str(megolm.room_id),
        )
        message = megolm.as_key_request(
            megolm.sender, client.device_id, session_id, megolm.device_id
        )
        # Queued first, so nio records the request once it is sent (and expects the key).
        client.olm.outgoing_to_device_messages.append(message)
        with contextlib.suppress(LocalProtocolError):
            await client.to_device(message)

    def install_forward_policy(self, olm: Any) -> None:
        """Also accept forwarded keys from the device that created the session.

        The device asked is the session's own creator, which could have sent the plain
        ``m.room_key`` just as well; nio's own rule still decides everything else.
        """
        default = olm._should_accept_forward
        asked = self._asked

        def accept(sender: str, sender_key: str, event: Any) -> bool:
            request = asked.get(str(event.session_id))
            if (
                request is not None
                and request == (sender, sender_key, str(event.room_id))
                and event.algorithm == MEGOLM
                and event.session_id in olm.outgoing_key_requests
            ):
                return True
            return bool(default(sender, sender_key, event))

        olm._should_accept_forward = accept
