"""The report's HTML, pure: every room, escaping, languages, self-contained, the chart."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from bridge.report.model import CATEGORIES, ChainStatus, category_of, policy_state
from bridge.report.render import render_html
from tests.report.sample import HOSTILE, report, rooms, translator


class Tags(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> Tags:
    p = Tags()
    p.feed(page)
    p.close()
    return p


def test_every_room_is_a_row_with_its_name_and_id() -> None:
    page = render_html(report(), translator())
    parsed = parse(page)
    row_ids = [str(a["data-room-id"]) for t, a in parsed.tags if t == "tr" and "data-room-id" in a]
    assert sorted(row_ids) == sorted(r.room_id for r in rooms())
    text = "".join(parsed.text)
    for room in rooms():
        assert room.name is not None and room.name in text  # names are text, unescaped back


def test_hostile_values_are_text_never_markup() -> None:
    page = render_html(report(), translator())
    assert "<script" not in page.lower()
    assert "&lt;script&gt;" in page
    parsed = parse(page)
    tags = {t for t, _ in parsed.tags}
    assert "script" not in tags and "img" not in tags
    for tag, attrs in parsed.tags:
        assert not ({"src", "href", "onerror", "onload"} & set(attrs)), (tag, attrs)
    assert HOSTILE in "".join(parsed.text)


def test_self_contained_no_address_at_all() -> None:
    page = render_html(report(), translator())
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and "url(" not in page and "@import" not in page
    csp = [a for t, a in parse(page).tags if t == "meta" and a.get("http-equiv")]
    assert csp and "default-src 'none'" in str(csp[0]["content"])


def test_french_by_default_english_on_request() -> None:
    fr = render_html(report(), translator())
    assert '<html lang="fr">' in fr
    assert "Rapport DPO" in fr and "Ce que le serveur ne peut pas atteindre" in fr
    assert "appareils des membres" in fr and "Non prouvable" in fr
    assert "Généré le 14/03/2025 à 10:30 (CET)" in fr  # Paris time
    en = render_html(report("en"), translator())
    assert '<html lang="en">' in en
    assert "DPO report" in en and "What the server cannot reach" in en
    assert "members&#x27; devices" in en and "Cannot prove" in en
    assert "Ce que le serveur" not in en


def test_chart_has_one_bar_per_day_and_category_with_counts() -> None:
    data = report()
    page = render_html(data, translator())
    parsed = parse(page)
    assert any(t == "svg" and a.get("id") == "decisions-chart" for t, a in parsed.tags)
    bars = [a for t, a in parsed.tags if t == "rect" and a.get("class") == "bar"]
    expected = sum(1 for d in data.decisions for c in CATEGORIES if d.counts.get(c))
    assert len(bars) == expected > 0
    assert {b["data-category"] for b in bars} <= set(CATEGORIES)
    last = data.decisions[-1]
    assert f"14/03/2025 — Admissions : {last.counts['admissions']}" in page
    total = sum(d.total for d in data.decisions)
    assert f"<strong>{total}</strong>" in page
    # The legend names every category.
    legend = [a for t, a in parsed.tags if t == "figcaption"]
    assert legend and legend[0].get("id") == "chart-legend"
    text = "".join(parsed.text)
    for c in CATEGORIES:
        assert translator().t(f"report.category.{c}", "fr") in text


def test_verdicts_reasons_and_evidence_are_stated() -> None:
    page = render_html(report(), translator())
    assert "57 événement(s) expiré(s) encore présent(s) ; 20 identifiant(s)" in page
    assert "n&#x27;est pas administrateur du serveur Matrix" in page  # not_admin, translated
    assert "412 événement(s) expiré(s) vérifié(s), 412 prouvé(s) effacé(s)" in page
    assert "hors bornes" in page and "aucune politique" in page
    assert 'class="users alarm"' in page  # unverified member of a protected room
    assert "Audit n° 42" in page and "Chaîne intacte : 18342 entrée(s)" in page


def test_chain_broken_and_unreachable_homeserver_are_said() -> None:
    data = report(
        chain=ChainStatus(checked=True, ok=False, entries=900, first_bad_seq=613),
        homeserver_reached=False,
        last_run=None,
    )
    page = render_html(data, translator())
    assert "Chaîne rompue à l&#x27;entrée n° 613" in page
    assert "Le serveur Matrix n&#x27;a pas répondu" in page
    assert "Aucun audit de conservation" in page


def test_unknown_values_are_marked_not_guessed() -> None:
    page = render_html(report(), translator())
    hostile = page.split('data-room-id="!hostile:chu-exemple.fr"', 1)[1].split("</tr>", 1)[0]
    cells = hostile.split("<td")
    assert cells[3].endswith(">?</td>")  # encryption unknown


def test_no_rooms_no_decisions() -> None:
    data = report(rooms=(), decisions=())
    page = render_html(data, translator())
    assert "Aucun salon connu de SantéGuard." in page
    assert "Aucune décision enregistrée sur la période." in page


@pytest.mark.parametrize(
    ("action", "category"),
    [
        ("member.admitted.join", "admissions"),
        ("gate.refused.user_may_invite", "refusals"),
        ("backstop.removed", "removals"),
        ("backstop.redacted", "removals"),
        ("encryption.enabled", "encryption"),
        ("identity.bound", "identity"),
        ("reverify.completed", "identity"),
        ("room.protection", "rooms"),
        ("room.retention", "retention"),
        ("retention.inactive_purged", "retention"),
        ("mail.sent", "mail"),
        ("bot.command", "commands"),
        ("command.refused", "commands"),
        ("bot.joined", "other"),
        ("audit.checkpoint", "other"),
    ],
)
def test_category_of(action: str, category: str) -> None:
    assert category_of(action) == category


@pytest.mark.parametrize(
    ("content", "state"),
    [
        (None, "missing"),
        ({}, "missing"),
        ({"min_lifetime": 10}, "missing"),
        ({"max_lifetime": "90d"}, "malformed"),
        ({"max_lifetime": True}, "malformed"),
        ({"max_lifetime": 1.5}, "malformed"),
        ({"max_lifetime": 0}, "malformed"),
        ({"max_lifetime": 100, "min_lifetime": 200}, "malformed"),
        ({"max_lifetime": 10}, "out_of_bounds"),
        ({"max_lifetime": 5000}, "out_of_bounds"),
        ({"max_lifetime": 100, "min_lifetime": 50}, "ok"),
        ({"max_lifetime": 100}, "ok"),
    ],
)
def test_policy_state(content: dict[str, object] | None, state: str) -> None:
    assert policy_state(content, (50, 1000)) == state


def test_catalog_same_keys_and_placeholders_in_both_languages() -> None:
    from bot.i18n import placeholders
    from bridge.report.text import CATALOG

    fr, en = CATALOG["fr"], CATALOG["en"]
    assert sorted(fr) == sorted(en)
    assert [k for k in fr if placeholders(fr[k]) != placeholders(en[k])] == []
