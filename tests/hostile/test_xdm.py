"""Hostile IHE XDM packages (``IHE_XDM.ZIP``) at volume, built member by member.

tests/mail/test_xdm.py fuzzes bytes and flips bytes of one valid package. These archives
are assembled from members: a real package's, plus members named to escape the
directory (``..``, absolute, drive letters, backslashes, NUL), symbolic links (Unix
mode ``S_IFLNK`` in the external attributes, pointing anywhere), duplicates differing
in case, compression bombs (within and beyond the ratio), sizes that lie in the headers,
encrypted and exotic-method flags, and metadata whose URIs point outside the subset or
whose XML holds a DTD, entities or deep nesting. ``unpack_xdm`` returns a package or
raises ``XdmError``; what it returns holds only documents whose names are safe relative
paths inside the subset and whose bytes match their size and SHA-1; memory stays
bounded by the archive's size and the limits (no bomb is inflated).
"""

from __future__ import annotations

import hashlib
import io
import re
import stat
import struct
import warnings
import zipfile
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from bridge.mail.xdm import METADATA_PATH, SUBSET_DIR, XdmError, XdmLimits, path_problem, unpack_xdm
from bridge.mail.xdm_build import build_xdm
from tests.hostile.budget import MiB, Tally, budget

LIMITS = XdmLimits(
    max_archive_bytes=4 * MiB, max_total_bytes=8 * MiB, max_files=40, max_metadata_bytes=512 * 1024
)
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8
BASE = build_xdm(
    [("cr.pdf", "application/pdf", PDF), ("notes.txt", "text/plain", b"bonjour " * 40)],
    title="Envoi",
    author="Dr Alice Martin",
    when=datetime(2026, 1, 15, tzinfo=UTC),
    unique_id="2.25.1",
    readme=None,
)
with zipfile.ZipFile(io.BytesIO(BASE)) as _z:
    BASE_MEMBERS = [(i.filename, _z.read(i)) for i in _z.infolist()]
META = dict(BASE_MEMBERS)[METADATA_PATH]
DOC_NAMES = [n for n, _ in BASE_MEMBERS if n.startswith(SUBSET_DIR) and n != METADATA_PATH]

HEADER_SIGNATURE = re.compile(rb"PK\x01\x02|PK\x03\x04")
BAD_NAMES = st.sampled_from(
    [
        "../evil.pdf",
        f"{SUBSET_DIR}/../../evil",
        "/etc/passwd",
        "C:\\x.pdf",
        "c:/x",
        "a\\b",
        f"{SUBSET_DIR}/a\x00.pdf",
        f"{SUBSET_DIR}//x",
        f"{SUBSET_DIR}/./x",
        "",
        "IHE_XDM/",
        METADATA_PATH.lower(),
        f"{SUBSET_DIR}/CR.PDF",
        "\u202eFDP.exe",
        "é/ü.pdf",
        "a" * 300,
    ]
)
SYMLINK_TARGETS = st.sampled_from(
    [b"/etc/passwd", b"../../../root/.ssh/id_rsa", b"METADATA.XML", b""]
)
META_EDITS = st.sampled_from(
    [
        (b"", b""),
        (b"<?xml", b'<!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><?xml'),
        (b'value="cr.pdf"', b'value="../../etc/passwd"'),
        (b'value="cr.pdf"', b'value="http://127.0.0.1:9/x"'),
        (b'value="cr.pdf"', b'value="%2e%2e/evil"'),
        (b'value="cr.pdf"', b'value="/abs"'),
        (b'value="cr.pdf"', b'value="notes.txt"'),
        (b"application/pdf", b"application/pdf\x00"),
        (b'encoding="UTF-8"', b'encoding="UTF-9"'),  # unknown encoding: found by atheris
        (b'value="' + str(len(PDF)).encode(), b'value="9' * 1),
    ]
)


@st.composite
def archives(draw: st.DrawFn) -> bytes:
    members: list[tuple[zipfile.ZipInfo, bytes]] = []
    meta = META
    old, new = draw(META_EDITS)
    if old:
        meta = meta.replace(old, new, 1)
    if draw(st.integers(0, 9)) == 0:
        meta = meta.replace(b"<rim:", b"<rim:" + b"<x>" * 0, 1) + b"<x>" * 2000 + b"</x>" * 2000
    for name, data in BASE_MEMBERS:
        if name == METADATA_PATH:
            data = meta
        if draw(st.integers(0, 12)) == 0:
            continue  # a member missing
        members.append((zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0)), data))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["bad_name", "symlink", "bomb", "duplicate", "extra"]))
        if kind == "bad_name":
            info, data = zipfile.ZipInfo(draw(BAD_NAMES), (2026, 1, 1, 0, 0, 0)), b"x"
        elif kind == "symlink":
            name = draw(st.sampled_from([*DOC_NAMES, f"{SUBSET_DIR}/link"]))
            info, data = zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0)), draw(SYMLINK_TARGETS)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            info.create_system = 3
        elif kind == "bomb":
            size = draw(st.sampled_from([64 * 1024, 65 * 1024, 2 * MiB, 2 * MiB, 9 * MiB]))
            info, data = (
                zipfile.ZipInfo(f"{SUBSET_DIR}/DOC{size}.BIN", (2026, 1, 1, 0, 0, 0)),
                b"\0" * size,
            )
        elif kind == "duplicate":
            name = draw(st.sampled_from([n for n, _ in BASE_MEMBERS]))
            info, data = (
                zipfile.ZipInfo(
                    draw(st.sampled_from([name, name.lower(), name.upper()])), (2026, 1, 1, 0, 0, 0)
                ),
                b"dup",
            )
        else:
            info, data = (
                zipfile.ZipInfo(f"{SUBSET_DIR}/x{draw(st.integers(0, 99))}", (2026, 1, 1, 0, 0, 0)),
                draw(st.binary(max_size=100)),
            )
        members.insert(draw(st.integers(0, len(members))), (info, data))
    buffer = io.BytesIO()
    method = draw(
        st.sampled_from(
            [zipfile.ZIP_DEFLATED, zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED, zipfile.ZIP_BZIP2]
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names on purpose
        with zipfile.ZipFile(buffer, "w") as archive:
            for info, data in members:
                info.compress_type = method if draw(st.integers(0, 5)) else zipfile.ZIP_DEFLATED
                archive.writestr(info, data)
    raw = bytearray(buffer.getvalue())
    for _ in range(draw(st.integers(0, 2))):  # headers that lie: sizes, flags, method
        starts = [m.start() for m in HEADER_SIGNATURE.finditer(raw) if m.start() < len(raw) - 46]
        if not starts:
            break
        at = draw(st.sampled_from(starts))
        central = raw[at : at + 4] == b"PK\x01\x02"
        field, fmt = draw(
            st.sampled_from([("usize", "<I"), ("csize", "<I"), ("flags", "<H"), ("method", "<H")])
        )
        offset = {
            "usize": 24 if central else 22,
            "csize": 20 if central else 18,
            "flags": 8 if central else 6,
            "method": 10 if central else 8,
        }[field]
        value = draw(
            st.sampled_from([0, 1, 0xFFFF, 0xFFFFFFFF, 99])
            if fmt == "<I"
            else st.sampled_from([0, 1, 8, 12, 99, 0xFFFF])
        )
        struct.pack_into(fmt, raw, at + offset, value & (0xFFFF if fmt == "<H" else 0xFFFFFFFF))
    return bytes(raw)


@budget(250)
@given(raw=archives())
def test_xdm_is_refused_or_safe(tally: Tally, raw: bytes) -> None:
    try:
        with tally.memory(len(raw), allowance=LIMITS.max_total_bytes * 3, per_byte=8):
            package = unpack_xdm(raw, LIMITS)
    except XdmError as e:
        assert e.reason, e
        tally.count(e.reason)
        return
    tally.count("accepted")
    total = 0
    for doc in package.documents:
        assert path_problem(doc.path) is None and doc.path.startswith(f"{SUBSET_DIR}/"), doc.path
        assert hashlib.sha1(doc.data, usedforsecurity=False).hexdigest() == doc.sha1
        assert len(doc.data) == doc.size
        total += doc.size
    assert total <= LIMITS.max_total_bytes


def test_metadata_in_unknown_encoding_is_bad_metadata(tally: Tally) -> None:
    """Found by atheris: ``encoding="UTF-9"`` in METADATA.XML raised LookupError."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in BASE_MEMBERS:
            if name == METADATA_PATH:
                data = data.replace(b'encoding="UTF-8"', b'encoding="UTF-9"', 1)
            archive.writestr(name, data)
    try:
        unpack_xdm(buffer.getvalue(), LIMITS)
    except XdmError as e:
        assert (e.reason, e.detail) == ("bad_metadata", "LookupError")
    else:
        raise AssertionError("accepted metadata in an unknown encoding")
    tally.count("bad_metadata")
