"""The bot's cross-signing identity: master, self-signing and user-signing keys.

Element shows a device as trusted by its owner only if the owner's self-signing key
(itself signed by the master key) signed it. matrix-nio 0.26 has no cross-signing, so
this module generates the three Ed25519 keys once, keeps their seeds in a 0600 file next
to the nio store (the same identity across restarts), publishes them and signs the
bot's device.

Publishing (``POST /keys/device_signing/upload``) normally needs user-interactive auth
(a password) when keys already exist; an appservice user has none. Synapse 1.163 skips
UIA on first upload (MSC3967) and whenever the request is authenticated with the
appservice's ``as_token`` (``requester.app_service_id``, the MSC4190 path), so the upload
is sent with the ``as_token`` and ``?user_id=`` masquerading. Re-sending identical keys
is a no-op on Synapse.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.e2ee.errors import CryptoError
from bridge.e2ee.files import read_json, write_private_json
from bridge.e2ee.http import HomeserverApi
from bridge.e2ee.signing import SigningKey, verify_json

log = logging.getLogger("santeguard.crypto.xsign")

FILE_NAME = "cross_signing.json"


@dataclass(frozen=True)
class CrossSigningKeys:
    user_id: str
    master: SigningKey
    self_signing: SigningKey
    user_signing: SigningKey

    @classmethod
    def load_or_create(cls, store: Path, user_id: str) -> CrossSigningKeys:
        """The persisted keys, or new ones written 0600 before anything is published."""
        path = store / FILE_NAME
        data = read_json(path)
        if isinstance(data, dict) and data.get("user_id") == user_id:
            return cls(
                user_id,
                SigningKey.from_b64(str(data["master"])),
                SigningKey.from_b64(str(data["self_signing"])),
                SigningKey.from_b64(str(data["user_signing"])),
            )
        if data is not None:
            raise CryptoError(f"{path} belongs to another user; refusing to overwrite it")
        keys = cls(user_id, SigningKey.generate(), SigningKey.generate(), SigningKey.generate())
        write_private_json(
            path,
            {
                "user_id": user_id,
                "master": keys.master.seed_b64(),
                "self_signing": keys.self_signing.seed_b64(),
                "user_signing": keys.user_signing.seed_b64(),
            },
        )
        log.info("Generated a cross-signing identity (master key %s)", keys.master.public_key)
        return keys

    def _key(self, usage: str, key: SigningKey) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "usage": [usage],
            "keys": {f"ed25519:{key.public_key}": key.public_key},
        }

    def master_key(self) -> dict[str, Any]:
        return self._key("master", self.master)

    def upload_body(self) -> dict[str, Any]:
        """The ``device_signing/upload`` body: sub-keys signed by the master key."""
        return {
            "master_key": self.master_key(),
            "self_signing_key": self.master.sign_json(
                self._key("self_signing", self.self_signing), self.user_id
            ),
            "user_signing_key": self.master.sign_json(
                self._key("user_signing", self.user_signing), self.user_id
            ),
        }


def _public(keys_by_user: Any, user_id: str) -> str | None:
    entry = keys_by_user.get(user_id) if isinstance(keys_by_user, dict) else None
    if not isinstance(entry, dict):
        return None
    values = list((entry.get("keys") or {}).values())
    return str(values[0]) if len(values) == 1 else None


async def publish(
    api: HomeserverApi,
    keys: CrossSigningKeys,
    *,
    device_id: str,
    device_token: str,
    as_token: str,
    device_sign_json: Callable[[dict[str, Any]], dict[str, Any]],
) -> bool:
    """Make the homeserver hold our keys and the device's signatures; True if it changed."""
    uid = keys.user_id
    _, found = await api.request(
        "POST", "/keys/query", token=device_token, json={"device_keys": {uid: []}}
    )
    changed = False
    published = (
        _public(found.get("master_keys"), uid),
        _public(found.get("self_signing_keys"), uid),
        _public(found.get("user_signing_keys"), uid),
    )
    ours = (keys.master.public_key, keys.self_signing.public_key, keys.user_signing.public_key)
    if published != ours:
        if published[0] is not None and published[0] != ours[0]:
            log.warning("Replacing the bot's published cross-signing identity with the stored one")
        await api.request(
            "POST",
            "/keys/device_signing/upload",
            token=as_token,
            params={"user_id": uid},
            json=keys.upload_body(),
        )
        changed = True
    device = ((found.get("device_keys") or {}).get(uid) or {}).get(device_id)
    if not isinstance(device, dict):
        raise CryptoError(f"the homeserver has no keys for the bot's device {device_id}")
    signatures: dict[str, Any] = {}
    if changed or not verify_json(device, uid, keys.self_signing.public_key):
        bare = {k: v for k, v in device.items() if k not in ("signatures", "unsigned")}
        signatures[device_id] = keys.self_signing.sign_json(bare, uid)
    master = found.get("master_keys", {}).get(uid) if not changed else None
    if changed or not isinstance(master, dict) or not _signed_by_device(master, uid, device_id):
        # The device vouches for the master key too, as Element's own devices do.
        signatures[keys.master.public_key] = device_sign_json(keys.master_key())
    if signatures:
        _, result = await api.request(
            "POST", "/keys/signatures/upload", token=device_token, json={uid: signatures}
        )
        failures = result.get("failures") or {}
        if failures:
            raise CryptoError(f"signature upload refused: {failures}")
        changed = True
    return changed


def _signed_by_device(obj: dict[str, Any], user_id: str, device_id: str) -> bool:
    return f"ed25519:{device_id}" in (obj.get("signatures") or {}).get(user_id, {})
