"""``santeguard audit verify | export``: check the audit log's seal, export a time range.

``verify`` exits 0 when the log is intact, 1 when tampering is found (each problem named
with its entry number and kind), 2 when the configuration, the key, the checkpoint file
or the database cannot be read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from bot.i18n import Translator
from bridge.audit.config import AuditConfig
from bridge.audit.export import export_log
from bridge.audit.keys import AuditKeyError, trusted_public_keys
from bridge.audit.seal import trusted_keys
from bridge.audit.sealer import format_time
from bridge.audit.store import read_checkpoints, verify_database
from bridge.audit.text import CATALOG
from bridge.audit.verify import Finding, VerifyReport


def add_parser(sub: Any) -> None:
    """Add ``audit`` and its actions to the ``santeguard`` command line."""
    a = sub.add_parser("audit", help="the tamper-evident audit log: verify, export")
    asub = a.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    v = asub.add_parser(
        "verify",
        help="check the audit log against its signed checkpoints",
        description="Recompute the hash chain and compare it with the signed checkpoints "
        "(database and checkpoint file): any edit, deletion, reordering, or truncation "
        "before the last checkpoint is reported with the entry number. Exit status: 0 "
        "intact, 1 tampering found, 2 configuration, key, file or database error.",
    )
    v.add_argument("-c", "--config", required=True, help="path to config.yaml")
    v.add_argument(
        "--checkpoints", help="checkpoint file to compare with (default: audit.checkpoint_file)"
    )
    v.add_argument("--lang", choices=["fr", "en"], default="fr")
    v.add_argument("--json", action="store_true", help="machine-readable report")
    v.set_defaults(handler=cmd_verify)
    e = asub.add_parser(
        "export",
        help="export the audit log over a time range (JSON lines or CSV)",
        description="Write the entries of a time range (UTC) with their hashes. The log "
        "holds decisions, never message content.",
    )
    e.add_argument("-c", "--config", required=True, help="path to config.yaml")
    e.add_argument("--since", required=True, type=since_ms, help="YYYY-MM-DD or ISO 8601 time")
    e.add_argument(
        "--until", type=until_ms, help="YYYY-MM-DD (that whole day included) or ISO 8601 time"
    )
    e.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    e.add_argument("--out", help="file to write (mode 0600); default: standard output")
    e.add_argument("--lang", choices=["fr", "en"], default="fr")
    e.set_defaults(handler=cmd_export)


# -- arguments -------------------------------------------------------------------------


def _parse_instant(text: str, *, end_of_day: bool) -> int:
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return int((start + timedelta(days=1 if end_of_day else 0)).timestamp() * 1000)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date (YYYY-MM-DD) or ISO time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def since_ms(text: str) -> int:
    return _parse_instant(text, end_of_day=False)


def until_ms(text: str) -> int:
    return _parse_instant(text, end_of_day=True)


# -- configuration ---------------------------------------------------------------------


def audit_settings(cfg: Any, config_path: str) -> AuditConfig:
    """The ``audit:`` section with its paths made absolute against the config file (the
    configuration loader does it too; doing it again changes nothing)."""
    section = getattr(cfg, "audit", None)
    audit = section if isinstance(section, AuditConfig) else AuditConfig()
    base = Path(config_path).absolute().parent
    return audit.model_copy(
        update={
            "key_file": str(base / audit.key_file),
            "checkpoint_file": str(base / audit.checkpoint_file),
        }
    )


def _load(args: argparse.Namespace) -> tuple[Any, AuditConfig] | None:
    from bridge.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    return cfg, audit_settings(cfg, args.config)


def _error(what: str, e: BaseException, secrets: list[str]) -> int:
    message = str(e).splitlines()[0] if str(e) else ""
    for secret in secrets:
        message = message.replace(secret, "***")
    print(f"error: {what}: {type(e).__name__} {message}".rstrip(), file=sys.stderr)
    return 2


# -- verify ----------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if loaded is None:
        return 2
    cfg, audit = loaded
    from bridge.app.oneoff import one_off_database

    path = Path(args.checkpoints) if args.checkpoints else Path(audit.checkpoint_file)
    if args.checkpoints and not path.is_file():
        print(f"error: --checkpoints: {path} is not a file", file=sys.stderr)
        return 2

    async def run() -> int:
        async with one_off_database(cfg) as db:
            stored = await read_checkpoints(db)
            file = path if path.exists() else None
            if file is None and stored:
                print(
                    f"error: audit.checkpoint_file: {path} does not exist but the database "
                    f"holds {len(stored)} checkpoints; restore it or pass --checkpoints",
                    file=sys.stderr,
                )
                return 2
            try:
                trusted = trusted_keys(trusted_public_keys(audit))
            except (AuditKeyError, ValueError) as e:
                if stored or file is not None:
                    print(f"error: {e}", file=sys.stderr)
                    return 2
                trusted = {}  # nothing was ever sealed: the chain alone is checked
            report = await verify_database(db, trusted, file, now_ms=int(time.time() * 1000))
        print(render_json(report) if args.json else render(report, args.lang))
        return 0 if report.ok else 1

    try:
        return asyncio.run(run())
    except OSError as e:
        return _error("cannot read the checkpoint file or the database", e, cfg.secrets())
    except Exception as e:
        return _error("database", e, cfg.secrets())


def render_json(report: VerifyReport) -> str:
    return json.dumps(report.to_json(), ensure_ascii=False, indent=2)


def render(report: VerifyReport, lang: str, text: Translator | None = None) -> str:
    t = text or Translator(CATALOG)
    lines = [
        t.t(
            "audit.verify.summary",
            lang,
            entries=report.entries,
            first=report.first_seq if report.first_seq is not None else "—",
            last=report.last_seq if report.last_seq is not None else "—",
            checkpoints=report.checkpoints,
        )
    ]
    if report.anchor is not None:
        lines.append(
            t.t("audit.verify.pruned", lang, count=report.anchor.count, seq=report.anchor.seq)
        )
    last = report.last_checkpoint
    if last is None:
        lines.append(t.t("audit.verify.no_checkpoint", lang))
    else:
        lines.append(
            t.t(
                "audit.verify.last_checkpoint",
                lang,
                seq=last.seq,
                time=format_time(last.ts),
                unsealed=report.unsealed,
            )
        )
    if report.ok:
        lines.append(t.t("audit.verify.ok", lang))
    else:
        lines.append(t.t("audit.verify.tampered", lang, count=len(report.findings)))
        lines.extend(f"  - {_finding(t, 'audit.finding', f, lang)}" for f in report.findings)
        if report.more_findings:
            lines.append(f"  {t.t('audit.verify.more', lang)}")
    if report.warnings:
        lines.append(t.t("audit.verify.warnings", lang))
        lines.extend(f"  - {_finding(t, 'audit.warning', w, lang)}" for w in report.warnings)
    return "\n".join(lines)


def _finding(t: Translator, prefix: str, f: Finding, lang: str) -> str:
    params = dict(f.params)
    source = params.get("source")
    if isinstance(source, str):
        if source.startswith("file:"):
            params["source"] = t.t("audit.source.file", lang, line=source.split(":", 1)[1])
        else:
            params["source"] = t.t("audit.source.db", lang)
    return t.t(f"{prefix}.{f.kind}", lang, seq=f.seq, **params)


# -- export ----------------------------------------------------------------------------


@contextlib.contextmanager
def _output(out: str | None) -> Iterator[TextIO]:
    if out is None:
        yield sys.stdout
        return
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        yield f


def cmd_export(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if loaded is None:
        return 2
    cfg, _ = loaded
    if args.until is not None and args.until <= args.since:
        print("error: --until must be after --since", file=sys.stderr)
        return 2
    from bridge.app.oneoff import one_off_database

    async def run() -> int:
        with _output(args.out) as out:
            async with one_off_database(cfg) as db:
                count = await export_log(
                    db, out, args.format, since_ms=args.since, until_ms=args.until
                )
        if args.out is not None:
            text = Translator(CATALOG)
            print(
                text.t("audit.export.done", args.lang, count=count, out=args.out), file=sys.stderr
            )
        return 0

    try:
        return asyncio.run(run())
    except OSError as e:
        return _error("cannot write the export or read the database", e, cfg.secrets())
    except Exception as e:
        return _error("database", e, cfg.secrets())
