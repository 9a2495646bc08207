"""`santeguard audit verify | export` as an operator runs them, on SQLite and PostgreSQL:
entries recorded through the log and sealed, then tampered with directly in SQL."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import yaml
from mautrix.util.async_db import Database

import bridge.cli
from bridge.audit import cli as audit_cli
from bridge.audit.config import AuditConfig
from bridge.audit.keys import load_signing_key
from bridge.audit.log import AuditLog
from bridge.audit.seal import sign, to_line
from bridge.audit.sealer import AuditSealer
from bridge.devtools.testconfig import AS_TOKEN, GATE_TOKEN, HS_TOKEN

Run = Callable[..., Awaitable[tuple[int, str, str]]]
ENTRIES = 30


@pytest.fixture
def config(tmp_path: Path, db_uri: str) -> Path:
    """A config in its own folder: the key and checkpoint files are found next to it
    (their default, relative paths), not in the working directory."""
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "config.yaml"
    data = {
        "homeserver": {"address": "http://127.0.0.1:9", "domain": "santeguard.test"},
        "appservice": {
            "address": "http://127.0.0.1:29340",
            "as_token": AS_TOKEN,
            "hs_token": HS_TOKEN,
        },
        "antispam": {"token": GATE_TOKEN},
        "database": {"uri": db_uri},
    }
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """``santeguard …`` through the real entry point, with ``audit`` registered the way
    the capability declares it."""
    monkeypatch.setattr(bridge.cli, "_capability_parsers", lambda: [audit_cli.add_parser])

    async def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(bridge.cli.main, list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


async def _sealed_log(db: Database, config: Path) -> AuditSealer:
    settings = audit_cli.audit_settings(None, str(config))
    key = load_signing_key(settings, create=True)
    sealer = AuditSealer(db, AuditLog(db), key, settings.checkpoint_file)
    for i in range(ENTRIES):
        await sealer.audit_log.record(
            "gate", "gate.refused", room_id="!r:x", subject=f"@u{i + 1}:x", details={"i": i}
        )
    cp = await sealer.checkpoint()
    assert cp is not None and cp.seq == ENTRIES and cp.count == ENTRIES
    for i in range(3):  # not sealed yet
        await sealer.audit_log.record("bot", "command.run", subject=f"@a{i}:x")
    return sealer


async def _swap(db: Database, a: int, b: int) -> None:
    """Exchange two stored entries (PostgreSQL's identity column cannot be updated, so
    the contents move rather than the numbers: the same reordering)."""
    cols = "ts, actor, action, room_id, subject, details, prev_hash, hash"
    ra = await db.fetchrow(f"SELECT {cols} FROM audit_log WHERE seq = $1", a)
    rb = await db.fetchrow(f"SELECT {cols} FROM audit_log WHERE seq = $1", b)
    assert ra is not None and rb is not None
    sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(cols.split(", ")))
    await db.execute(f"UPDATE audit_log SET {sets} WHERE seq = $1", a, *list(rb))
    await db.execute(f"UPDATE audit_log SET {sets} WHERE seq = $1", b, *list(ra))


TAMPERING: dict[str, tuple[str, list[tuple[str, int]], list[str]]] = {
    # name: (SQL or a marker, findings (kind, seq), French lines that say where)
    "update": (
        "UPDATE audit_log SET details = '{\"i\": 99}' WHERE seq = 12",
        [("edited", 12)],
        ["n° 12 : entrée modifiée"],
    ),
    "delete": (
        "DELETE FROM audit_log WHERE seq = 12",
        [("gap", 13), ("checkpoint_count", ENTRIES)],
        [
            "n° 13 : chaîne rompue entre le n° 11 et le n° 13",
            f"n° {ENTRIES} : le point de contrôle compte {ENTRIES} entrées jusqu'ici, "
            f"le journal en a {ENTRIES - 1}",
        ],
    ),
    "swap": ("swap", [("moved", 13), ("out_of_order", 14)], ["n° 13 : entrée déplacée"]),
    "delete-last-rows": (
        "DELETE FROM audit_log WHERE seq > 25",
        [("truncated", ENTRIES)],
        [f"n° {ENTRIES} : journal tronqué : au moins 5 entrée(s) après le n° 25"],
    ),
    "rewind-db": (
        "rewind",
        [("missing_from_db", ENTRIES), ("truncated", ENTRIES)],
        ["la base a été remise en arrière"],
    ),
}


@pytest.mark.parametrize("name", TAMPERING)
async def test_verify_finds_sql_tampering_and_says_where(
    db: Database, config: Path, run: Run, name: str
) -> None:
    await _sealed_log(db, config)
    code, out, _ = await run("audit", "verify", "-c", str(config))
    assert code == 0, out
    assert f"{ENTRIES + 3} entrées vérifiées" in out and "OK" in out
    assert "3 entrées plus récentes ne sont pas encore scellées" in out
    sql, findings, lines = TAMPERING[name]
    if sql == "swap":
        await _swap(db, 12, 13)
    elif sql == "rewind":  # the owner cuts the log and the checkpoints that sealed it
        await db.execute("DELETE FROM audit_log WHERE seq > 20")
        await db.execute("DELETE FROM audit_checkpoint")
    else:
        await db.execute(sql)
    code, out, _ = await run("audit", "verify", "-c", str(config))
    assert code == 1, out
    assert "ALTÉRATION DÉTECTÉE" in out
    for line in lines:
        assert line in out
    code, out, _ = await run("audit", "verify", "-c", str(config), "--json", "--lang", "en")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert sorted((f["kind"], f["seq"]) for f in report["findings"]) == sorted(findings)


async def test_verify_forged_checkpoint_and_missing_file(
    db: Database, config: Path, run: Run
) -> None:
    sealer = await _sealed_log(db, config)
    forger = load_signing_key(AuditConfig(key_file=str(config.parent / "other.key")), create=True)
    with sealer.checkpoint_file.open("a") as f:
        f.write(to_line(sign(forger, 5, "0" * 64, 0, 5, 0)) + "\n")
    code, out, _ = await run("audit", "verify", "-c", str(config), "--lang", "en")
    assert code == 1 and "#5: checkpoint signed by an unknown key" in out
    # The file is gone while the database holds checkpoints: the verdict needs it.
    elsewhere = config.parent / "kept-elsewhere.jsonl"
    sealer.checkpoint_file.rename(elsewhere)
    code, _, err = await run("audit", "verify", "-c", str(config))
    assert code == 2 and "does not exist" in err
    lines = elsewhere.read_text().splitlines()
    elsewhere.write_text(lines[0] + "\n")
    code, out, _ = await run("audit", "verify", "-c", str(config), "--checkpoints", str(elsewhere))
    assert code == 0, out


async def test_verify_configuration_errors(tmp_path: Path, run: Run, config: Path) -> None:
    code, _, err = await run("audit", "verify", "-c", str(tmp_path / "nope.yaml"))
    assert code == 2 and "not found" in err
    code, _, err = await run("audit", "verify", "-c", str(config), "--checkpoints", "/nonexistent")
    assert code == 2 and "--checkpoints" in err


async def test_export_jsonl_and_csv(db: Database, config: Path, run: Run, tmp_path: Path) -> None:
    day = 86400.0
    clock_t = [1_767_225_600.0]  # 2026-01-01T00:00:00Z
    log = AuditLog(db, clock=lambda: clock_t[0])
    for i in range(6):  # one entry a day, 2026-01-01 .. 2026-01-06
        await log.record("gate", "=cmd|calc", room_id="!r:x", subject=f"@u{i}:x", details={"d": i})
        clock_t[0] += day
    out = tmp_path / "export.jsonl"
    code, stdout, err = await run(
        "audit", "export", "-c", str(config), "--since", "2026-01-02", "--until", "2026-01-04",
        "--out", str(out), "--lang", "en",
    )  # fmt: skip
    assert code == 0 and stdout == "" and "3 entries exported" in err
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["subject"] for r in records] == ["@u1:x", "@u2:x", "@u3:x"]
    assert records[0]["time"] == "2026-01-02T00:00:00.000+00:00"
    assert set(records[0]) == {
        "seq", "ts", "time", "actor", "action", "room_id", "subject", "details", "prev_hash",
        "hash",
    }  # fmt: skip
    assert json.loads(records[0]["details"]) == {"d": 1}
    assert (out.stat().st_mode & 0o077) == 0
    code, stdout, _ = await run(
        "audit", "export", "-c", str(config), "--since", "2026-01-05T00:00:00", "--format", "csv"
    )
    assert code == 0
    rows = list(csv.reader(io.StringIO(stdout)))
    assert rows[0][:3] == ["seq", "ts", "time"] and len(rows) == 3
    assert rows[1][4] == "'=cmd|calc"  # never run as a spreadsheet formula
    code, _, err = await run(
        "audit", "export", "-c", str(config), "--since", "2026-01-05", "--until", "2026-01-01"
    )
    assert code == 2 and "--until" in err
