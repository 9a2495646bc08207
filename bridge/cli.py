"""Command line: ``santeguard generate-registration | run | check-config | check-homeserver |
directory import | mail allowlist import``."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bridge import __version__
from bridge.app.oneoff import one_off_database
from bridge.config import ConfigError, load_config, read_raw_config, sqlite_path
from bridge.registration import build_registration, generate_tokens


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="santeguard",
        description="SantéGuard: a Matrix application service for healthcare compliance.",
    )
    p.add_argument("--version", action="version", version=f"santeguard {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser(
        "generate-registration",
        help="write the appservice registration file for Synapse (fresh random tokens)",
        description="Write the registration file Synapse loads via app_service_config_files. "
        "Tokens are random; point appservice.registration at this file (or copy the tokens "
        "into the config) so SantéGuard uses the same ones.",
    )
    g.add_argument("-c", "--config", required=True, help="path to config.yaml")
    g.add_argument("-r", "--registration", required=True, help="where to write registration.yaml")
    g.add_argument("--force", action="store_true", help="overwrite an existing registration file")

    r = sub.add_parser(
        "run", help="run the appservice", description="Run SantéGuard until stopped."
    )
    r.add_argument("-c", "--config", required=True, help="path to config.yaml")

    c = sub.add_parser(
        "check-config",
        help="validate the configuration and exit",
        description="Validate config.yaml (and environment overrides); print what is wrong.",
    )
    c.add_argument("-c", "--config", required=True, help="path to config.yaml")

    h = sub.add_parser(
        "check-homeserver",
        help="check Synapse's homeserver.yaml for what SantéGuard needs",
        description="Check homeserver.yaml: encryption by default, the registration, the "
        "gate modules (callbacks listed, fail-closed), the MSC2409/MSC3202 features, "
        "retention and its purge jobs, open registration, federation, URL previews, the "
        "password policy and password login beside Pro Santé Connect; with -c, against "
        "SantéGuard's config (retention bounds, purge interval, allowed servers) and, on "
        "the running homeserver, whether the enforcement user is a server admin. Each "
        "finding has a severity (critical, warning, info), a state (OK, to fix with the "
        "homeserver.yaml block to add, or not checked) and the fix. Exit status: 0 when "
        "every check ran and passed, 1 when a critical finding is to fix, 4 when only "
        "warnings are to fix, 3 when nothing is to fix but a check was not run, 2 when "
        "homeserver.yaml or config.yaml cannot be read. See docs/homeserver-check.md.",
    )
    h.add_argument("--homeserver-config", required=True, help="path to homeserver.yaml")
    h.add_argument(
        "-r",
        "--registration",
        help="SantéGuard's registration.yaml (default with -c: appservice.registration)",
    )
    h.add_argument(
        "-c",
        "--config",
        help="SantéGuard's config.yaml: compare with the network's rules and run the live check",
    )
    h.add_argument(
        "--live",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ask the running homeserver whether the enforcement user is a server admin "
        "(needs -c; on by default when -c is given)",
    )
    h.add_argument("--json", action="store_true", help="print the findings as JSON")
    h.add_argument("--lang", choices=["fr", "en"], default="fr")

    d = sub.add_parser("directory", help="Annuaire Santé directory operations")
    dsub = d.add_subparsers(dest="directory_command", required=True, metavar="ACTION")
    imp = dsub.add_parser(
        "import",
        help="import the public extract (PS_LibreAcces_Personne_activite)",
        description="Stream the Annuaire Santé public extract into the database. Idempotent; "
        "replaces the previous import atomically; reports rows read, kept and rejected.",
    )
    imp.add_argument("file", help="the pipe-separated extract file")
    imp.add_argument("-c", "--config", required=True, help="path to config.yaml")
    imp.add_argument("--lang", choices=["fr", "en"], default="fr")

    m = sub.add_parser("mail", help="secure mail bridge operations")
    msub = m.add_subparsers(dest="mail_command", required=True, metavar="ACTION")
    al = msub.add_parser("allowlist", help="the MSSanté allow-list (liste blanche)")
    alsub = al.add_subparsers(dest="allowlist_command", required=True, metavar="ACTION")
    ali = alsub.add_parser(
        "import",
        help="load the ANS liste blanche XML",
        description="Replace the allowed recipient domains with those of the MSSanté allow-list "
        "XML, atomically: a file that does not parse leaves the previous list in force.",
    )
    ali.add_argument("file", help="the liste blanche XML file")
    ali.add_argument("-c", "--config", required=True, help="path to config.yaml")
    ali.add_argument("--lang", choices=["fr", "en"], default="fr")
    for add_parser in _capability_parsers():
        add_parser(sub)
    return p


def _capability_parsers() -> list[Callable[[Any], None]]:
    """Subcommands a capability declares in its own ``cli.py`` (``add_parser(sub)``,
    which sets ``handler``): they stay next to the code they drive."""
    from bridge.audit import cli as audit_cli
    from bridge.report import cli as report_cli

    return [audit_cli.add_parser, report_cli.add_parser]


def cmd_generate_registration(args: argparse.Namespace) -> int:
    try:
        raw = read_raw_config(args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    hs = raw.get("homeserver") or {}
    app = raw.get("appservice") or {}
    missing = [
        k
        for k, v in (
            ("homeserver.domain", hs.get("domain")),
            ("appservice.address", app.get("address")),
        )
        if not v
    ]
    if missing:
        print(f"error: invalid configuration: {', '.join(missing)} must be set", file=sys.stderr)
        return 2
    out = Path(args.registration)
    if out.exists() and not args.force:
        print(f"error: {out} exists; pass --force to replace it (tokens change)", file=sys.stderr)
        return 2
    as_token, hs_token = generate_tokens()
    reg = build_registration(
        service_id=app.get("id", "santeguard"),
        url=app["address"],
        domain=hs["domain"],
        bot_username=app.get("bot_username", "santeguard"),
        as_token=as_token,
        hs_token=hs_token,
    )
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        yaml.safe_dump(reg, f, sort_keys=False)
    print(f"Registration written to {out} (mode 0600).")
    if not app.get("registration"):
        print(
            "Set appservice.registration in the config to this file's path (relative to the "
            "config), or copy as_token/hs_token into the config, then add the file to Synapse's "
            "app_service_config_files."
        )
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    db_file = sqlite_path(cfg.database.uri)
    database = f"sqlite {db_file}" if db_file else cfg.database.uri.split(":", 1)[0]
    print(
        f"Configuration OK: bot {cfg.bot_mxid}, database {database}, "
        f"listening on {cfg.appservice.hostname}:{cfg.appservice.port}"
    )
    if db_file and Path(db_file).parent == Path("/"):
        print(
            f"warning: database.uri puts the SQLite database at the filesystem root "
            f"({db_file}): three slashes start an absolute path; write sqlite:{Path(db_file).name} "
            "for a file next to the config"
        )
    if cfg.mail.enabled:
        from datetime import UTC, datetime

        from bridge.app.mail import tls_files
        from bridge.app.wiring import build_translator
        from bridge.mail.text import problem_code
        from bridge.mail.tls import local_problems

        text = build_translator()
        for problem in local_problems(tls_files(cfg), datetime.now(UTC)):
            detail = text.t(f"mail.problem.{problem_code(problem)}", "en")
            print(f"warning: mail: {detail} ({problem})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bridge.app import SanteGuard
    from bridge.app.runtime import tune_after_start
    from bridge.ops.log import setup_logging

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    setup_logging(cfg.logging.level, cfg.logging.format, cfg.secrets())

    async def main() -> None:
        app = SanteGuard(cfg)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await app.start()
        tune_after_start()  # the gate's tail latency: no full GC walks of the start-up heap
        try:
            await stop.wait()
        finally:
            await app.stop()

    asyncio.run(main())
    return 0


def cmd_check_homeserver(args: argparse.Namespace) -> int:
    from bridge.app.wiring import build_translator
    from bridge.homeserver_check import (
        EXIT_UNREADABLE,
        Finding,
        Network,
        check_homeserver,
        enforcer_admin,
        exit_code,
        live_target,
        network_from_config,
        render,
        render_json,
    )
    from bridge.homeserver_check.live import skipped

    path = Path(args.homeserver_config)
    try:
        hs = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        print(f"error: cannot read {path}: {e}", file=sys.stderr)
        return EXIT_UNREADABLE
    if not isinstance(hs, dict):
        print(f"error: cannot read {path}: the top level is not a mapping", file=sys.stderr)
        return EXIT_UNREADABLE
    if args.live and not args.config:
        print("error: --live needs -c config.yaml (address, token, enforcer)", file=sys.stderr)
        return EXIT_UNREADABLE
    registration = Path(args.registration) if args.registration else None
    network: Network | None = None
    enforcer: Finding | None = None
    if args.config:
        try:
            cfg = load_config(args.config)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_UNREADABLE
        network = network_from_config(cfg)
        if registration is None and cfg.appservice.registration:
            registration = Path(args.config).absolute().parent / cfg.appservice.registration
        if args.live is False:
            enforcer = skipped("hscheck.hint.live_skipped")
        else:
            enforcer = asyncio.run(enforcer_admin(live_target(cfg)))
    findings = check_homeserver(
        hs, registration, base=path.absolute().parent, network=network, enforcer=enforcer
    )
    text = build_translator()
    print((render_json if args.json else render)(findings, args.lang, text))
    return exit_code(findings)


def cmd_directory(args: argparse.Namespace) -> int:
    from bridge.app.wiring import build_translator
    from bridge.identity.sources.extract import import_extract

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    path = Path(args.file)
    if not path.is_file():
        print(f"error: {path} is not a file", file=sys.stderr)
        return 2

    async def run() -> int:
        async with one_off_database(cfg) as db:
            report = await import_extract(db, path)
        text = build_translator()
        print(
            text.t(
                "identity.import.summary",
                args.lang,
                id=report.import_id,
                name=report.source_name,
                read=report.rows_read,
                kept=report.rows_kept,
                rejected=report.rows_rejected,
                practitioners=report.practitioners,
                seconds=f"{report.duration_s:.1f}",
            )
        )
        for reason, stats in sorted(report.rejections.items()):
            lines = ", ".join(str(n) for n, _ in stats.examples[:5])
            print(
                text.t(
                    "identity.import.rejected",
                    args.lang,
                    reason=reason,
                    count=stats.count,
                    lines=lines,
                )
            )
        return 0

    return asyncio.run(run())


def cmd_mail(args: argparse.Namespace) -> int:
    from bridge.app.wiring import build_translator
    from bridge.mail.allowlist import AllowlistError, parse_allowlist_report
    from bridge.mail.store import MailStore

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = build_translator()
    try:
        report = parse_allowlist_report(Path(args.file).read_bytes())
    except OSError as e:
        print(f"error: cannot read {args.file}: {e.strerror}", file=sys.stderr)
        return 2
    except AllowlistError as e:
        print(text.t("cli.mail_allowlist_error", args.lang, reason=e.reason), file=sys.stderr)
        return 1

    async def run() -> int:
        async with one_off_database(cfg) as db:
            await MailStore(db).replace_allowlist(report.domains)
        print(
            text.t(
                "cli.mail_allowlist_imported",
                args.lang,
                count=len(report.domains),
                skipped=len(report.skipped),
            )
        )
        return 0

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {
        "generate-registration": cmd_generate_registration,
        "run": cmd_run,
        "check-config": cmd_check_config,
        "check-homeserver": cmd_check_homeserver,
        "directory": cmd_directory,
        "mail": cmd_mail,
    }
    handler = handlers.get(args.command) or args.handler
    return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())
