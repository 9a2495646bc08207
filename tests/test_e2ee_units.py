"""E2EE pieces without a homeserver: JSON signing, key files, config, command, routing."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import verify_signed_json

from bot.i18n import Lang
from bridge.app.wiring import build_translator
from bridge.config import Config
from bridge.e2ee.commands import EncryptionCommands, UndecryptableNotifier
from bridge.e2ee.cross_signing import CrossSigningKeys
from bridge.e2ee.errors import CryptoError
from bridge.e2ee.files import ensure_private_dir, read_json, write_private_json
from bridge.e2ee.hooks import EncryptedEvents
from bridge.e2ee.signing import (
    SigningKey,
    canonical_json,
    unpadded_b64decode,
    verify_json,
)
from bridge.e2ee.status import RoomEncryption, UndecryptableDevice
from bridge.spine.routes import EventRoutes
from tests.bot.harness import FakeClock, FakeServices, make_room
from tests.helpers import make_config

USER = "@santeguard:santeguard.test"


def test_canonical_json_is_the_spec_form() -> None:
    assert canonical_json({"b": 1, "a": {"d": "é", "c": [1, 2]}}) == (
        '{"a":{"c":[1,2],"d":"é"},"b":1}'.encode()
    )


def test_signatures_verify_with_synapse_signedjson() -> None:
    """Our signing is what Synapse checks uploads with (signedjson)."""
    key = SigningKey.generate()
    obj = {"user_id": USER, "usage": ["master"], "keys": {f"ed25519:{key.public_key}": "x"}}
    signed = key.sign_json({**obj, "unsigned": {"ignored": True}}, USER)
    verify_key = decode_verify_key_bytes(
        f"ed25519:{key.public_key}", unpadded_b64decode(key.public_key)
    )
    verify_signed_json(signed, USER, verify_key)  # raises if invalid
    assert verify_json(signed, USER, key.public_key)
    signed["usage"] = ["self_signing"]
    assert not verify_json(signed, USER, key.public_key)


def test_signing_key_never_prints_its_seed() -> None:
    key = SigningKey.generate()
    assert key.seed_b64() not in repr(key)
    assert SigningKey.from_b64(key.seed_b64()).public_key == key.public_key


def test_cross_signing_keys_persist_privately(tmp_path: Path) -> None:
    store = ensure_private_dir(tmp_path / "crypto")
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    first = CrossSigningKeys.load_or_create(store, USER)
    again = CrossSigningKeys.load_or_create(store, USER)
    assert again.master.public_key == first.master.public_key
    assert again.self_signing.public_key == first.self_signing.public_key
    assert again.user_signing.public_key == first.user_signing.public_key
    path = store / "cross_signing.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(CryptoError):
        CrossSigningKeys.load_or_create(store, "@other:santeguard.test")


def test_upload_body_sub_keys_are_signed_by_the_master_key(tmp_path: Path) -> None:
    keys = CrossSigningKeys.load_or_create(tmp_path, USER)
    body = keys.upload_body()
    assert body["master_key"]["usage"] == ["master"]
    for name, usage in (("self_signing_key", "self_signing"), ("user_signing_key", "user_signing")):
        sub = body[name]
        assert sub["usage"] == [usage]
        assert verify_json(sub, USER, keys.master.public_key)


def test_private_json_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "device.json"
    write_private_json(path, {"a": 1})
    write_private_json(path, {"a": 2})
    assert read_json(path) == {"a": 2}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["device.json"]
    assert read_json(tmp_path / "missing.json") is None


def test_encryption_config_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_config("sqlite:///x.db")
    assert cfg.encryption.enabled is True
    assert cfg.encryption.store_path == "santeguard-crypto"
    monkeypatch.setenv("SANTEGUARD_ENCRYPTION__ENABLED", "false")
    monkeypatch.setenv("SANTEGUARD_ENCRYPTION__STORE_PATH", "/var/lib/santeguard/crypto")
    data = make_config("sqlite:///x.db").model_dump()
    data.pop("encryption")
    cfg = Config(**data)
    assert cfg.encryption.enabled is False
    assert cfg.encryption.store_path == "/var/lib/santeguard/crypto"


# -- the command --------------------------------------------------------------------


class FakeStatus:
    def __init__(self, state: RoomEncryption) -> None:
        self.state = state

    async def room_encryption(self, room_id: str) -> RoomEncryption:
        return self.state


@pytest.mark.parametrize("lang", ["fr", "en"])
async def test_encryption_report_lists_undecryptable_devices(lang: Lang) -> None:
    state = RoomEncryption(
        encrypted=True,
        algorithm="m.megolm.v1.aes-sha2",
        bot_device_id="BOTDEVICE",
        cross_signed=True,
        undecryptable=(UndecryptableDevice("@dr.martin:hopital.example", "PHONE", 2, 0),),
    )
    room = make_room(
        EncryptionCommands(FakeStatus(state)),
        translator=build_translator(strict=True),
        clock=FakeClock(),
        services=FakeServices(),
        default_language=lang,
    )
    reply = await room.ask("!sg encryption")
    assert reply == await room.ask("!sg chiffrement")
    assert "m.megolm.v1.aes-sha2" in reply and "BOTDEVICE" in reply
    assert "@dr.martin:hopital.example" in reply and "PHONE" in reply
    assert "1970-01-01 00:00 UTC" in reply


async def test_encryption_report_for_a_clear_room_and_when_disabled() -> None:
    clear = RoomEncryption(False, None, "BOTDEVICE", True, ())
    room = make_room(
        EncryptionCommands(FakeStatus(clear)),
        translator=build_translator(strict=True),
        clock=FakeClock(),
        services=FakeServices(),
    )
    reply = await room.ask("!sg encryption")
    assert "**non**" in reply and "tous les messages" in reply
    off = make_room(
        EncryptionCommands(None),
        translator=build_translator(strict=True),
        clock=FakeClock(),
        services=FakeServices(),
        default_language="en",
    )
    assert "switched off" in await off.ask("!sg encryption")


class Recorder:
    bot_mxid = USER

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.language: str | None = "en"

    async def send_notice(self, room_id: str, text: str, html: str | None = None) -> str:
        self.sent.append((room_id, text))
        return "$notice"


class Rooms:
    def __init__(self, language: str | None) -> None:
        self._language = language

    async def language(self, room_id: str) -> str | None:
        return self._language


async def test_undecryptable_notice_follows_the_room_language() -> None:
    matrix = Recorder()
    notify = UndecryptableNotifier(build_translator(strict=True), Rooms("en"), matrix, "fr")
    await notify("!r:x", "@a:x", "DEV")
    notify_fr = UndecryptableNotifier(build_translator(strict=True), Rooms(None), matrix, "fr")
    await notify_fr("!r:x", "@a:x", "DEV")
    (_, en), (_, fr) = matrix.sent
    assert en.startswith("I could not decrypt") and "`DEV`" in en
    assert fr.startswith("Je n'ai pas pu déchiffrer") and "`@a:x`" in fr


# -- routing ------------------------------------------------------------------------


class FakeCrypto:
    def __init__(self, clear: dict[str, Any] | None) -> None:
        self.clear = clear
        self.noted: list[str] = []

    def note_encryption(self, room_id: str) -> None:
        self.noted.append(room_id)

    async def decrypt(self, event: dict[str, Any]) -> dict[str, Any] | None:
        return self.clear


class Backstop:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def on_create(self, event: dict[str, Any]) -> bool:
        return False

    async def on_member(self, event: dict[str, Any]) -> bool:
        return False

    async def on_message(self, event: dict[str, Any]) -> bool:
        self.messages.append(event)
        return True


def _encrypted(sender: str = "@a:santeguard.test") -> dict[str, Any]:
    return {
        "type": "m.room.encrypted",
        "room_id": "!r:santeguard.test",
        "event_id": "$e",
        "sender": sender,
        "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "..."},
    }


async def test_router_sends_decrypted_messages_to_commands_not_to_the_backstop() -> None:
    seen: list[dict[str, Any]] = []

    async def on_message(event: dict[str, Any]) -> bool:
        seen.append(event)
        return True

    clear = {**_encrypted(), "type": "m.room.message", "content": {"body": "!sg ping"}}
    crypto, backstop = FakeCrypto(clear), Backstop()
    matrix: Any = Recorder()
    router = EventRoutes(matrix.bot_mxid)
    # The same registrations as the application's: guard, commands, decrypted commands.
    router.guard("m.room.message", backstop.on_message, ignore_own=True)
    router.on("m.room.message", on_message, ignore_own=True)
    router.on_decrypted("m.room.message", on_message)
    joined = Joined({"!r:santeguard.test"})
    EncryptedEvents(crypto, joined).subscribe(router)
    assert await router.handle(_encrypted())
    assert seen == [clear] and backstop.messages == []
    # Given up (None): handled, nothing routed. The bot's own events are not decrypted.
    crypto.clear = None
    assert await router.handle(_encrypted())
    assert not await router.handle(_encrypted(sender=USER))
    assert len(seen) == 1
    await router.handle(
        {
            "type": "m.room.encryption",
            "room_id": "!r2:x",
            "event_id": "$s",
            "sender": "@a:x",
            "state_key": "",
            "content": {"algorithm": "m.megolm.v1.aes-sha2"},
        }
    )
    assert crypto.noted == ["!r2:x"]


class Joined:
    def __init__(self, rooms: set[str]) -> None:
        self.rooms = rooms

    def is_joined(self, room_id: str) -> bool:
        return room_id in self.rooms


async def test_events_of_rooms_the_bot_was_not_invited_to_are_not_decrypted() -> None:
    """No key request, no wait for keys that never come, no hold-up of the room."""
    clear = {**_encrypted(), "type": "m.room.message", "content": {"body": "secret"}}

    class Counting(FakeCrypto):
        calls = 0

        async def decrypt(self, event: dict[str, Any]) -> dict[str, Any] | None:
            Counting.calls += 1
            return await super().decrypt(event)

    crypto = Counting(clear)
    router = EventRoutes(USER)
    seen: list[dict[str, Any]] = []

    async def on_message(event: dict[str, Any]) -> bool:
        seen.append(event)
        return True

    router.on_decrypted("m.room.message", on_message)
    joined = Joined(set())
    EncryptedEvents(crypto, joined).subscribe(router)
    assert not await router.handle(_encrypted())
    assert Counting.calls == 0 and seen == []
    joined.rooms.add("!r:santeguard.test")  # the bot was invited and joined
    assert await router.handle(_encrypted())
    assert Counting.calls == 1 and seen == [clear]
