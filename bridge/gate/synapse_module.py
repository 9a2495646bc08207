"""A small Synapse module, loaded beside synapse-http-antispam, for room creation.

synapse-http-antispam 0.5.1 forwards only the user ID to ``user_may_create_room``, but
Synapse hands the module API the whole ``/createRoom`` body: this module forwards it to
the same SantéGuard gate endpoint, so the gate can refuse a room born unencrypted. It
also adds SantéGuard's enforcement user to every room a user creates, with the power
level it needs to enforce the policy (remove unverified members, switch encryption on,
redact clear messages), so enforcement never depends on someone remembering to invite
it. The enforcement user has no end-to-end encryption device: clients share no room
key with it, so it cannot read what is said. (The bot people talk to, which has a
device, joins only the rooms it is invited to.)

It runs inside Synapse's process and imports nothing from SantéGuard beyond this file.

    modules:
      - module: bridge.gate.synapse_module.SanteGuardRoomRules
        config:
          base_url: http://127.0.0.1:29340/_santeguard/antispam
          authorization: <antispam.token>
          enforcer_user_id: "@santeguard_control:example.org"
          enforcer_power_level: 100
          # The network's default m.room.retention max_lifetime, in milliseconds: put in
          # the initial state of every room created without one (optional).
          retention_max_lifetime_ms: 15552000000
"""

from __future__ import annotations

import json
import logging
from typing import Any

from synapse.api.errors import Codes, HttpResponseException, SynapseError
from synapse.module_api import NOT_SPAM, ModuleApi
from synapse.types import Requester  # type: ignore[attr-defined]

logger = logging.getLogger(__name__)


class SanteGuardRoomRules:
    def __init__(self, config: dict[str, Any], api: ModuleApi) -> None:
        self._api = api
        self._url = str(config["base_url"]).rstrip("/")
        self._headers = {"Authorization": [f"Bearer {config['authorization']}"]}
        self._enforcer = str(config["enforcer_user_id"])
        self._level = int(config.get("enforcer_power_level", 100))
        # Room versions before 12 list the creator in power levels; from 12 on, creators
        # outrank power levels and must not be listed.
        self._default_room_version = str(config.get("default_room_version", "12"))
        retention = config.get("retention_max_lifetime_ms")
        self._retention = int(retention) if retention else None
        api.register_spam_checker_callbacks(user_may_create_room=self.user_may_create_room)
        api.register_third_party_rules_callbacks(on_create_room=self.on_create_room)

    @staticmethod
    def parse_config(config: dict[str, Any]) -> dict[str, Any]:
        if "bot_user_id" in config and "enforcer_user_id" not in config:
            raise ValueError(
                "SanteGuardRoomRules: 'bot_user_id' was renamed 'enforcer_user_id' (the "
                "enforcement user, without an encrypted device, is what joins every room)"
            )
        for key in ("base_url", "authorization", "enforcer_user_id"):
            if not config.get(key):
                raise ValueError(f"SanteGuardRoomRules: '{key}' is required")
        return config

    async def user_may_create_room(self, user_id: str, room_config: dict[str, Any]) -> Any:
        """Ask the gate, with the full creation body. Fails closed."""
        url = f"{self._url}/user_may_create_room"
        body = {"user_id": user_id, "room_config": room_config}
        try:
            await self._api.http_client.post_json_get_json(url, body, self._headers)
            return NOT_SPAM
        except HttpResponseException as e:
            try:
                data = json.loads(e.response)
                return Codes(data.pop("errcode")), data
            except Exception:
                return Codes.FORBIDDEN, {"error": "SantéGuard refused the room creation"}
        except Exception:
            logger.exception("SantéGuard gate unreachable; refusing room creation (fail closed)")
            return Codes.UNKNOWN, {"error": "SantéGuard gate unreachable; try again later"}

    async def on_create_room(
        self, requester: Requester, config: dict[str, Any], is_requester_admin: bool
    ) -> None:
        """Invite the enforcement user with the power to enforce, in every user-created room."""
        creator = requester.user.to_string()
        if creator == self._enforcer or getattr(requester, "app_service_id", None):
            return
        invite = config.setdefault("invite", [])
        if not isinstance(invite, list):
            raise SynapseError(400, "invite must be a list", Codes.BAD_JSON)
        if self._enforcer not in invite:
            invite.append(self._enforcer)
        override = config.setdefault("power_level_content_override", {})
        if not isinstance(override, dict):
            raise SynapseError(400, "power_level_content_override must be an object")
        users = override.setdefault("users", {})
        if isinstance(users, dict):
            version = str(config.get("room_version") or self._default_room_version)
            if version.isdigit() and int(version) < 12:
                # The override replaces the default users map: keep the creator's 100.
                users.setdefault(creator, 100)
            users[self._enforcer] = max(int(users.get(self._enforcer, 0)), self._level)
        if self._retention is not None:
            # A room is born with the network's retention, unless its creator chose one
            # (which the gate has already checked against the bounds).
            initial = config.setdefault("initial_state", [])
            if not isinstance(initial, list):
                raise SynapseError(400, "initial_state must be a list", Codes.BAD_JSON)
            if not any(
                isinstance(ev, dict)
                and ev.get("type") == "m.room.retention"
                and ev.get("state_key", "") == ""
                for ev in initial
            ):
                initial.append(
                    {
                        "type": "m.room.retention",
                        "state_key": "",
                        "content": {"max_lifetime": self._retention},
                    }
                )
