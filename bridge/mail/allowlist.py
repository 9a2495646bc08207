"""The MSSanté allow-list ("liste blanche"): which mail domains belong to the trust space.

Pure: XML bytes in, normalised domains out. The list is published by the ANS as XML whose
domains are the texts of ``Domaine/Nom`` in the namespace ``LISTE_BLANCHE_NS``; anything else
in the file is ignored because only that path is documented. Parsing goes through
defusedxml with DTDs forbidden, so entity expansion (billion laughs) and external entities
are refused before any expansion happens.

Domains are compared in one canonical form (``normalize_domain``): lowercase, IDNA A-labels
(``xn--…``) computed with the standard library's IDNA 2003 codec (no extra dependency) but
only for names it maps without loss (where IDNA 2003 and 2008 agree), no trailing dot, LDH
labels only. Addresses are compared on that form too, so a Unicode domain written either
way matches.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import cast
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as defused_et  # type: ignore[import-untyped]
from defusedxml import DefusedXmlException

LISTE_BLANCHE_NS = "https://listeblanche.mssante.fr/schema"
_DOMAINE = f"{{{LISTE_BLANCHE_NS}}}Domaine"
_NOM = f"{{{LISTE_BLANCHE_NS}}}Nom"

DEFAULT_MAX_BYTES = 16 * 2**20
MAX_DOMAIN_LENGTH = 253
MAX_ADDRESS_LENGTH = 254
MAX_LOCAL_LENGTH = 64

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_WILDCARDS = frozenset("*?[]")
# Local parts: printable ASCII or any non-ASCII (SMTPUTF8), never spaces, controls or '@'.
_BAD_LOCAL = re.compile(r"[\x00-\x20\x7f@<>()\[\]\\,;:\"]")


class AllowlistError(Exception):
    """The allow-list file cannot be used; ``reason`` is a code, ``detail`` machine detail."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason if not detail else f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class AllowlistReport:
    """What a parse kept and what it dropped, so an operator can see a bad entry."""

    domains: frozenset[str]
    skipped: tuple[str, ...]  # names that could not be normalised (as written, trimmed)
    empty: int = 0  # Domaine/Nom elements with no text


def normalize_domain(text: str) -> str | None:
    """Canonical form of a domain name, or None when it is not a valid host name."""
    name = text.strip()
    if name.endswith("."):
        name = name[:-1]
    if not name or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        return None
    lowered = unicodedata.normalize("NFC", name.lower())
    try:
        ascii_name = lowered.encode("idna").decode("ascii").lower()
        # IDNA 2003 maps some characters (ß → ss, full-width forms…) where IDNA 2008 keeps
        # them: refuse any such lossy name rather than conflate two different domains.
        if not lowered.isascii() and ascii_name.encode("ascii").decode("idna") != lowered:
            return None
    except (UnicodeError, ValueError):
        return None
    if not ascii_name or len(ascii_name) > MAX_DOMAIN_LENGTH:
        return None
    labels = ascii_name.split(".")
    if len(labels) < 2:
        return None
    for label in labels:
        if not _LABEL.fullmatch(label):
            return None
        if label.startswith("xn--") and not _valid_a_label(label):
            return None
    return ascii_name


def _valid_a_label(label: str) -> bool:
    """An ``xn--`` label must decode, or two spellings of one domain could differ."""
    try:
        label.encode("ascii").decode("idna")
    except (UnicodeError, ValueError):
        return False
    return True


def split_address(address: str) -> tuple[str, str] | None:
    """``(local, normalised domain)`` of a bare ``local@domain`` address, or None."""
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if len(text) > MAX_ADDRESS_LENGTH or text.count("@") != 1:
        return None
    local, _, domain = text.partition("@")
    if not local or len(local) > MAX_LOCAL_LENGTH or _BAD_LOCAL.search(local):
        return None
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return None
    normalised = normalize_domain(domain)
    if normalised is None or domain != domain.strip() or domain.endswith("."):
        return None
    return local, normalised


def parse_allowlist_report(xml: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> AllowlistReport:
    """Parse the ANS file, keeping every valid domain and reporting the others."""
    if len(xml) > max_bytes:
        raise AllowlistError("oversize", f"{len(xml)} bytes")
    try:
        root = cast(
            Element,
            defused_et.fromstring(xml, forbid_dtd=True, forbid_entities=True, forbid_external=True),
        )
    except DefusedXmlException as exc:
        raise AllowlistError("malformed", type(exc).__name__) from None
    except (ParseError, ValueError, UnicodeError, LookupError) as exc:
        # LookupError: an XML declaration naming an encoding Python does not know.
        raise AllowlistError("malformed", type(exc).__name__) from None
    domains: set[str] = set()
    skipped: list[str] = []
    empty = 0
    for domaine in root.iter(_DOMAINE):
        for nom in domaine.findall(_NOM):
            text = "".join(nom.itertext()).strip()
            if not text:
                empty += 1
                continue
            normalised = normalize_domain(text)
            if normalised is None:
                skipped.append(text[:MAX_ADDRESS_LENGTH])
            else:
                domains.add(normalised)
    if not domains:
        raise AllowlistError("no_domains", f"skipped={len(skipped)} empty={empty}")
    return AllowlistReport(frozenset(domains), tuple(skipped), empty)


def parse_allowlist(xml: bytes) -> frozenset[str]:
    """The normalised domains of the ANS allow-list; AllowlistError when unusable."""
    return parse_allowlist_report(xml).domains


def _normalize_pattern(pattern: str) -> str:
    """Lowercase/IDNA a pattern label by label; refuse patterns that could match a TLD.

    Wildcards never cross a dot (each label is matched on its own), except a leading ``*``
    label that stands for one or more labels: ``*.x.fr`` matches ``a.x.fr`` and ``a.b.x.fr``
    but neither ``x.fr`` nor ``evilx.fr``. The last two labels must be literal, so a typo in
    the configuration cannot open a whole top-level domain.
    """
    labels = pattern.strip().lower().rstrip(".").split(".")
    if len(labels) < 2 or any(not label for label in labels):
        raise ValueError(f"invalid_pattern: {pattern!r}")
    out: list[str] = []
    for index, label in enumerate(labels):
        if _WILDCARDS & set(label):
            if index >= len(labels) - 2 or not label.isascii():
                raise ValueError(f"invalid_pattern: {pattern!r}")
            out.append(label)
            continue
        normalised = normalize_domain(f"{label}.invalid")
        if normalised is None:
            raise ValueError(f"invalid_pattern: {pattern!r}")
        out.append(normalised.rsplit(".", 1)[0])
    return ".".join(out)


def _pattern_matches(pattern: str, domain: str) -> bool:
    p_labels = pattern.split(".")
    d_labels = domain.split(".")
    if p_labels[0] == "*":
        rest = p_labels[1:]
        if len(d_labels) <= len(rest):
            return False
        d_labels = d_labels[len(d_labels) - len(rest) :]
        p_labels = rest
    if len(p_labels) != len(d_labels):
        return False
    return all(fnmatchcase(d, p) for p, d in zip(p_labels, d_labels, strict=True))


@dataclass(frozen=True)
class AllowList:
    """Exact allow-listed domains plus configured patterns such as ``*.mssante.fr``.

    Domains and patterns are normalised on construction; an invalid one raises ValueError
    (configuration or programming error, not hostile input).
    """

    domains: frozenset[str]
    patterns: tuple[str, ...] = ()
    _patterns: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        normalised: set[str] = set()
        for domain in self.domains:
            value = normalize_domain(domain)
            if value is None:
                raise ValueError(f"invalid_domain: {domain!r}")
            normalised.add(value)
        object.__setattr__(self, "domains", frozenset(normalised))
        object.__setattr__(self, "_patterns", tuple(_normalize_pattern(p) for p in self.patterns))

    def allows_domain(self, domain: str) -> bool:
        """Whether an already normalised domain is in the trust space."""
        if domain in self.domains:
            return True
        return any(_pattern_matches(p, domain) for p in self._patterns)

    def reason(self, address: str) -> str | None:
        """None when the address may be used, else "invalid_address" or "not_on_allowlist"."""
        parts = split_address(address)
        if parts is None:
            return "invalid_address"
        return None if self.allows_domain(parts[1]) else "not_on_allowlist"

    def allows(self, address: str) -> bool:
        """Whether mail may be exchanged with this address."""
        return self.reason(address) is None
