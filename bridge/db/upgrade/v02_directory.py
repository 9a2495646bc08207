"""Version 2: the imported Annuaire Santé extract (practitioners and their activities).

Rows are tagged with the ``directory_import`` that wrote them. An import writes under
its own id while readers keep using the current one; a single transaction then moves
the ``is_current`` flag and deletes the old rows, so readers never see a half import.

Every key starts with ``import_id``: a new import (higher id) appends at the end of each
B-tree instead of interleaving with the previous import, and dropping the old import
is a contiguous range delete. Name search has its own table, ``directory_name``,
filled in name order once the practitioners are loaded, because keeping a name index
up to date row by row during a 2-million-line load is the slowest part of an import.
"""

from __future__ import annotations

from mautrix.util.async_db import Connection, Scheme


async def upgrade(conn: Connection, scheme: Scheme) -> None:
    """Create the directory tables."""
    if scheme == Scheme.SQLITE:
        serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
        # SQLite compares TEXT bytewise by default, which prefix range scans rely on.
        bytewise = ""
        # Clustered on the primary key: no separate rowid B-tree to fill.
        clustered = " WITHOUT ROWID"
    else:
        serial = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
        # Locale collations ignore spaces at first level, which would break
        # "name_norm >= 'dupont j' AND name_norm < 'dupont k'" prefix ranges.
        bytewise = 'COLLATE "C"'
        clustered = ""
    await conn.execute(
        f"""CREATE TABLE directory_import (
            id            {serial},
            started_at    BIGINT  NOT NULL,
            finished_at   BIGINT,
            source_name   TEXT    NOT NULL,
            rows_read     BIGINT  NOT NULL DEFAULT 0,
            rows_kept     BIGINT  NOT NULL DEFAULT 0,
            rows_rejected BIGINT  NOT NULL DEFAULT 0,
            practitioners BIGINT  NOT NULL DEFAULT 0,
            status        TEXT    NOT NULL DEFAULT 'running',
            is_current    BOOLEAN NOT NULL DEFAULT false,
            error         TEXT
        )"""
    )
    # At most one current import; a partial unique index works on both engines.
    await conn.execute(
        "CREATE UNIQUE INDEX directory_import_current_idx "
        "ON directory_import (is_current) WHERE is_current"
    )
    # Empty optional values are stored as '' (as in the file), read back as None.
    await conn.execute(
        f"""CREATE TABLE directory_practitioner (
            import_id              BIGINT NOT NULL,
            idnps                  TEXT   NOT NULL,
            id_kind                TEXT   NOT NULL,
            identifier             TEXT   NOT NULL,
            last_name              TEXT   NOT NULL,
            first_name             TEXT   NOT NULL,
            civility_code          TEXT,
            civility               TEXT,
            practice_civility_code TEXT,
            practice_civility      TEXT,
            profession_code        TEXT,
            profession_label       TEXT,
            category_code          TEXT,
            skill_type             TEXT,
            skill_code             TEXT,
            skill_label            TEXT,
            name_norm              TEXT   NOT NULL,
            PRIMARY KEY (import_id, idnps)
        ){clustered}"""
    )
    await conn.execute(
        f"""CREATE TABLE directory_name (
            import_id BIGINT NOT NULL,
            name_norm TEXT   {bytewise} NOT NULL,
            idnps     TEXT   NOT NULL,
            PRIMARY KEY (import_id, name_norm, idnps)
        ){clustered}"""
    )
    await conn.execute(
        f"""CREATE TABLE directory_activity (
            import_id       BIGINT NOT NULL,
            idnps           TEXT   NOT NULL,
            line_no         BIGINT NOT NULL,
            mode_code       TEXT,
            structure_id    TEXT,
            structure_name  TEXT,
            postal_code     TEXT,
            city_code       TEXT,
            city            TEXT,
            city_norm       TEXT,
            department_code TEXT,
            email           TEXT,
            sector_code     TEXT,
            PRIMARY KEY (import_id, idnps, line_no)
        ){clustered}"""
    )
