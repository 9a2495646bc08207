"""Version 2: the imported Annuaire Santé extract (practitioners and their activities).

Rows are tagged with the ``directory_import`` that wrote them. An import writes under
its own id while readers keep using the current one, then a single transaction moves
the ``is_current`` flag and deletes the old rows: readers never see a half import. That
is why ``idnps`` is unique per import (primary key ``(idnps, import_id)``), not alone.
An activity is keyed by its source line number, which also lets an operator trace it.
"""

from __future__ import annotations

from mautrix.util.async_db import Connection, Scheme


async def upgrade(conn: Connection, scheme: Scheme) -> None:
    """Create the directory tables and their lookup/search indexes."""
    if scheme == Scheme.SQLITE:
        serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
        # SQLite compares TEXT bytewise by default, which prefix range scans rely on.
        bytewise = ""
        # Clustered on the primary key: one B-tree less to fill per row on import.
        clustered = " WITHOUT ROWID"
    else:
        serial = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
        # Locale collations ignore spaces and punctuation at first level, which would
        # break "name_norm >= 'dupont ' AND name_norm < 'dupont!'" prefix ranges.
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
    # At most one current import; the partial index works on both engines.
    await conn.execute(
        "CREATE UNIQUE INDEX directory_import_current_idx "
        "ON directory_import (is_current) WHERE is_current"
    )
    await conn.execute(
        f"""CREATE TABLE directory_practitioner (
            idnps             TEXT   NOT NULL,
            import_id         BIGINT NOT NULL,
            id_kind           TEXT   NOT NULL,
            identifier        TEXT   NOT NULL,
            last_name         TEXT   NOT NULL,
            first_name        TEXT   NOT NULL,
            civility_code     TEXT,
            civility          TEXT,
            practice_civility_code TEXT,
            practice_civility TEXT,
            profession_code   TEXT,
            profession_label  TEXT,
            category_code     TEXT,
            specialty_code    TEXT,
            specialty_label   TEXT,
            name_norm         TEXT   {bytewise} NOT NULL,
            PRIMARY KEY (idnps, import_id)
        ){clustered}"""
    )
    await conn.execute(
        "CREATE INDEX directory_practitioner_name_idx "
        "ON directory_practitioner (import_id, name_norm)"
    )
    await conn.execute(
        f"""CREATE TABLE directory_activity (
            idnps          TEXT   NOT NULL,
            import_id      BIGINT NOT NULL,
            line_no        BIGINT NOT NULL,
            mode_code      TEXT,
            structure_id   TEXT,
            siret          TEXT,
            finess         TEXT,
            structure_name TEXT,
            address        TEXT,
            postal_code    TEXT,
            city_code      TEXT,
            city           TEXT,
            city_norm      TEXT {bytewise},
            department_code TEXT,
            phone          TEXT,
            email          TEXT,
            sector_code    TEXT,
            sector_label   TEXT,
            PRIMARY KEY (idnps, import_id, line_no)
        ){clustered}"""
    )
