"""The device's identity on the homeserver: created once, then reused across restarts.

The bot user has no password, so the device is logged in once with
``m.login.application_service``; its ID, token and pickle key are kept 0600 in
``device.json`` next to the nio store, so a restart keeps the same device and identity
keys (a new device would need every client to learn and trust it again).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nio import AsyncClient, AsyncClientConfig, KeysUploadError
from nio.store import SqliteStore

from bridge.core.errors import TransientError
from bridge.e2ee.files import read_json, write_private_json
from bridge.e2ee.http import HomeserverApi
from bridge.e2ee.signing import sign_json

log = logging.getLogger("santeguard.crypto")

CREDENTIALS_FILE = "device.json"


@dataclass(frozen=True, slots=True)
class DeviceCredentials:
    """What restores the device; the secrets stay out of ``repr`` (and so out of logs)."""

    device_id: str
    access_token: str = field(repr=False)
    pickle_key: str = field(repr=False)


async def load_or_login(
    api: HomeserverApi, store: Path, *, user_id: str, as_token: str, display_name: str
) -> DeviceCredentials:
    """The stored device, if its token still works; otherwise a new appservice login."""
    path = store / CREDENTIALS_FILE
    data = read_json(path)
    if isinstance(data, dict) and data.get("user_id") == user_id:
        creds = DeviceCredentials(
            device_id=str(data["device_id"]),
            access_token=str(data["access_token"]),
            pickle_key=str(data["pickle_key"]),
        )
        status, who = await api.request(
            "GET", "/account/whoami", token=creds.access_token, ok=(200, 401)
        )
        if status == 200 and who.get("device_id") == creds.device_id:
            return creds
        # Only a revoked token (device deleted by an admin) ever leads here.
        log.warning(
            "The stored device %s is no longer valid; logging in a new one", creds.device_id
        )
    _, body = await api.request(
        "POST",
        "/login",
        token=as_token,
        json={
            "type": "m.login.application_service",
            "identifier": {"type": "m.id.user", "user": user_id},
            "initial_device_display_name": display_name,
        },
    )
    creds = DeviceCredentials(
        device_id=str(body["device_id"]),
        access_token=str(body["access_token"]),
        pickle_key=secrets.token_urlsafe(32),
    )
    write_private_json(
        path,
        {
            "user_id": user_id,
            "device_id": creds.device_id,
            "access_token": creds.access_token,
            "pickle_key": creds.pickle_key,
        },
    )
    log.info("Created the bot's encrypted device %s", creds.device_id)
    return creds


def open_client(
    homeserver: str, user_id: str, store: Path, creds: DeviceCredentials, *, verify_ssl: bool
) -> AsyncClient:
    """A nio client logged in as the device, its crypto state pickled in ``store``."""
    client = AsyncClient(
        homeserver,
        user_id,
        device_id=creds.device_id,
        store_path=str(store),
        config=AsyncClientConfig(
            store=SqliteStore,
            encryption_enabled=True,
            store_sync_tokens=True,
            pickle_key=creds.pickle_key,
            max_timeouts=2,
            request_timeout=30,
        ),
        ssl=None if verify_ssl else False,
    )
    client.restore_login(user_id, creds.device_id, creds.access_token)
    return client


async def close_client(client: AsyncClient) -> None:
    """Close the HTTP session and the store (nio leaves the SQLite handle open)."""
    await client.close()
    if client.store is not None:
        client.store.database.close()


async def upload_keys(client: AsyncClient) -> None:
    """Publish the device and one-time keys nio has pending; no keys, no encrypted DMs."""
    if client.should_upload_keys:
        resp = await client.keys_upload()
        if isinstance(resp, KeysUploadError):
            raise TransientError(f"device key upload failed: {resp.status_code}")


def device_signer(client: AsyncClient, user_id: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Signs JSON with the device's ed25519 key, as cross-signing needs of the device."""

    def device_sign_json(obj: dict[str, Any]) -> dict[str, Any]:
        account = client.olm.account

        def sign(message: bytes) -> str:
            return str(account.sign(message.decode("utf-8")))

        return sign_json(obj, user_id, str(client.device_id), sign)

    return device_sign_json
