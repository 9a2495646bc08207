"""Does a Matrix display name plausibly name this practitioner? Pure."""

from __future__ import annotations

from collections import Counter

from bridge.core.professions import fold
from bridge.identity.model import Practitioner

# Name particles that alone do not identify anyone ("DE LA FONTAINE" → "fontaine").
_PARTICLES = frozenset(
    {"d", "de", "du", "des", "la", "le", "les", "l", "van", "von", "der", "den", "del", "da"}
)
# Titles people put in their display names; ignored so they don't count as names.
_TITLES = frozenset({"dr", "docteur", "doctor", "pr", "professeur", "prof", "m", "mme", "mr"})


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
    last = _significant(fold(practitioner.last_name).split())
    first = fold(practitioner.first_name).split()
    # A title word is noise, unless it is one of this practitioner's names (a first
    # name "M" or "Dr" exists in directories: dropping it would make a match impossible).
    own = set(last) | set(first)
    words = Counter(w for w in fold(display_name).split() if w not in _TITLES or w in own)
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
