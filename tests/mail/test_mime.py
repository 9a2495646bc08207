"""Outbound MIME building and hostile-input parsing (bridge/mail/mime.py).

Tables for every HostileMail reason, round trips through parse_inbound, and property
tests: parse_inbound raises nothing but HostileMail on arbitrary or mutated input.
"""

from __future__ import annotations

import base64
import dataclasses
import email
import email.policy
import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.mail import mime
from bridge.mail.mdn import build_mdn
from bridge.mail.mime import (
    Attachment,
    HostileMail,
    InboundMail,
    MimeLimits,
    OutboundMail,
    build_outbound,
    parse_inbound,
)

WHEN = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4


def _mail(**overrides: Any) -> OutboundMail:
    base = OutboundMail(
        from_addr="bot+0a1b2c3d4e5f@santeguard.example.mssante.fr",
        from_name="Élodie Dupré-Lefèvre",
        rpps="10101010101",
        to_addr="dr.martin@médecin.mssante.fr",
        reply_to="bot+0a1b2c3d4e5f@santeguard.example.mssante.fr",
        subject="Résultats d'analyse — bilan sanguin",
        text="Bonjour,\nvoici les résultats.\n",
        html="<p>Bonjour,<br>voici les <b>résultats</b>.</p>",
        attachments=(
            Attachment(
                "compte rendu été.pdf", "application/pdf", PDF, {"X-MSS-CODECDA": "11488-4"}
            ),
            Attachment("notes.txt", "text/plain", "texte brut é\n".encode()),
        ),
        message_id="<sg.0123456789abcdef0123456789abcdef@santeguard.example.mssante.fr>",
        in_reply_to="<parent@medecin.mssante.fr>",
        references=("<root@medecin.mssante.fr>", "<mid@medecin.mssante.fr>"),
        date=WHEN,
        request_mdn=True,
    )
    return dataclasses.replace(base, **overrides)


def _headers(raw: bytes) -> email.message.Message:
    return email.message_from_bytes(raw, policy=email.policy.default)


def _simple(
    headers: str = "", body: str = "Bonjour\r\n", *, sender: str = "dr@medecin.fr"
) -> bytes:
    return (f"From: {sender}\r\nTo: bot@sg.fr\r\nSubject: s\r\n{headers}\r\n{body}").encode()


# ------------------------------------------------------------------------------ outbound


def test_round_trip_keeps_everything() -> None:
    mail = _mail()
    raw = build_outbound(mail)
    got = parse_inbound(raw)
    assert got.from_addr == mail.from_addr
    assert got.from_name == "Élodie Dupré-Lefèvre (RPPS 10101010101)"
    assert got.to_addrs == ("dr.martin@xn--mdecin-bva.mssante.fr",)
    assert got.subject == mail.subject
    assert got.text == mail.text
    assert got.html is not None and got.html.strip() == mail.html
    assert got.message_id == mail.message_id
    assert got.in_reply_to == "<parent@medecin.mssante.fr>"
    assert got.references == (
        "<root@medecin.mssante.fr>",
        "<mid@medecin.mssante.fr>",
        "<parent@medecin.mssante.fr>",
    )
    assert got.date == WHEN
    assert [(a.filename, a.content_type, a.data) for a in got.attachments] == [
        ("compte rendu été.pdf", "application/pdf", PDF),
        ("notes.txt", "text/plain", "texte brut é\n".encode()),
    ]
    assert got.attachments[0].headers == {"x-mss-codecda": "11488-4"}
    assert got.headers["disposition-notification-to"] == mail.from_addr
    assert "auto-submitted" not in got.headers
    assert got.mdn is None and not got.message_id_synthesized


def test_outbound_structure_and_line_endings() -> None:
    raw = build_outbound(_mail())
    assert b"\n" not in raw.replace(b"\r\n", b""), "every line ends with CRLF"
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert raw.isascii(), "7-bit clean: quoted-printable text, base64 files, RFC 2047 headers"
    msg = _headers(raw)
    assert msg.get_content_type() == "multipart/mixed"
    kinds = [p.get_content_type() for p in msg.walk()]
    assert kinds == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "application/pdf",
        "text/plain",
    ]
    assert b"filename*=utf-8''compte%20rendu%20%C3%A9t%C3%A9.pdf" in raw
    assert msg["Reply-To"] == "bot+0a1b2c3d4e5f@santeguard.example.mssante.fr"
    assert "Auto-Submitted" not in msg
    assert raw.count(b"MIME-Version") == 1
    assert build_outbound(_mail()) == raw, "deterministic (boundaries derive from Message-ID)"


@pytest.mark.parametrize(
    ("overrides", "present", "absent"),
    [
        ({"html": None, "attachments": ()}, [], ["multipart/alternative", "multipart/mixed"]),
        ({"attachments": ()}, ["multipart/alternative"], ["multipart/mixed"]),
        ({"html": None}, ["multipart/mixed"], ["multipart/alternative"]),
        ({"reply_to": None}, [], ["reply-to"]),
        ({"request_mdn": False}, [], ["disposition-notification-to"]),
        ({"in_reply_to": None, "references": ()}, [], ["in-reply-to", "references"]),
    ],
)
def test_outbound_variants(
    overrides: dict[str, Any], present: list[str], absent: list[str]
) -> None:
    raw = build_outbound(_mail(**overrides))
    msg = _headers(raw)
    seen = {k.lower() for k in msg.keys()} | {p.get_content_type() for p in msg.walk()}
    assert set(present) <= seen
    assert not set(absent) & seen
    assert parse_inbound(raw).text == _mail().text


@pytest.mark.parametrize(
    ("name", "rpps", "display"),
    [
        ("Jean Dupont", None, "Jean Dupont"),
        ("Jean Dupont", "10101010101", "Jean Dupont (RPPS 10101010101)"),
        ("", "10101010101", "RPPS 10101010101"),
        ("Jean (Dr) Dupont", "101(01)", "Jean (Dr) Dupont (RPPS 10101)"),
        ('Jean "Le Doc" Dupont', "10101010101", 'Jean "Le Doc" Dupont (RPPS 10101010101)'),
    ],
)
def test_from_display_name(name: str, rpps: str | None, display: str) -> None:
    raw = build_outbound(_mail(from_name=name, rpps=rpps))
    address = _headers(raw)["From"].addresses[0]  # type: ignore[union-attr]
    assert (address.display_name, address.addr_spec) == (display, _mail().from_addr)
    assert parse_inbound(raw).from_name == display


def test_long_non_ascii_name_survives_folding() -> None:
    name = "Marie-Thérèse Éléonore de la Côte-Saint-André Dupré-Lefèvre"
    got = parse_inbound(build_outbound(_mail(from_name=name)))
    assert got.from_name == f"{name} (RPPS 10101010101)"


@pytest.mark.parametrize(
    "field",
    ["from_name", "subject", "rpps"],
)
@pytest.mark.parametrize(
    "payload",
    ["x\r\nBcc: evil@attacker.example", "x\nBcc: evil@attacker.example",
     "x\rBcc: evil@attacker.example", "x\r\n\r\n<html>body</html>",
     "x\x00Bcc: evil@attacker.example", "x\u2028Bcc: evil@attacker.example",
     "=?utf-8?q?x=0D=0ABcc:_evil@attacker.example?=",  # CVE-2024-6923 on Python < 3.11.10
     "=?utf-8?b?eA0KQmNjOiBldmlsQGF0dGFja2VyLmV4YW1wbGU=?="],
)  # fmt: skip
def test_header_injection_is_impossible(field: str, payload: str) -> None:
    raw = build_outbound(_mail(**{field: payload}))
    msg = _headers(raw)
    assert "Bcc" not in msg
    names = {name.lower() for name in msg.keys()}
    assert names <= {
        "from", "to", "reply-to", "subject", "date", "message-id", "in-reply-to",
        "references", "disposition-notification-to", "mime-version", "content-type",
    }  # fmt: skip
    assert not any(line.lower().startswith(b"bcc") for line in raw.split(b"\r\n"))
    got = parse_inbound(raw)
    assert "\n" not in got.subject and "\n" not in got.from_name


@pytest.mark.parametrize(
    "overrides",
    [
        {"to_addr": "evil@x.fr\r\nBcc: y@z.fr"},
        {"to_addr": "not-an-address"},
        {"from_addr": "a@b@c"},
        {"reply_to": "bad address@x.fr"},
        {"message_id": "no id"},
    ],
)
def test_outbound_refuses_invalid_addresses_and_ids(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        build_outbound(_mail(**overrides))


def test_message_id_is_extracted_from_noise() -> None:
    raw = build_outbound(_mail(message_id=" <a@b.fr>\r\nBcc: x@y.fr"))
    assert "Bcc" not in _headers(raw)
    assert parse_inbound(raw).message_id == "<a@b.fr>"


def test_references_deduplicated_parent_last_and_capped() -> None:
    refs = (*(f"<r{i}@x.fr>" for i in range(30)), "<r3@x.fr>", "<parent@x.fr>")
    got = parse_inbound(build_outbound(_mail(references=refs, in_reply_to="<parent@x.fr>")))
    assert len(got.references) == 20
    assert got.references[0] == "<r0@x.fr>" and got.references[-1] == "<parent@x.fr>"
    assert len(set(got.references)) == 20
    assert got.references[-2] == "<r29@x.fr>"
    only_parent = parse_inbound(build_outbound(_mail(references=(), in_reply_to="<p@x.fr>")))
    assert only_parent.references == ("<p@x.fr>",)


def test_attachment_types_are_sanitised() -> None:
    mail = _mail(
        attachments=(
            Attachment("../../etc/passwd", "message/rfc822", b"From: x\r\n\r\nhi"),
            Attachment("C:\\temp\\x.bin", "not a type", b"\x00\x01"),
            Attachment("a\r\nb.txt", "TEXT/PLAIN", b"abc"),
        )
    )
    got = parse_inbound(build_outbound(mail))
    assert [(a.filename, a.content_type) for a in got.attachments] == [
        ("passwd", "application/octet-stream"),
        ("x.bin", "application/octet-stream"),
        ("a b.txt", "text/plain"),
    ]
    assert got.attachments[0].data == b"From: x\r\n\r\nhi"


def test_naive_date_is_taken_as_utc() -> None:
    got = parse_inbound(build_outbound(_mail(date=datetime(2024, 1, 2, 3, 4, 5))))
    assert got.date == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    paris = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    assert parse_inbound(build_outbound(_mail(date=paris))).date == paris


# ------------------------------------------------------------------------------- hostile


def _nested_multipart(depth: int) -> bytes:
    head = "From: dr@medecin.fr\r\n"
    body = "text\r\n"
    for level in range(depth, 0, -1):
        body = (
            f"Content-Type: multipart/mixed; boundary=b{level}\r\n\r\n"
            f"--b{level}\r\n{body}--b{level}--\r\n"
        )
    return (head + body).encode()


def _nested_rfc822(depth: int) -> bytes:
    raw = "From: dr@medecin.fr\r\n\r\nleaf\r\n"
    for _ in range(depth):
        raw = f"From: dr@medecin.fr\r\nContent-Type: message/rfc822\r\n\r\n{raw}"
    return raw.encode()


def _many_parts(count: int) -> bytes:
    parts = "".join(f"--b\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n" for i in range(count))
    return (
        f"From: dr@medecin.fr\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n{parts}--b--\r\n"
    ).encode()


def _base64_attachment(size: int, count: int = 1) -> bytes:
    encoded = base64.encodebytes(b"\0" * size).decode().replace("\n", "\r\n")
    part = (
        "--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        f'Content-Disposition: attachment; filename="z.bin"\r\n\r\n{encoded}'
    )
    return (
        "From: dr@medecin.fr\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        f"{part * count}--b--\r\n"
    ).encode()


SMALL = MimeLimits(max_bytes=1_000_000, max_decoded_bytes=100_000, max_header_bytes=4096)

HOSTILE: list[tuple[str, bytes, MimeLimits, str]] = [
    ("raw over the limit", _simple(body="x" * 1_000_000), SMALL, "oversize"),
    ("raw over the default 25 MiB", b"From: a@b.fr\r\n\r\n" + b"x" * (25 * 2**20), MimeLimits(),
     "oversize"),
    ("header block too large", _simple(headers="X-Pad: " + "a" * 5000 + "\r\n"), SMALL,
     "oversize"),
    ("no blank line within the header limit", b"From: a@b.fr\r\n" + b"X: y\r\n" * 2000, SMALL,
     "oversize"),
    ("multipart 11 deep", _nested_multipart(11), MimeLimits(), "too_deep"),
    ("multipart 5000 deep", _nested_multipart(5000), MimeLimits(), "too_deep"),
    ("message/rfc822 11 deep", _nested_rfc822(11), MimeLimits(), "too_deep"),
    ("message/rfc822 3 deep, limit 2", _nested_rfc822(3), MimeLimits(max_depth=2), "too_deep"),
    ("101 parts", _many_parts(100), MimeLimits(), "too_many_parts"),
    ("20000 parts", _many_parts(20_000), MimeLimits(max_bytes=2**30), "too_many_parts"),
    ("large base64 part", _base64_attachment(150_000), SMALL, "decoded_too_large"),
    ("many base64 parts adding up", _base64_attachment(30_000, count=4), SMALL,
     "decoded_too_large"),
    ("NUL in a header", _simple(headers="X-Evil: a\x00b\r\n"), MimeLimits(), "header_injection"),
    ("bare CR in Subject", b"From: a@b.fr\r\nSubject: x\rBcc: e@x.fr\r\n\r\nb", MimeLimits(),
     "header_injection"),
    ("bare LF in a CRLF header block", b"From: a@b.fr\r\nSubject: x\nBcc: e@x.fr\r\n\r\nb",
     MimeLimits(), "header_injection"),
    ("encoded CRLF in Subject (q)", _simple(headers="X-S: =?utf-8?q?a=0D=0ABcc:_e@x.fr?=\r\n"),
     MimeLimits(), "header_injection"),
    ("encoded LF in Subject (b)",
     _simple(headers="Subject: =?utf-8?b?YQpCY2M6IGVAeC5mcg==?=\r\n"),  # "a\nBcc: e@x.fr"
     MimeLimits(), "header_injection"),
    ("encoded CRLF in the From name", _simple(sender="=?utf-8?q?A=0D=0AB?= <a@b.fr>"),
     MimeLimits(), "header_injection"),
    ("encoded NUL in To", _simple(headers="Cc: =?utf-8?q?x=00?= <c@d.fr>\r\n"), MimeLimits(),
     "header_injection"),
    ("no From", b"To: bot@sg.fr\r\nSubject: s\r\n\r\nbody", MimeLimits(), "no_sender"),
    ("empty From", _simple(sender=""), MimeLimits(), "no_sender"),
    ("garbled From", _simple(sender="not an address"), MimeLimits(), "no_sender"),
    ("From with an empty address", _simple(sender="<>"), MimeLimits(), "no_sender"),
    ("From is an empty group", _simple(sender="undisclosed-recipients:;"), MimeLimits(),
     "no_sender"),
    ("From with spaces in the address", _simple(sender="<a b@c.fr>"), MimeLimits(), "no_sender"),
    ("no headers at all", b"\r\njust a body", MimeLimits(), "no_sender"),
    ("empty input", b"", MimeLimits(), "no_sender"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "limits", "reason"), [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE]
)
def test_hostile_mail_is_refused_with_its_reason(
    raw: bytes, limits: MimeLimits, reason: str
) -> None:
    with pytest.raises(HostileMail) as caught:
        parse_inbound(raw, limits)
    assert caught.value.reason == reason
    assert "evil" not in str(caught.value) and "e@x.fr" not in caught.value.detail


def test_within_limits_is_accepted() -> None:
    assert parse_inbound(_nested_multipart(10)).text == "text"
    assert len(parse_inbound(_many_parts(99)).attachments) == 98
    got = parse_inbound(_base64_attachment(50_000), SMALL)
    assert got.attachments[0].data == b"\0" * 50_000


def test_malformed_when_the_email_package_breaks(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("bug in a library")

    monkeypatch.setattr(mime, "parse_mdn", broken)
    raw = build_mdn(
        original_message_id="<a@b.fr>", original_subject="s", original_headers="",
        recipient="a@b.fr", from_addr="a@b.fr", to_addr="c@d.fr", message_id="<m@b.fr>", date=WHEN,
        disposition="displayed", manual=False,
    )  # fmt: skip
    with pytest.raises(HostileMail) as caught:
        parse_inbound(raw)
    assert caught.value.reason == "malformed" and caught.value.detail == "RuntimeError"


# ------------------------------------------------------------------------------- parsing


def test_missing_message_id_is_synthesised_deterministically() -> None:
    raw = _simple()
    first, again = parse_inbound(raw), parse_inbound(raw)
    assert (
        first.message_id
        == again.message_id
        == (f"<{hashlib.sha256(raw).hexdigest()}@missing-message-id.invalid>")
    )
    assert first.message_id_synthesized
    assert parse_inbound(_simple(body="other")).message_id != first.message_id
    garbled = parse_inbound(_simple(headers="Message-ID: not an id\r\n"))
    assert garbled.message_id_synthesized


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("Wed, 01 May 2024 12:30:00 +0000", WHEN),
        ("1 May 2024 14:30:00 +0200", WHEN),
        ("Wed, 01 May 2024 12:30:00 -0000", WHEN),
        ("Wed, 01 May 2024 12:30:00", WHEN),
        ("yesterday", None),
        ("Wed, 99 Foo 2024 99:99:99 +9999", None),
        ("", None),
    ],
)
def test_dates_parse_leniently(date: str, expected: datetime | None) -> None:
    assert parse_inbound(_simple(headers=f"Date: {date}\r\n")).date == expected


@pytest.mark.parametrize(
    ("ctype", "cte", "body", "expected"),
    [
        ("text/plain; charset=iso-8859-1", "quoted-printable", "r=E9sultat", "résultat"),
        ("text/plain; charset=utf-8", "base64", base64.b64encode("é".encode()).decode(), "é"),
        ("text/plain; charset=x-unknown-charset", "8bit", "été", "été"),
        ("text/plain; charset=zlib", "8bit", "x\u009c", "x\u009c"),
        ("text/plain", "8bit", "undeclared é", "undeclared é"),
        ("text/plain; charset=us-ascii", "8bit", "lying é", "lying é"),
        ("text/plain; charset=utf-8", "8bit", "bad \udcff byte", "bad \ufffd byte"),
        ("text/plain; charset=windows-1252", "quoted-printable", "=80 =9C", "€ œ"),
    ],
)
def test_charsets_decode_with_replacement(ctype: str, cte: str, body: str, expected: str) -> None:
    raw = _simple(headers=f"Content-Type: {ctype}\r\nContent-Transfer-Encoding: {cte}\r\n")
    raw = raw.replace(b"Bonjour\r\n", body.encode("utf-8", "surrogateescape"))
    assert parse_inbound(raw).text == expected


def test_raw_utf8_and_encoded_headers() -> None:
    raw = (
        "From: Élodie Dupré <elodie@médecin.fr>\r\n"
        "To: =?utf-8?q?Bot_=C3=A9?= <bot+ABC@SG.fr>, bad address, x@y.fr\r\n"
        "Cc: bot+abc@sg.fr, c@d.fr\r\n"
        "Subject: =?utf-8?q?R=C3=A9sultats_d?=\r\n =?utf-8?q?=27analyse?=\r\n"
        "Message-ID:\r\n <folded@medecin.fr>\r\n"
        "In-Reply-To: <p@x.fr> (comment)\r\n"
        "References: <a@x.fr>\r\n <b@x.fr>  <a@x.fr> junk\r\n"
        "Auto-Submitted: no\r\nPrecedence: first-class\r\nReturn-Path: <elodie@médecin.fr>\r\n"
        "\r\nbody\r\n"
    ).encode()
    got = parse_inbound(raw)
    assert (got.from_name, got.from_addr) == ("Élodie Dupré", "elodie@xn--mdecin-bva.fr")
    assert got.to_addrs == ("bot+ABC@sg.fr", "x@y.fr", "bot+abc@sg.fr", "c@d.fr")
    assert got.subject == "Résultats d'analyse"
    assert got.message_id == "<folded@medecin.fr>"
    assert got.in_reply_to == "<p@x.fr>"
    assert got.references == ("<a@x.fr>", "<b@x.fr>")
    assert got.headers["auto-submitted"] == "no"
    assert got.headers["precedence"] == "first-class"
    assert got.headers["return-path"] == "<elodie@médecin.fr>"
    assert got.text == "body\n"


def _multipart(*parts: str, ctype: str = "multipart/mixed") -> bytes:
    body = "".join(f"--b\r\n{p}\r\n" for p in parts)
    return (
        f"From: dr@medecin.fr\r\nContent-Type: {ctype}; boundary=b\r\n\r\n{body}--b--\r\n".encode()
    )


def test_body_parts_and_attachments_are_classified() -> None:
    forwarded = "Content-Type: message/rfc822\r\n\r\nFrom: x@y.fr\r\nSubject: fwd\r\n\r\ninner text"
    raw = _multipart(
        "Content-Type: text/plain; charset=utf-8\r\n\r\nfirst text",
        "Content-Type: text/html\r\n\r\n<p>first html</p>",
        "Content-Type: text/plain\r\n\r\nsecond text",
        "Content-Type: text/html\r\n\r\n<p>second html</p>",
        "Content-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nattached text",
        'Content-Type: text/plain; name="n.txt"\r\n\r\nnamed text',
        "Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=",
        "Content-Type: application/pdf\r\nContent-Disposition: attachment; "
        "filename*=utf-8''r%C3%A9sum%C3%A9.pdf\r\n\r\n%PDF",
        'Content-Type: application/pdf\r\nContent-Disposition: attachment; filename="=?utf-8?q?'
        'r=C3=A9sultat.pdf?="\r\nX-MSS-CODECDA: 11488-4\r\nContent-ID: <c1@x>\r\n\r\n%PDF',
        "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; "
        'filename="../../etc/passwd"\r\n\r\nroot',
        forwarded,
    )
    got = parse_inbound(raw)
    assert got.text == "first text" and got.html == "<p>first html</p>"
    assert [(a.filename, a.content_type) for a in got.attachments] == [
        ("part-4.txt", "text/plain"),
        ("part-5.html", "text/html"),
        ("part-6.txt", "text/plain"),
        ("n.txt", "text/plain"),
        ("part-8.bin", "image/png"),
        ("résumé.pdf", "application/pdf"),
        ("résultat.pdf", "application/pdf"),
        ("passwd", "application/octet-stream"),
        ("message.eml", "message/rfc822"),
    ]
    assert got.attachments[4].data == base64.b64decode("iVBORw0KGgo=")
    assert got.attachments[6].headers == {"x-mss-codecda": "11488-4", "content-id": "<c1@x>"}
    inner = got.attachments[-1].data
    assert b"Subject: fwd" in inner and b"inner text" in inner
    assert "inner text" not in got.text


def test_text_inside_an_attached_message_is_not_the_body() -> None:
    raw = _multipart(
        "Content-Type: message/rfc822\r\n\r\n"
        "From: x@y.fr\r\nContent-Type: text/html\r\n\r\n<p>in</p>"
    )
    got = parse_inbound(raw)
    assert got.text == "" and got.html is None
    assert [a.filename for a in got.attachments] == ["message.eml"]


def test_html_only_gets_a_text_fallback() -> None:
    raw = _simple(
        headers="Content-Type: text/html; charset=utf-8\r\n", body="<p>Bonjour <b>Dr</b></p>"
    )
    got = parse_inbound(raw)
    assert got.html == "<p>Bonjour <b>Dr</b></p>" and got.text == "Bonjour Dr"


def test_lf_only_mail_is_accepted() -> None:
    got = parse_inbound(b"From: a@b.fr\nSubject: lf\nMessage-ID: <x@y>\n\nbody\n")
    assert (got.subject, got.message_id, got.text) == ("lf", "<x@y>", "body\n")


def test_mdn_is_recognised() -> None:
    raw = build_mdn(
        original_message_id="<sg.1@sg.fr>", original_subject="s", original_headers="From: x\r\n",
        recipient="dr@medecin.fr", from_addr="dr@medecin.fr", to_addr="bot@sg.fr",
        message_id="<mdn@medecin.fr>", date=WHEN, disposition="displayed", manual=True,
    )  # fmt: skip
    got = parse_inbound(raw)
    assert got.mdn is not None
    assert (got.mdn.original_message_id, got.mdn.disposition) == ("<sg.1@sg.fr>", "displayed")
    assert got.mdn.final_recipient == "dr@medecin.fr"
    assert parse_inbound(build_outbound(_mail())).mdn is None


# ------------------------------------------------------------------------------ properties


def _assert_total(raw: bytes, limits: MimeLimits = MimeLimits()) -> InboundMail | None:
    try:
        got = parse_inbound(raw, limits)
    except HostileMail as e:
        assert e.reason in {
            "oversize", "too_deep", "too_many_parts", "decoded_too_large",
            "header_injection", "no_sender", "malformed",
        }  # fmt: skip
        return None
    assert got.message_id.startswith("<") and got.message_id.endswith(">")
    assert not any(c in got.subject + got.from_name for c in "\r\n\x00")
    assert got.from_addr.count("@") == 1
    return got


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_raise_only_hostile_mail(raw: bytes) -> None:
    """300 examples of arbitrary bytes: parse_inbound returns or raises HostileMail."""
    _assert_total(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from(list('From:To;<>@ab.=?\r\n\t -"()')), max_size=400))
def test_header_soup_raises_only_hostile_mail(text: str) -> None:
    """300 examples built from header punctuation, where the parsers are most fragile."""
    _assert_total(("From: " + text).encode("utf-8", "surrogateescape"))


SEEDS = [
    build_outbound(_mail()),
    build_outbound(_mail(html=None, attachments=())),
    _multipart(
        "Content-Type: message/rfc822\r\n\r\nFrom: x@y.fr\r\nSubject: fwd\r\n\r\ninner",
        "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: "
        "quoted-printable\r\n\r\nr=E9sultat",
    ),
    build_mdn(
        original_message_id="<sg.1@sg.fr>", original_subject="s", original_headers="From: x\r\n",
        recipient="dr@medecin.fr", from_addr="dr@medecin.fr", to_addr="bot@sg.fr",
        message_id="<mdn@medecin.fr>", date=WHEN, disposition="displayed", manual=False,
    ),
]  # fmt: skip
TOKENS = [
    b"\r", b"\n", b"\r\n", b"\x00", b"--", b"=?utf-8?q?=0D=0A?=", b"=?utf-8?b?AA==?=", b"\xff\xfe",
    b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n",
    b"Content-Type: message/rfc822\r\n\r\n",
    b"Content-Transfer-Encoding: base64\r\n", b"charset=zlib", b"boundary=\"\"", b"=",
    b"filename*0*=utf-8''%FF%FE", b"<", b">", b"\t", b"From: <>\r\n",
]  # fmt: skip


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "insert", "token", "delete", "duplicate"]))
        if action == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif action == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=20))
        elif action == "token":
            data[pos:pos] = draw(st.sampled_from(TOKENS))
        elif action == "delete":
            del data[pos : pos + draw(st.integers(1, 200))]
        elif action == "duplicate":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 400))]
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_mutated_mails_raise_only_hostile_mail(raw: bytes) -> None:
    """300 examples of valid mails with flipped, inserted, deleted and duplicated bytes."""
    _assert_total(raw, MimeLimits(max_parts=30, max_depth=5))


@st.composite
def _tree(draw: st.DrawFn, depth: int = 0) -> str:
    if depth >= 9 or draw(st.integers(0, 2)) == 0:
        kind = draw(st.sampled_from(["text/plain", "text/html", "application/pdf"]))
        return f"Content-Type: {kind}\r\n\r\nleaf {depth}\r\n"
    if draw(st.booleans()):
        return "Content-Type: message/rfc822\r\n\r\nFrom: a@b.fr\r\n" + draw(_tree(depth + 1))
    boundary = f"b{depth}x{draw(st.integers(0, 99))}"
    children = [draw(_tree(depth + 1)) for _ in range(draw(st.integers(1, 3)))]
    body = "".join(f"--{boundary}\r\n{child}" for child in children)
    return f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n{body}--{boundary}--\r\n"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_tree())
def test_random_mime_trees_respect_the_limits(tree: str) -> None:
    """150 random MIME trees: accepted ones fit the limits, refused ones name the limit."""
    limits = MimeLimits(max_depth=6, max_parts=25)
    raw = ("From: a@b.fr\r\n" + tree).encode()
    try:
        got = parse_inbound(raw, limits)
    except HostileMail as e:
        assert e.reason in {"too_deep", "too_many_parts"}
        return
    assert len(got.attachments) <= 25
