"""MSSanté allow-list: parsing the ANS file safely and matching addresses against it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.mail.allowlist import (
    AllowList,
    AllowlistError,
    normalize_domain,
    parse_allowlist,
    parse_allowlist_report,
    split_address,
)

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "mail" / "listeblanche-sample.xml"
NS = "https://listeblanche.mssante.fr/schema"
HELENE = "xn--clinique-sainte-hlne-exemple-yqc2a.mssante.fr"


def doc(*names: str, ns: str = NS) -> bytes:
    body = "".join(f"<Domaine><Nom>{n}</Nom></Domaine>" for n in names)
    head = '<?xml version="1.0" encoding="UTF-8"?>'
    return f'{head}<ListeBlanche xmlns="{ns}">{body}</ListeBlanche>'.encode()


# --- parsing ---------------------------------------------------------------------------


def test_sample_parses_to_expected_domains() -> None:
    report = parse_allowlist_report(SAMPLE.read_bytes())
    assert report.domains == {
        "medecin.mssante.fr",
        "pharmacien.mssante.fr",
        "ch-exemple.mssante.fr",
        "cpts-littoral-exemple.mssante.fr",  # written with surrounding spaces
        HELENE,  # the IDN one, as its A-label
    }
    assert report.empty == 1
    assert report.skipped == ()
    assert parse_allowlist(SAMPLE.read_bytes()) == report.domains


def test_idn_is_normalised_to_lowercase_a_label() -> None:
    domains = parse_allowlist(doc("Clinique-Sainte-HÉLÈNE-exemple.MSSante.fr", "xn--bcher-kva.fr"))
    assert domains == {HELENE, "xn--bcher-kva.fr"}


def test_empty_and_whitespace_names_are_skipped() -> None:
    report = parse_allowlist_report(doc("", "   ", "\n\t", "a.mssante.fr"))
    assert report.domains == {"a.mssante.fr"}
    assert report.empty == 3


def test_invalid_names_are_reported_not_kept() -> None:
    report = parse_allowlist_report(
        doc("ok.mssante.fr", "bad..mssante.fr", "with space.fr", "-dash.fr", "xn--zz.fr", "single")
    )
    assert report.domains == {"ok.mssante.fr"}
    assert report.skipped == ("bad..mssante.fr", "with space.fr", "-dash.fr", "xn--zz.fr", "single")


def test_elements_outside_the_namespace_are_ignored() -> None:
    with pytest.raises(AllowlistError) as err:
        parse_allowlist(doc("a.mssante.fr", ns="urn:other"))
    assert err.value.reason == "no_domains"


def test_other_elements_are_ignored_and_nested_domains_found() -> None:
    xml = (
        f'<Racine xmlns="{NS}"><Version>3</Version><Bloc><Domaine><Nom>x.mssante.fr</Nom>'
        "<Autre>y.mssante.fr</Autre></Domaine></Bloc><Nom>z.mssante.fr</Nom></Racine>"
    ).encode()
    assert parse_allowlist(xml) == {"x.mssante.fr"}


@pytest.mark.parametrize(
    "xml",
    [b"", b"not xml", b"<ListeBlanche", b"\xff\xfe\x00<", doc("a.fr")[:-5]],
)
def test_malformed_xml_is_refused(xml: bytes) -> None:
    with pytest.raises(AllowlistError) as err:
        parse_allowlist(xml)
    assert err.value.reason == "malformed"


def test_no_domains_is_refused() -> None:
    with pytest.raises(AllowlistError) as err:
        parse_allowlist(doc("", " "))
    assert err.value.reason == "no_domains"


def test_billion_laughs_is_refused_without_expansion() -> None:
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    )
    xml = (
        f'<?xml version="1.0"?><!DOCTYPE ListeBlanche [{entities}]>'
        f'<ListeBlanche xmlns="{NS}"><Domaine><Nom>&lol9;.fr</Nom></Domaine></ListeBlanche>'
    ).encode()
    with pytest.raises(AllowlistError) as err:
        parse_allowlist(xml)
    assert err.value.reason == "malformed"
    assert err.value.detail == "DTDForbidden"


def test_external_entity_is_refused() -> None:
    xml = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        f'<ListeBlanche xmlns="{NS}"><Domaine><Nom>&e;</Nom></Domaine></ListeBlanche>'
    ).encode()
    with pytest.raises(AllowlistError) as err:
        parse_allowlist(xml)
    assert err.value.reason == "malformed"


def test_oversize_file_is_refused() -> None:
    with pytest.raises(AllowlistError) as err:
        parse_allowlist_report(doc("a.mssante.fr"), max_bytes=10)
    assert err.value.reason == "oversize"


# --- normalisation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Medecin.MSSANTE.fr", "medecin.mssante.fr"),
        (" a.fr. ", "a.fr"),
        ("Hélène.FR", "xn--hlne-6oae.fr"),
        ("he\u0301le\u0300ne.fr", "xn--hlne-6oae.fr"),  # decomposed accents: NFC first
        ("xn--hlne-6oae.fr", "xn--hlne-6oae.fr"),
        # lossy IDNA 2003 mappings are refused: they would conflate distinct IDNA 2008 names
        ("straße.fr", None),
        ("xn--strae-oqa.fr", None),  # IDNA 2008 A-label of straße.fr
        ("ｅｘａｍｐｌｅ．ｆｒ", None),
        ("a" * 63 + ".fr", "a" * 63 + ".fr"),
        ("a" * 64 + ".fr", None),
        (".".join(["a" * 60] * 5), None),  # > 253 characters
        ("under_score.fr", None),
        ("a.b-.fr", None),
        ("fr", None),
        ("", None),
        ("a.fr\r\nX: y", None),
    ],
)
def test_normalize_domain(text: str, expected: str | None) -> None:
    assert normalize_domain(text) == expected


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("Jean.Dupont@Medecin.MSSante.fr", ("Jean.Dupont", "medecin.mssante.fr")),
        ("<a@b.fr>", ("a", "b.fr")),
        ("a@clinique-sainte-hélène-exemple.mssante.fr", ("a", HELENE)),
        ("a@@b.fr", None),
        ("a@b.fr@c.fr", None),
        ("@b.fr", None),
        ("a@", None),
        ("a b@c.fr", None),
        ("a@b.fr\r\nBcc: x@y.fr", None),
        ("a@b.fr.", None),
        (".a@b.fr", None),
        ("a..b@c.fr", None),
        ("x" * 65 + "@b.fr", None),
        ("a@" + "b" * 250 + ".fr", None),
        ("nobody", None),
    ],
)
def test_split_address(address: str, expected: tuple[str, str] | None) -> None:
    assert split_address(address) == expected


# --- matching --------------------------------------------------------------------------


def test_allows_exact_domains_from_the_sample() -> None:
    allow = AllowList(parse_allowlist(SAMPLE.read_bytes()))
    assert allow.allows("jean.dupont@medecin.mssante.fr")
    assert allow.allows("Service@CH-Exemple.MSSante.fr")
    assert allow.allows("accueil@clinique-sainte-hélène-exemple.mssante.fr")
    assert allow.allows(f"accueil@{HELENE}")
    assert allow.reason("jean.dupont@medecin.mssante.fr") is None
    assert allow.reason("a@gmail.com") == "not_on_allowlist"
    assert allow.reason("a@sub.medecin.mssante.fr") == "not_on_allowlist"  # exact only
    assert allow.reason("not an address") == "invalid_address"
    assert not allow.allows("a@medecin.mssante.fr.evil.com")


def test_domains_given_to_the_constructor_are_normalised() -> None:
    allow = AllowList(frozenset({"Clinique-Sainte-Hélène-Exemple.mssante.fr."}))
    assert allow.domains == {HELENE}
    with pytest.raises(ValueError, match="invalid_domain"):
        AllowList(frozenset({"not a domain"}))


def test_star_pattern_matches_subdomains_only() -> None:
    allow = AllowList(frozenset(), ("*.x.fr",))
    assert allow.allows("a@sub.x.fr")
    assert allow.allows("a@deep.sub.x.fr")
    assert not allow.allows("a@x.fr")  # the pattern does not cover its own base domain
    assert not allow.allows("a@evilx.fr")
    assert not allow.allows("a@x.fr.evil.com")
    assert not allow.allows("a@sub.x.fr.evil.com")


def test_wildcards_inside_a_label_do_not_cross_dots() -> None:
    allow = AllowList(frozenset(), ("ch-*.mssante.fr", "cabinet?.sante.fr"))
    assert allow.allows("a@ch-lyon.mssante.fr")
    assert not allow.allows("a@ch-lyon.evil.mssante.fr")
    assert not allow.allows("a@ch-.evil.mssante.fr")
    assert allow.allows("a@cabinet1.sante.fr")
    assert not allow.allows("a@cabinet12.sante.fr")


def test_patterns_are_normalised() -> None:
    allow = AllowList(frozenset(), ("*.MSSante.FR", "*.hôpital-exemple.fr"))
    assert allow.allows("a@b.mssante.fr")
    assert allow.allows("a@service.hôpital-exemple.fr")
    assert allow.allows("a@service.xn--hpital-exemple-0ob.fr")


def test_exact_domains_and_patterns_combine() -> None:
    allow = AllowList(frozenset({"medecin.mssante.fr"}), ("*.ch-exemple.fr",))
    assert allow.allows("a@medecin.mssante.fr")
    assert allow.allows("a@urgences.ch-exemple.fr")
    assert not allow.allows("a@ch-exemple.fr")


@pytest.mark.parametrize("pattern", ["*", "*.fr", "x.*", "*.*", "a..fr", "", "bad_label.*.fr.x"])
def test_too_broad_or_invalid_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="invalid_pattern"):
        AllowList(frozenset(), (pattern,))
