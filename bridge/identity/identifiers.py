"""RPPS and ADELI numbers of French health practitioners, and their IDNPS form.

Pure functions: no I/O. Every directory source (extract, FHIR API, Pro Santé Connect)
keys practitioners by IDNPS, so every input goes through here to be normalised the
same way, whatever the user typed.

- RPPS: 11 digits, Luhn check over all 11 (verified against real numbers).
- ADELI: 9 digits, Luhn check over all 9 (inferred, see :func:`parse_adeli`).
- IDNPS: the national form, ``8`` + RPPS (12 digits) or ``0`` + ADELI (10 digits).
  The IDNPS itself is not Luhn-valid in general: the embedded number is what is checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from bridge.identity.text import CATALOG

IdKind = Literal["rpps", "adeli"]
ErrorCode = Literal["wrong_length", "not_digits", "bad_check_key", "empty"]

RPPS_LENGTH = 11
ADELI_LENGTH = 9
IDNPS_PREFIX: Mapping[IdKind, str] = MappingProxyType({"rpps": "8", "adeli": "0"})

# Separators people type or paste inside numbers: spaces (incl. no-break ones), tabs,
# dots and dashes. Anything else is refused rather than guessed.
_SEPARATORS = str.maketrans("", "", " \t\u00a0\u202f\u2009.-\u2010\u2011\u2013")
# Luhn: the digit that is doubled, then reduced to one digit (2*d - 9 when > 9).
_DOUBLED = str.maketrans("0123456789", "0246813579")
_MAX_ECHO = 32  # user input is echoed in messages; keep it bounded


def luhn_valid(digits: str) -> bool:
    """Whether an ASCII-digit string passes the Luhn check (rightmost digit is the key)."""
    if not digits or not (digits.isascii() and digits.isdigit()):
        return False
    # Summing the ASCII bytes (48 + digit) is C-level and fast enough for the bulk
    # import; the 48-per-digit offset is removed at the end.
    total = sum(digits[-1::-2].encode()) + sum(digits[-2::-2].translate(_DOUBLED).encode())
    return (total - 48 * len(digits)) % 10 == 0


def luhn_key(payload: str) -> str:
    """The check digit to append to ``payload`` so that the whole passes Luhn."""
    if not payload or not (payload.isascii() and payload.isdigit()):
        raise ValueError("payload must be ASCII digits")
    # With the key appended, the payload's rightmost digit is the first doubled one.
    total = sum(map(int, payload[-2::-2])) + sum(map(int, payload[-1::-2].translate(_DOUBLED)))
    return str((10 - total % 10) % 10)


class IdentifierError(ValueError):
    """Why a practitioner number is refused.

    ``text_key`` and ``text_params`` name the user-facing sentence in the text catalog
    (``bridge/identity/text.py``); ``str()`` is its English rendering, for logs and the CLI.
    """

    def __init__(
        self,
        code: ErrorCode,
        raw: str,
        kind: IdKind | None = None,
        length: int | None = None,
    ) -> None:
        self.code: ErrorCode = code
        self.raw = raw if len(raw) <= _MAX_ECHO else raw[: _MAX_ECHO - 1] + "…"
        self.kind = kind
        self.length = length
        super().__init__(CATALOG["en"][self.text_key].format(**self.text_params))

    @property
    def text_key(self) -> str:
        return f"identity.id.{self.code}.{self.kind or 'any'}"

    @property
    def text_params(self) -> dict[str, object]:
        n = self.length if self.length is not None else len(self.raw)
        return {"raw": self.raw, "n": n}


def _clean(text: str, kind: IdKind | None) -> str:
    """Strip separators; refuse empty or non-ASCII-digit input."""
    raw = text.strip()
    if not raw:
        raise IdentifierError("empty", "", kind)
    digits = raw.translate(_SEPARATORS)
    if not digits:
        raise IdentifierError("empty", raw, kind)
    # str.isdigit() alone accepts "²" or Arabic-Indic digits; only ASCII is meaningful.
    if not (digits.isascii() and digits.isdigit()):
        raise IdentifierError("not_digits", raw, kind)
    return digits


def check_number(kind: IdKind, digits: str) -> None:
    """Validate an already clean RPPS/ADELI number (no separators, no IDNPS prefix).

    The bulk importer calls this directly on millions of rows, hence no normalisation.
    """
    if not digits:
        raise IdentifierError("empty", digits, kind)
    if not (digits.isascii() and digits.isdigit()):
        raise IdentifierError("not_digits", digits, kind)
    expected = RPPS_LENGTH if kind == "rpps" else ADELI_LENGTH
    if len(digits) != expected:
        raise IdentifierError("wrong_length", digits, kind, len(digits))
    if not luhn_valid(digits):
        raise IdentifierError("bad_check_key", digits, kind)


@dataclass(frozen=True, slots=True)
class PractitionerId:
    """A validated RPPS or ADELI number; constructing one with a bad value raises."""

    kind: IdKind
    value: str

    def __post_init__(self) -> None:
        if self.kind not in IDNPS_PREFIX:
            raise ValueError(f"unknown identifier kind {self.kind!r}")
        check_number(self.kind, self.value)

    @property
    def idnps(self) -> str:
        """National identifier: ``8`` + RPPS or ``0`` + ADELI."""
        return IDNPS_PREFIX[self.kind] + self.value

    @property
    def label(self) -> str:
        """Human form, e.g. ``RPPS 10999990012``."""
        return f"{self.kind.upper()} {self.value}"

    def __str__(self) -> str:
        return self.label


def parse_rpps(text: str) -> PractitionerId:
    """An RPPS number (11 digits) or its IDNPS (``8`` + 11 digits)."""
    return parse_identifier(text, "rpps")


def parse_adeli(text: str) -> PractitionerId:
    """An ADELI number (9 digits) or its IDNPS (``0`` + 9 digits).

    The ADELI key rule (Luhn over the 9 digits) is inferred, not documented: every real
    ADELI number we could check passes it, but no official text states it. If real
    numbers turn up failing, this is the place to relax.
    """
    return parse_identifier(text, "adeli")


def parse_identifier(text: str, kind: IdKind | None = None) -> PractitionerId:
    """Parse what a user typed: RPPS (11), ADELI (9) or IDNPS (12 from ``8``, 10 from ``0``).

    ``kind`` restricts the accepted forms. Spaces, dots and dashes are ignored.
    """
    digits = _clean(text, kind)
    n = len(digits)
    if kind in (None, "rpps"):
        if n == RPPS_LENGTH:
            return _checked("rpps", digits)
        if n == RPPS_LENGTH + 1 and digits[0] == "8":
            return _checked("rpps", digits[1:])
    if kind in (None, "adeli"):
        if n == ADELI_LENGTH:
            return _checked("adeli", digits)
        if n == ADELI_LENGTH + 1 and digits[0] == "0":
            return _checked("adeli", digits[1:])
    raise IdentifierError("wrong_length", digits, kind, n)


def _checked(kind: IdKind, digits: str) -> PractitionerId:
    """Build the id; the key is checked here so the error names the kind found."""
    if not luhn_valid(digits):
        raise IdentifierError("bad_check_key", digits, kind)
    return PractitionerId(kind, digits)


def normalise_idnps(text: str) -> str:
    """The IDNPS of any accepted form of RPPS/ADELI/IDNPS input."""
    return parse_identifier(text).idnps
