"""Domain types shared by every practitioner directory source.

The imported Annuaire Santé extract, the FHIR API and Pro Santé Connect all answer
the same question ("who is IDNPS x, and is this Matrix user plausibly them?"), so the
policy code depends only on these types and on :class:`DirectoryLookup`.
Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from bridge.core.professions import (
    G15_OID,
    G15_SYSTEM,
    OTHER_PROFESSIONS,
    PROFESSIONS_G15,
    fold,
    profession_codes,
    profession_label,
)
from bridge.identity.identifiers import IdKind, PractitionerId

VerificationSource = Literal["extract", "fhir", "psc", "manual"]

# Profession codes and name folding live in bridge.core (the gate needs them too).
__all__ = [
    "G15_OID",
    "G15_SYSTEM",
    "OTHER_PROFESSIONS",
    "PROFESSIONS_G15",
    "DirectoryLookup",
    "DirectoryUnavailable",
    "Practitioner",
    "Verification",
    "VerificationSource",
    "fold",
    "profession_codes",
    "profession_label",
]


class DirectoryUnavailable(Exception):
    """The directory source could not answer (down, misconfigured, garbage reply).

    ``str()`` is a technical English detail for logs; users are shown the text-catalog
    entry ``TEXT_KEY``. Distinct from "not found", which sources signal by returning ``None``.
    """

    TEXT_KEY = "identity.directory_down"


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
