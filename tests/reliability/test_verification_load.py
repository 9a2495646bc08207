"""The bindings' snapshot is read back by pages (bench.scale: 100,000 bindings).

A page boundary must neither lose nor repeat a binding, and every field must come back
as bound, on both databases; names shared by several bindings are stored once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mautrix.util.async_db import Database

from bridge.devtools.people import practitioner
from bridge.identity.model import Verification
from bridge.identity.store import VerificationStore


async def test_load_by_pages_keeps_every_binding(db: Database) -> None:
    writer = VerificationStore(db)
    now = datetime.now(UTC).replace(microsecond=0)
    bound: dict[str, Verification] = {}
    for n in range(7):  # pages of 3: two full pages and a partial one
        p = practitioner(810_000_000 + n, last="MARTIN" if n % 2 else f"NOM{n}", first="Anne")
        v = Verification.of(p, "manual", now - timedelta(hours=n), timedelta(days=30 + n))
        await writer.bind(f"@user{n}:santeguard.test", v, bound_by="test")
        bound[f"@user{n}:santeguard.test"] = v
    reader = VerificationStore(db, load_page=3)
    await reader.load()
    assert reader.verified_users() == bound
    martins = [v.last_name for v in reader.verified_users().values() if v.last_name == "MARTIN"]
    assert len(martins) == 3 and all(name is martins[0] for name in martins)

    await writer.unbind("@user3:santeguard.test")
    await reader.load()
    assert set(reader.verified_users()) == set(bound) - {"@user3:santeguard.test"}
