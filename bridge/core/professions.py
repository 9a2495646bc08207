"""Health profession codes (NOS TRE_G15 and neighbours) and accent-free name folding.

Reference data every capability may need: the gate names professions in its refusals,
the identity capability maps directory rows and search filters to codes. Pure.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from types import MappingProxyType

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


def fold(text: str) -> str:
    """Lower-case ASCII words separated by single spaces: "Élodie D'Œuf" → "elodie d oeuf"."""
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text.translate(_LIGATURES))
        text = text.encode("ascii", "ignore").decode("ascii")
    return _NON_ALNUM.sub(" ", text.lower()).strip()
