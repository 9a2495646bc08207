"""Hostile inbound mail at volume: MIME parsing, then every pure step the bridge takes.

tests/mail/test_mime.py fuzzes ``parse_inbound`` with random bytes, header soup and
byte-level mutations of valid mails. These are built by structure instead: nested
multiparts with lying or missing boundaries, bad or exotic charsets, broken base64 and
quoted-printable, header injection through encoded words and RFC 2231 parameters,
headers near the size limit, path traversal in file names, MDNs, HTML full of what must
not reach Matrix. A mail is refused with ``HostileMail`` (a documented reason) or
accepted; an accepted one must go through what ``MailToRoom`` does with it (loop check,
routing tag, MDN decision, HTML sanitising, XDM detection) without an exception, with
text fields a database and a Matrix event can carry, and file names without directories.
Memory is bounded by the mail's size.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bridge.mail import policy
from bridge.mail.inbound import _is_xdm
from bridge.mail.mdn import should_send_mdn
from bridge.mail.mime import HostileMail, InboundMail, MimeLimits, parse_inbound
from bridge.mail.sanitize import ALLOWED_TAGS, html_to_text, matrix_html
from bridge.mail.xdm import XdmError, unpack_xdm
from tests.hostile.budget import MiB, Tally, budget

REASONS = {
    "oversize",
    "too_deep",
    "too_many_parts",
    "decoded_too_large",
    "header_injection",
    "no_sender",
    "malformed",
}
LIMITS = MimeLimits(
    max_bytes=4 * MiB,
    max_depth=6,
    max_parts=40,
    max_decoded_bytes=8 * MiB,
    max_header_bytes=16 * 1024,
)
DOMAIN = "santeguard.example.mssante.fr"

CHARSETS = st.sampled_from(
    [
        "utf-8",
        "UTF-8",
        "iso-8859-1",
        "windows-1252",
        "utf-7",
        "utf-16",
        "utf-32",
        "x-unknown",
        "zlib",
        "base64",
        "idna",
        "rot13",
        "punycode",
        "uu_codec",
        "",
        '"',
        "utf-8\x00",
        "é",
    ]
)
ENCODINGS = st.sampled_from(
    ["7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "BASE64", "gzip", ""]
)
HOSTILE_TEXT = st.sampled_from(
    [
        "\r\n",
        "\n",
        "\r",
        "\x00",
        "\t",
        " ",
        "=?utf-8?q?a=0D=0AInjected:_yes?=",
        "=?utf-8?b?AA==?=",
        "=?x-unknown?q?abc?=",
        "=?utf-16?b?2AA=?=",
        "=?utf-8?q?=FF=FE?=",
        "../../etc/passwd",
        "..\\..\\win.ini",
        "C:\\x",
        "/abs",
        "a\u202ercp.exe",
        "é" * 50,
        "%00",
        "\u2028",
        "<>",
        '"',
        "'; DROP",
        "=?",
        "?=",
    ]
)
CLEAN = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=15)
# Mostly clean words, so that most mails get past the header checks to the deeper steps.
WORDS = st.integers(0, 7).flatmap(lambda i: HOSTILE_TEXT if i == 0 else CLEAN)
PHRASE = st.lists(WORDS, max_size=5).map("".join)
ADDRESS = st.one_of(
    st.sampled_from(
        [
            "dr@medecin.mssante.fr",
            "bot+0a1b2c3d4e5f@" + DOMAIN,
            "<>",
            "a@b@c",
            '"a b"@x.fr',
            "x@[127.0.0.1]",
            "@x.fr",
            "a@",
            "é@é.fr",
            "a@xn--.fr",
        ]
    ),
    PHRASE.map(lambda p: p + "@x.fr"),
)
HTML = st.lists(
    st.sampled_from(
        [
            "<script>alert(1)</script>",
            "<img src=http://t/x.gif>",
            "<img src=mxc://a/b>",
            "<a href=javascript:x>l</a>",
            "<a href=https://ok>l</a>",
            "<p>",
            "</p>",
            "<b>",
            "<style>*{}</style>",
            "<iframe src=x>",
            "<svg onload=x>",
            "<!--",
            "-->",
            "<![CDATA[",
            "<table><tr><td>",
            "&#0;",
            "&#xD800;",
            "&amp;",
            "&",
            "<",
            ">",
            "<font color=red>",
            "<span data-mx-color=#ff0000>",
            "<ol start=99999999>",
            "<div>" * 50,
            "x" * 1000,
        ]
    ),
    max_size=30,
).map("".join)


def _header(name: str, value: str) -> str:
    return f"{name}: {value}\r\n"


@st.composite
def leaf(draw: st.DrawFn) -> str:
    kind = draw(
        st.sampled_from(
            [
                "text/plain",
                "text/html",
                "application/pdf",
                "application/zip",
                "message/disposition-notification",
                "application/octet-stream",
                "x/y",
                "",
            ]
        )
    )
    cte = draw(ENCODINGS)
    params = ""
    if draw(st.booleans()):
        params += f"; charset={draw(CHARSETS)}"
    headers = _header("Content-Type", kind + params) if kind else ""
    headers += _header("Content-Transfer-Encoding", cte) if cte else ""
    if draw(st.booleans()):
        name = draw(st.one_of(PHRASE, HOSTILE_TEXT, st.just("IHE_XDM.ZIP")))
        style = draw(st.sampled_from(["plain", "2231", "continued"]))
        if style == "plain":
            disp = f'attachment; filename="{name}"'
        elif style == "2231":
            disp = f"attachment; filename*={draw(CHARSETS)}''{name}"
        else:
            disp = f"attachment; filename*0*=utf-8''%FF%2E%2E; filename*1=\"{name}\""
        headers += _header("Content-Disposition", disp)
    body = draw(st.one_of(HTML, PHRASE, st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
    if cte.lower() == "base64":
        body = draw(
            st.sampled_from(
                [
                    base64.b64encode(body.encode("utf-8", "surrogatepass")).decode(),
                    "!!!not base64===",
                    "QUJD",
                    "QUJ",
                    "=" * 10,
                    base64.b64encode(b"%PDF" * 500).decode(),
                ]
            )
        )
    elif cte.lower() == "quoted-printable":
        body += draw(st.sampled_from(["=", "=ZZ", "=\r\n", "=00", "=C3=A9"]))
    return headers + "\r\n" + body + "\r\n"


@st.composite
def part(draw: st.DrawFn, depth: int = 0) -> str:
    if depth >= 8 or draw(st.integers(0, 2)) == 0:
        return draw(leaf())
    if draw(st.integers(0, 4)) == 0:
        inner = draw(part(depth + 1))
        return "Content-Type: message/rfc822\r\n\r\nFrom: a@b.fr\r\n" + inner
    boundary = draw(st.sampled_from(["b", "b" * 80, "=_x", '"q"', "", "--", "b b", "é"]))
    sub = draw(st.sampled_from(["mixed", "alternative", "related", "report", "signed"]))
    children = [draw(part(depth + 1)) for _ in range(draw(st.integers(0, 4)))]
    body = "".join(f"--{boundary}\r\n{c}" for c in children)
    ending = draw(st.sampled_from([f"--{boundary}--\r\n", "", f"--{boundary}\r\n", "--x--"]))
    return f"Content-Type: multipart/{sub}; boundary={boundary}\r\n\r\n{body}{ending}"


@st.composite
def mails(draw: st.DrawFn) -> bytes:
    sender = st.sampled_from(["dr@medecin.mssante.fr", "Dr Zoé <dr@x.mssante.fr>"])
    headers = _header(
        "From", draw(st.one_of(sender, sender, ADDRESS, PHRASE.map(lambda p: f"{p} <dr@x.fr>")))
    )
    optional = {
        "To": ADDRESS,
        "Cc": ADDRESS,
        "Subject": PHRASE,
        "Message-ID": PHRASE,
        "In-Reply-To": PHRASE,
        "References": PHRASE,
        "Date": PHRASE,
        "Disposition-Notification-To": ADDRESS,
        "Auto-Submitted": PHRASE,
        "X-MSS-CODECDA": PHRASE,
        "Return-Path": ADDRESS,
    }
    for name in draw(st.lists(st.sampled_from(sorted(optional)), max_size=8)):
        headers += _header(name, draw(optional[name]))
    if draw(st.integers(0, 9)) == 0:  # a header near, at or past the header-block limit
        headers += _header("X-Big", "a" * draw(st.integers(1000, 20_000)))
    if draw(st.integers(0, 9)) == 0:
        headers += "".join(_header(f"X-{i}", "v") for i in range(draw(st.integers(10, 2000))))
    raw = (headers + draw(part())).encode("utf-8", "surrogateescape")
    if draw(st.integers(0, 4)) == 0:  # bytes no text encoding would produce
        pos = draw(st.integers(0, len(raw)))
        raw = raw[:pos] + draw(st.binary(min_size=1, max_size=8)) + raw[pos:]
    return raw


_TAG = re.compile(r"</?([a-zA-Z][a-zA-Z0-9]*)")


def _storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _bridge_steps(mail: InboundMail) -> None:
    """What MailToRoom does with an accepted mail before and while posting it."""
    for value in (
        mail.message_id,
        mail.from_addr,
        mail.from_name,
        mail.subject,
        *(mail.to_addrs),
        *(mail.references),
        mail.in_reply_to or "",
    ):
        assert _storable(value), value
    assert all(_storable(v) for v in mail.headers.values()), mail.headers
    assert not any(c in mail.subject + mail.from_name for c in "\r\n")
    policy.loop_reason(mail.headers, DOMAIN)
    policy.is_own_message_id(mail.message_id, DOMAIN)
    for address in mail.to_addrs:
        policy.tag_of(address)
    should_send_mdn(mail.headers)
    if mail.html is not None:
        safe = matrix_html(mail.html)
        assert {t.lower() for t in _TAG.findall(safe)} <= ALLOWED_TAGS, safe[:300]
        assert "javascript:" not in safe.lower()
        html_to_text(mail.html)
    for att in mail.attachments:
        assert "/" not in att.filename and "\\" not in att.filename, att.filename
        assert att.filename and not att.filename.startswith("."), att.filename
        assert _storable(att.filename) and _storable(att.content_type)
        if _is_xdm(att):
            try:
                unpack_xdm(att.data)
            except XdmError:
                pass


def _check(tally: Tally, raw: bytes) -> None:
    try:
        with tally.memory(len(raw), allowance=8 * MiB, per_byte=60):
            mail = parse_inbound(raw, LIMITS)
            _bridge_steps(mail)
    except HostileMail as e:
        assert e.reason in REASONS, e.reason
        tally.count(e.reason)
        return
    tally.count("accepted")


@budget(300)
@given(raw=mails())
def test_structured_mail_is_refused_or_bridged_safely(tally: Tally, raw: bytes) -> None:
    _check(tally, raw)


def _deep(depth: int, kind: str) -> bytes:
    """Nesting far past the depth limit, as multiparts or attached messages."""
    if kind == "rfc822":
        return b"From: a@b.fr\r\n" + b"Content-Type: message/rfc822\r\n\r\nFrom: a@b.fr\r\n" * depth
    opening = "".join(
        f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n" for i in range(depth)
    )
    return ("From: a@b.fr\r\n" + opening + "\r\nx\r\n").encode()


@budget(30)
@given(
    depth=st.integers(7, 3000),
    kind=st.sampled_from(["rfc822", "multipart"]),
    wide=st.integers(0, 5000),
)
def test_deep_and_wide_trees_are_refused_within_bounds(
    tally: Tally, depth: int, kind: str, wide: int
) -> None:
    _check(tally, _deep(depth, kind))
    # Many sibling parts (a zip of parts), past max_parts.
    siblings = "".join("--w\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(wide))
    head = "From: a@b.fr\r\nContent-Type: multipart/mixed; boundary=w\r\n\r\n"
    _check(tally, f"{head}{siblings}--w--\r\n".encode())


def test_limits_hold_for_large_inputs(tally: Tally) -> None:
    """A body at the size limit, a base64 part that decodes past it, a huge header."""
    pdf = base64.encodebytes(b"%PDF" + b"\x00" * (2 * MiB)).decode()
    cases: list[Any] = [
        b"From: a@b.fr\r\n\r\n" + b"x" * (4 * MiB - 20),
        b"From: a@b.fr\r\n\r\n" + b"x" * (4 * MiB + 1),
        b"From: a@b.fr\r\nContent-Type: application/pdf\r\n"
        + b"Content-Transfer-Encoding: base64\r\n\r\n"
        + pdf.encode(),
        b"From: a@b.fr\r\nSubject: " + b"a" * (64 * 1024) + b"\r\n\r\nx",
        b"From: a@b.fr\r\n" + b"X: y\r\n" * 50_000 + b"\r\nx",
    ]
    for raw in cases:
        _check(tally, raw)


def test_undecodable_display_name_is_storable(tally: Tally) -> None:
    """Found by the long run: ``=?utf-8?q?=FF=FE?=`` gave a From name of lone surrogates."""
    mail = parse_inbound(b"From: =?utf-8?q?=FF=FE?= <dr@x.fr>\r\nX-A: =?utf-8?q?=FF?=\r\n\r\nx")
    assert mail.from_name and _storable(mail.from_name), mail.from_name
    _bridge_steps(mail)
    tally.count("accepted")
