"""Database access: one ``mautrix.util.async_db.Database``, upgraded at start."""

from __future__ import annotations

from bridge.db.upgrade import build_upgrade_table

__all__ = ["build_upgrade_table"]
