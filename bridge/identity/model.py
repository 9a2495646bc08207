"""Domain types shared by every practitioner directory source.

The imported Annuaire Santé extract, the FHIR API and Pro Santé Connect all answer
the same question ("who is IDNPS x, and is this Matrix user plausibly them?"), so the
policy code depends only on these types and on :class:`DirectoryLookup`.
Pure: no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Literal, Protocol

from bridge.identity.identifiers import IdKind, PractitionerId

VerificationSource = Literal["extract", "fhir", "psc", "manual"]

G15_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
G15_OID = "1.2.250.1.71.1.2.7"

# TRE_G15-ProfessionSante (checked against a CI-SIS ValueSet and real extract rows).
PROFESSIONS_G15: Mapping[str, str] = MappingProxyType(
    {
        "10": "Médecin",
        "21": "Pharmacien",
        "26": "Audioprothésiste",
        "28": "Opticien-Lunetier",
        "31": "Assistant dentaire",
        "32": "Physicien médical",
        "40": "Chirurgien-Dentiste",
        "50": "Sage-Femme",
        "60": "Infirmier",
        "69": "Infirmier psychiatrique",
        "70": "Masseur-Kinésithérapeute",
        "80": "Pédicure-Podologue",
        "81": "Orthoprothésiste",
        "82": "Podo-Orthésiste",
        "83": "Orthopédiste-Orthésiste",
        "84": "Oculariste",
        "85": "Epithésiste",
        "86": "Technicien de laboratoire médical",
        "91": "Orthophoniste",
        "92": "Orthoptiste",
        "94": "Ergothérapeute",
        "95": "Diététicien",
        "96": "Psychomotricien",
        "98": "Manipulateur ERM",
    }
)

# Codes the extract also carries, from other NOS tables (TRE_R95 titles, TRE_R94).
OTHER_PROFESSIONS: Mapping[str, str] = MappingProxyType(
    {
        "41": "Assistant de service social",
        "71": "Ostéopathe",
        "72": "Psychothérapeute",
        "73": "Chiropracteur",
        "93": "Psychologue",
    }
)


def profession_label(code: str | None) -> str | None:
    """French label of a profession code, from TRE_G15 or the neighbouring tables."""
    if not code:
        return None
    return PROFESSIONS_G15.get(code) or OTHER_PROFESSIONS.get(code)


def profession_codes(query: str) -> tuple[str, ...]:
    """Codes a user's profession filter designates: a code itself, or a label.

    Labels match accent- and case-insensitively on the whole label, or its first word
    ("kiné" is not guessed, but "infirmier" gives 60 and not 69).
    """
    q = query.strip()
    if q.isascii() and q.isdigit():
        return (q,)
    wanted = fold(q)
    if not wanted:
        return ()
    every = {**OTHER_PROFESSIONS, **PROFESSIONS_G15}
    exact = tuple(code for code, label in every.items() if fold(label) == wanted)
    if exact:
        return exact
    return tuple(code for code, label in every.items() if fold(label).split(" ")[0] == wanted)


class DirectoryUnavailable(Exception):
    """The directory source could not answer (down, misconfigured, garbage reply).

    ``str()`` is a technical English detail for logs; ``message(lang)`` is for users.
    Distinct from "not found", which sources signal by returning ``None``.
    """

    def message(self, lang: str = "fr") -> str:
        if lang.lower().startswith("en"):
            return "The health directory cannot be reached right now; please try again later."
        return "L'annuaire santé est injoignable pour le moment ; réessayez plus tard."


@dataclass(frozen=True, slots=True)
class Practitioner:
    """One practitioner as a directory knows them, whatever the source."""

    idnps: str
    id_kind: IdKind
    identifier: str
    last_name: str
    first_name: str
    civility: str | None
    profession_code: str | None
    profession_label: str | None
    specialty_code: str | None
    specialty_label: str | None
    active: bool
    cities: tuple[str, ...] = ()
    mailboxes: tuple[str, ...] = ()  # MSSanté addresses

    @property
    def practitioner_id(self) -> PractitionerId:
        return PractitionerId(self.id_kind, self.identifier)

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


@dataclass(frozen=True, slots=True)
class Verification:
    """Proof that a Matrix user was matched to a practitioner, and until when it holds."""

    source: VerificationSource
    idnps: str
    profession_code: str | None
    last_name: str
    first_name: str
    checked_at: datetime
    valid_until: datetime

    def __post_init__(self) -> None:
        # Naive datetimes compare wrongly across hosts and DST changes: refuse them.
        if self.checked_at.tzinfo is None or self.valid_until.tzinfo is None:
            raise ValueError("Verification datetimes must be timezone-aware")
        if self.valid_until < self.checked_at:
            raise ValueError("valid_until is before checked_at")

    @classmethod
    def of(
        cls,
        practitioner: Practitioner,
        source: VerificationSource,
        checked_at: datetime,
        ttl: timedelta,
    ) -> Verification:
        return cls(
            source=source,
            idnps=practitioner.idnps,
            profession_code=practitioner.profession_code,
            last_name=practitioner.last_name,
            first_name=practitioner.first_name,
            checked_at=checked_at,
            valid_until=checked_at + ttl,
        )

    def is_valid_at(self, when: datetime) -> bool:
        return self.checked_at <= when < self.valid_until


class DirectoryLookup(Protocol):
    """What policy code needs from a directory source."""

    async def lookup(self, idnps: str) -> Practitioner | None:
        """The practitioner with this IDNPS (RPPS/ADELI forms accepted), or None if absent.

        Raises :class:`DirectoryUnavailable` when the source cannot answer, and
        :class:`~bridge.identity.identifiers.IdentifierError` for a malformed number.
        """
        ...

    async def search(
        self, name: str, profession: str | None, city: str | None, limit: int
    ) -> list[Practitioner]:
        """Practitioners whose name starts like ``name``, optionally filtered."""
        ...


# ---------------------------------------------------------------------------
# Names

_NON_ALNUM = re.compile(r"[^0-9a-z]+")
# Letters NFKD does not decompose into ASCII.
_LIGATURES = str.maketrans(
    {
        "œ": "oe",
        "Œ": "OE",
        "æ": "ae",
        "Æ": "AE",
        "ø": "o",
        "Ø": "O",
        "ł": "l",
        "Ł": "L",
        "đ": "d",
        "Đ": "D",
        "ß": "ss",
    }
)
# Name particles that alone do not identify anyone ("DE LA FONTAINE" → "fontaine").
_PARTICLES = frozenset(
    {"d", "de", "du", "des", "la", "le", "les", "l", "van", "von", "der", "den", "del", "da"}
)
# Titles people put in their display names; ignored so they don't count as names.
_TITLES = frozenset({"dr", "docteur", "doctor", "pr", "professeur", "prof", "m", "mme", "mr"})


def fold(text: str) -> str:
    """Lower-case ASCII words separated by single spaces: "Élodie D'Œuf" → "elodie d oeuf"."""
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text.translate(_LIGATURES))
        text = text.encode("ascii", "ignore").decode("ascii")
    return _NON_ALNUM.sub(" ", text.lower()).strip()


def _significant(tokens: list[str]) -> list[str]:
    kept = [t for t in tokens if t not in _PARTICLES]
    return kept or tokens


def name_matches(display_name: str, practitioner: Practitioner) -> bool:
    """Whether a Matrix display name plausibly names this practitioner.

    Used to confirm a binding, not to prove identity: accents, case, order, titles
    and punctuation are ignored. Required: one significant word of the last name and
    one word of the first name (if the directory has one), as two distinct words of
    the display name, so "Dr Claire Fictive", "FICTIVE Claire" and
    "claire.fictive" match but "Claire" or "Dr Fictive" do not.
    """
    words = Counter(w for w in fold(display_name).split() if w not in _TITLES)
    last = _significant(fold(practitioner.last_name).split())
    first = fold(practitioner.first_name).split()
    if not last:
        return False
    for lw in last:
        if words[lw] <= 0:
            continue
        if not first:
            return True
        remaining = words.copy()
        remaining[lw] -= 1
        if any(remaining[fw] > 0 for fw in first):
            return True
    return False
