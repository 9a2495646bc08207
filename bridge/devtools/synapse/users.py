"""Talking to a throwaway Synapse over HTTP: one-off API requests and user creation.

Functions of a base URL (not of a process), so they stay correct when
:class:`~bridge.devtools.synapse.LocalSynapse` moves to another port on a retried start.
``request`` lives here because user creation is what it serves; it has no other state.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json as json_module
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypedDict, Unpack

import aiohttp

__all__ = [
    "AdminAccount",
    "RegisteredUser",
    "RequestOptions",
    "SynapseError",
    "register_appservice_user",
    "register_user",
    "request",
]


class SynapseError(RuntimeError):
    """A request to the local Synapse failed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RegisteredUser:
    """A user created on the local Synapse, with a logged-in device."""

    user_id: str
    access_token: str = field(repr=False)
    device_id: str
    password: str = field(repr=False)


class RequestOptions(TypedDict, total=False):
    """What :func:`request` takes besides the URL, method and path (all optional)."""

    token: str | None  # sent as a bearer token
    json: Any  # the request body
    expect: int | None  # the status that must come back: 200 when left out, None for any


async def request(
    base_url: str, method: str, path: str, **options: Unpack[RequestOptions]
) -> tuple[int, Any]:
    """Send one client-server/admin API request; return (status, decoded JSON body).

    Unless ``expect`` is None, any other status raises :class:`SynapseError` (whose
    message leaves out the query string, which may carry tokens).
    """
    if unknown := options.keys() - RequestOptions.__optional_keys__:
        raise TypeError(f"request() got unexpected options: {sorted(unknown)}")
    token = options.get("token")
    expect = options.get("expect", 200)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.request(method, base_url + path, headers=headers, json=options.get("json")) as resp,
    ):
        raw = await resp.text()
        body: Any
        try:
            body = json_module.loads(raw) if raw else None
        except ValueError:
            body = raw
        if expect is not None and resp.status != expect:
            errcode = body.get("errcode") if isinstance(body, dict) else None
            error = body.get("error") if isinstance(body, dict) else None
            raise SynapseError(
                f"{method} {path.split('?')[0]} -> {resp.status} {errcode}: {error}",
                status=resp.status,
            )
        return resp.status, body


async def register_user(
    base_url: str,
    shared_secret: str,
    localpart: str,
    password: str | None = None,
    *,
    admin: bool = False,
    displayname: str | None = None,
) -> RegisteredUser:
    """Create a user with the shared-secret admin API and return its first device."""
    password = password if password is not None else secrets.token_urlsafe(16)
    _, nonce_body = await request(base_url, "GET", "/_synapse/admin/v1/register")
    nonce: str = nonce_body["nonce"]
    mac = hmac.new(shared_secret.encode(), digestmod=hashlib.sha1)
    for part in (nonce, localpart, password):
        mac.update(part.encode("utf-8"))
        mac.update(b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    payload: dict[str, Any] = {
        "nonce": nonce,
        "username": localpart,
        "password": password,
        "admin": admin,
        "mac": mac.hexdigest(),
    }
    if displayname is not None:
        payload["displayname"] = displayname
    _, body = await request(base_url, "POST", "/_synapse/admin/v1/register", json=payload)
    return RegisteredUser(
        user_id=body["user_id"],
        access_token=body["access_token"],
        device_id=body["device_id"],
        password=password,
    )


async def register_appservice_user(
    base_url: str, server_name: str, as_token: str, localpart: str
) -> str:
    """Register an appservice's user (e.g. its ``sender_localpart``); return its ID.

    Synapse rejects the appservice's token until its sender user exists. Registering
    an already-existing user is treated as success.
    """
    status, body = await request(
        base_url,
        "POST",
        "/_matrix/client/v3/register",
        token=as_token,
        json={
            "type": "m.login.application_service",
            "username": localpart,
            "inhibit_login": True,
        },
        expect=None,
    )
    errcode = body.get("errcode") if isinstance(body, dict) else None
    if status == 200:
        user_id: str = body["user_id"]
        return user_id
    if status == 400 and errcode == "M_USER_IN_USE":
        return f"@{localpart}:{server_name}"
    raise SynapseError(f"appservice registration -> {status} {errcode}", status=status)


class AdminAccount:
    """The admin user of one homeserver, created once, on first use.

    Lazily, because most uses of a test homeserver need no admin; the lock keeps
    concurrent first uses from creating two.
    """

    def __init__(self) -> None:
        self.user: RegisteredUser | None = None
        self._lock = asyncio.Lock()

    async def token(self, register: Callable[[str], Awaitable[RegisteredUser]]) -> str:
        """The admin's access token; ``register(localpart)`` creates the admin if needed."""
        async with self._lock:
            if self.user is None:
                self.user = await register(f"sg_admin_{secrets.token_hex(4)}")
            return self.user.access_token
