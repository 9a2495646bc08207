from __future__ import annotations

import dataclasses
import unicodedata
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.app.wiring import build_translator
from bridge.devtools.people import practitioner
from bridge.identity.matching import name_matches
from bridge.identity.model import (
    PROFESSIONS_G15,
    DirectoryUnavailable,
    Practitioner,
    Verification,
    fold,
    profession_codes,
    profession_label,
)


def person(last: str, first: str) -> Practitioner:
    return practitioner(999_990_020, last=last, first=first, civility="Docteur")


CLAIRE = person("FICTIVE", "Claire")


def test_g15_map() -> None:
    assert len(PROFESSIONS_G15) == 24
    assert PROFESSIONS_G15["10"] == "Médecin"
    assert PROFESSIONS_G15["70"] == "Masseur-Kinésithérapeute"
    assert profession_label("93") == "Psychologue"  # from TRE_R95, as in the extract
    assert profession_label("99") is None and profession_label(None) is None
    with pytest.raises(TypeError):
        PROFESSIONS_G15["10"] = "x"  # type: ignore[index]


def test_profession_codes() -> None:
    assert profession_codes("10") == ("10",)
    assert profession_codes("médecin") == ("10",)
    assert profession_codes("INFIRMIER") == ("60",)
    assert profession_codes("masseur") == ("70",)
    assert profession_codes("sage femme") == ("50",)
    assert profession_codes("astronaute") == ()


def test_fold() -> None:
    assert fold("  Élodie D'ŒUF-Müller ") == "elodie d oeuf muller"
    assert fold("Zoé") == "zoe"
    assert fold("---") == ""


@pytest.mark.parametrize(
    "display",
    [
        "Claire Fictive",
        "Dr Claire FICTIVE",
        "FICTIVE Claire",
        "claire.fictive",
        "@claire.fictive:hopital.example",
        "Dr. CLAIRE fictive (cardio)",
        "Cláire Fîctive",
    ],
)
def test_name_matches_plausible(display: str) -> None:
    assert name_matches(display, CLAIRE)


@pytest.mark.parametrize(
    "display",
    ["Claire", "Dr Fictive", "Claire Dupont", "Fictive Fictive", "", "Dr", "Clair Fictiv"],
)
def test_name_does_not_match(display: str) -> None:
    assert not name_matches(display, CLAIRE)


def test_name_matches_compound_and_particles() -> None:
    p = person("DE LA FONTAINE", "Jean-Pierre")
    assert name_matches("Jean-Pierre de La Fontaine", p)
    assert name_matches("Pierre Fontaine", p)
    assert not name_matches("Jean de la", p)  # particles alone name nobody
    q = person("MARTIN", "Martin")
    assert name_matches("Martin Martin", q)
    assert not name_matches("Dr Martin", q)  # one word cannot be both names
    assert name_matches("Dr Œdipe", person("ŒDIPE", "")) is True  # no first name known


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyzéèêàçïôü", min_size=2, max_size=12)


@given(names, names, st.booleans())
def test_name_matches_any_case_accents_order(last: str, first: str, swap: bool) -> None:
    p = person(last.upper(), first.capitalize())
    stripped = "".join(
        c for c in unicodedata.normalize("NFKD", f"{first} {last}") if not unicodedata.combining(c)
    )
    shown = " ".join(reversed(stripped.split())) if swap else stripped
    assert name_matches(shown.title(), p)
    assert not name_matches(first, p) or fold(first) == fold(last)


def test_verification() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    v = Verification.of(CLAIRE, "extract", now, timedelta(days=30))
    assert v.idnps == CLAIRE.idnps and v.valid_until == now + timedelta(days=30)
    assert v.is_valid_at(now + timedelta(days=29))
    assert not v.is_valid_at(now + timedelta(days=30))
    with pytest.raises(ValueError):
        Verification("fhir", "8", None, "A", "B", datetime(2026, 1, 1), datetime(2026, 2, 1))
    with pytest.raises(ValueError):
        Verification("fhir", "8", None, "A", "B", now, now - timedelta(seconds=1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        CLAIRE.active = False  # type: ignore[misc]


def test_practitioner_helpers() -> None:
    assert CLAIRE.practitioner_id.idnps == CLAIRE.idnps
    assert CLAIRE.full_name == "Claire FICTIVE"


def test_directory_unavailable_messages() -> None:
    e = DirectoryUnavailable("connect timeout to gateway")
    t = build_translator(strict=True)
    assert "injoignable" in t.t(e.TEXT_KEY, "fr")
    assert "cannot be reached" in t.t(e.TEXT_KEY, "en")
    assert "gateway" not in t.t(e.TEXT_KEY, "fr")


def test_name_matches_a_first_name_that_looks_like_a_title() -> None:
    """Found by Hypothesis: a first name "Dr" was dropped as a title, so never matched."""
    assert name_matches("Dr Aa", person("AA", "Dr"))
    assert name_matches("Dr Dr Aa", person("AA", "Dr"))
    assert not name_matches("Dr Fictive", CLAIRE)
