"""Hostile MSSanté allow-list files (the ANS ``ListeBlanche`` XML) at volume.

Documents built like the ANS file with hostile parts: entity declarations of every kind
(billion laughs, quadratic blow-up, external and parameter entities, XXE through an
external DTD), processing instructions, CDATA, comments, nesting thousands deep, huge
attributes and texts, foreign namespaces, declared encodings that lie, domain names that
are not host names. Any DTD must be refused before expansion (``AllowlistError
malformed``); otherwise the domains kept are all canonical host names. Only
``AllowlistError`` is raised, and memory stays bounded by the file's size (an entity is
never expanded).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bridge.mail.allowlist import (
    AllowList,
    AllowlistError,
    normalize_domain,
    parse_allowlist_report,
    split_address,
)
from tests.hostile.budget import MiB, Tally, budget

NS = "https://listeblanche.mssante.fr/schema"
NAMES = st.one_of(
    st.sampled_from(
        [
            "medecin.mssante.fr",
            "ch-exemple.mssante.fr",
            " pharmacien.mssante.fr ",
            "é.mssante.fr",
            "xn--.fr",
            "xn--a.fr",
            "a..fr",
            ".fr",
            "fr",
            "-a.fr",
            "a" * 64 + ".fr",
            "ß.fr",
            "Ａ.fr",
            "a.b.c.d.e.f",
            "127.0.0.1",
            "[::1]",
            "a_b.fr",
            "*.fr",
            "a.fr.",
            "<b>x</b>.fr",
            "&amp;.fr",
            "&#65;.fr",
            "&#0;.fr",
            "&#xD800;.fr",
            "<![CDATA[cdata.fr]]>",
            "a<!--c-->.fr",
            "<?pi x?>b.fr",
            "x" * 5000,
            "\u202e.fr",
            "a\u200b.fr",
        ]
    ),
    st.text(
        st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="<&"), max_size=30
    ),
)
ENTITIES = st.sampled_from(
    [
        '<!ENTITY a "aaaaaaaaaa"><!ENTITY b "' + "&a;" * 10 + '"><!ENTITY c "' + "&b;" * 10 + '">',
        '<!ENTITY big "' + "x" * 20_000 + '">',
        '<!ENTITY xxe SYSTEM "file:///etc/passwd">',
        '<!ENTITY xxe SYSTEM "http://127.0.0.1:9/x">',
        '<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p;',
        "<!ENTITY % p \"<!ENTITY q 'x'>\"> %p;",
        "<!ELEMENT ListeBlanche ANY>",
        '<!ATTLIST Nom x CDATA "default">',
    ]
)
DECLARATIONS = st.sampled_from(
    [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "",
        '<?xml version="1.0" encoding="ISO-8859-1"?>',
        '<?xml version="1.0" encoding="UTF-16"?>',
        '<?xml version="1.1"?>',
        '<?xml version="1.0" encoding="UTF-9"?>',  # unknown to Python: found by atheris
        '<?xml version="1.0" encoding="x-user-defined"?>',
        '<?xml version="1.0" standalone="no"?>',
    ]
)


@st.composite
def documents(draw: st.DrawFn) -> tuple[bytes, bool]:
    """An allow-list document, and whether it carries a DTD."""
    head = draw(DECLARATIONS)
    dtd = ""
    if draw(st.integers(0, 3)) == 0:
        internal = "".join(draw(st.lists(ENTITIES, min_size=1, max_size=3)))
        system = draw(
            st.sampled_from(["", ' SYSTEM "http://127.0.0.1:9/l.dtd"', ' SYSTEM "/etc/x"'])
        )
        dtd = f"<!DOCTYPE ListeBlanche{system} [{internal}]>"
    entries = []
    for name in draw(st.lists(NAMES, max_size=12)):
        if dtd and draw(st.booleans()):
            name = draw(st.sampled_from(["&c;", "&big;", "&xxe;", "&q;"])) + name
        ns = draw(st.sampled_from(["", "", ' xmlns="urn:other"', ' xmlns:x="urn:x"']))
        entries.append(f"<Domaine{ns}><Nom>{name}</Nom></Domaine>")
    depth = draw(st.sampled_from([0, 0, 0, 50, 5000]))
    body = "<Groupe>" * depth + "".join(entries) + "</Groupe>" * depth
    if draw(st.integers(0, 9)) == 0:
        body += f'<Meta attr="{"v" * draw(st.integers(1, 100_000))}"/>'
    doc = f'{head}{dtd}<ListeBlanche xmlns="{NS}">{body}</ListeBlanche>'
    encoding = "utf-16" if "UTF-16" in head and draw(st.booleans()) else "utf-8"
    raw = doc.encode(encoding, "surrogatepass")
    if draw(st.integers(0, 9)) == 0:
        raw = raw[: draw(st.integers(0, len(raw)))]
    return raw, bool(dtd)


@budget(300)
@given(doc=documents())
def test_allowlist_parse_is_safe(tally: Tally, doc: tuple[bytes, bool]) -> None:
    raw, has_dtd = doc
    try:
        with tally.memory(len(raw), allowance=2 * MiB, per_byte=60):
            report = parse_allowlist_report(raw)
    except AllowlistError as e:
        assert e.reason in ("malformed", "no_domains", "oversize"), e.reason
        tally.count(e.reason)
        return
    assert not has_dtd, "a document with a DTD must be refused before any expansion"
    for domain in report.domains:
        assert normalize_domain(domain) == domain  # canonical: a fixed point
        assert domain.isascii() and len(domain) <= 253
    AllowList(report.domains)  # usable as it is
    tally.count("accepted")


@budget(300)
@given(
    address=st.one_of(
        st.text(max_size=80),
        st.builds(
            lambda a, b: f"{a}@{b}",
            st.one_of(
                st.text(max_size=30),
                st.sampled_from(
                    ["dr", "dr.martin", "a+tag", '"q"', "a..b", ".a", "é", "a" * 65, "a b", "<a>"]
                ),
            ),
            NAMES,
        ),
        st.builds(lambda a, b: f"{a}@{b}.mssante.fr", st.sampled_from(["dr", "x"]), NAMES),
    )
)
def test_address_checks_are_total(tally: Tally, address: str) -> None:
    """Matching a correspondent's address never raises, whatever it is."""
    allow = AllowList(frozenset({"medecin.mssante.fr"}), patterns=("*.mssante.fr",))
    parts = split_address(address)
    reason = allow.reason(address)
    assert reason in (None, "invalid_address", "not_on_allowlist")
    assert (parts is None) == (reason == "invalid_address")
    tally.count(reason or "allowed")


def test_unknown_declared_encoding_is_malformed(tally: Tally) -> None:
    """Found by atheris: ``encoding="UTF-9"`` raised LookupError past the parser."""
    doc = f'<?xml version="1.0" encoding="UTF-9"?><ListeBlanche xmlns="{NS}"/>'.encode()
    try:
        parse_allowlist_report(doc)
    except AllowlistError as e:
        assert (e.reason, e.detail) == ("malformed", "LookupError")
    else:
        raise AssertionError("accepted a document in an unknown encoding")
    tally.count("malformed")
