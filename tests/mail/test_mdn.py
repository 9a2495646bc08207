"""Read receipts (RFC 8098, ANS profile): build, parse back, and when to send one."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage, Message

import pytest

from bridge.mail.mdn import MdnReport, build_mdn, parse_mdn, should_send_mdn
from bridge.mail.policy import normalize_message_id

WHEN = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
ORIGINAL = "<sg.0123456789abcdef0123456789abcdef@santeguard.example.mssante.fr>"
ORIGINAL_HEADERS = (
    "From: Dr Martin <dr.martin@medecin.mssante.fr>\r\n"
    "To: bot+abc@santeguard.example.mssante.fr\r\n"
    f"Message-ID: {ORIGINAL}\r\n"
    "Subject: =?utf-8?q?R=C3=A9sultats?=\r\n"
)


def _build(**overrides: object) -> bytes:
    args: dict[str, object] = {
        "original_message_id": ORIGINAL,
        "original_subject": "Résultats",
        "original_headers": ORIGINAL_HEADERS,
        "recipient": "bot@santeguard.example.mssante.fr",
        "from_addr": "bot@santeguard.example.mssante.fr",
        "to_addr": "dr.martin@medecin.mssante.fr",
        "message_id": "<mdn.1@santeguard.example.mssante.fr>",
        "date": WHEN,
        "disposition": "displayed",
        "manual": False,
    }
    args.update(overrides)
    return build_mdn(**args)  # type: ignore[arg-type]


def _parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.default)


def _parts(msg: Message) -> list[EmailMessage]:
    parts = msg.get_payload()
    assert isinstance(parts, list)
    return [p for p in parts if isinstance(p, EmailMessage)]


@pytest.mark.parametrize(
    ("disposition", "manual", "mode"),
    [
        ("displayed", False, "automatic-action/MDN-sent-automatically"),
        ("processed", False, "automatic-action/MDN-sent-automatically"),
        ("displayed", True, "manual-action/MDN-sent-manually"),
    ],
)
def test_build_then_parse(disposition: str, manual: bool, mode: str) -> None:
    raw = _build(disposition=disposition, manual=manual)
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    msg = _parse(raw)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "disposition-notification"
    parts = _parts(msg)
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/disposition-notification",
        "text/rfc822-headers",
    ]
    assert f"Disposition: {mode}; {disposition}".encode() in raw
    assert f"Original-Message-ID: {ORIGINAL}".encode() in raw
    assert b"Final-Recipient: rfc822;bot@santeguard.example.mssante.fr" in raw
    assert normalize_message_id(str(msg["In-Reply-To"])) == ORIGINAL
    assert ("Auto-Submitted" in msg) is (not manual)
    report = parse_mdn(msg)
    assert report == MdnReport(
        ORIGINAL, disposition, "bot@santeguard.example.mssante.fr", automatic=not manual
    )


def test_build_keeps_original_headers_and_explanation() -> None:
    raw = _build(explanation="Lu par le destinataire.\n", original_recipient="bot@x.fr")
    parts = _parts(_parse(raw))
    assert "Lu par le destinataire." in parts[0].get_content()
    assert "dr.martin@medecin.mssante.fr" in parts[2].get_content()
    assert b"Original-Recipient: rfc822;bot@x.fr" in raw


def test_build_subject_cannot_inject_headers() -> None:
    msg = _parse(_build(original_subject="Résultats\r\nBcc: evil@attacker.example"))
    assert "Bcc" not in msg
    assert "\n" not in str(msg["Subject"])


@pytest.mark.parametrize(
    "overrides",
    [
        {"original_message_id": "not an id"},
        {"message_id": ""},
        {"to_addr": "evil@x.fr\r\nBcc: y@z.fr"},
        {"recipient": "nobody"},
        {"from_addr": ""},
    ],
)
def test_build_refuses_bad_input(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        _build(**overrides)


def _report(fields: str, *, report_type: str = "disposition-notification", extra: str = "") -> str:
    return (
        "From: dr.martin@medecin.mssante.fr\r\n"
        "To: bot@santeguard.example.mssante.fr\r\n"
        f"{extra}"
        f'Content-Type: multipart/report; report-type="{report_type}"; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nRead.\r\n"
        "--b\r\nContent-Type: message/disposition-notification\r\n\r\n"
        f"{fields}\r\n"
        "--b--\r\n"
    )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (f"Original-Message-ID: {ORIGINAL}\r\nDisposition: automatic-action/"
         "MDN-sent-automatically; displayed\r\nFinal-Recipient: rfc822; Dr.Martin@MEDECIN.fr",
         MdnReport(ORIGINAL, "displayed", "Dr.Martin@medecin.fr")),
        ("original-message-id:   <a@b.fr>  \r\ndisposition: manual-action/MDN-sent-manually;"
         " Processed", MdnReport("<a@b.fr>", "processed", None, automatic=False)),
        ("ORIGINAL-MESSAGE-ID:\r\n <folded@b.fr>\r\nDISPOSITION: automatic-action/"
         "MDN-sent-automatically;\r\n deleted", MdnReport("<folded@b.fr>", "deleted", None)),
        ("Original-Message-ID: < spaced@b.fr >\r\nDisposition: automatic-action/x; "
         "displayed/error", MdnReport("<spaced@b.fr>", "displayed", None)),
        ("Original-Message-ID: bare@b.fr\r\nDisposition: a/b; failed",
         MdnReport("<bare@b.fr>", "failed", None)),
        ("Original-Message-ID: <a@b.fr>\r\nDisposition: automatic-action; nonsense", None),
        ("Original-Message-ID: <a@b.fr>", None),
        ("Disposition: automatic-action/MDN-sent-automatically; displayed", None),
        ("Original-Message-ID: no-at-sign\r\nDisposition: a/b; displayed", None),
    ],
)  # fmt: skip
def test_parse_mdn_is_tolerant(fields: str, expected: MdnReport | None) -> None:
    assert parse_mdn(_parse(_report(fields).encode())) == expected


def test_parse_mdn_falls_back_to_in_reply_to() -> None:
    raw = _report("Disposition: a/b; displayed", extra=f"In-Reply-To: {ORIGINAL}\r\n")
    report = parse_mdn(_parse(raw.encode()))
    assert report is not None and report.original_message_id == ORIGINAL


@pytest.mark.parametrize(
    "raw",
    [
        _report(f"Original-Message-ID: {ORIGINAL}\r\nDisposition: a/b; displayed",
                report_type="delivery-status"),
        "From: a@b.fr\r\nContent-Type: text/plain\r\n\r\nDisposition: a/b; displayed\r\n",
        "From: a@b.fr\r\nContent-Type: multipart/report; report-type=disposition-notification;"
        ' boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n',
    ],
)  # fmt: skip
def test_parse_mdn_ignores_other_messages(raw: str) -> None:
    assert parse_mdn(_parse(raw.encode())) is None


def test_parse_mdn_accepts_unparsed_notification_body() -> None:
    """A notification part whose payload stayed a string (base64) is read as fields."""
    msg = _parse(_build())
    parts = _parts(msg)
    parts[1].set_payload(f"Original-Message-ID: {ORIGINAL}\r\nDisposition: a/b; processed\r\n")
    report = parse_mdn(msg)
    assert report is not None and report.disposition == "processed"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Return-Path": "<dr@medecin.fr>"}, None),
        ({"disposition-notification-to": "dr@medecin.fr"}, None),  # no Return-Path: differs
        ({"disposition-notification-to": "Dr <dr@medecin.fr>", "return-path": "<dr@medecin.fr>"},
         "dr@medecin.fr"),
        ({"Disposition-Notification-To": "dr@MEDECIN.fr", "Return-Path": "<DR@medecin.fr>"},
         "dr@medecin.fr"),
        ({"disposition-notification-to": "other@medecin.fr", "return-path": "<dr@medecin.fr>"},
         None),
        ({"disposition-notification-to": "dr@medecin.fr, x@y.fr", "return-path": "<dr@medecin.fr>"},
         None),
        ({"disposition-notification-to": "garbage", "return-path": "<garbage>"}, None),
        ({"disposition-notification-to": "dr@medecin.fr\r\nBcc: x@y.fr",
          "return-path": "<dr@medecin.fr>"}, None),
        ({"disposition-notification-to": "dr@medecin.fr", "return-path": "<>"}, None),
    ],
)  # fmt: skip
def test_should_send_mdn(headers: dict[str, str], expected: str | None) -> None:
    assert should_send_mdn(headers) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("<a@b>", "<a@b>"), (" < a@b > ", "<a@b>"), ("a@b", "<a@b>"), ("<a@b> <c@d>", "<a@b>"),
     ("<A@B>", "<A@B>"), ("", None), (None, None), ("<nope>", None), ("<a@b\x00>", None),
     ("<" + "x" * 300 + "@b>", None)],
)  # fmt: skip
def test_normalize_message_id(text: str | None, expected: str | None) -> None:
    assert normalize_message_id(text) == expected
