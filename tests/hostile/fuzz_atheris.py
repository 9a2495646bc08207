"""Coverage-guided fuzzing (atheris, libFuzzer) of the byte parsers, one target per run.

Hypothesis builds inputs by structure; libFuzzer mutates bytes and keeps what reaches new
branches, which finds the odd byte sequences no strategy names. Run as a program (the
fuzzer owns the process and exits when done), by tests/hostile/test_atheris.py::

    python -m tests.hostile.fuzz_atheris <target> <corpus-dir> -runs=N -seed=1 ...

Each target lets through only the exception types its parser documents; anything else is
a crash libFuzzer reports (exit status non-zero, the input saved as an artifact).
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

_SCRATCH = Path(tempfile.mkdtemp(prefix="sg-atheris-")) / "extract.txt"


def mime() -> Callable[[bytes], None]:
    with atheris.instrument_imports():
        from bridge.mail.mime import HostileMail, MimeLimits, parse_inbound
        from bridge.mail.sanitize import html_to_text, matrix_html
    limits = MimeLimits(max_bytes=2**20, max_parts=40, max_depth=6)

    def one(data: bytes) -> None:
        try:
            mail = parse_inbound(data, limits)
        except HostileMail:
            return
        if mail.html is not None:
            matrix_html(mail.html)
            html_to_text(mail.html)

    return one


def xdm() -> Callable[[bytes], None]:
    with atheris.instrument_imports():
        from bridge.mail.xdm import XdmError, XdmLimits, unpack_xdm
    limits = XdmLimits(max_archive_bytes=2**20, max_total_bytes=4 * 2**20)

    def one(data: bytes) -> None:
        try:
            unpack_xdm(data, limits)
        except XdmError:
            pass

    return one


def allowlist() -> Callable[[bytes], None]:
    with atheris.instrument_imports():
        from bridge.mail.allowlist import AllowlistError, parse_allowlist_report

    def one(data: bytes) -> None:
        try:
            parse_allowlist_report(data)
        except AllowlistError:
            pass

    return one


def extract() -> Callable[[bytes], None]:
    with atheris.instrument_imports():
        from bridge.identity.sources.extract.parse import ExtractFormatError, _ExtractReader

    def one(data: bytes) -> None:
        _SCRATCH.write_bytes(data)
        try:
            reader = _ExtractReader(_SCRATCH, batch_size=50, max_examples=2, check_adeli_key=True)
        except ExtractFormatError:
            return
        try:
            while reader.read_batch().lines:
                pass
        finally:
            reader.close()

    return one


def _json(data: bytes) -> object:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None  # the HTTP layer answers M_NOT_JSON / M_BAD_JSON


def transaction() -> Callable[[bytes], None]:
    with atheris.instrument_imports():
        from bridge.spine.ephemeral import receipt_events
        from bridge.spine.validate import TransactionError, validate_transaction

    def one(data: bytes) -> None:
        body = _json(data)
        try:
            validate_transaction(body)
        except TransactionError:
            return
        assert isinstance(body, dict)
        receipt_events(body)

    return one


def antispam() -> Callable[[bytes], None]:
    with atheris.instrument_imports():
        from bridge.core.antispam import DECIDED_CALLBACKS, payload_problem
    callbacks = sorted(DECIDED_CALLBACKS)

    def one(data: bytes) -> None:
        if data:
            payload_problem(callbacks[data[0] % len(callbacks)], _json(data[1:]))

    return one


TARGETS: dict[str, Callable[[], Callable[[bytes], None]]] = {
    "mime": mime,
    "xdm": xdm,
    "allowlist": allowlist,
    "extract": extract,
    "transaction": transaction,
    "antispam": antispam,
}


def main() -> None:
    target = TARGETS[sys.argv.pop(1)]()
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
