"""The bot as an encrypted member of its rooms: one matrix-nio device (vodozemac backend).

Room events keep arriving through the durable appservice transactions; this device only
keeps the crypto state a real client keeps, through its own ``/sync`` loop (``sync``):
to-device room keys, one-time-key top-ups and device-list changes. ``m.room.encrypted``
events from the transactions are decrypted here (``decrypt``, ``key_requests``,
``undecryptable``) and then routed like clear ones. Replies to encrypted rooms
(``rooms``) are encrypted here too (``share``), with the room key shared only with the
devices of members that ``device_allowed`` accepts.

The device is created once with ``m.login.application_service`` and kept in the store
(``credentials``), so a restart reuses the same device and identity keys. ``BotDevice``
(``bot_device``) is the façade composing all of these. With several replicas the store
is kept in the database (``dbstore``), so whichever replica leads runs the same device.
See docs/e2ee.md.
"""

from bridge.e2ee.device.bot_device import BotDevice
from bridge.e2ee.device.dbstore import DeviceStoreDb, StoreError, StoreFenced
from bridge.e2ee.device.decrypt import UndecryptableNotice
from bridge.e2ee.device.share import DeviceAllowed

__all__ = [
    "BotDevice",
    "DeviceAllowed",
    "DeviceStoreDb",
    "StoreError",
    "StoreFenced",
    "UndecryptableNotice",
]
