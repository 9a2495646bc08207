"""Table tests for the pure mail rules (bridge/mail/policy.py)."""

from __future__ import annotations

import hashlib

import pytest

from bridge.mail.policy import (
    RetrySchedule,
    classify_reply,
    encoded_control,
    header_safe,
    is_own_message_id,
    loop_reason,
    message_id_for,
    normalize_address,
    normalize_domain,
    room_tag,
    safe_filename,
    tag_of,
    tagged_address,
    thread_ids,
    unexpected_headers,
    unfold_header,
)

DOMAIN = "santeguard.example.mssante.fr"


def test_message_id_for_is_deterministic_and_shaped() -> None:
    event_id = "$abc:example.org"
    digest = hashlib.sha256(event_id.encode()).hexdigest()[:32]
    assert message_id_for(event_id, DOMAIN) == f"<sg.{digest}@{DOMAIN}>"
    assert message_id_for(event_id, DOMAIN) == message_id_for(event_id, DOMAIN.upper())
    assert message_id_for("$other", DOMAIN) != message_id_for(event_id, DOMAIN)


@pytest.mark.parametrize(
    ("message_id", "domain", "expected"),
    [
        (message_id_for("$e", DOMAIN), DOMAIN, True),
        (message_id_for("$e", DOMAIN).strip("<>"), DOMAIN, True),
        ("  " + message_id_for("$e", DOMAIN) + " ", DOMAIN.upper(), True),
        (message_id_for("$e", DOMAIN), "other.mssante.fr", False),
        (f"<sg.{'0' * 31}@{DOMAIN}>", DOMAIN, False),
        (f"<sg.{'g' * 32}@{DOMAIN}>", DOMAIN, False),
        (f"<xx.{'0' * 32}@{DOMAIN}>", DOMAIN, False),
        (f"<sg.{'0' * 32}@evil.{DOMAIN}>", DOMAIN, False),
        ("", DOMAIN, False),
        ("<random@example.org>", DOMAIN, False),
    ],
)
def test_is_own_message_id(message_id: str, domain: str, expected: bool) -> None:
    assert is_own_message_id(message_id, domain) is expected


def test_room_tag_is_stable_12_hex() -> None:
    tag = room_tag("!room:example.org")
    assert tag == hashlib.sha256(b"!room:example.org").hexdigest()[:12]
    assert len(tag) == 12 and tag == tag.lower() and int(tag, 16) >= 0
    assert room_tag("!other:example.org") != tag


@pytest.mark.parametrize(
    ("mailbox", "tag", "expected"),
    [
        ("bot@SanteGuard.fr", "abc123", "bot+abc123@santeguard.fr"),
        ("bot@santeguard.fr", "ABC", "bot+abc@santeguard.fr"),
        ("pre+fix@santeguard.fr", "0a1b", "pre+fix+0a1b@santeguard.fr"),
        ("bot@médecin.fr", "aa", "bot+aa@xn--mdecin-bva.fr"),
    ],
)
def test_tagged_address(mailbox: str, tag: str, expected: str) -> None:
    assert tagged_address(mailbox, tag) == expected
    assert tag_of(expected) == tag.lower()


@pytest.mark.parametrize(
    ("mailbox", "tag"),
    [("not an address", "abc"), ("bot@santeguard.fr", ""), ("bot@santeguard.fr", "a b"),
     ("bot@santeguard.fr", "a\r\nb"), ("bot@santeguard.fr", "x" * 65)],
)  # fmt: skip
def test_tagged_address_refuses(mailbox: str, tag: str) -> None:
    with pytest.raises(ValueError):
        tagged_address(mailbox, tag)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("bot+abc@santeguard.fr", "abc"),
        ("bot+ABC@SANTEGUARD.FR", "abc"),
        ("a+b+c123@x.fr", "c123"),
        ("bot@santeguard.fr", None),
        ("bot+@santeguard.fr", None),
        ("garbage", None),
    ],
)
def test_tag_of(address: str, expected: str | None) -> None:
    assert tag_of(address) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dr.Martin@Medecin.MSSante.fr", "Dr.Martin@medecin.mssante.fr"),
        ("  jean@example.org  ", "jean@example.org"),
        ("jean@médecin.fr", "jean@xn--mdecin-bva.fr"),
        ("jean@MÉDECIN.fr", "jean@xn--mdecin-bva.fr"),
        ("o'brien+tag@example.org", "o'brien+tag@example.org"),
        ("user@localhost", None),  # a mailbox domain has a dot (as the allow-list requires)
        ("a@straße.fr", None),  # IDNA 2003 would map it to strasse.fr: refused
        ("", None),
        ("no-at-sign", None),
        ("two@@example.org", None),
        ("a@b@example.org", None),
        ("with space@example.org", None),
        ("jean@exa mple.org", None),
        ("jean@example.org\r\nBcc: x@y.fr", None),
        ("jean\n@example.org", None),
        ("jean\x00@example.org", None),
        ("@example.org", None),
        ("jean@", None),
        (".jean@example.org", None),
        ("je..an@example.org", None),
        ('"quoted"@example.org', None),
        ("<jean@example.org>", None),
        ("jean@-bad.org", None),
        ("jean@bad..org", None),
        ("jean@example.org.", None),
        ("x" * 65 + "@example.org", None),
        ("a@" + ".".join(["d" * 60] * 5) + ".fr", None),  # > 254 characters
        ("a@" + ".".join(["d" * 60] * 4) + ".fr", "a@" + ".".join(["d" * 60] * 4) + ".fr"),
    ],
)
def test_normalize_address(text: str, expected: str | None) -> None:
    assert normalize_address(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("MSSante.FR", "mssante.fr"), ("médecin.fr.", "xn--mdecin-bva.fr"), ("a_b.fr", None),
     ("", None), ("a b.fr", None), ("x" * 64 + ".fr", None)],
)  # fmt: skip
def test_normalize_domain(text: str, expected: str | None) -> None:
    assert normalize_domain(text) == expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [(None, "temporary"), (421, "temporary"), (450, "temporary"), (452, "temporary"),
     (499, "temporary"), (500, "permanent"), (550, "permanent"), (554, "permanent"),
     (599, "permanent"), (250, "temporary"), (0, "temporary")],
)  # fmt: skip
def test_classify_reply(code: int | None, expected: str) -> None:
    assert classify_reply(code) == expected


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(0, 60), (1, 60), (2, 120), (3, 240), (4, 480), (5, 960), (6, 1920), (7, 3600),
     (8, 3600), (1000, 3600), (10**9, 3600), (-5, 60)],
)  # fmt: skip
def test_retry_delay_grows_exponentially_and_is_capped(attempt: int, expected: float) -> None:
    assert RetrySchedule().delay(attempt) == expected


def test_retry_delay_is_monotonic() -> None:
    schedule = RetrySchedule(base_seconds=5, factor=3, max_seconds=1000)
    delays = [schedule.delay(n) for n in range(1, 30)]
    assert delays == sorted(delays)
    assert delays[0] == 5 and delays[1] == 15 and delays[-1] == 1000
    assert RetrySchedule(factor=1).delay(50) == 60


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [(0, False), (3600, False), (5 * 86400 - 1, False), (5 * 86400, True), (6 * 86400, True)],
)
def test_retry_given_up_after_five_days(elapsed: float, expected: bool) -> None:
    start = 1_700_000_000.0
    assert RetrySchedule().given_up(start, start + elapsed) is expected
    assert RetrySchedule(give_up_seconds=10).given_up(start, start + 10) is True


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("Résultats  d'analyse", 200, "Résultats d'analyse"),
        ("Subject\r\nBcc: evil@x.fr", 200, "Subject Bcc: evil@x.fr"),
        ("a\rb\nc\x00d\x1be\x7ff", 200, "a b c d e f"),
        ("line\u2028sep\u2029para\x85nel", 200, "line sep para nel"),
        ("abc\u202edcba", 200, "abc dcba"),
        ("  \t spaced \t  out  ", 200, "spaced out"),
        ("x" * 300, 200, "x" * 200),
        ("abc def", 4, "abc"),
        ("", 200, ""),
        ("emoji 👩‍⚕️ ok", 200, "emoji 👩‍⚕️ ok"),
        ("=?utf-8?q?x=0D=0ABcc:_e@x.fr?=", 200, "=\u200b?utf-8?q?x=0D=0ABcc:_e@x.fr?="),
        ("a = ? b", 200, "a = ? b"),
    ],
)
def test_header_safe(text: str, limit: int, expected: str) -> None:
    result = header_safe(text, limit)
    assert result == expected
    assert not any(c in result for c in "\r\n\x00")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Auto-Submitted": "no"}, None),
        ({"Auto-Submitted": "No (manual)"}, None),
        ({"Auto-Submitted": "auto-replied"}, "auto_submitted"),
        ({"auto-submitted": "auto-generated"}, "auto_submitted"),
        ({"AUTO-SUBMITTED": "auto-notified; owner-email=x@y.fr"}, "auto_submitted"),
        ({"X-Autoreply": "yes"}, "auto_reply_header"),
        ({"x-autorespond": "1"}, "auto_reply_header"),
        ({"X-Autoreply": "no"}, None),
        ({"Precedence": "bulk"}, "bulk_precedence"),
        ({"precedence": " Junk "}, "bulk_precedence"),
        ({"Precedence": "list"}, "bulk_precedence"),
        ({"Precedence": "auto_reply"}, "bulk_precedence"),
        ({"Precedence": "first-class"}, None),
        ({"Message-ID": message_id_for("$e", DOMAIN)}, "own_message"),
        ({"message-id": message_id_for("$e", "other.fr")}, None),
        ({"Message-ID": message_id_for("$e", DOMAIN), "Auto-Submitted": "auto-replied"},
         "own_message"),
        ({"In-Reply-To": message_id_for("$e", DOMAIN), "Message-ID": "<x@other.fr>"}, None),
    ],
)  # fmt: skip
def test_loop_reason(headers: dict[str, str], expected: str | None) -> None:
    assert loop_reason(headers, DOMAIN) == expected


@pytest.mark.parametrize(
    ("in_reply_to", "references", "limit", "expected"),
    [
        (None, [], 20, (None, [])),
        ("<p@x>", [], 20, ("<p@x>", ["<p@x>"])),
        (" <p@x> ", ["<a@x>", "<p@x>", "<a@x>", "junk", "<b@x>"], 20,
         ("<p@x>", ["<a@x>", "<b@x>", "<p@x>"])),
        ("<p@x>", [f"<r{i}@x>" for i in range(10)], 4, ("<p@x>", ["<r0@x>", "<r8@x>", "<r9@x>",
                                                                  "<p@x>"])),
        ("garbage", ["<a@x>"], 20, (None, ["<a@x>"])),
    ],
)  # fmt: skip
def test_thread_ids(
    in_reply_to: str | None,
    references: list[str],
    limit: int,
    expected: tuple[str | None, list[str]],
) -> None:
    assert thread_ids(in_reply_to, references, limit) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [("compte rendu.pdf", "compte rendu.pdf"), ("../../etc/passwd", "passwd"),
     ("C:\\Users\\x\\doc.pdf", "doc.pdf"), (".hidden", "hidden"), ("..", "attachment"),
     ("", "attachment"), ("a\r\nb.txt", "a b.txt"), ("dir/", "attachment")],
)  # fmt: skip
def test_safe_filename(name: str, expected: str) -> None:
    assert safe_filename(name) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("a\r\n b", "a b"), ("a\n\tb", "a\tb"), ("\udcc3\udca9t\udcc3\udca9", "été"),
     ("bad \udcff", "bad \ufffd")],
)  # fmt: skip
def test_unfold_header(value: str, expected: str) -> None:
    assert unfold_header(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("plain", False), ("=?utf-8?q?caf=C3=A9?=", False), ("=?utf-8?q?a=0D=0Ab?=", True),
     ("=?utf-8?Q?a=0Ab?=", True), ("=?utf-8?b?YQpi?=", True), ("=?utf-8?q?a=00?=", True),
     ("x =?utf-8?q?ok?= =?utf-8?q?=0A?=", True), ("=?utf-8?b?###?=", False)],
)  # fmt: skip
def test_encoded_control(value: str, expected: bool) -> None:
    assert encoded_control(value) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"From: a@b\r\nSubject: s\r\n\r\nbody", []),
        (b"From: a@b\r\nBcc: e@x\r\n\r\nbody", ["bcc"]),
        (b"From: a@b\r\nX-Mine: 1\r\nContent-Type: text/plain\r\n\r\nbody", []),
        (b"From: a@b\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n"
         b"Content-Type: text/plain\r\nSubject: inner\r\n\r\nx\r\n--q--\r\n", ["subject"]),
        (b"From: a@b\r\nContent-Type: multipart/report; boundary=q\r\n\r\n--q\r\n"
         b"Content-Type: message/disposition-notification\r\n\r\nFinal-Recipient: rfc822;a@b"
         b"\r\n\r\n--q--\r\n", []),
    ],
)  # fmt: skip
def test_unexpected_headers(raw: bytes, expected: list[str]) -> None:
    assert unexpected_headers(raw, {"from", "subject"}) == expected
