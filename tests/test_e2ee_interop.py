"""Element's Rust crypto (matrix-js-sdk 37.5 + matrix-sdk-crypto-wasm) against the bot.

The Node script (tests/e2ee_node/interop.mjs) is a practitioner's client: it creates an
encrypted room, invites the bot, sends encrypted commands and must decrypt the bot's
encrypted replies with no warning shield, the bot's device being signed by its owner's
cross-signing identity. Its dependencies come from ``npm ci --prefix tests/e2ee_node``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from bridge.devtools.stack import DevStack

NODE = shutil.which("node")
NODE_DIR = Path(__file__).parent / "e2ee_node"

pytestmark = [
    pytest.mark.synapse,
    pytest.mark.skipif(
        NODE is None, reason="node (Node.js >= 20) is not installed: needed for matrix-js-sdk"
    ),
]


def _report(output: str) -> dict[str, Any]:
    for line in reversed(output.strip().splitlines()):
        if line.startswith('{"ok"'):
            report: dict[str, Any] = json.loads(line)
            return report
    raise AssertionError("the Node script printed no report:\n" + output[-3000:])


async def _run_interop(stack: DevStack, localpart: str) -> dict[str, Any]:
    """Run the Node practitioner against the stack; return its report (asserted ok)."""
    assert NODE is not None
    if not (NODE_DIR / "node_modules" / "matrix-js-sdk").is_dir():
        pytest.fail("matrix-js-sdk is not installed: run `npm ci --prefix tests/e2ee_node`")
    sg = stack.santeguard
    assert sg is not None and sg.crypto is not None and sg.crypto.device_id
    user = await stack.synapse.register_user(f"{localpart}{time.monotonic_ns()}")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "SG_HOMESERVER": stack.synapse.base_url,
        "SG_USER_ID": user.user_id,
        "SG_DEVICE_ID": user.device_id,
        "SG_ACCESS_TOKEN": user.access_token,
        "SG_BOT_ID": stack.bot_mxid,
        "SG_BOT_DEVICE_ID": sg.crypto.device_id,
        "SG_TIMEOUT_MS": "60000",
    }
    proc = await asyncio.create_subprocess_exec(
        NODE,
        str(NODE_DIR / "interop.mjs"),
        cwd=NODE_DIR,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    output = out.decode("utf-8", "replace")
    report = _report(output)
    assert proc.returncode == 0 and report["ok"], output[-3000:]
    report["user_id"] = user.user_id
    return report


async def test_element_rust_crypto_exchanges_encrypted_messages_with_the_bot(
    stack: DevStack,
) -> None:
    report = await _run_interop(stack, "rusty")
    assert stack.santeguard is not None and stack.santeguard.crypto is not None
    bot_device = stack.santeguard.crypto.device_id
    assert report["bot_device"]["signedByOwner"] is True
    commands = [r["command"] for r in report["replies"]]
    assert commands == ["!sg ping", "!sg chiffrement"]
    for reply in report["replies"]:
        assert reply["sent_encrypted"] and reply["reply_encrypted"]
        assert reply["reply_sender_device"] == bot_device
        assert reply["shield"] == "NONE", reply  # red UNSIGNED_DEVICE without cross-signing
    assert report["replies"][0]["reply_body"].startswith("pong")
    assert bot_device in report["replies"][1]["reply_body"]


async def test_a_lost_room_key_is_requested_from_the_rust_sender(stack: DevStack) -> None:
    """The bot asks the sending device again; Rust crypto re-shares it as a forward."""
    assert stack.santeguard is not None and stack.santeguard.crypto is not None
    crypto = stack.santeguard.crypto
    olm: Any = crypto._client.olm
    receive = olm._handle_room_key_event
    dropped: list[str] = []

    def lose_first_key(sender: str, sender_key: str, payload: dict[str, Any]) -> Any:
        if sender.startswith("@lossy") and not dropped:
            dropped.append(payload["content"]["session_id"])
            return None  # as if the to-device message had been lost
        return receive(sender, sender_key, payload)

    olm._handle_room_key_event = lose_first_key
    try:
        report = await _run_interop(stack, "lossy")
    finally:
        olm._handle_room_key_event = receive
    assert dropped, "the room key was never received"
    assert dropped[0] in crypto._key_requests
    assert report["replies"][0]["reply_body"].startswith("pong")
