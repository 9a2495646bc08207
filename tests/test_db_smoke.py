from mautrix.util.async_db import Database

from bridge.db.upgrade import _STEPS


async def test_schema_upgrades_and_tables_exist(db: Database) -> None:
    for table in ("txn", "dead_letter", "room", "audit_log"):
        assert await db.table_exists(table), table
    assert await db.fetchval("SELECT version FROM santeguard_version") == len(_STEPS)
