"""IHE XDM (ITI-32) packages: the ``IHE_XDM.ZIP`` health mail carries its documents in.

Pure: bytes in, dataclasses out. ``unpack_xdm`` treats the zip as hostile: it refuses on
archive size, member count (also counted on the raw bytes, before zipfile builds one object
per entry), unsafe names, declared total and ratio, then inflates only METADATA.XML and the
documents it lists, in chunks, counting real bytes since declared sizes are the sender's
word; each document must match its metadata size and SHA-1. ``build_xdm`` writes the
minimal package a receiver checks, with "limited metadata" (a room knows no patient id).
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass, replace
from typing import IO, cast
from urllib.parse import unquote, urlsplit
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as defused_et  # type: ignore[import-untyped]
from defusedxml import DefusedXmlException

RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
SUBSET_DIR = "IHE_XDM/SUBSET01"
METADATA_PATH = f"{SUBSET_DIR}/METADATA.XML"
DOC_AUTHOR_SCHEME = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DOC_UNIQUE_ID_SCHEME = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
SS_AUTHOR_SCHEME = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SS_UNIQUE_ID_SCHEME = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
SS_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
DOC_OBJECT_TYPE = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"

_R = f"{{{RIM}}}"
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # what XDM producers use
_CHUNK = 64 * 1024
_CENTRAL_MAGIC = b"PK\x01\x02"
_DRIVE = re.compile(r"[A-Za-z]:")
_MIME = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}")
_SIZE = re.compile(r"[0-9]{1,15}")
_SHA1 = re.compile(r"[0-9a-fA-F]{40}")
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_UNSAFE_NAME_CHAR = re.compile(r"[^A-Za-z0-9._-]+")
_HL7_ESCAPES = {"\\": "\\E\\", "^": "\\S\\", "&": "\\T\\", "|": "\\F\\", "~": "\\R\\"}
_HL7_UNESCAPES = {value: key for key, value in _HL7_ESCAPES.items()}
# What zipfile/zlib raise on corrupt input (RuntimeError: encrypted; NotImplemented: odd flags).
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, struct.error, OSError, EOFError, ValueError)
_ZIP_ERRORS_ALL = (*_ZIP_ERRORS, IndexError, OverflowError, NotImplementedError, RuntimeError)


class XdmError(Exception):
    """A package refused; ``reason`` is a code, ``detail`` machine detail (no content)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason if not detail else f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class XdmLimits:
    """What unpacking may cost. Members under ``ratio_floor`` bytes skip the ratio test: a
    few KB of repeated text legitimately compress beyond 100:1 and cannot hurt."""

    max_archive_bytes: int = 20 * 2**20
    max_total_bytes: int = 100 * 2**20
    max_files: int = 200
    max_ratio: int = 100
    max_metadata_bytes: int = 4 * 2**20
    ratio_floor: int = 64 * 1024


@dataclass(frozen=True)
class XdmDocument:
    path: str  # member name inside the archive, e.g. IHE_XDM/SUBSET01/DOC0001.PDF
    mime_type: str
    size: int
    sha1: str  # lowercase hex
    title: str | None
    data: bytes
    author: str | None = None  # readable form of the document's authorPerson
    creation_time: str | None = None  # HL7 DTM as written, e.g. 20260115093000

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class XdmPackage:
    documents: tuple[XdmDocument, ...]
    submission_title: str | None
    author: str | None  # readable "Given Family (id)"; submission set's, else 1st document's
    author_xcn: str | None = None  # the authorPerson value as written
    unique_id: str | None = None
    submission_time: str | None = None


# --- unpacking -------------------------------------------------------------------------


def unpack_xdm(data: bytes, limits: XdmLimits = XdmLimits()) -> XdmPackage:
    """Check and read an XDM zip; raises only XdmError for bad input."""
    if len(data) > limits.max_archive_bytes:
        raise XdmError("oversize", f"{len(data)} bytes")
    if data.count(_CENTRAL_MAGIC) > limits.max_files * 16:
        raise XdmError("too_many_files", "central_directory")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except _ZIP_ERRORS_ALL as exc:
        raise XdmError("not_zip", type(exc).__name__) from None
    with archive:
        return _unpack(archive, limits)


def _unpack(archive: zipfile.ZipFile, limits: XdmLimits) -> XdmPackage:
    infos = archive.infolist()
    if len(infos) > limits.max_files:
        raise XdmError("too_many_files", str(len(infos)))
    index: dict[str, zipfile.ZipInfo] = {}
    declared = 0
    for info in infos:
        problem = path_problem(info.orig_filename)  # orig: zipfile cuts names at NUL
        if problem:
            raise XdmError("path_traversal", problem)
        if info.flag_bits & 0x1 or info.compress_type not in _METHODS:
            raise XdmError("not_zip", f"member_flags_{info.flag_bits}_{info.compress_type}")
        if info.is_dir():
            continue
        declared += info.file_size
        if declared > limits.max_total_bytes:
            raise XdmError("zip_bomb", "declared_total")
        if _too_compressed(info.file_size, info.compress_size, limits):
            raise XdmError("zip_bomb", "declared_ratio")
        if info.filename.casefold() in index:
            raise XdmError("path_traversal", "duplicate_name")
        index[info.filename.casefold()] = info
    meta_info = index.get(METADATA_PATH.casefold())
    if meta_info is None:
        raise XdmError("no_metadata")
    if meta_info.file_size > limits.max_metadata_bytes:
        raise XdmError("oversize", "metadata")
    raw = _read(archive, meta_info, min(limits.max_metadata_bytes, limits.max_total_bytes), limits)
    remaining = limits.max_total_bytes - len(raw)
    package, entries = _parse_metadata(raw)
    if len(entries) > limits.max_files:
        raise XdmError("too_many_files", "metadata")
    subset = meta_info.filename.rsplit("/", 1)[0]
    documents: list[XdmDocument] = []
    for number, (uri, doc) in enumerate(entries, 1):
        info = _member_for(index, subset, uri)
        if any(known.path == info.filename for known in documents):
            raise XdmError("bad_metadata", "duplicate_uri")
        content = _read(archive, info, remaining, limits)
        remaining -= len(content)
        if len(content) != doc.size:
            raise XdmError("size_mismatch", f"document_{number}")
        if hashlib.sha1(content, usedforsecurity=False).hexdigest() != doc.sha1:
            raise XdmError("hash_mismatch", f"document_{number}")
        documents.append(replace(doc, path=info.filename, data=content))
    return replace(package, documents=tuple(documents))


def path_problem(name: str) -> str | None:
    """Why a member name is unsafe to treat as a relative path, or None."""
    if not name:
        return "empty"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        return "control_char"
    if "\\" in name:
        return "backslash"
    if name.startswith("/"):
        return "absolute"
    if _DRIVE.match(name):
        return "drive_letter"
    if any(part in ("", ".", "..") for part in name.removesuffix("/").split("/")):
        return "dot_segment"
    return None


def _too_compressed(size: int, compressed: int, limits: XdmLimits) -> bool:
    return size > limits.ratio_floor and size > limits.max_ratio * max(compressed, 1)


def read_limited(stream: IO[bytes], info: zipfile.ZipInfo, limit: int, limits: XdmLimits) -> bytes:
    """Read a member in chunks, counting real bytes: never past ``limit`` nor its declared
    size, never a ratio above ``max_ratio`` to its compressed size (the header may lie)."""
    chunks: list[bytes] = []
    total = 0
    while chunk := stream.read(_CHUNK):
        total += len(chunk)
        if total > limit:
            raise XdmError("zip_bomb", "real_total")
        if total > info.file_size:
            raise XdmError("zip_bomb", "size_lie")
        if _too_compressed(total, info.compress_size, limits):
            raise XdmError("zip_bomb", "real_ratio")
        chunks.append(chunk)
    return b"".join(chunks)


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, limits: XdmLimits) -> bytes:
    try:
        with archive.open(info) as stream:
            return read_limited(stream, info, limit, limits)
    except _ZIP_ERRORS_ALL as exc:
        raise XdmError("not_zip", f"member_{type(exc).__name__}") from None


def _member_for(index: dict[str, zipfile.ZipInfo], subset: str, uri: str) -> zipfile.ZipInfo:
    """The member a URI slot names (relative to SUBSET01, as written or percent-decoded)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        raise XdmError("path_traversal", "uri") from None
    if parts.scheme or parts.netloc or parts.query or parts.fragment:
        raise XdmError("path_traversal", "uri_not_relative")
    for candidate in dict.fromkeys((parts.path, unquote(parts.path))):
        problem = path_problem(candidate)
        if problem or candidate.endswith("/"):
            raise XdmError("path_traversal", f"uri_{problem or 'directory'}")
        info = index.get(f"{subset}/{candidate}".casefold())
        if info is not None:
            return info
    raise XdmError("missing_file", "uri")


# --- metadata --------------------------------------------------------------------------


def _parse_metadata(raw: bytes) -> tuple[XdmPackage, list[tuple[str, XdmDocument]]]:
    """The package fields and, per ExtrinsicObject, its URI and document (data not read)."""
    try:
        root = cast(
            Element,
            defused_et.fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True),
        )
    except (DefusedXmlException, ParseError, ValueError, UnicodeError, LookupError) as exc:
        # LookupError: an XML declaration naming an encoding Python does not know.
        raise XdmError("bad_metadata", type(exc).__name__) from None
    objects = list(root.iter(f"{_R}ExtrinsicObject"))
    if not objects:
        raise XdmError("bad_metadata", "no_documents")
    entries = [_entry(obj) for obj in objects]
    found = _submission_set(root)
    ss = found if found is not None else Element("none")
    author = _author(ss, SS_AUTHOR_SCHEME) or _author(objects[0], DOC_AUTHOR_SCHEME)
    ids = ss.findall(f"{_R}ExternalIdentifier")
    uid = next(
        (i.get("value") for i in ids if i.get("identificationScheme") == SS_UNIQUE_ID_SCHEME), None
    )
    time = _first(_slots(ss), "submissionTime")
    return XdmPackage((), _name(ss), display_xcn(author), author, uid, time), entries


def _entry(obj: Element) -> tuple[str, XdmDocument]:
    slots = _slots(obj)
    mime, size, sha1 = obj.get("mimeType", ""), _one(slots, "size"), _one(slots, "hash")
    if not _MIME.fullmatch(mime) or not _SIZE.fullmatch(size) or not _SHA1.fullmatch(sha1):
        raise XdmError("bad_metadata", "document_slots")
    author, created = display_xcn(_author(obj, DOC_AUTHOR_SCHEME)), _first(slots, "creationTime")
    doc = XdmDocument("", mime.lower(), int(size), sha1.lower(), _name(obj), b"", author, created)
    return _one(slots, "URI"), doc


def _slots(element: Element) -> dict[str, list[str]]:
    """Direct Slot children: name → values (first slot of a name wins)."""
    slots: dict[str, list[str]] = {}
    for slot in element.findall(f"{_R}Slot"):
        values = [(v.text or "").strip() for v in slot.iterfind(f"{_R}ValueList/{_R}Value")]
        slots.setdefault(slot.get("name", ""), values)
    return slots


def _first(slots: dict[str, list[str]], name: str) -> str | None:
    return next(iter(slots.get(name, [])), None) or None


def _one(slots: dict[str, list[str]], name: str) -> str:
    values = slots.get(name, [])
    if len(values) != 1 or not values[0]:
        raise XdmError("bad_metadata", f"slot_{name}")
    return values[0]


def _name(element: Element) -> str | None:
    string = element.find(f"{_R}Name/{_R}LocalizedString")
    return ((string.get("value") or "").strip() or None) if string is not None else None


def _author(element: Element, scheme: str) -> str | None:
    for cls in element.findall(f"{_R}Classification"):
        person = _slots(cls).get("authorPerson") or [""]
        if cls.get("classificationScheme") == scheme and person[0]:
            return person[0]
    return None


def _submission_set(root: Element) -> Element | None:
    """The RegistryPackage classified as the submission set (else the first package)."""
    marked = {
        cls.get("classifiedObject")
        for cls in root.iter(f"{_R}Classification")
        if cls.get("classificationNode") == SS_NODE
    }
    packages = list(root.iter(f"{_R}RegistryPackage"))
    return next((p for p in packages if p.get("id") in marked), packages[0] if packages else None)


def display_xcn(xcn: str | None) -> str | None:
    """A readable form of an HL7 XCN person ("Given Family (id)"); plain text is kept."""
    if not xcn or "^" not in xcn:
        return _hl7_unescape(xcn or "").strip() or None
    parts = [_hl7_unescape(part.split("&")[0]).strip() for part in xcn.split("^")]
    ident, family, given = [*parts, ""][:3]
    name = " ".join(part for part in (given, family) if part)
    return (f"{name} ({ident})" if name and ident else name or ident) or None


def _hl7_unescape(text: str) -> str:
    return re.sub(r"\\[ESTFR]\\", lambda m: _HL7_UNESCAPES[m[0]], text)


# --- building --------------------------------------------------------------------------
