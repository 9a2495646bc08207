"""Versioned schema upgrades, shared by PostgreSQL and SQLite.

Each ``vNN_*`` module exposes one ``upgrade`` coroutine. The table is built by a
function rather than kept as a module-level registry, so two databases (tests run
SQLite and PostgreSQL side by side) never share mutable state.
"""

from __future__ import annotations

import logging

from mautrix.util.async_db import UpgradeTable

from bridge.db.upgrade import (
    v01_initial,
    v02_directory,
    v03_gate,
    v04_enforcement,
    v05_mail,
    v06_retention,
    v07_audit_seal,
    v08_cluster,
    v09_e2ee_store,
    v10_intake_journal,
)

# Order matters: position N in this tuple upgrades the schema to version N + 1.
_STEPS = (
    (v01_initial.upgrade, "Initial schema: transactions, event queue, rooms, audit log"),
    (v02_directory.upgrade, "Directory: imported Annuaire Santé extract"),
    (v03_gate.upgrade, "Gate: verified accounts and per-room policy"),
    (v04_enforcement.upgrade, "Durable enforcement work; closed admin rooms"),
    (v05_mail.upgrade, "Mail bridge: links, allow-list, outbox, inbox, receipts"),
    (v06_retention.upgrade, "Retention: event ledger, purge-proof audits, inactive rooms"),
    (v07_audit_seal.upgrade, "Audit log seal: signed checkpoints, pruning anchor"),
    (v08_cluster.upgrade, "Cluster: change notifications, scheduled job claims"),
    (v09_e2ee_store.upgrade, "E2EE: the device and its crypto store in the database"),
    (v10_intake_journal.upgrade, "SQLite intake journal: its pairing with the database"),
)


def build_upgrade_table() -> UpgradeTable:
    """Return a fresh upgrade table with every schema step registered in order."""
    table = UpgradeTable(
        version_table_name="santeguard_version",
        database_name="SantéGuard",
        log=logging.getLogger("santeguard.db.upgrade"),
    )
    for fn, description in _STEPS:
        table.register(fn, description=description)
    return table
