"""Writing IHE XDM packages (``build_xdm``): the minimal package a receiver checks.

Pure, like ``xdm`` (which reads them): "limited metadata", since a room knows no patient id.
"""

from __future__ import annotations

import hashlib
import html
import io
import unicodedata
import zipfile
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime

from bridge.mail.xdm import (
    _HL7_ESCAPES,
    _MIME,
    _NOT_XML_CHAR,
    _UNSAFE_NAME_CHAR,
    APPROVED,
    DOC_AUTHOR_SCHEME,
    DOC_OBJECT_TYPE,
    DOC_UNIQUE_ID_SCHEME,
    HAS_MEMBER,
    LCM,
    METADATA_PATH,
    RIM,
    SS_AUTHOR_SCHEME,
    SS_NODE,
    SS_UNIQUE_ID_SCHEME,
    SUBSET_DIR,
    XdmLimits,
    display_xcn,
)


def safe_filenames(names: Sequence[str]) -> list[str]:
    """Archive-safe, case-insensitively unique names keeping what they can of the originals
    ([A-Za-z0-9._-] after folding accents; ``DOC0001``-style when nothing is left)."""
    used, out = {"metadata.xml"}, []
    for number, name in enumerate(names, 1):
        base = unicodedata.normalize("NFKD", name.replace("\\", "/").rsplit("/", 1)[-1])
        base = _UNSAFE_NAME_CHAR.sub("_", base.encode("ascii", "ignore").decode())
        stem, dot, ext = base.rpartition(".") if "." in base else (base, "", "")
        stem, ext = stem.strip("._-")[:60] or f"DOC{number:04d}", ext.strip("_")[:10]
        dot = dot if ext else ""
        candidate, suffix = stem + dot + ext, 1
        while candidate.casefold() in used:
            suffix += 1
            candidate = f"{stem}_{suffix}{dot}{ext}"
        used.add(candidate.casefold())
        out.append(candidate)
    return out


def _x(text: str) -> str:
    """XML-escape for text and attributes; drops characters XML 1.0 cannot carry."""
    escaped = html.escape(_NOT_XML_CHAR.sub("", text), quote=True)
    return escaped.replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;")


def _slot(name: str, value: str) -> str:
    values = f"<rim:ValueList><rim:Value>{_x(value)}</rim:Value></rim:ValueList>"
    return f'<rim:Slot name="{name}">{values}</rim:Slot>'


def _body(ident: str, slots: dict[str, str], title: str, xcn: str, ids: tuple[str, ...]) -> str:
    """Slots, title, author, uniqueId: what a document and a submission set share.
    ``ids``: (author scheme, uniqueId scheme, uniqueId label, uniqueId)."""
    author_scheme, uid_scheme, uid_label, uid = ids
    return "\n".join(
        [
            *(_slot(name, value) for name, value in slots.items()),
            f'<rim:Name><rim:LocalizedString value="{_x(title)}"/></rim:Name>',
            f'<rim:Classification id="cl{ident}" classificationScheme="{author_scheme}" '
            f'classifiedObject="{ident}" nodeRepresentation="">{_slot("authorPerson", xcn)}'
            "</rim:Classification>",
            f'<rim:ExternalIdentifier id="ei{ident}" registryObject="{ident}" '
            f'identificationScheme="{uid_scheme}" value="{_x(uid)}"><rim:Name>'
            f'<rim:LocalizedString value="{uid_label}"/></rim:Name></rim:ExternalIdentifier>',
        ]
    )


def _metadata_xml(
    docs: Sequence[tuple[str, str, bytes, str]], title: str, xcn: str, dtm: str, unique_id: str
) -> bytes:
    ss, ss_slots = "SubmissionSet01", {"submissionTime": dtm}
    ss_ids = (SS_AUTHOR_SCHEME, SS_UNIQUE_ID_SCHEME, "XDSSubmissionSet.uniqueId", unique_id)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<lcm:SubmitObjectsRequest xmlns:lcm="{LCM}" xmlns:rim="{RIM}"><rim:RegistryObjectList>',
        f'<rim:RegistryPackage id="{ss}">',
        _body(ss, ss_slots, title, xcn, ss_ids),
        "</rim:RegistryPackage>",
        f'<rim:Classification id="cl{ss}Node" classifiedObject="{ss}" '
        f'classificationNode="{SS_NODE}"/>',
    ]
    for n, (name, mime, data, doc_title) in enumerate(docs, 1):
        doc, sha1 = f"Document{n:04d}", hashlib.sha1(data, usedforsecurity=False).hexdigest()
        slots = {"creationTime": dtm, "hash": sha1, "size": str(len(data)), "URI": name}
        ids = (
            DOC_AUTHOR_SCHEME,
            DOC_UNIQUE_ID_SCHEME,
            "XDSDocumentEntry.uniqueId",
            f"{unique_id}.{n}",
        )
        out += [
            f'<rim:ExtrinsicObject id="{doc}" mimeType="{_x(mime)}" '
            f'objectType="{DOC_OBJECT_TYPE}" status="{APPROVED}">',
            _body(doc, slots, doc_title, xcn, ids),
            "</rim:ExtrinsicObject>",
            f'<rim:Association id="as{doc}" associationType="{HAS_MEMBER}" sourceObject="{ss}" '
            f'targetObject="{doc}">{_slot("SubmissionSetStatus", "Original")}</rim:Association>',
        ]
    out.append("</rim:RegistryObjectList></lcm:SubmitObjectsRequest>\n")
    return "\n".join(out).encode()


def _index_htm(title: str, author: str, docs: Sequence[tuple[str, str, bytes, str]]) -> bytes:
    items = "".join(
        f'<li><a href="{SUBSET_DIR}/{html.escape(name)}">{html.escape(doc_title)}</a>'
        f" ({html.escape(mime)}, {len(data)} bytes)</li>\n"
        for name, mime, data, doc_title in docs
    )
    head = f'<meta charset="utf-8"><title>{html.escape(title)}</title>'
    body = f"<h1>{html.escape(title)}</h1>\n<p>{html.escape(author)}</p>\n<ul>\n{items}</ul>"
    return f"<!DOCTYPE html>\n<html><head>{head}</head>\n<body>{body}</body></html>\n".encode()


_DEFAULT_README = (
    "IHE XDM package (IHE ITI-32, Cross-Enterprise Document Media Interchange).\r\n"
    "Producer: SanteGuard mail bridge.\r\n"
    "INDEX.HTM lists the documents; IHE_XDM/SUBSET01/METADATA.XML describes them.\r\n"
)


def build_xdm(
    files: Sequence[tuple[str, str, bytes]],
    *,
    title: str,
    author: str,
    when: datetime,
    unique_id: str,
    readme: str | None = None,
) -> bytes:
    """(filename, mime, data) → IHE_XDM.ZIP bytes that ``unpack_xdm`` accepts.

    ``author`` is an HL7 XCN when it contains ``^``, else a plain name (stored as the family
    name). Names are sanitised and made unique; the original name becomes the title. Naive
    ``when`` is UTC. Document uniqueIds are ``{unique_id}.{n}``. ``readme``: README.TXT text.
    """
    if not files:
        raise ValueError("no_documents")
    safe = safe_filenames([name for name, _, _ in files])
    docs = [
        (safe_name, mime if _MIME.fullmatch(mime) else "application/octet-stream", data, name)
        for safe_name, (name, mime, data) in zip(safe, files, strict=True)
    ]
    stamp = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    xcn = author if "^" in author else "^" + "".join(_HL7_ESCAPES.get(c, c) for c in author)
    metadata = _metadata_xml(docs, title, xcn, stamp.strftime("%Y%m%d%H%M%S"), unique_id)
    members: list[tuple[str, bytes]] = [
        ("README.TXT", (_DEFAULT_README if readme is None else readme).encode()),
        ("INDEX.HTM", _index_htm(title, display_xcn(xcn) or "", docs)),
        (METADATA_PATH, metadata),
        *((f"{SUBSET_DIR}/{name}", data) for name, _, data, _ in docs),
    ]
    year = min(max(stamp.year, 1980), 2107)
    date_time = (year, stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=date_time)
            info.external_attr = 0o644 << 16
            info.compress_type = _compression_for(data)
            archive.writestr(info, data)
    return buffer.getvalue()


def _compression_for(data: bytes) -> int:
    """Deflate, unless the data is so repetitive that a receiver's ratio test could refuse it."""
    limits = XdmLimits()
    if len(data) <= limits.ratio_floor:
        return zipfile.ZIP_DEFLATED
    too_repetitive = len(data) > limits.max_ratio // 4 * len(zlib.compress(data, 1))
    return zipfile.ZIP_STORED if too_repetitive else zipfile.ZIP_DEFLATED
