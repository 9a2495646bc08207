"""IHE XDM packages: round trips, the sample metadata, and every refusal on crafted zips."""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import defusedxml.ElementTree as defused_et  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.mail.xdm import (
    METADATA_PATH,
    RIM,
    SUBSET_DIR,
    XdmError,
    XdmLimits,
    display_xcn,
    path_problem,
    read_limited,
    unpack_xdm,
)
from bridge.mail.xdm_build import build_xdm, safe_filenames

SAMPLE_METADATA = Path(__file__).resolve().parent.parent / "data" / "mail" / "METADATA.XML"
WHEN = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
PDF = b"%PDF-1.4\n% synthetic\n" + bytes(range(256)) * 4
R = f"{{{RIM}}}"


def build(
    files: Sequence[tuple[str, str, bytes]] = (("cr.pdf", "application/pdf", PDF),),
    *,
    title: str = "Envoi",
    author: str = "Dr Alice Martin",
    when: datetime = WHEN,
    unique_id: str = "2.25.1",
    readme: str | None = None,
) -> bytes:
    return build_xdm(
        files, title=title, author=author, when=when, unique_id=unique_id, readme=readme
    )


def make_zip(members: Sequence[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are written on purpose
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data in members:
                archive.writestr(zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0)), data, method)
    return buffer.getvalue()


def members_of(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def rezip(data: bytes, *, drop: str = "", replace: dict[str, bytes] | None = None) -> bytes:
    replace = replace or {}
    return make_zip([(n, replace.get(n, d)) for n, d in members_of(data) if n != drop])


def metadata_of(data: bytes) -> bytes:
    return dict(members_of(data))[METADATA_PATH]


def with_metadata(data: bytes, old: bytes, new: bytes) -> bytes:
    meta = metadata_of(data)
    assert old in meta
    return rezip(data, replace={METADATA_PATH: meta.replace(old, new)})


def refused(data: bytes, limits: XdmLimits = XdmLimits()) -> XdmError:
    with pytest.raises(XdmError) as err:
        unpack_xdm(data, limits)
    return err.value


def patch_header(
    data: bytes, name: str, *, central: int, local: int, fmt: str, value: int
) -> bytes:
    """Overwrite one field of a member's central and local headers (offsets from signature)."""
    raw = bytearray(data)
    encoded = name.encode()
    for signature, offset in ((b"PK\x01\x02", central), (b"PK\x03\x04", local)):
        name_at = 46 if signature == b"PK\x01\x02" else 30
        start = 0
        while (start := raw.find(signature, start)) >= 0:
            if raw[start + name_at : start + name_at + len(encoded)] == encoded:
                struct.pack_into(fmt, raw, start + offset, value)
            start += 4
    return bytes(raw)


# --- round trips -----------------------------------------------------------------------


def test_round_trip_keeps_documents_and_submission_set() -> None:
    files = [
        ("Compte rendu Hélène.pdf", "application/pdf", PDF),
        ("notes.txt", "text/plain", "Résumé\n".encode()),
        ("empty.bin", "application/octet-stream", b""),
    ]
    package = unpack_xdm(build(files, title="Envoi <1> & co", unique_id="2.25.42"))
    assert package.submission_title == "Envoi <1> & co"
    assert package.author == "Dr Alice Martin"
    assert package.author_xcn == "^Dr Alice Martin"
    assert package.unique_id == "2.25.42"
    assert package.submission_time == "20260115093000"
    assert [d.filename for d in package.documents] == [
        "Compte_rendu_Helene.pdf",
        "notes.txt",
        "empty.bin",
    ]
    for doc, (name, mime, data) in zip(package.documents, files, strict=True):
        assert doc.path == f"{SUBSET_DIR}/{doc.filename}"
        assert (doc.title, doc.mime_type, doc.data, doc.size) == (name, mime, data, len(data))
        assert doc.sha1 == hashlib.sha1(data, usedforsecurity=False).hexdigest()
        assert doc.author == "Dr Alice Martin"
        assert doc.creation_time == "20260115093000"


def test_build_is_deterministic_and_converts_time_to_utc() -> None:
    paris = datetime(2026, 1, 15, 10, 30, tzinfo=timezone(timedelta(hours=1)))
    assert build(when=paris) == build(when=WHEN) == build(when=WHEN.replace(tzinfo=None))
    assert unpack_xdm(build(when=paris)).submission_time == "20260115093000"


def test_package_layout_and_metadata_structure() -> None:
    data = build([("a.pdf", "application/pdf", PDF), ("b.xml", "text/xml", b"<a/>")])
    names = [name for name, _ in members_of(data)]
    assert names[:3] == ["README.TXT", "INDEX.HTM", METADATA_PATH]
    assert names[3:] == [f"{SUBSET_DIR}/a.pdf", f"{SUBSET_DIR}/b.xml"]
    root = defused_et.fromstring(metadata_of(data), forbid_dtd=True)
    assert root.tag == "{urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0}SubmitObjectsRequest"
    packages = list(root.iter(f"{R}RegistryPackage"))
    assert len(packages) == 1
    slot_names = {s.get("name") for s in packages[0].iter(f"{R}Slot")}
    assert {"submissionTime", "authorPerson"} <= slot_names
    objects = list(root.iter(f"{R}ExtrinsicObject"))
    assert [o.get("mimeType") for o in objects] == ["application/pdf", "text/xml"]
    for obj in objects:
        names_here = {s.get("name") for s in obj.findall(f"{R}Slot")}
        assert names_here == {"creationTime", "hash", "size", "URI"}
        assert obj.find(f"{R}Name/{R}LocalizedString") is not None
    assert len(list(root.iter(f"{R}Association"))) == 2


def test_index_and_metadata_escape_hostile_names() -> None:
    files = [('<script>alert("x")</script>.pdf', "application/pdf", PDF)]
    data = build(files, title='<b>T</b>\x00\x07 & "q"\nline', author="<i>Eve</i>")
    index = dict(members_of(data))["INDEX.HTM"].decode()
    assert "<script>" not in index and "<b>" not in index and "<i>" not in index
    assert "&lt;script&gt;" in index
    package = unpack_xdm(data)
    assert package.submission_title == '<b>T</b> & "q"\nline'  # XML-invalid controls dropped
    assert package.documents[0].title == '<script>alert("x")</script>.pdf'
    assert package.author == "<i>Eve</i>"


def test_readme_override() -> None:
    assert dict(members_of(build(readme="Lisez-moi")))["README.TXT"] == b"Lisez-moi"
    assert b"XDM" in dict(members_of(build()))["README.TXT"]


def test_author_xcn_is_kept_and_plain_names_are_escaped() -> None:
    xcn = "810999990012^EXEMPLE^Julien^^^DR^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS"
    package = unpack_xdm(build(author=xcn))
    assert package.author_xcn == xcn
    assert package.author == "Julien EXEMPLE (810999990012)"
    odd = unpack_xdm(build(author="A|B&C~D\\E"))
    assert odd.author == "A|B&C~D\\E"
    assert odd.author_xcn == "^A\\F\\B\\T\\C\\R\\D\\E\\E"


@pytest.mark.parametrize(
    ("xcn", "shown"),
    [
        (None, None),
        ("", None),
        ("plain name", "plain name"),
        ("^Martin^Alice", "Alice Martin"),
        ("123", "123"),
        ("123^^", "123"),
        ("^^^", None),
    ],
)
def test_display_xcn(xcn: str | None, shown: str | None) -> None:
    assert display_xcn(xcn) == shown


def test_safe_filenames() -> None:
    names = safe_filenames(
        [
            "../../etc/passwd",
            "C:\\Users\\x\\Ordonnance été.PDF",
            "a.pdf",
            "A.PDF",
            "a.pdf",
            "METADATA.XML",
            "...",
            "",
            "名前.txt",
            ".hidden",
            "x" * 300 + ".pdf",
        ]
    )
    assert names[:8] == [
        "passwd",
        "Ordonnance_ete.PDF",
        "a.pdf",
        "A_2.PDF",
        "a_3.pdf",
        "METADATA_2.XML",
        "DOC0007",
        "DOC0008",
    ]
    assert names[8] == "DOC0009.txt"
    assert names[9] == "DOC0010.hidden"
    assert names[10] == "x" * 60 + ".pdf"
    for name in names:
        assert path_problem(name) is None
        assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def test_files_are_stored_with_safe_unique_names() -> None:
    files = [("../x.pdf", "application/pdf", b"1"), ("X.pdf", "application/pdf", b"2")]
    package = unpack_xdm(build(files))
    assert [d.filename for d in package.documents] == ["x.pdf", "X_2.pdf"]
    assert [d.data for d in package.documents] == [b"1", b"2"]


def test_invalid_mime_becomes_octet_stream() -> None:
    package = unpack_xdm(build([("a", "text/html\r\nX-Evil: 1", b"a")]))
    assert package.documents[0].mime_type == "application/octet-stream"


def test_building_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="no_documents"):
        build_xdm([], title="t", author="a", when=WHEN, unique_id="1")


def test_very_repetitive_documents_are_stored_so_receivers_accept_them() -> None:
    zeros = bytes(2 * 2**20)
    data = build([("zeros.bin", "application/octet-stream", zeros)])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(f"{SUBSET_DIR}/zeros.bin")
    assert info.compress_type == zipfile.ZIP_STORED
    assert unpack_xdm(data).documents[0].data == zeros


def test_metadata_path_is_matched_case_insensitively() -> None:
    lowered = [(n.lower(), d) for n, d in members_of(build())]
    package = unpack_xdm(make_zip(lowered))
    assert package.documents[0].path == f"{SUBSET_DIR}/cr.pdf".lower()


def test_percent_encoded_uri_is_resolved() -> None:
    data = build([("a b.pdf", "application/pdf", PDF)])  # stored as a_b.pdf
    renamed = [(n.replace("a_b.pdf", "a b.pdf"), d) for n, d in members_of(data)]
    meta = dict(renamed)[METADATA_PATH].replace(b">a_b.pdf<", b">a%20b.pdf<")
    crafted = make_zip([(n, meta if n == METADATA_PATH else d) for n, d in renamed])
    assert unpack_xdm(crafted).documents[0].filename == "a b.pdf"


# --- the IHE sample --------------------------------------------------------------------


def sample_package(document: bytes, *, fix_slots: bool = True) -> bytes:
    meta = SAMPLE_METADATA.read_bytes()
    if fix_slots:
        meta = meta.replace(
            b"dcb8ae5afd352e1aa6c1dcc46f2226b8c4f89933",
            hashlib.sha1(document, usedforsecurity=False).hexdigest().encode(),
        ).replace(b"<rim:Value>69</rim:Value>", f"<rim:Value>{len(document)}</rim:Value>".encode())
    return make_zip(
        [
            ("README.TXT", b"readme"),
            ("INDEX.HTM", b"<html></html>"),
            (METADATA_PATH, meta),
            (f"{SUBSET_DIR}/DOC0001.PDF", document),
        ]
    )


def test_sample_metadata_is_understood() -> None:
    package = unpack_xdm(sample_package(PDF))
    assert package.submission_title == "Envoi MSSante (synthetique)"
    assert package.author == "Julien EXEMPLE (810999990012)"
    assert package.author_xcn is not None and package.author_xcn.startswith("810999990012^")
    assert package.unique_id == "2.25.299999999999999999999999999999999002"
    assert package.submission_time == "20260115093500"
    (doc,) = package.documents
    assert doc.title == "Compte rendu de consultation (synthetique)"
    assert doc.mime_type == "application/pdf"
    assert doc.filename == "DOC0001.PDF"
    assert doc.author == "Julien EXEMPLE (810999990012)"
    assert doc.creation_time == "20260115093000"
    assert doc.data == PDF


def test_sample_with_the_wrong_document() -> None:
    assert refused(sample_package(b"x" * 69, fix_slots=False)).reason == "hash_mismatch"
    assert refused(sample_package(b"x" * 10, fix_slots=False)).reason == "size_mismatch"


# --- refusals --------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"hello", b"PK\x03\x04" + bytes(100)])
def test_not_a_zip(data: bytes) -> None:
    assert refused(data).reason == "not_zip"


def test_truncated_zip() -> None:
    assert refused(build()[:-30]).reason == "not_zip"


def test_oversize_archive() -> None:
    data = build()
    err = refused(data, XdmLimits(max_archive_bytes=len(data) - 1))
    assert err.reason == "oversize"
    assert unpack_xdm(data, XdmLimits(max_archive_bytes=len(data)))


def test_oversize_metadata() -> None:
    assert refused(build(), XdmLimits(max_metadata_bytes=100)).reason == "oversize"


def test_too_many_files() -> None:
    data = build([(f"f{i}.txt", "text/plain", b"x") for i in range(5)])  # 8 members
    err = refused(data, XdmLimits(max_files=7))
    assert (err.reason, err.detail) == ("too_many_files", "8")
    assert unpack_xdm(data, XdmLimits(max_files=8))


def test_too_many_files_counted_before_zipfile_parses() -> None:
    data = make_zip([(f"f{i}", b"") for i in range(40)])
    err = refused(data, XdmLimits(max_files=2))
    assert (err.reason, err.detail) == ("too_many_files", "central_directory")


def test_more_documents_in_metadata_than_allowed() -> None:
    data = build([(f"f{i}.txt", "text/plain", b"x") for i in range(5)])
    err = refused(data, XdmLimits(max_files=4))
    assert err.reason == "too_many_files"


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../evil.txt", "dot_segment"),
        ("IHE_XDM/SUBSET01/../../evil.txt", "dot_segment"),
        ("./README.TXT", "dot_segment"),
        ("a//b", "dot_segment"),
        ("/etc/passwd", "absolute"),
        ("C:/Windows/evil.dll", "drive_letter"),
        ("c:evil", "drive_letter"),
        ("IHE_XDM\\SUBSET01\\x", "backslash"),
        ("evil\r\nname", "control_char"),
    ],
)
def test_unsafe_member_names(name: str, problem: str) -> None:
    data = make_zip([*members_of(build()), (name, b"x")])
    err = refused(data)
    assert (err.reason, err.detail) == ("path_traversal", problem)


def test_nul_in_member_name_is_refused() -> None:
    # zipfile cuts names at NUL; the check runs on the name as stored.
    data = make_zip([*members_of(build()), ("evil.txtX.pdf", b"x")])
    data = data.replace(b"evil.txtX.pdf", b"evil.txt\x00.pdf")
    err = refused(data)
    assert (err.reason, err.detail) == ("path_traversal", "control_char")


def test_duplicate_member_names_are_refused() -> None:
    members = members_of(build())
    doc_name, _ = members[-1]
    err = refused(make_zip([*members, (doc_name.upper(), b"other")]))
    assert (err.reason, err.detail) == ("path_traversal", "duplicate_name")


@pytest.mark.parametrize(
    "uri", [b"../README.TXT", b"/etc/passwd", b"http://evil.example/x.pdf", b"..%2FREADME.TXT"]
)
def test_uri_escaping_the_subset_is_refused(uri: bytes) -> None:
    err = refused(with_metadata(build(), b">cr.pdf<", b">" + uri + b"<"))
    assert err.reason == "path_traversal"


def test_declared_total_over_limit_is_a_zip_bomb() -> None:
    data = build([("a.bin", "application/octet-stream", bytes(range(256)) * 40)])
    err = refused(data, XdmLimits(max_total_bytes=5000))
    assert (err.reason, err.detail) == ("zip_bomb", "declared_total")


def test_compression_ratio_over_limit_is_a_zip_bomb() -> None:
    bomb = make_zip([*members_of(build()), ("IHE_XDM/SUBSET01/zeros.bin", bytes(2**20))])
    err = refused(bomb)
    assert (err.reason, err.detail) == ("zip_bomb", "declared_ratio")
    small = XdmLimits(max_ratio=2, ratio_floor=0)
    assert refused(build(), small).reason == "zip_bomb"  # metadata XML compresses > 2:1


def test_member_whose_header_lies_about_its_size_is_not_inflated() -> None:
    zeros = bytes(2**20)
    doc = ("IHE_XDM/SUBSET01/zeros.bin", zeros)
    data = make_zip([*members_of(build([("zeros.bin", "application/octet-stream", zeros)]))])
    data = make_zip([*(m for m in members_of(data) if m[0] != doc[0]), doc])
    # claim 1000 bytes in both headers: declared ratio looks harmless, real data is 1 MiB
    lying = patch_header(data, doc[0], central=24, local=22, fmt="<I", value=1000)
    err = refused(lying)
    # zipfile stops at the declared size, then the CRC check fails: refused, never inflated
    assert (err.reason, err.detail) == ("not_zip", "member_BadZipFile")


class EndlessZeros(io.BytesIO):
    """A decompressor that ignores the declared size (what read_limited guards against)."""

    def read(self, size: int | None = -1) -> bytes:
        return bytes(size if size and size > 0 else 65536)


def read_error(info: zipfile.ZipInfo, limit: int, limits: XdmLimits) -> tuple[str, str]:
    with pytest.raises(XdmError) as err:
        read_limited(EndlessZeros(), info, limit, limits)
    return err.value.reason, err.value.detail


def test_chunked_read_counts_real_bytes_not_declared_ones() -> None:
    info = zipfile.ZipInfo("x")
    info.file_size, info.compress_size = 1000, 1000
    assert read_error(info, 10**9, XdmLimits()) == ("zip_bomb", "size_lie")
    info.file_size, info.compress_size = 10**12, 10**9
    assert read_error(info, 2**20, XdmLimits()) == ("zip_bomb", "real_total")
    info.compress_size = 1000
    assert read_error(info, 10**9, XdmLimits(ratio_floor=0)) == ("zip_bomb", "real_ratio")
    assert read_limited(io.BytesIO(b"abc"), info, 3, XdmLimits()) == b"abc"


def test_encrypted_member_is_refused() -> None:
    data = build()
    name = f"{SUBSET_DIR}/cr.pdf"
    encrypted = patch_header(data, name, central=8, local=6, fmt="<H", value=0x1)
    assert refused(encrypted).reason == "not_zip"


def test_other_compression_methods_are_refused() -> None:
    data = make_zip(members_of(build()), method=zipfile.ZIP_BZIP2)
    err = refused(data)
    assert (err.reason, err.detail) == ("not_zip", "member_flags_0_12")


def test_no_metadata() -> None:
    assert refused(make_zip([("README.TXT", b"x")])).reason == "no_metadata"
    moved = [(n.replace(METADATA_PATH, "METADATA.XML"), d) for n, d in members_of(build())]
    assert refused(make_zip(moved)).reason == "no_metadata"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"<?xml", b"<<<"),
        (b'mimeType="application/pdf"', b""),
        (b'mimeType="application/pdf"', b'mimeType="text/html; x=&quot;y&quot;"'),
        (b'<rim:Slot name="size">', b'<rim:Slot name="length">'),
        (
            b'<rim:Slot name="hash"><rim:ValueList><rim:Value>',
            b'<rim:Slot name="hash"><rim:ValueList><rim:Value>zz',
        ),
        (
            b'<rim:Slot name="URI"><rim:ValueList><rim:Value>cr.pdf',
            b'<rim:Slot name="URI"><rim:ValueList><rim:Value>',
        ),
        (b"ExtrinsicObject", b"SomethingElse"),
    ],
)
def test_bad_metadata(old: bytes, new: bytes) -> None:
    assert refused(with_metadata(build(), old, new)).reason == "bad_metadata"


def test_metadata_with_entities_is_refused() -> None:
    dtd = b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    data = with_metadata(build(), b"<lcm:SubmitObjectsRequest", dtd + b"<lcm:SubmitObjectsRequest")
    err = refused(data)
    assert (err.reason, err.detail) == ("bad_metadata", "DTDForbidden")


def test_two_entries_for_one_file_are_refused() -> None:
    data = build([("a.txt", "text/plain", b"same"), ("b.txt", "text/plain", b"same")])
    err = refused(with_metadata(data, b">b.txt<", b">A.TXT<"))
    assert (err.reason, err.detail) == ("bad_metadata", "duplicate_uri")


def test_missing_file() -> None:
    assert refused(rezip(build(), drop=f"{SUBSET_DIR}/cr.pdf")).reason == "missing_file"


def test_size_and_hash_mismatch() -> None:
    name = f"{SUBSET_DIR}/cr.pdf"
    assert refused(rezip(build(), replace={name: PDF + b"!"})).reason == "size_mismatch"
    tampered = b"X" + PDF[1:]
    err = refused(rezip(build(), replace={name: tampered}))
    assert (err.reason, err.detail) == ("hash_mismatch", "document_1")


# --- hostile bytes ---------------------------------------------------------------------

VALID = build([("a.pdf", "application/pdf", PDF[:300]), ("b.txt", "text/plain", b"hello " * 20)])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_raise_only_xdm_error(data: bytes) -> None:
    """300 examples of arbitrary bytes (plus the PK prefix half of the time)."""
    for candidate in (data, b"PK\x03\x04" + data):
        try:
            unpack_xdm(candidate)
        except XdmError:
            pass


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=8),
    st.integers(0, len(VALID)),
)
def test_mutated_packages_raise_only_xdm_error(flips: list[tuple[int, int]], cut: int) -> None:
    """400 examples: a valid package with up to 8 bytes overwritten, then truncated."""
    data = bytearray(VALID)
    for position, value in flips:
        data[position] = value
    try:
        package = unpack_xdm(bytes(data[:cut] if cut else data))
    except XdmError:
        return
    for doc in package.documents:  # whatever is accepted is consistent
        assert hashlib.sha1(doc.data, usedforsecurity=False).hexdigest() == doc.sha1
        assert len(doc.data) == doc.size
